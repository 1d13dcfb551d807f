"""Hook that rebuilds the nearest-neighbour batch plan every epoch (PL manifolds Sec. 3.1.1).

:class:`NeighbourBatches` is both a :class:`~dmlrepro.training.loop.Hook` and the trainer's
``plan``: at each epoch start it embeds the training rows (``embed(trainer)``, e.g. the momentum
encoder over un-augmented images) and stores the neighbour table; ``plan(epoch)`` then draws that
epoch's batches with :func:`dmlrepro.miners.nn_batches.plan_from_table`. The table is part of the
hook's state, so a run resumed in the middle of an epoch replays the same batches instead of
re-embedding with a teacher that has moved on.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from dmlrepro import DmlReproError
from dmlrepro.miners.nn_batches import neighbour_table, plan_from_table
from dmlrepro.training.loop import Hook, Trainer


class NeighbourBatches(Hook):
    """``hooks=[..., nb]`` and ``plan=nb.plan``; ``embed(trainer) -> (len(rows), d)`` array."""

    def __init__(self, embed: Callable[[Trainer], np.ndarray], rows: np.ndarray, *, batch_size: int = 100,
                 n_per_seed: int = 5, seed: int = 0, every: int = 1):
        self.embed, self.rows = embed, np.asarray(rows)
        self.batch_size, self.n_per_seed, self.seed, self.every = int(batch_size), int(n_per_seed), int(seed), max(1, int(every))
        self.table: np.ndarray | None = None
        self.table_epoch = 0

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        due = self.table is None or (epoch - 1) % self.every == 0
        if due and self.table_epoch != epoch:
            emb = np.asarray(self.embed(trainer))
            if len(emb) != len(self.rows):
                raise DmlReproError(f"nn_batches: embed returned {len(emb)} embeddings for {len(self.rows)} rows")
            self.table, self.table_epoch = neighbour_table(emb, self.n_per_seed), epoch

    def plan(self, epoch: int) -> list[np.ndarray]:
        if self.table is None:
            raise DmlReproError("nn_batches: plan() called before the epoch-start embedding")
        return plan_from_table(self.table, self.rows, self.batch_size, self.n_per_seed, self.seed, epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"table": None if self.table is None else self.table.copy(), "table_epoch": self.table_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.table, self.table_epoch = state["table"], int(state["table_epoch"])
