"""Metric steps of SSDML's five semi-supervised baselines (Dutta, Harandi & Sekhar, AAAI 2021,
"Semi-Supervised Metric Learning: A Deep Resurrection", section "Extending the above methods for
end-to-end learning" and Algorithm 1), and one interface for them and for SSDML's own step.

Algorithm 1 alternates "fix θ_z, learn M_t with the given SSDML method" and "fix M_t, learn θ_z by
SGD". This module is the first half for Deep-LRML, Deep-ISDML, Deep-SERAPH, Deep-APLLR and
Deep-APIT: each ``update_<name>(M, features, labelled_rows, labels, **params)`` takes the fixed
features of one partition X_L ∪ X_U^(p) (n × d, rows ``labelled_rows`` labelled with ``labels``,
the others unlabelled), and returns the new d × d PSD matrix M (float64 torch, CPU). The metric is
``δ²_M(z_i, z_j) = (z_i − z_j)ᵀ M (z_i − z_j)``. All sums over pairs are over unordered pairs
i < j. Only the SSDML paper is at hand (its Eqs. 1–2 and one sentence per method); where the
original papers' details were needed we wrote what we assumed, below, marked ASSUMED.

Deep-LRML (Hoi, Liu & Chang 2010; SSDML Eq. 2)
----------------------------------------------
    min_M  tr(M A)   s.t.  M ⪰ 0, log|M| ≥ 0,
    A = γ_S Σ_{i<j ∈ X_L, y_i = y_j} (z_i − z_j)(z_i − z_j)ᵀ
        − γ_D Σ_{i<j ∈ X_L, y_i ≠ y_j} (z_i − z_j)(z_i − z_j)ᵀ
        + Z ᵀ 𝓛 Z,       Zᵀ𝓛Z = ½ Σ_{i,j} W_ij (z_i − z_j)(z_i − z_j)ᵀ,   𝓛 = D − W,
which is Eq. 2 since every term is linear in M. Closed form (:func:`lrml_closed_form`): for
A ≻ 0 the minimiser is ``M* = det(A)^{1/d} A^{-1}`` (det M* = 1): by AM–GM on the eigenvalues
of A^{1/2} M A^{1/2}, tr(MA)/d ≥ det(MA)^{1/d} ≥ det(A)^{1/d}, with equality iff MA ∝ I.
Cost O(N k d + N d² + N_L² d + d³): the O(d³) eigendecomposition the SSDML paper quotes.
* DECISION: if A is not positive definite (the −γ_D term can win) the problem is unbounded
  below; we floor A's eigenvalues at ``eig_floor · max|eig(A)|`` and solve that problem
  (directions where A ≤ 0, the most discriminative, get the largest weight). The objective we
  minimise, and test, is ``tr(M A_floor)``.
* ASSUMED: W is the binary symmetrised kNN adjacency (W_ij = 1 if j ∈ N_k(i) or i ∈ N_k(j)),
  built like SSDML's own graph (Euclidean on L2-normalised features, self excluded, k = 10);
  γ_S = γ_D = 1 (Eq. 2 prints no normalisation and no values).
* The previous M is not used: the closed form does not depend on a starting point (Algorithm 1's
  metric step is then a function of the current features alone).

Deep-ISDML (Ying et al. 2017)
-----------------------------
The SSDML paper: "similar to LRML … it also takes into account the density around an unlabeled
example while computing the Laplacian regularizer". ASSUMED: LRML's objective and closed form
with density-scaled affinities ``W_ij = B_ij · sqrt(ρ_i ρ_j)`` (B the binary kNN adjacency above),
``ρ_i = (1/k) Σ_{j ∈ N_k(i)} exp(−‖ẑ_i − ẑ_j‖² / σ²)`` the kernel density at z_i (ẑ: L2-normalised,
σ² the mean squared kNN distance), scaled to mean 1. Edges between dense points weigh more,
edges through sparse (boundary) regions less — the cluster assumption that density scaling
serves. The original's SPD-manifold solver is not reproduced; the closed form solves the same
linear objective exactly. Cost as LRML.

Deep-SERAPH (Niu et al. 2012/2014; SSDML Eq. 1)
-----------------------------------------------
    min_{M ⪰ 0}  J(M) = Σ_{i<j ∈ X_L} −log p_ij(y_ij) + μ Σ_{i<j ∈ X_U} H(p_ij) + λ tr(M),
    p_ij(y) = 1 / (1 + exp(y (δ²_M(z_i, z_j) − η))),  y_ij = +1 same class, −1 otherwise,
    H(p) = −p log p − (1 − p) log(1 − p)   (p = p_ij(+1)),
i.e. Eq. 1 with μ on the entropy term (Eq. 1 as printed lacks μ though the text names it; the
SERAPH port IMAGE-ANCHORS §6 cites has μ there). Gradient (:func:`seraph_objective`):
∂/∂δ² of −log p(y) is y σ(y(δ² − η)); of H is (η − δ²) p (1 − p); times
(z_i − z_j)(z_i − z_j)ᵀ,plus λ I; both pair sums are ``Zᵀ(diag(C1) − C)Z`` for the coefficient matrix C.
* DECISION (solver): projected gradient on M with PSD eigen-clipping, SERAPH's own solver, not a
  low-rank L: the step ``0.1 d / (‖∇J‖_F √t)`` at iteration t, halved up to 20 times until
  J does not increase (the reference's rule). If no trial decreases J, we keep M and stop (the
  reference then takes a step anyway). ``max_iter = 10`` iterations per metric step, warm-started
  from the previous M (the same budget as SSDML's 10 CG iterations; SERAPH's original runs up to
  200 iterations with tolerance 1e-3 on ‖ΔM‖_F, kept as ``tol``).
* Defaults from the SERAPH reference: η = 1, μ = #labelled pairs / #unlabelled pairs (the
  reference's μ = −1 "auto"), M_0 = d/(d+1) I (:meth:`SERAPHStep.init`). λ = 0 as in the
  reference's demo (the SSDML paper says λ > 0: pass it).
* Pairs: labelled–labelled and unlabelled–unlabelled only, as Eq. 1 prints (the reference also
  counts labelled–unlabelled pairs as "unlabelled"). ``max_unlabelled`` caps the unlabelled rows
  used (a seeded random subset): the term costs O(N_U² d) per evaluation.
* Cost per iteration O((N_L² + N_U²) d + N d² + trials · (d³ + (N_L² + N_U²) d)).

Deep-APLLR and Deep-APIT (Dutta & Sekhar 2018)
-----------------------------------------------
"first computes a prior metric using the labeled data … the final metric is learned using
affinity propagation (Liu et al. 2010) on unlabeled data while staying close to the prior one."
ASSUMED (the ICANN 2018 paper is titled a "closed-form" framework):
    min_{M ≻ 0}  D_ld(M, M_0) + λ tr(M Zᵀ 𝓛_W Z),   D_ld(M, M_0) = tr(M M_0⁻¹) − log det(M M_0⁻¹) − d,
with W the symmetrised propagated affinity W = (W* + W*ᵀ)/2, W* = (1 − γ)(I − γQ)⁻¹ W⁰ —
SSDML's own propagation (:mod:`dmlrepro.miners.affinity_propagation`: the same Q, W⁰ and γ).
Setting the gradient M_0⁻¹ − M⁻¹ + λ Zᵀ𝓛_W Z to zero: ``M = (M_0⁻¹ + λ Zᵀ𝓛_W Z)⁻¹``
(:func:`ap_closed_form`). W has negative entries (dissimilar pairs), so B = M_0⁻¹ + λZᵀ𝓛_WZ may
be indefinite (then the problem is unbounded): DECISION, B's eigenvalues are floored at
``eig_floor · max|eig(B)|``, i.e. we minimise ``D_ld(M, M_0) + tr(M (B_floor − M_0⁻¹))``.
* DECISION: Zᵀ𝓛_WZ is divided by the affinity mass Σ_{i<j} |W_ij| (a weighted mean of the pair
  outer products), so that λ does not grow with N² (dense) or N k (graph); default λ = 1.
* ``support="dense"`` (default): W on all n² pairs, the original's O(N³) propagation (SSDML
  quotes O(d³ + N³)); we get the dense W* from one sparse LU of I − γQ and N right-hand sides
  (:func:`propagate_affinity`), N² memory. ``support="graph"``: W only on the kNN edges (sparse LU, as SSDML's miner).
* Prior of APLLR (:func:`llr_prior`), ASSUMED the log-likelihood-ratio metric of KISSME
  (Köstinger et al. 2012): ``M_0 = Σ_S⁻¹ − Σ_D⁻¹``, Σ_S / Σ_D the mean outer products of the
  differences of similar / dissimilar labelled pairs, projected onto the PSD cone. With few
  labels Σ_S is singular (the SSDML paper's "close to singular" prior): DECISION, ridge
  ``ridge · tr(Σ)/d · I`` on each Σ, and M_0's eigenvalues floored at ``eig_floor · λ_max`` so
  that M_0⁻¹ exists.
* Prior of APIT (:func:`itml_prior`), ASSUMED ITML (Davis et al. 2007): min D_ld(M, I) s.t.
  δ²_M ≤ u on similar and ≥ ℓ on dissimilar labelled pairs, with slack γ_ITML; Bregman
  projections cycled over the constraints as in the authors' code. Defaults from ITML: γ = 1,
  u and ℓ the 5th and 95th percentiles of the labelled pairs' distances under I, at most 1e5
  projections, stop when the dual variables change by < 1e-3 (relative, L1) over a sweep.
  Constraints: all labelled pairs (ITML samples 20 c² random ones; with 64 labels that is the
  same order).
* Cost: prior O(N_L² d + d³) (LLR) or O(#projections · d²) (IT); propagation O(N³) dense
  (O(N k · fill) on the graph); Zᵀ𝓛_WZ O(N² d + N d²); inverse O(d³).

The interface (:class:`MetricStep`)
-----------------------------------
``step.init(d, l, seed)``, ``step.update(features, labelled_rows, labels, mined)``,
``step.project(z) = z @ L``, ``step.state_dict()``, ``step.load_state_dict(state)``;
:func:`make_metric_step` builds any of them by name (``"ssdml"``, ``"lrml"``, ``"isdml"``,
``"seraph"``, ``"apllr"``, ``"apit"``). For the five baselines L is the rank-l factor of M
(its top-l eigenvectors scaled by the square roots of the eigenvalues), so δ²_M is exact when
l = d and the best rank-l approximation otherwise. ``mined`` is SSDML's triplets; the baselines
ignore it. SSDML's own step (:class:`SSDMLStep`) wraps :class:`StiefelMetric` (cost
O(T_b d l) per cost evaluation, 10 CG iterations).

Measured (``benchmarks/bench_ssdml_metric_step.py``, N = 1000 with 100 labelled, d = 128,
l = 64, 1000 triplets, one core of a shared 2-core machine, defaults): SSDML 0.45 s, LRML
0.05 s, ISDML 0.07 s, SERAPH 3.5 s (10 iterations on all ~400k unlabelled pairs), APLLR
0.28 s, APIT 9.2 s (ITML's 1e5 Python-level projections dominate). At d = 128 the O(d³) steps
are cheap; what grows is N (APLLR/APIT's N² W, SERAPH's N_U² pairs), not d.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp
import torch

from dmlrepro import DmlReproError
from dmlrepro.losses.stiefel_metric import StiefelMetric
from dmlrepro.miners.affinity_propagation import (
    _graph_from_neighbours,
    initial_affinity,
    knn_neighbours,
    propagate_affinity,
    propagated_affinity_on_graph,
    symmetrise,
)

# --------------------------------------------------------------------------------------------
# validation and linear algebra
# --------------------------------------------------------------------------------------------


def _features64(features) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise DmlReproError(f"features must be an (n, d) array with n >= 2, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DmlReproError("features contain NaN or inf")
    return x


def _labelled(labelled_rows, labels, n: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(labelled_rows, torch.Tensor):
        labelled_rows = labelled_rows.cpu().numpy()
    if isinstance(labels, torch.Tensor):
        labels = labels.cpu().numpy()
    rows = np.asarray(labelled_rows, dtype=np.int64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if rows.shape != y.shape:
        raise DmlReproError(f"labelled_rows has {rows.size} entries but labels has {y.size}")
    if rows.size < 2:
        raise DmlReproError(f"need at least 2 labelled rows, got {rows.size}")
    if rows.min() < 0 or rows.max() >= n:
        raise DmlReproError(f"labelled_rows must lie in [0, {n - 1}], got values in [{rows.min()}, {rows.max()}]")
    if np.unique(rows).size != rows.size:
        raise DmlReproError("labelled_rows contains a repeated row")
    return rows, y


def _metric64(M, d: int, name: str = "M") -> np.ndarray:
    if isinstance(M, torch.Tensor):
        M = M.detach().cpu().numpy()
    m = np.asarray(M, dtype=np.float64)
    if m.shape != (d, d):
        raise DmlReproError(f"{name} must be ({d}, {d}) to match the features, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise DmlReproError(f"{name} contains NaN or inf")
    return 0.5 * (m + m.T)


def _out(m: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(0.5 * (m + m.T)))


def _check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    value = float(value)
    if not (value >= 0.0 if allow_zero else value > 0.0) or not np.isfinite(value):
        raise DmlReproError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return value


def project_psd(m: np.ndarray) -> np.ndarray:
    """Nearest PSD matrix in Frobenius norm: negative eigenvalues clipped to 0."""
    w, v = np.linalg.eigh(0.5 * (m + m.T))
    return (v * np.clip(w, 0.0, None)) @ v.T


def floor_eigenvalues(m: np.ndarray, eig_floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues of the symmetric ``m`` floored at ``eig_floor · max|eig|`` and its
    eigenvectors: ``(w, V)`` with ``m_floor = V diag(w) Vᵀ`` positive definite."""
    w, v = np.linalg.eigh(0.5 * (m + m.T))
    scale = np.abs(w).max()
    if scale == 0.0:
        raise DmlReproError("the matrix to regularise is zero (no pairs, or all features equal)")
    return np.maximum(w, eig_floor * scale), v


