"""Learning-rate schedules as trainer hooks: the hook owns the scheduler's state, so a resumed run
continues the schedule where it stopped (the way ``CrossBatchMemory`` owns its memory)."""

from __future__ import annotations

import math
from typing import Any

import torch

from dmlrepro.training.loop import Hook

__all__ = ["PerStepSchedule", "linear_warmup_decay"]


class PerStepSchedule(Hook):
    """Steps a ``torch.optim.lr_scheduler`` after every optimiser step."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler):
        self.scheduler = scheduler

    def on_step_end(self, trainer, batch, loss: float) -> None:
        self.scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


def linear_warmup_decay(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float) -> PerStepSchedule:
    """Linear warm-up over the first ``warmup_ratio`` of the steps, then linear decay to 0 (BERT's)."""
    warmup = math.ceil(total_steps * warmup_ratio)

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return PerStepSchedule(torch.optim.lr_scheduler.LambdaLR(optimizer, factor))


