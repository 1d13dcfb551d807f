"""One training loop for any embedder: a batch plan in, a loss out, hooks for everything else.

The loop owns what every method shares and nothing a method owns:

* **Batches** come from a *plan*: ``plan(epoch) -> list of row-index arrays``, drawn from a
  generator seeded by (seed, epoch). Loading a planned batch (``load(rows) -> Batch``) is separate
  from drawing it, so a run resumed in the middle of an epoch skips the batches already taken
  without loading them, and sees the same batches as an uninterrupted run.
* **The loss** is an :class:`Objective`: ``objective(model, batch) -> (loss, n_terms)``. It is an
  ``nn.Module``, so the parameters a loss owns (proxies, a softmax layer) are optimised and
  checkpointed with the model.
* **Everything else** a method needs (a momentum encoder, a memory bank, an alternating metric
  step, a neighbour sampler refreshed every epoch) is a :class:`Hook`, which owns its state the
  way pytorch-metric-learning's ``CrossBatchMemory`` does; the loop never asks which method runs.
* **Selection** on validation only: ``validate(model) -> metrics`` every ``eval_every`` epochs,
  the best state by ``selection_metric`` (higher is better) is kept. ``monitor(model)`` is
  recorded beside it (e.g. test metrics, to show what picking the best epoch on test would
  give); the loop never reads it for selection.
* **Checkpoints** (model, objective, optimiser, hooks, RNG states, history, best state) are
  written atomically after every epoch and every ``checkpoint_every`` iterations; a restarted run
  with the same ``signature`` resumes from the last one.
"""

from __future__ import annotations

import logging
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from dmlrepro.io import atomic_path, write_json

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """What a training step sees: inputs, labels (None for label-free methods), the dataset rows
    of the batch, and anything else a method's objective reads (an EMD sub-matrix, a second view)."""

    inputs: Any
    labels: torch.Tensor | None
    index: np.ndarray
    extras: dict[str, Any] = field(default_factory=dict)