def low_rank_factor(M, l: int) -> torch.Tensor:
    """(d, l) ``L = U_l diag(√λ_l)`` from M's top-l eigenpairs: ``L Lᵀ`` is the best rank-l PSD
    approximation of M (exactly M when l = d and M ⪰ 0)."""
    d = int(M.shape[0]) if hasattr(M, "shape") else len(M)
    m = _metric64(M, d)
    if not 1 <= l <= d:
        raise DmlReproError(f"need 1 <= l <= d, got d = {d}, l = {l}")
    w, v = np.linalg.eigh(m)
    top = np.argsort(w)[::-1][:l]
    return torch.from_numpy(np.ascontiguousarray(v[:, top] * np.sqrt(np.clip(w[top], 0.0, None))))


def pair_scatter(x: np.ndarray, weights) -> np.ndarray:
    """``Σ_{i<j} C_ij (x_i − x_j)(x_i − x_j)ᵀ = xᵀ (diag(C1) − C) x`` for a symmetric C (dense or
    sparse, diagonal ignored)."""
    if sp.issparse(weights):
        c = sp.csr_matrix(weights)
        c = c - sp.diags(c.diagonal())
        degree = np.asarray(c.sum(axis=1)).ravel()
        return x.T @ (degree[:, None] * x) - x.T @ (c @ x)
    c = np.array(weights, dtype=np.float64)
    np.fill_diagonal(c, 0.0)
    return x.T @ (c.sum(axis=1)[:, None] * x) - x.T @ (c @ x)


