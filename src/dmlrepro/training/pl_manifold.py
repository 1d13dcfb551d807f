"""Hook of the piecewise-linear-manifold method: keep the proxies' frames orthonormal.

After every optimiser step :class:`ProxyRetraction` calls
:meth:`dmlrepro.losses.pl_manifold.PLManifoldLoss.retract_proxies_` (QR of each Ψ_j, and ρ_j back
to the unit sphere); see that module for why a retraction and not a parametrisation. The proxies
themselves are parameters of the loss (the trainer's objective), so they are checkpointed there.
"""

from __future__ import annotations

from dmlrepro.losses.pl_manifold import PLManifoldLoss
from dmlrepro.training.loop import Batch, Hook, Trainer


class ProxyRetraction(Hook):
    def __init__(self, loss: PLManifoldLoss):
        self.loss = loss

    def on_fit_start(self, trainer: Trainer) -> None:
        # a fresh run only: a resumed run's proxies are already retracted, and a second QR would
        # move them by rounding, so that the resumed run would not be the uninterrupted one
        if trainer.epoch == 0 and trainer.iteration == 0:
            self.loss.retract_proxies_()

    def on_step_end(self, trainer: Trainer, batch: Batch, loss: float) -> None:
        self.loss.retract_proxies_()
