"""Piecewise-linear manifold of a batch (Bhatnagar & Ahuja, "Piecewise-linear manifolds for deep
metric learning", CPAL 2024, Sec. 3.2).

For every point ``f_i`` of a batch (the momentum encoder's embeddings) the paper fits an
m-dimensional linear piece ``P_i`` by PCA on a subset ``X_i`` of its k nearest neighbours, chosen
greedily:

1. ``X_i`` = ``f_i`` and its m − 1 nearest neighbours (an m-dim PCA fits them exactly);
2. ``X'_i`` = ``X_i`` ∪ {the next neighbour}; fit the m-dim PCA of ``X'_i``;
3. keep the neighbour (``X_i ← X'_i``) only if that PCA reconstructs every point within the
   threshold T; otherwise drop it;
4. repeat 2–3 for the neighbours m … k in ascending distance.

The basis of ``P_i`` is the top-m principal directions of the final ``X_i``.

Decisions (TARGETS 003-§5.3; the paper leaves them open):

* **Linear (uncentred) PCA**, a subspace through the origin: the principal directions are the
  top-m right singular vectors of the stacked points, not of the points minus their mean. Step 1
  says an m-dim PCA of the m starting points "would fit all points with zero error"; that holds
  tightly for a linear subspace (m points span m dimensions), whereas a centred m-dim PCA fits
  m + 1 points exactly, which would make the first test of step 3 always pass. For unit-norm
  embeddings a linear piece through the origin is the cone over a patch of the sphere, and since
  ``f_i`` lies (nearly) in ``span(P_i)`` the affine piece ``f_i + span(P_i)`` used by the
  similarity (Sec. 3.3) is the same set. ``centred=True`` gives the affine variant
  (reconstruction ``x ≈ μ + U Uᵀ (x − μ)``).
* **"Within T %"** = the relative squared reconstruction error of every point is below 1 − T:
  ``||x − x̂||² / ||x||² < 1 − T``, i.e. the piece keeps more than T of the point's energy (for a
  unit vector and the linear PCA: cos² of its angle to the piece > T; T = 0.9 allows about 18.4°).
  T = 90 % is called a "reconstruction quality threshold" (Sec. 4.1), so it bounds quality from
  below; reading it as "error < 90 %" would accept almost anything. The comparison is strict
  ("an error less than T %"), so T = 1 accepts no neighbour beyond the initial m − 1.
  ``error_measure="norm"`` reads it on lengths instead, ``||x − x̂|| / ||x|| < 1 − T`` (about 5.7°
  at T = 0.9), much stricter. Note that with the energy reading a *tight* neighbourhood (its
  points within a few degrees of each other) uses little of its m dimensions, so the refitted
  PCA can swap a minor direction for an off-piece candidate and still keep every point within
  10 %: such a candidate is accepted. That is the algorithm as written, not an implementation
  artefact; the norm reading rejects it.
* The m − 1 nearest neighbours of step 1 are taken unconditionally, however far they are.
* **Which points are checked**: by default every point of ``X'_i``, the candidate included
  (``check="all"``). Step 3's letter checks only the points already in ``X_i``; but once ``X_i``
  has a few points an outlier barely tilts the PCA, so that reading would accept outliers whose
  own residual is large, against the stated intent ("the newly added point is not a good fit").
  ``check="accepted"`` gives the literal reading.
* **k** (``n_neighbours``) counts batch embeddings other than ``f_i``, nearest first by Euclidean
  distance (cosine order for unit vectors). The caller chooses it; with nearest-neighbour batches
  of k images per seed in 2 views, ``2k − 1`` is the point's own seed group
  (:mod:`dmlrepro.miners.nn_batches`).

Implementation: the greedy loop runs over the k − m + 1 candidates, vectorised over all points.
Each point's PCA is computed in the small (k + 1)-dimensional space of its neighbourhood: with
``G = X Xᵀ`` (rows of non-members zeroed) and ``G = A Λ Aᵀ``, the energy of row r kept by the top
m directions is ``Σ_{l≤m} λ_l A_rl²``, so only a batch of (k + 1) × (k + 1) ``eigh`` is needed per
step (float64). The final bases come from one batched SVD of the member rows.

Not a pytorch-metric-learning ``BaseMiner``: the output is a basis per point (and a membership
mask), not index tuples.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dmlrepro import DmlReproError

CHECK_MODES = ("all", "accepted")
ERROR_MEASURES = ("energy", "norm")


@dataclass
class PiecewiseLinearManifold:
    """The pieces of one batch.

    ``bases`` (n, d, m): orthonormal columns spanning ``P_i``; ``members`` (n, n) bool: row i marks
    ``X_i`` (``members[i, i]`` is True); ``neighbours`` (n, k): the candidates of each point, nearest
    first; ``centred``: whether the pieces are affine (centred PCA)."""

    bases: torch.Tensor
    members: torch.Tensor
    neighbours: torch.Tensor
    centred: bool = False


def _check_args(emb: torch.Tensor, m: int, threshold: float, n_neighbours: int | None, check: str,
                error_measure: str) -> int:
    if emb.ndim != 2:
        raise DmlReproError(f"pl_manifold: embeddings must be (n, d), got shape {tuple(emb.shape)}")
    n, d = emb.shape
    if not 1 <= int(m) <= d:
        raise DmlReproError(f"pl_manifold: m={m} must lie in [1, d={d}]")
    if not 0.0 < float(threshold) <= 1.0:
        raise DmlReproError(f"pl_manifold: threshold T={threshold} must be a fraction in (0, 1] (0.9 for 90 %)")
    if error_measure not in ERROR_MEASURES:
        raise DmlReproError(f"pl_manifold: unknown error_measure '{error_measure}' ({' | '.join(ERROR_MEASURES)})")
    if check not in CHECK_MODES:
        raise DmlReproError(f"pl_manifold: unknown check '{check}' ({' | '.join(CHECK_MODES)})")
    k = n - 1 if n_neighbours is None else int(n_neighbours)
    if not m - 1 <= k <= n - 1:
        raise DmlReproError(f"pl_manifold: n_neighbours={n_neighbours} must lie in [m - 1 = {m - 1}, n - 1 = {n - 1}]")
    return k


def _relative_errors(local: torch.Tensor, mask: torch.Tensor, m: int, centred: bool) -> torch.Tensor:
    """(n, k + 1) relative squared reconstruction error of each local row by the m-dim PCA of
    the rows where ``mask`` is True (values at masked-out rows are meaningless)."""
    w = mask.to(local.dtype)
    if centred:
        mean = (local * w[..., None]).sum(1, keepdim=True) / w.sum(1)[:, None, None]
        x = local - mean
    else:
        x = local
    x = x * w[..., None]
    gram = x @ x.transpose(1, 2)                                  # (n, k+1, k+1)
    evals, evecs = torch.linalg.eigh(gram)                        # ascending
    top_l, top_a = evals[:, -m:].clamp_min(0.0), evecs[:, :, -m:]
    kept = (top_a.pow(2) * top_l[:, None, :]).sum(-1)             # energy kept per row
    residual = (torch.diagonal(gram, dim1=1, dim2=2) - kept).clamp_min(0.0)
    return residual / local.pow(2).sum(-1).clamp_min(1e-300)


@torch.no_grad()
def piecewise_linear_manifold(embeddings: torch.Tensor, m: int = 3, threshold: float = 0.9,
                              n_neighbours: int | None = None, centred: bool = False,
                              check: str = "all", error_measure: str = "energy",
                              select: bool = True) -> PiecewiseLinearManifold:
    """Sec. 3.2 for every row of ``embeddings`` (n, d); see the module docstring.

    ``select=False`` skips the subset selection and keeps all k neighbours (the ablation
    "Ours − PL manifold" of the paper's Table 3: the PCA of the plain k-nearest neighbourhood).

    ``m``: dimension of each piece (paper: 3); ``threshold``: T as a fraction (paper: 0.9);
    ``n_neighbours``: k candidates per point (default all n − 1); ``error_measure``: "energy"
    (relative squared error < 1 − T, the default) or "norm" (relative error < 1 − T). Runs under ``no_grad`` (the
    pieces come from the momentum encoder and carry no gradient)."""
    k = _check_args(embeddings, m, threshold, n_neighbours, check, error_measure)
    m = int(m)
    emb = embeddings.detach().to(torch.float64)
    n, d = emb.shape
    dist = torch.cdist(emb, emb)
    dist.fill_diagonal_(float("inf"))
    # stable sort: ties (duplicate embeddings) keep row order, so the result is deterministic
    neighbours = torch.sort(dist, dim=1, stable=True).indices[:, :k]
    local_idx = torch.cat([torch.arange(n, device=emb.device)[:, None], neighbours], dim=1)  # (n, k+1)
    local = emb[local_idx]                                        # (n, k+1, d): self first
    accepted = torch.zeros(n, k + 1, dtype=torch.bool, device=emb.device)
    accepted[:, :m] = True                                        # f_i and its m - 1 nearest
    limit = 1.0 - float(threshold)
    if not select:
        accepted[:] = True
    for t in range(m, k + 1 if select else m):
        trial = accepted.clone()
        trial[:, t] = True
        err = _relative_errors(local, trial, m, centred)
        if error_measure == "norm":
            err = err.sqrt()
        checked = trial if check == "all" else accepted
        fits = torch.where(checked, err, torch.zeros_like(err)).amax(1) < limit
        accepted[:, t] = fits
    # bases: top-m right singular vectors of the (centred) member rows
    w = accepted.to(emb.dtype)[..., None]
    x = local
    if centred:
        x = x - (local * w).sum(1, keepdim=True) / w.sum(1, keepdim=True)
    # (n, min(k+1, d), d); k + 1 >= m and d >= m, so there are at least m rows. Directions beyond
    # the members' rank (e.g. duplicate points) are an arbitrary orthonormal completion.
    _, _, vh = torch.linalg.svd(x * w, full_matrices=False)
    bases = vh[:, :m, :].transpose(1, 2).contiguous()             # (n, d, m)
    members = torch.zeros(n, n, dtype=torch.bool, device=emb.device)
    members.scatter_(1, local_idx, accepted)
    return PiecewiseLinearManifold(bases.to(embeddings.dtype), members, neighbours, bool(centred))