class Objective(nn.Module):
    """``forward(model, batch) -> (loss, n_terms)``: embed the batch and compute the method's loss."""

    def forward(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        raise NotImplementedError


class Hook:
    """Per-method behaviour outside the loss. Every method is a no-op unless overridden."""

    def on_fit_start(self, trainer: "Trainer") -> None: ...
    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None: ...
    def on_step_end(self, trainer: "Trainer", batch: Batch, loss: float) -> None: ...
    def on_epoch_end(self, trainer: "Trainer", epoch: int) -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class TrainResult:
    best_epoch: int
    best_score: float | None
    history: list[dict[str, Any]]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


class Trainer:
    """Train ``model`` with ``objective`` on the batches of ``plan``; see the module docstring."""

    def __init__(self, model: nn.Module, objective: Objective, optimizer: torch.optim.Optimizer, *,
                 plan: Callable[[int], Sequence[np.ndarray]], load: Callable[[Sequence[np.ndarray]], Iterable[Batch]],
                 epochs: int, checkpoint: str | Path, signature: str,
                 validate: Callable[[nn.Module], dict[str, float]] | None = None,
                 selection_metric: str | None = None, monitor: Callable[[nn.Module], dict[str, float]] | None = None,
                 hooks: Sequence[Hook] = (), eval_every: int = 1, checkpoint_every: int = 0,
                 device: str | torch.device = "cpu", amp: bool = False, progress: bool = True,
                 max_grad_norm: float | None = None, name: str = "train"):
        self.model, self.objective, self.optimizer = model, objective, optimizer
        self.plan, self.load = plan, load
        self.epochs, self.eval_every, self.checkpoint_every = int(epochs), max(1, int(eval_every)), int(checkpoint_every)
        self.checkpoint_path, self.signature = Path(checkpoint), signature
        self.validate, self.selection_metric, self.monitor = validate, selection_metric, monitor
        self.hooks = list(hooks)
        self.device = torch.device(device)
        # mixed precision and cuDNN autotuning on a GPU only (CPU runs stay exact and reproducible)
        self.amp = bool(amp) and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.progress, self.name = progress, name
        self.max_grad_norm = None if max_grad_norm is None else float(max_grad_norm)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"epoch": 0, "score": None, "state": None}
        self.epoch, self.iteration = 0, 0   # last finished epoch; iterations taken in the current one

    # ------------------------------------------------------------------ checkpoint
    def _save(self, epoch_done: int, iteration: int, partial: dict[str, Any] | None) -> None:
        with atomic_path(self.checkpoint_path, suffix=".pt") as tmp:
            torch.save({"signature": self.signature, "epoch": epoch_done, "iteration": iteration, "partial": partial,
                        "model": self.model.state_dict(), "objective": self.objective.state_dict(),
                        "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                        "hooks": [h.state_dict() for h in self.hooks],
                        "history": self.history, "best": self.best, "rng": rng_state()}, tmp)

    def _resume(self) -> dict[str, Any] | None:
        if not self.checkpoint_path.exists():
            return None
        ckpt = torch.load(self.checkpoint_path, weights_only=False, map_location=self.device)
        if ckpt.get("signature") != self.signature:
            log.warning("ignoring checkpoint %s: written for another configuration", self.checkpoint_path)
            return None
        self.model.load_state_dict(ckpt["model"])
        self.objective.load_state_dict(ckpt["objective"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        for hook, state in zip(self.hooks, ckpt["hooks"]):
            hook.load_state_dict(state)
        self.history, self.best = ckpt["history"], ckpt["best"]
        self.epoch, self.iteration = ckpt["epoch"], ckpt["iteration"]
        set_rng_state(ckpt["rng"])
        log.info("%s: resuming after epoch %d, iteration %d (%s)", self.name, self.epoch, self.iteration,
                 self.checkpoint_path)
        return ckpt.get("partial")

    # ------------------------------------------------------------------ loop
    def fit(self, after_epoch: Callable[[int], None] | None = None) -> TrainResult:
        """``after_epoch`` is a test hook (e.g. to interrupt a run after a given epoch)."""
        partial = self._resume()
        self.model.to(self.device)
        self.objective.to(self.device)
        for hook in self.hooks:
            hook.on_fit_start(self)
        for epoch in range(self.epoch + 1, self.epochs + 1):
            self._run_epoch(epoch, partial)
            partial = None
            if after_epoch is not None:
                after_epoch(epoch)
        if self.best["state"] is None:  # zero epochs, or nothing to select on
            self.best = {"epoch": self.epoch, "score": None, "state": cpu_state(self.model)}
        self.model.load_state_dict(self.best["state"])
        return TrainResult(self.best["epoch"], self.best["score"], self.history)

    def _run_epoch(self, epoch: int, partial: dict[str, Any] | None) -> None:
        t0 = time.perf_counter()
        for hook in self.hooks:
            hook.on_epoch_start(self, epoch)
        batches = list(self.plan(epoch))
        start = self.iteration if partial is not None else 0
        sums = partial or {"loss": 0.0, "weight": 0, "n_terms": 0}
        self.model.train()
        # a log file (no terminal) gets a line every 30 s, not one per batch
        bar = tqdm(total=len(batches), initial=start, desc=f"{self.name} epoch {epoch}/{self.epochs}",
                   disable=not self.progress, leave=False, unit="batch",
                   mininterval=1.0 if sys.stderr.isatty() else 30.0)
        for i, batch in enumerate(self.load(batches[start:]), start=start + 1):
            with torch.autocast(self.device.type, enabled=self.amp):
                loss, n_terms = self.objective(self.model, batch)
            self.optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad:  # a batch with no active term leaves the parameters alone
                self.scaler.scale(loss).backward()
                if self.max_grad_norm is not None:  # the norm of the true gradient, over every optimised parameter
                    self.scaler.unscale_(self.optimizer)
                    nn.utils.clip_grad_norm_([p for g in self.optimizer.param_groups for p in g["params"]],
                                             self.max_grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
            value = float(loss.detach())
            for hook in self.hooks:
                hook.on_step_end(self, batch, value)
            size = len(batch.index)
            sums["loss"] += value * size
            sums["weight"] += size
            sums["n_terms"] += int(n_terms)
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4f}", img_s=f"{sums['weight'] / max(time.perf_counter() - t0, 1e-9):.0f}",
                            refresh=False)
            self.iteration = i
            if self.checkpoint_every and i % self.checkpoint_every == 0 and i < len(batches):
                self._save(epoch - 1, i, sums)
        bar.close()
        for hook in self.hooks:
            hook.on_epoch_end(self, epoch)
        row: dict[str, Any] = {"epoch": epoch, "loss": sums["loss"] / sums["weight"] if sums["weight"] else float("nan"),
                               "n_terms": sums["n_terms"]}
        if epoch % self.eval_every == 0 or epoch == self.epochs:
            self._evaluate(epoch, row)
        if self.validate is None or self.selection_metric is None:
            self.best = {"epoch": epoch, "score": None, "state": cpu_state(self.model)}
        row["seconds"] = round(time.perf_counter() - t0, 3)
        self.history.append(row)
        self.epoch, self.iteration = epoch, 0
        log.info("%s epoch %d/%d loss %.4f %s (%.1fs)", self.name, epoch, self.epochs, row["loss"],
                 " ".join(f"{k} {v:.4f}" for k, v in row.items() if k.startswith(("val_", "test_"))), row["seconds"])
        self._save(epoch, 0, None)

    def _evaluate(self, epoch: int, row: dict[str, Any]) -> None:
        if self.validate is not None:
            scores = self.validate(self.model)
            row.update({f"val_{k}": v for k, v in scores.items()})
            if self.selection_metric is not None:
                score = scores[self.selection_metric]
                if self.best["score"] is None or score > self.best["score"]:
                    self.best = {"epoch": epoch, "score": score, "state": cpu_state(self.model)}
        if self.monitor is not None:
            row.update({f"test_{k}": v for k, v in self.monitor(self.model).items()})


def run_signature(*parts: Any) -> str:
    """A checkpoint's key: a run resumes only a checkpoint written for the same settings."""
    import hashlib
    import json
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def write_history(path: str | Path, history: list[dict[str, Any]], columns: Sequence[str] | None = None) -> None:
    """One row per epoch, written atomically: the given ``columns`` in that order (a value a row
    lacks is left empty, a key not listed is left out), or by default every key any row has."""
    import csv
    columns = list(columns) if columns is not None else list(dict.fromkeys(k for row in history for k in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def save_run(out_dir: str | Path, model_file: dict[str, Any], history: list[dict[str, Any]],
             summary: dict[str, Any]) -> dict[str, Any]:
    """A finished run's outputs, each written atomically: ``model.pt`` (``model_file``),
    ``history.csv`` and ``metrics.json`` (``summary``, returned), the metrics last, so that the file
    the workflow waits for exists only when the rest does."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir / "model.pt", suffix=".pt") as tmp:
        torch.save(model_file, tmp)
    write_history(out_dir / "history.csv", history)
    write_json(out_dir / "metrics.json", summary)
    return summary
