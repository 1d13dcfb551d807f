"""Momentum encoder (exponential moving average of the student), as a training Hook.

PL manifolds (Bhatnagar & Ahuja 2024, Sec. 3.1.2, Eq. 1) and STML (Kim et al. 2022) both keep a
teacher ``f_φ`` whose weights follow the student ``f_θ``:

    φ ← γ φ + (1 − γ) θ,   γ = 0.999,

once per optimisation step. (Eq. 1 prints φ_t on both sides; the update from φ_{t−1} is meant.)

Decisions:

* **After the optimiser step** (``on_step_end``), so φ_t mixes in θ_t as Eq. 1 writes. STML's
  code calls its update between ``backward()`` and ``opt.step()``, i.e. with θ_{t−1}: a one-step
  lag, immaterial at γ = 0.999.
* **Buffers too**: every floating entry of the state dict (parameters and BatchNorm running
  statistics) is averaged; integer entries (``num_batches_tracked``) are copied. This is what
  STML's ``Momentum_Update`` does; the teacher runs in eval mode, so its running statistics must
  come from the student.
* The hook owns the teacher: it is a deep copy of the student at construction, never trained
  (``requires_grad=False``, eval mode), and its state dict travels in the trainer's checkpoint via
  :meth:`MomentumEncoder.state_dict`, so a resumed run continues the same average.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from dmlrepro import DmlReproError
from dmlrepro.training.loop import Batch, Hook, Trainer


class MomentumEncoder(Hook):
    """Owns ``teacher`` = EMA of ``student``; ``encoder(x)`` embeds with the teacher under no_grad."""

    def __init__(self, student: nn.Module, momentum: float = 0.999):
        if not 0.0 <= float(momentum) <= 1.0:
            raise DmlReproError(f"momentum encoder: momentum={momentum} must lie in [0, 1]")
        self.student, self.momentum = student, float(momentum)
        self.teacher = copy.deepcopy(student)
        self.teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self) -> None:
        """One step of Eq. 1 on every state entry (floating: EMA; others: copied)."""
        student_state = self.student.state_dict()
        for name, t in self.teacher.state_dict().items():
            s = student_state[name].to(t.device)
            if t.is_floating_point():
                t.mul_(self.momentum).add_(s.to(t.dtype), alpha=1.0 - self.momentum)
            else:
                t.copy_(s)

    @torch.no_grad()
    def __call__(self, *inputs: Any, **kwargs: Any) -> Any:
        self.teacher.eval()
        return self.teacher(*inputs, **kwargs)

    def on_fit_start(self, trainer: Trainer) -> None:
        self.teacher.to(trainer.device)

    def on_step_end(self, trainer: Trainer, batch: Batch, loss: float) -> None:
        self.update()

    def state_dict(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "teacher": {k: v.detach().cpu().clone() for k, v in self.teacher.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if float(state["momentum"]) != self.momentum:
            raise DmlReproError(f"momentum encoder: checkpoint momentum {state['momentum']} != configured {self.momentum}")
        self.teacher.load_state_dict(state["teacher"])
