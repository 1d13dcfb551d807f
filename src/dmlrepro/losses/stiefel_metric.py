"""SSDML's metric step: L on the Stiefel manifold, optimised by Riemannian conjugate gradient
(Dutta, Harandi & Sekhar, AAAI 2021, "Triplet-based Orthogonality-Promoting SSDML" and
Implementation details: "to learn L with orthogonal constraints we made use of the Manopt tool
with CGD (max_iter=10, with all other default settings)").

With the network fixed (Algorithm 1, the "learn M_t" line, with L for M), L (d × l, LᵀL = I_l)
minimises Eq. 3 over the given triplets of fixed features (:func:`update_metric`). We use
pymanopt 2.2.1, the Python port of Manopt: ``ConjugateGradient`` on ``Stiefel(d, l)`` with a
PyTorch cost (automatic Euclidean gradient, projected by pymanopt to the tangent space).

Decisions:

* **Same defaults as Manopt's ``conjugategradient``**: Hestenes–Stiefel β, the adaptive
  (Armijo, backtracking) line search, QR retraction, gradient-norm tolerance 1e-6, minimum step
  1e-10. Manopt counts ``maxiter`` as completed iterations; pymanopt stops when its iteration
  counter, which starts at 1 before the first step, reaches ``max_iterations``. We pass
  ``max_iter + 1`` so that ``max_iter=10`` makes 10 CG steps, as Manopt does. The line search
  never accepts a point with a higher cost, so the cost is non-increasing.
* **Warm start**: each step starts from the previous L (the same-authors' GUML notebook does
  this with pymanopt too); a fresh line searcher per step (Manopt's behaviour per call).
* **Cost = the sum of Eq. 3** over the triplets passed (the caller passes the mini-batch of
  triplets, or any set it chooses; the paper's schedule is ambiguity 1 of TARGETS 001-§5).
  Computed in float64 on CPU from the precomputed differences ``a − p`` and
  ``n − (a + p)/2``: the features are fixed during the step.
* **Initial L** (:class:`StiefelMetric`): the paper does not say. Default: the first l columns
  of a random orthogonal matrix (QR of a seeded Gaussian, signs fixed), a point of the Stiefel
  manifold with no preferred coordinates; ``init="identity"`` takes the first l columns of I_d.
* **w/o orth** (Table 4's ablation, ``orthogonal=False``): the same CG with the same budget on
  ``Euclidean(d, l)``, i.e. L unconstrained, starting from the same point.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dmlrepro import DmlReproError
from dmlrepro.losses.ssdml import _as_triplet_indices, tan2_from_degrees

ORTHONORMALITY_TOLERANCE = 1e-6   # ‖LᵀL − I‖_F accepted as "on the manifold" for a warm start


def orthonormality_error(L) -> float:
    """``‖LᵀL − I‖_F``."""
    L = torch.as_tensor(L, dtype=torch.float64)
    return float(torch.linalg.norm(L.T @ L - torch.eye(L.shape[1], dtype=torch.float64)))


def initial_stiefel_point(d: int, l: int, init: str = "random", seed: int = 0) -> torch.Tensor:
    """A (d, l) float64 matrix with orthonormal columns: the first l columns of a random
    orthogonal matrix (``init="random"``, seeded) or of the identity (``init="identity"``)."""
    if not 1 <= l <= d:
        raise DmlReproError(f"need 1 <= l <= d for L (d x l), got d = {d}, l = {l}")
    if init == "identity":
        return torch.eye(d, dtype=torch.float64)[:, :l].clone()
    if init == "random":
        g = torch.Generator().manual_seed(int(seed))
        q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
        q = q * torch.sign(torch.diagonal(r))     # Haar-distributed: fix the QR sign ambiguity
        return q[:, :l].contiguous()
    raise DmlReproError(f"unknown init '{init}' for L (random | identity)")


def _metric_problem(features, triplets, alpha_deg: float, d: int, l: int, orthogonal: bool):
    import pymanopt

    feats = torch.as_tensor(features).detach().to("cpu", torch.float64)
    if feats.ndim != 2 or feats.shape[1] != d:
        raise DmlReproError(f"features must be (n, {d}) to match L, got shape {tuple(feats.shape)}")
    a, p, q = _as_triplet_indices(triplets, feats.shape[0], "cpu")
    if a.numel() == 0:
        raise DmlReproError("the metric step needs at least one triplet")
    tan2 = tan2_from_degrees(alpha_deg)
    pull = feats[a] - feats[p]                            # a − p
    push = feats[q] - 0.5 * (feats[a] + feats[p])         # n − (a + p)/2
    manifold = pymanopt.manifolds.Stiefel(d, l) if orthogonal else pymanopt.manifolds.Euclidean(d, l)

    @pymanopt.function.pytorch(manifold)
    def cost(L):
        m = (pull @ L).pow(2).sum(-1) - 4.0 * tan2 * (push @ L).pow(2).sum(-1)
        return F.softplus(m).sum()

    return pymanopt.Problem(manifold, cost)


def run_metric_step(L, features, triplets, alpha_deg: float, max_iter: int = 10,
                    orthogonal: bool = True):
    """:func:`update_metric`, also returning pymanopt's ``OptimizerResult`` (with the per-iteration
    costs in ``result.log["iterations"]["cost"]``)."""
    import pymanopt

    L0 = torch.as_tensor(L).detach().to("cpu", torch.float64)
    if L0.ndim != 2:
        raise DmlReproError(f"L must be a (d, l) matrix, got shape {tuple(L0.shape)}")
    d, l = L0.shape
    if max_iter < 1:
        raise DmlReproError(f"max_iter must be >= 1, got {max_iter}")
    if orthogonal:
        err = orthonormality_error(L0)
        if err > ORTHONORMALITY_TOLERANCE:
            raise DmlReproError(f"L is not on the Stiefel manifold (‖LᵀL − I‖ = {err:.2e} > "
                                f"{ORTHONORMALITY_TOLERANCE}); start from initial_stiefel_point")
    problem = _metric_problem(features, triplets, alpha_deg, d, l, orthogonal)
    optimizer = pymanopt.optimizers.ConjugateGradient(
        max_iterations=int(max_iter) + 1, verbosity=0, log_verbosity=1)
    with torch.enable_grad():        # pymanopt differentiates the cost with autograd
        result = optimizer.run(problem, initial_point=L0.numpy().copy())
    return torch.from_numpy(np.ascontiguousarray(result.point)), result


def update_metric(L, features, triplets, alpha_deg: float, max_iter: int = 10,
                  orthogonal: bool = True) -> torch.Tensor:
    """One metric step: ``max_iter`` conjugate-gradient iterations on Eq. 3 (sum over
    ``triplets``) w.r.t. L, the features fixed, warm-started from ``L``.

    ``L`` (d, l); ``features`` (n, d), the representations before L; ``triplets`` (T, 3) or
    ``(anchors, positives, negatives)`` row indices into ``features``. ``orthogonal=True``:
    on ``Stiefel(d, l)`` (``L`` must already have orthonormal columns); ``False``: on
    ``Euclidean(d, l)`` (the w/o-orth ablation). Returns the new L, float64 on CPU.
    """
    return run_metric_step(L, features, triplets, alpha_deg, max_iter, orthogonal)[0]


class StiefelMetric(torch.nn.Module):
    """Holds SSDML's metric factor L (d × l) as a float64 buffer and projects features with it.

    ``metric(z)`` is ``Lᵀz`` for each row z, i.e. ``z @ L`` (so ``δ²_L(x, y) = ||metric(x) − metric(y)||²``);
    :meth:`update` runs one metric step (:func:`update_metric`). ``orthogonal=False`` keeps the
    same start and budget but optimises L unconstrained (w/o orth).
    """

    def __init__(self, d: int, l: int, init: str = "random", seed: int = 0,
                 orthogonal: bool = True, max_iter: int = 10):
        super().__init__()
        self.d, self.l = int(d), int(l)
        self.orthogonal = bool(orthogonal)
        self.max_iter = int(max_iter)
        self.register_buffer("L", initial_stiefel_point(self.d, self.l, init, seed))
        self.last_costs: list[float] = []

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.L.to(features.dtype)

    def update(self, features, triplets, alpha_deg: float) -> torch.Tensor:
        """One metric step from the current L; stores and returns the new L. The cost at the
        start and after each iteration is kept in ``last_costs``."""
        new_L, result = run_metric_step(self.L, features, triplets, alpha_deg,
                                        self.max_iter, self.orthogonal)
        self.L = new_L.to(self.L.device)
        self.last_costs = [float(c) for c in result.log["iterations"]["cost"]]
        return self.L