def labelled_pair_scatters(x: np.ndarray, labelled_rows, labels) -> tuple[np.ndarray, np.ndarray, int, int]:
    """``(C_S, C_D, |S|, |D|)``: the sums of ``(z_i − z_j)(z_i − z_j)ᵀ`` over the similar and the
    dissimilar unordered labelled pairs, and the pair counts."""
    rows, y = _labelled(labelled_rows, labels, x.shape[0])
    xl = x[rows]
    same = (y[:, None] == y[None, :]).astype(np.float64)
    np.fill_diagonal(same, 0.0)
    diff = 1.0 - same
    np.fill_diagonal(diff, 0.0)
    n_same, n_diff = int(same.sum()) // 2, int(diff.sum()) // 2
    return pair_scatter(xl, same), pair_scatter(xl, diff), n_same, n_diff


def _squared_distances(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    xm = x @ m
    g = xm @ x.T
    sq = np.diagonal(g)
    return np.maximum(sq[:, None] + sq[None, :] - 2.0 * g, 0.0)


# --------------------------------------------------------------------------------------------
# graphs (LRML, ISDML)
# --------------------------------------------------------------------------------------------


def knn_adjacency(features, k: int) -> sp.csr_matrix:
    """Binary symmetrised kNN adjacency: ``B_ij = 1`` if j ∈ N_k(i) or i ∈ N_k(j) (Euclidean on
    L2-normalised features, self excluded; SSDML's graph)."""
    directed = _graph_from_neighbours(knn_neighbours(features, k))
    directed.data[:] = 1.0
    return directed.maximum(directed.T).tocsr()


def density_scaled_adjacency(features, k: int) -> sp.csr_matrix:
    """ISDML's affinities (ASSUMED, see the module docstring): ``B_ij · sqrt(ρ_i ρ_j)`` with ρ the
    kNN kernel density on the L2-normalised features, scaled to mean 1."""
    x = _features64(features)
    neighbours = knn_neighbours(x, k)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sq = ((xn[:, None, :] - xn[neighbours]) ** 2).sum(-1)          # (n, k)
    sigma2 = sq.mean()
    density = np.exp(-sq / sigma2).mean(axis=1) if sigma2 > 0 else np.ones(x.shape[0])
    density /= density.mean()
    directed = _graph_from_neighbours(neighbours)
    directed.data[:] = 1.0
    b = directed.maximum(directed.T).tocoo()
    w = b.data * np.sqrt(density[b.row] * density[b.col])
    return sp.csr_matrix((w, (b.row, b.col)), shape=b.shape)


# --------------------------------------------------------------------------------------------
# Deep-LRML and Deep-ISDML
# --------------------------------------------------------------------------------------------


def lrml_matrix(features, labelled_rows, labels, affinity, gamma_s: float = 1.0,
                gamma_d: float = 1.0) -> np.ndarray:
    """A of Eq. 2 written as ``tr(M A)``: ``γ_S C_S − γ_D C_D + Zᵀ𝓛Z`` (d × d)."""
    x = _features64(features)
    c_s, c_d, _, _ = labelled_pair_scatters(x, labelled_rows, labels)
    return (_check_positive("gamma_s", gamma_s, True) * c_s - _check_positive("gamma_d", gamma_d, True) * c_d
            + pair_scatter(x, affinity))


def lrml_objective(M, A) -> float:
    """``tr(M A)`` (Eq. 2's objective for the A of :func:`lrml_matrix`)."""
    return float(np.sum(np.asarray(M, dtype=np.float64) * np.asarray(A, dtype=np.float64).T))


def lrml_closed_form(A, eig_floor: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """``(M*, A_floor)``: ``M* = argmin tr(M A_floor) s.t. M ⪰ 0, log|M| ≥ 0 = det(A_floor)^{1/d}
    A_floor⁻¹``, A's eigenvalues floored at ``eig_floor · max|eig(A)|``."""
    w, v = floor_eigenvalues(np.asarray(A, dtype=np.float64), _check_positive("eig_floor", eig_floor))
    geometric_mean = np.exp(np.mean(np.log(w)))                   # det(A_floor)^{1/d}
    return (v * (geometric_mean / w)) @ v.T, (v * w) @ v.T


def _lrml_update(M, features, labelled_rows, labels, affinity_fn, k, gamma_s, gamma_d, eig_floor):
    x = _features64(features)
    _metric64(M, x.shape[1])
    a = lrml_matrix(x, labelled_rows, labels, affinity_fn(x, int(k)), gamma_s, gamma_d)
    return _out(lrml_closed_form(a, eig_floor)[0])


def update_lrml(M, features, labelled_rows, labels, k: int = 10, gamma_s: float = 1.0,
                gamma_d: float = 1.0, eig_floor: float = 1e-3) -> torch.Tensor:
    """Deep-LRML's metric step: the closed-form minimiser of Eq. 2 on the fixed ``features``
    (n, d), binary kNN Laplacian (k neighbours). ``M`` (d, d) is checked but not used (closed
    form). Returns M (d, d), float64, PD with det 1."""
    return _lrml_update(M, features, labelled_rows, labels, knn_adjacency, k, gamma_s, gamma_d, eig_floor)


def update_isdml(M, features, labelled_rows, labels, k: int = 10, gamma_s: float = 1.0,
                 gamma_d: float = 1.0, eig_floor: float = 1e-3) -> torch.Tensor:
    """Deep-ISDML's metric step: :func:`update_lrml` with density-scaled affinities
    (:func:`density_scaled_adjacency`)."""
    return _lrml_update(M, features, labelled_rows, labels, density_scaled_adjacency, k, gamma_s, gamma_d,
                        eig_floor)


# --------------------------------------------------------------------------------------------
# Deep-SERAPH
# --------------------------------------------------------------------------------------------


def _softplus(t):
    return np.logaddexp(0.0, t)


def _sigmoid(t):
    return 0.5 * (1.0 + np.tanh(0.5 * t))


class SeraphPairs:
    """The fixed pieces of Eq. 1 for one partition: labelled rows with ±1 pair labels, the
    unlabelled rows, and μ (``None``: #labelled pairs / #unlabelled pairs)."""

    def __init__(self, features, labelled_rows, labels, mu: float | None = None,
                 max_unlabelled: int | None = None, seed: int = 0):
        x = _features64(features)
        rows, y = _labelled(labelled_rows, labels, x.shape[0])
        unlabelled = np.setdiff1d(np.arange(x.shape[0]), rows)
        if max_unlabelled is not None and unlabelled.size > int(max_unlabelled):
            rng = np.random.default_rng(seed)
            unlabelled = np.sort(rng.choice(unlabelled, int(max_unlabelled), replace=False))
        self.x_l, self.x_u = x[rows], x[unlabelled]
        self.y_pair = np.where(y[:, None] == y[None, :], 1.0, -1.0)
        self.upper_l = np.triu(np.ones((rows.size, rows.size), dtype=bool), 1)
        self.upper_u = np.triu(np.ones((unlabelled.size,) * 2, dtype=bool), 1)
        n_l = rows.size * (rows.size - 1) // 2
        n_u = unlabelled.size * (unlabelled.size - 1) // 2
        if mu is None:
            mu = n_l / n_u if n_u else 0.0
        self.mu = _check_positive("mu", mu, allow_zero=True)
        self.d = x.shape[1]


def seraph_objective(M, pairs: SeraphPairs, eta: float = 1.0, lam: float = 0.0,
                     gradient: bool = True) -> tuple[float, np.ndarray | None]:
    """``(J(M), ∇J(M))`` of Eq. 1 with μ on the entropy term (module docstring)."""
    m = _metric64(M, pairs.d)
    # labelled pairs: −log p(y) = softplus(y (δ² − η))
    t_l = pairs.y_pair * (_squared_distances(pairs.x_l, m) - eta)
    value = float(_softplus(t_l)[pairs.upper_l].sum())
    grad = None
    if gradient:
        c_l = pairs.y_pair * _sigmoid(t_l)
        grad = pair_scatter(pairs.x_l, c_l)
    if pairs.mu > 0 and pairs.x_u.shape[0] > 1:
        t = eta - _squared_distances(pairs.x_u, m)                 # p = σ(t)
        p = _sigmoid(t)
        entropy = p * _softplus(-t) + (1.0 - p) * _softplus(t)     # −p log p − (1−p) log(1−p)
        value += pairs.mu * float(entropy[pairs.upper_u].sum())
        if gradient:
            grad = grad + pairs.mu * pair_scatter(pairs.x_u, t * p * (1.0 - p))
    value += lam * float(np.trace(m))
    if gradient:
        grad = grad + lam * np.eye(pairs.d)
    return value, grad


def run_seraph_step(M, features, labelled_rows, labels, eta: float = 1.0, mu: float | None = None,
                    lam: float = 0.0, max_iter: int = 10, tol: float = 1e-3, step_scale: float = 0.1,
                    max_trials: int = 20, max_unlabelled: int | None = None,
                    seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """:func:`update_seraph`, also returning J at the start and after each iteration."""
    x = _features64(features)
    m = project_psd(_metric64(M, x.shape[1]))
    if max_iter < 1:
        raise DmlReproError(f"max_iter must be >= 1, got {max_iter}")
    _check_positive("lam", lam, allow_zero=True)
    pairs = SeraphPairs(x, labelled_rows, labels, mu, max_unlabelled, seed)
    d = x.shape[1]
    value, grad = seraph_objective(m, pairs, eta, lam)
    costs = [value]
    for it in range(1, int(max_iter) + 1):
        norm = np.linalg.norm(grad)
        if norm == 0.0:
            break
        step = step_scale * d / (norm * np.sqrt(it))
        for _ in range(int(max_trials)):
            candidate = project_psd(m - step * grad)
            new_value = seraph_objective(candidate, pairs, eta, lam, gradient=False)[0]
            if new_value <= value:
                break
            step *= 0.5
        else:
            break                                   # no trial decreased J: keep M
        change = np.linalg.norm(candidate - m)
        m, value = candidate, new_value
        costs.append(value)
        if change < tol:
            break
        grad = seraph_objective(m, pairs, eta, lam)[1]
    return _out(m), costs


def update_seraph(M, features, labelled_rows, labels, eta: float = 1.0, mu: float | None = None,
                  lam: float = 0.0, max_iter: int = 10, tol: float = 1e-3, step_scale: float = 0.1,
                  max_trials: int = 20, max_unlabelled: int | None = None, seed: int = 0) -> torch.Tensor:
    """Deep-SERAPH's metric step: ``max_iter`` projected-gradient iterations on Eq. 1 from ``M``
    (warm start), features fixed. Returns a PSD M (d, d) with J(M_new) ≤ J(M)."""
    return run_seraph_step(M, features, labelled_rows, labels, eta, mu, lam, max_iter, tol, step_scale,
                           max_trials, max_unlabelled, seed)[0]


# --------------------------------------------------------------------------------------------
# priors (APLLR, APIT)
# --------------------------------------------------------------------------------------------


def llr_prior(features, labelled_rows, labels, ridge: float = 1e-3, eig_floor: float = 1e-3) -> np.ndarray:
    """APLLR's prior (ASSUMED KISSME): ``M_0 = Σ_S⁻¹ − Σ_D⁻¹`` on the labelled pairs, each Σ with a
    ``ridge · tr(Σ)/d`` ridge, eigenvalues floored at ``eig_floor · λ_max`` (PD)."""
    x = _features64(features)
    c_s, c_d, n_s, n_d = labelled_pair_scatters(x, labelled_rows, labels)
    if n_s == 0 or n_d == 0:
        raise DmlReproError(f"the LLR prior needs similar and dissimilar labelled pairs, got {n_s} and {n_d}")
    d = x.shape[1]
    ridge = _check_positive("ridge", ridge)

    def regularised_inverse(sigma):
        return np.linalg.inv(sigma + ridge * max(np.trace(sigma) / d, 1e-300) * np.eye(d))

    m0 = regularised_inverse(c_s / n_s) - regularised_inverse(c_d / n_d)
    m0 = project_psd(m0)
    w, v = floor_eigenvalues(m0, _check_positive("eig_floor", eig_floor))
    return (v * w) @ v.T


def itml_prior(features, labelled_rows, labels, gamma: float = 1.0, lower_percentile: float = 5.0,
               upper_percentile: float = 95.0, max_projections: int = 100_000, tol: float = 1e-3,
               M0=None) -> np.ndarray:
    """APIT's prior (ASSUMED ITML, Davis et al. 2007, Algorithm 1 with the authors' code's
    projection): min D_ld(M, M0) s.t. δ²_M ≤ u (similar), ≥ ℓ (dissimilar), slack γ.

    Constraints: all labelled pairs; u, ℓ the given percentiles of their distances under M0
    (default I). Cyclic Bregman projections, stopped after a sweep whose dual change
    ``‖λ − λ_old‖₁ / (‖λ‖₂ + ‖λ_old‖₂)`` is below ``tol`` or after ``max_projections``.
    """
    x = _features64(features)
    rows, y = _labelled(labelled_rows, labels, x.shape[0])
    d = x.shape[1]
    a = np.eye(d) if M0 is None else _metric64(M0, d, "M0")
    gamma = _check_positive("gamma", gamma)
    i, j = np.triu_indices(rows.size, 1)
    delta = np.where(y[i] == y[j], 1.0, -1.0)                      # +1: δ² ≤ u, −1: δ² ≥ ℓ
    diffs = x[rows[i]] - x[rows[j]]
    dist = np.einsum("pd,de,pe->p", diffs, a, diffs)
    upper, lower = np.percentile(dist, [lower_percentile, upper_percentile])
    if upper <= 0 or lower <= 0:
        raise DmlReproError("ITML bounds are 0: labelled features coincide")
    target = np.where(delta > 0, upper, lower)                     # ξ, the slack-adjusted bounds
    dual = np.zeros(delta.size)
    dual_old = dual.copy()
    gamma_proj = gamma / (gamma + 1.0)
    n_constraints = delta.size
    for it in range(int(max_projections)):
        c = it % n_constraints
        v = diffs[c]
        av = a @ v
        p = float(v @ av)
        if p <= 1e-300:
            continue
        if delta[c] > 0:
            alpha = min(dual[c], gamma_proj * (1.0 / p - 1.0 / target[c]))
            beta = alpha / (1.0 - alpha * p)
            target[c] = 1.0 / (1.0 / target[c] + alpha / gamma)
        else:
            alpha = min(dual[c], gamma_proj * (1.0 / target[c] - 1.0 / p))
            beta = -alpha / (1.0 + alpha * p)
            target[c] = 1.0 / (1.0 / target[c] - alpha / gamma)
        dual[c] -= alpha
        a += beta * np.outer(av, av)
        if c == n_constraints - 1:
            norm_sum = np.linalg.norm(dual) + np.linalg.norm(dual_old)
            if norm_sum == 0.0 or np.abs(dual - dual_old).sum() / norm_sum < tol:
                break
            dual_old = dual.copy()
    return 0.5 * (a + a.T)


# --------------------------------------------------------------------------------------------
# Deep-APLLR and Deep-APIT
# --------------------------------------------------------------------------------------------


def propagated_affinity_scatter(features, labelled_rows, labels, k: int = 10, gamma: float = 0.99,
                                support: str = "dense", normalise: bool = True) -> np.ndarray:
    """``Zᵀ𝓛_W Z = Σ_{i<j} W_ij (z_i − z_j)(z_i − z_j)ᵀ`` for SSDML's symmetrised propagated
    affinity W, on all pairs (``support="dense"``) or on the kNN edges only (``"graph"``);
    ``normalise``: divided by ``Σ_{i<j} |W_ij|`` (module docstring)."""
    x = _features64(features)
    rows, y = _labelled(labelled_rows, labels, x.shape[0])
    q = _graph_from_neighbours(knn_neighbours(x, int(k)))
    w0 = initial_affinity(x.shape[0], rows, y)
    if support == "dense":
        w = symmetrise(propagate_affinity(q, w0, gamma))
    elif support == "graph":
        on_edges = propagated_affinity_on_graph(q, w0, gamma)
        w = 0.5 * (on_edges + on_edges.T)           # each edge once per direction it was seen
    else:
        raise DmlReproError(f"unknown support '{support}' (dense | graph)")
    scatter = pair_scatter(x, w)
    if normalise:
        mass = abs(w).sum() - abs(w.diagonal()).sum()          # Σ_{i≠j} |W_ij| = 2 Σ_{i<j} |W_ij|
        scatter = scatter / (0.5 * float(mass))
    return scatter


def logdet_divergence(M, M0) -> float:
    """``D_ld(M, M0) = tr(M M0⁻¹) − log det(M M0⁻¹) − d`` (M, M0 PD)."""
    m, m0 = np.asarray(M, dtype=np.float64), np.asarray(M0, dtype=np.float64)
    r = np.linalg.solve(m0, m)
    sign, logdet = np.linalg.slogdet(r)
    if sign <= 0:
        raise DmlReproError("logdet_divergence needs positive definite M and M0")
    return float(np.trace(r) - logdet - m.shape[0])


def ap_objective(M, M0, B) -> float:
    """The APLLR/APIT objective ``D_ld(M, M0) + tr(M (B − M0⁻¹))``; with ``B = M0⁻¹ + λZᵀ𝓛_WZ``
    this is ``D_ld(M, M0) + λ tr(M Zᵀ𝓛_W Z)`` (B floored: what :func:`ap_closed_form` minimises)."""
    m0 = np.asarray(M0, dtype=np.float64)
    return logdet_divergence(M, m0) + lrml_objective(M, np.asarray(B) - np.linalg.inv(m0))


def ap_closed_form(M0, laplacian_scatter, lam: float = 1.0,
                   eig_floor: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """``(M, B_floor)``: ``M = B_floor⁻¹``, ``B = M0⁻¹ + λ Zᵀ𝓛_W Z`` with eigenvalues floored at
    ``eig_floor · max|eig(B)|``."""
    m0 = np.asarray(M0, dtype=np.float64)
    b = np.linalg.inv(m0) + _check_positive("lam", lam, True) * np.asarray(laplacian_scatter)
    w, v = floor_eigenvalues(b, _check_positive("eig_floor", eig_floor))
    return (v / w) @ v.T, (v * w) @ v.T


def update_apllr(M, features, labelled_rows, labels, k: int = 10, gamma: float = 0.99, lam: float = 1.0,
                 support: str = "dense", ridge: float = 1e-3, eig_floor: float = 1e-3) -> torch.Tensor:
    """Deep-APLLR's metric step: LLR prior (:func:`llr_prior`), then the closed form
    ``(M_0⁻¹ + λZᵀ𝓛_WZ)⁻¹`` with SSDML's propagated affinities (k, γ). ``M`` is checked, not used."""
    x = _features64(features)
    _metric64(M, x.shape[1])
    prior = llr_prior(x, labelled_rows, labels, ridge, eig_floor)
    scatter = propagated_affinity_scatter(x, labelled_rows, labels, k, gamma, support)
    return _out(ap_closed_form(prior, scatter, lam, eig_floor)[0])


def update_apit(M, features, labelled_rows, labels, k: int = 10, gamma: float = 0.99, lam: float = 1.0,
                support: str = "dense", itml_gamma: float = 1.0, max_projections: int = 100_000,
                eig_floor: float = 1e-3) -> torch.Tensor:
    """Deep-APIT's metric step: ITML prior (:func:`itml_prior`, from I), then the closed form of
    :func:`update_apllr`. ``M`` is checked, not used."""
    x = _features64(features)
    _metric64(M, x.shape[1])
    prior = itml_prior(x, labelled_rows, labels, gamma=itml_gamma, max_projections=max_projections)
    scatter = propagated_affinity_scatter(x, labelled_rows, labels, k, gamma, support)
    return _out(ap_closed_form(prior, scatter, lam, eig_floor)[0])


# --------------------------------------------------------------------------------------------
# the common interface
# --------------------------------------------------------------------------------------------


@runtime_checkable
class MetricStep(Protocol):
    """What Algorithm 1 needs from a metric step (M_t with θ_z fixed)."""

    name: str

    def init(self, d: int, l: int, seed: int = 0) -> None: ...

    def update(self, features, labelled_rows, labels, mined=None) -> None: ...

    def project(self, z: torch.Tensor) -> torch.Tensor: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class MahalanobisStep:
    """A baseline's metric step holding the full d × d M; :meth:`project` uses its rank-l factor
    (:func:`low_rank_factor`). Subclasses set ``name`` and ``update_fn``."""

    name = "mahalanobis"
    update_fn = staticmethod(update_lrml)

    def __init__(self, **params):
        self.params = dict(params)
        self.M: torch.Tensor | None = None
        self.l: int | None = None
        self._factor: torch.Tensor | None = None

    def initial_metric(self, d: int) -> torch.Tensor:
        return torch.eye(d, dtype=torch.float64)

    def init(self, d: int, l: int, seed: int = 0) -> None:
        if not 1 <= l <= d:
            raise DmlReproError(f"need 1 <= l <= d for the metric, got d = {d}, l = {l}")
        self.M, self.l, self._factor = self.initial_metric(int(d)), int(l), None

    def _require_init(self):
        if self.M is None:
            raise DmlReproError(f"{self.name}: call init(d, l, seed) before update or project")

    def update(self, features, labelled_rows, labels, mined=None) -> None:
        self._require_init()
        self.M = type(self).update_fn(self.M, features, labelled_rows, labels, **self.params)
        self._factor = None

    @property
    def L(self) -> torch.Tensor:
        self._require_init()
        if self._factor is None:
            self._factor = low_rank_factor(self.M, self.l)
        return self._factor

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.L.to(z.device, z.dtype)

    def state_dict(self) -> dict[str, Any]:
        self._require_init()
        return {"name": self.name, "l": self.l, "M": self.M.clone(), "params": dict(self.params)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise DmlReproError(f"state of metric step '{state.get('name')}' loaded into '{self.name}'")
        self.M, self.l, self._factor = state["M"].clone().to(torch.float64), int(state["l"]), None


class LRMLStep(MahalanobisStep):
    name = "lrml"
    update_fn = staticmethod(update_lrml)


class ISDMLStep(MahalanobisStep):
    name = "isdml"
    update_fn = staticmethod(update_isdml)


class SERAPHStep(MahalanobisStep):
    """Warm-started across metric steps; starts at SERAPH's ``d/(d+1) I``."""

    name = "seraph"
    update_fn = staticmethod(update_seraph)

    def initial_metric(self, d: int) -> torch.Tensor:
        return d / (d + 1.0) * torch.eye(d, dtype=torch.float64)


class APLLRStep(MahalanobisStep):
    name = "apllr"
    update_fn = staticmethod(update_apllr)


class APITStep(MahalanobisStep):
    name = "apit"
    update_fn = staticmethod(update_apit)


class SSDMLStep:
    """SSDML's own metric step (Eq. 3 on the Stiefel manifold, :class:`StiefelMetric`) behind the
    :class:`MetricStep` interface: ``mined`` are the triplets (T, 3) of the partition."""

    name = "ssdml"

    def __init__(self, alpha_deg: float = 40.0, max_iter: int = 10, orthogonal: bool = True,
                 init: str = "random"):
        self.alpha_deg, self.max_iter, self.orthogonal, self.init_kind = float(alpha_deg), int(max_iter), \
            bool(orthogonal), init
        self.metric: StiefelMetric | None = None

    def init(self, d: int, l: int, seed: int = 0) -> None:
        self.metric = StiefelMetric(d, l, init=self.init_kind, seed=seed, orthogonal=self.orthogonal,
                                    max_iter=self.max_iter)

    def _require_init(self):
        if self.metric is None:
            raise DmlReproError("ssdml: call init(d, l, seed) before update or project")

    def update(self, features, labelled_rows, labels, mined=None) -> None:
        self._require_init()
        if mined is None:
            raise DmlReproError("ssdml: the metric step needs the mined triplets (mined=...)")
        self.metric.update(features, mined, self.alpha_deg)

    @property
    def L(self) -> torch.Tensor:
        self._require_init()
        return self.metric.L

    @property
    def M(self) -> torch.Tensor:
        return self.L @ self.L.T

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.L.to(z.device, z.dtype)

    def state_dict(self) -> dict[str, Any]:
        self._require_init()
        return {"name": self.name, "L": self.metric.L.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name") != self.name:
            raise DmlReproError(f"state of metric step '{state.get('name')}' loaded into 'ssdml'")
        L = state["L"].to(torch.float64)
        if self.metric is None:
            self.init(L.shape[0], L.shape[1])
        self.metric.L = L.clone()


METRIC_STEPS: dict[str, type] = {cls.name: cls for cls in (SSDMLStep, LRMLStep, ISDMLStep, SERAPHStep,
                                                              APLLRStep, APITStep)}


def make_metric_step(name: str, **params) -> MetricStep:
    """A metric step by name (``ssdml | lrml | isdml | seraph | apllr | apit``) with its
    hyperparameters (the keyword arguments of its ``update_<name>``, or of :class:`SSDMLStep`)."""
    if name not in METRIC_STEPS:
        raise DmlReproError(f"unknown metric step '{name}' ({' | '.join(METRIC_STEPS)})")
    return METRIC_STEPS[name](**params)


# --------------------------------------------------------------------------------------------
# the baselines' network step (Algorithm 1's "fix M_t, learn θ_z by SGD")
# --------------------------------------------------------------------------------------------
#
# With M fixed, each baseline's objective is a function of the features through the pair distances
# δ²_M(z_i, z_j) = ‖Lᵀ(z_i − z_j)‖² (L the rank-l factor the step projects with):
#
# * Deep-LRML, Deep-ISDML: tr(M A) = Σ_{i<j} C_ij δ²_M(z_i, z_j) with C = γ_S on similar labelled
#   pairs, −γ_D on dissimilar ones, plus the graph affinity W_ij (binary / density-scaled kNN);
# * Deep-APLLR, Deep-APIT: λ tr(M Zᵀ𝓛_W Z) (D_ld(M, M_0) does not depend on θ), C = λ W / Σ_{i<j}|W_ij|
#   with W SSDML's symmetrised propagated affinity. DECISION: on the kNN edges only (``support="graph"``)
#   for the network step: the dense n × n W of the metric step is 0.7 GB at the paper's 9,100-image
#   partitions, and a mini-batch holds few non-edge pairs anyway;
# * Deep-SERAPH: Eq. 1's pair terms, Σ_{labelled} softplus(y_ij(δ² − η)) + μ Σ_{unlabelled} H(p_ij).
#
# On a mini-batch the sums run over the pairs of its rows (both ends in the batch), and, as for SSDML's
# network step (the MatConvNet convention), the loss is divided by the batch's weight mass (Σ|C_ij| of
# its pairs, or its number of SERAPH pairs) so that lr is a per-pair rate.

LINEAR_PAIR_BASELINES = ("lrml", "isdml", "apllr", "apit")


def partition_pair_weights(name: str, features, labelled_rows, labels, k: int = 10, gamma: float = 0.99,
                           gamma_s: float = 1.0, gamma_d: float = 1.0, lam: float = 1.0) -> sp.csr_matrix:
    """C (n × n, symmetric, zero diagonal) with the baseline's θ-objective ``Σ_{i<j} C_ij δ²_M(z_i, z_j)``
    on one partition's features (``name`` in :data:`LINEAR_PAIR_BASELINES`)."""
    x = _features64(features)
    n = x.shape[0]
    rows, y = _labelled(labelled_rows, labels, n)
    if name in ("lrml", "isdml"):
        graph = knn_adjacency(x, int(k)) if name == "lrml" else density_scaled_adjacency(x, int(k))
        same = np.where(y[:, None] == y[None, :], _check_positive("gamma_s", gamma_s, True),
                        -_check_positive("gamma_d", gamma_d, True))
        r, c = np.meshgrid(rows, rows, indexing="ij")
        off = r != c
        labelled = sp.csr_matrix((same[off], (r[off], c[off])), shape=(n, n))
        weights = graph + labelled
    elif name in ("apllr", "apit"):
        q = _graph_from_neighbours(knn_neighbours(x, int(k)))
        on_edges = propagated_affinity_on_graph(q, initial_affinity(n, rows, y), gamma)
        w = 0.5 * (on_edges + on_edges.T)
        w = w - sp.diags(w.diagonal())
        mass = 0.5 * float(abs(w).sum())
        weights = _check_positive("lam", lam, True) * w / (mass if mass > 0 else 1.0)
    else:
        raise DmlReproError(f"'{name}' has no linear pair objective ({' | '.join(LINEAR_PAIR_BASELINES)})")
    weights = sp.csr_matrix(weights)
    weights.eliminate_zeros()
    return weights


def _batch_pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    i, j = torch.triu_indices(n, n, offset=1)
    return i, j


def linear_pair_loss(projected: torch.Tensor, weights: sp.spmatrix, positions) -> tuple[torch.Tensor, int]:
    """``Σ_{i<j} C_ij ‖p_i − p_j‖² / Σ_{i<j} |C_ij|`` over the batch's pairs (``positions``: the
    batch rows' indices into C, each once; ``projected``: their ``Lᵀz``). Returns (loss, #pairs)."""
    positions = np.asarray(positions)
    sub = sp.triu(sp.csr_matrix(weights)[positions][:, positions], k=1).tocoo()
    if sub.nnz == 0:
        return projected.sum() * 0.0, 0
    i = torch.as_tensor(sub.row, dtype=torch.long, device=projected.device)
    j = torch.as_tensor(sub.col, dtype=torch.long, device=projected.device)
    c = torch.as_tensor(sub.data, dtype=projected.dtype, device=projected.device)
    d2 = (projected[i] - projected[j]).pow(2).sum(-1)
    return (c * d2).sum() / c.abs().sum(), int(sub.nnz)


def seraph_pair_loss(projected: torch.Tensor, labels, eta: float = 1.0,
                     mu: float | None = None) -> tuple[torch.Tensor, int]:
    """Eq. 1's pair terms on a batch, divided by its number of pairs: labelled pairs
    ``softplus(y_ij(δ² − η))`` (−log p(y)), unlabelled pairs ``μ H(σ(η − δ²))``; ``labels`` −1 for the
    unlabelled rows; μ ``None``: #labelled pairs / #unlabelled pairs of the batch (SERAPH's auto rule)."""
    y = torch.as_tensor(np.asarray(labels), device=projected.device)
    i, j = _batch_pairs(len(y))
    i, j = i.to(projected.device), j.to(projected.device)
    d2 = (projected[i] - projected[j]).pow(2).sum(-1)
    lab = (y[i] >= 0) & (y[j] >= 0)
    unl = (y[i] < 0) & (y[j] < 0)
    n_l, n_u = int(lab.sum()), int(unl.sum())
    if n_l + n_u == 0:
        return projected.sum() * 0.0, 0
    sign = torch.where(y[i] == y[j], 1.0, -1.0).to(projected.dtype)
    loss = torch.nn.functional.softplus(sign[lab] * (d2[lab] - eta)).sum()
    if mu is None:
        mu = n_l / n_u if n_u else 0.0
    if mu > 0 and n_u:
        t = eta - d2[unl]
        p = torch.sigmoid(t)
        entropy = p * torch.nn.functional.softplus(-t) + (1 - p) * torch.nn.functional.softplus(t)
        loss = loss + mu * entropy.sum()
    return loss / (n_l + n_u), n_l + n_u
