"""Exact Word Mover's Distance (EMD with Euclidean ground cost) and its cheap lower bounds.

WMD(i, j) = min_T <T, C_ij>  s.t.  T 1 = a_i, T^T 1 = b_j, T >= 0, where C_ij is the Euclidean
distance between the word vectors of documents i and j and a_i, b_j are the documents' word
weights normalised to sum to one (Kusner et al., 2015).

The solver is POT's network simplex. Its Python wrapper ``ot.emd2`` re-validates and converts
its inputs on every call, which dominates the cost for short documents (tweets); we call the
same compiled solver directly (identical values, tested against ``ot.emd2``) and fall back to
``ot.emd2`` if POT's private module layout ever changes.
"""

from __future__ import annotations

import logging

import numpy as np
import ot
from scipy.spatial.distance import cdist

from dmlrepro import DmlReproError
from dmlrepro.data.pointsets import Pointsets, normalised_weights

log = logging.getLogger(__name__)

try:  # the compiled network simplex behind ot.emd2 (POT is pinned, see pyproject.toml)
    from ot.lp._network_simplex import emd_c as _emd_c
except ImportError:  # pragma: no cover - only with another POT layout
    _emd_c = None

MAX_ITER = 1_000_000  # network-simplex pivots; POT's default (1e5) can stop early on 500-word documents


def ground_cost(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """Euclidean distances between two sets of vectors, float64 and C-ordered (the solver needs both)."""
    return np.ascontiguousarray(cdist(np.asarray(xa, np.float64), np.asarray(xb, np.float64)))


def emd_from_cost(a: np.ndarray, b: np.ndarray, cost: np.ndarray,
                  start: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Exact EMD for normalised weights ``a``, ``b`` and ground cost ``cost``.

    ``start``: dual potentials ``(alpha, beta)`` to build the solver's first basis from (POT's
    warm start); the value is the same, only the number of pivots changes. Measured in
    ``benchmarks/bench_solvers.py``: near-optimal potentials cut a solve's time by about a tenth,
    the problem's own optimal ones by about half, so the engine does not use it.
    """
    if _emd_c is None:
        return float(ot.emd2(a, b, cost, numItermax=MAX_ITER, potentials_init=start))
    _, value, _, _, status = _emd_c(a, b, cost, MAX_ITER, 1, *(start or ()))
    if status != 1:  # 1 == OPTIMAL; anything else means the value is not the exact EMD
        value = float(ot.emd2(a, b, cost, numItermax=MAX_ITER))
    return float(value)


def emd_potentials_from_cost(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optimal dual potentials ``(alpha, beta)`` of EMD(a, b; cost): ``alpha_i + beta_j <= C_ij``
    (up to rounding) with ``a.alpha + b.beta`` the EMD."""
    if _emd_c is not None:
        _, _, alpha, beta, status = _emd_c(a, b, cost, MAX_ITER, 1)
        if status == 1:
            return np.asarray(alpha), np.asarray(beta)
    _, log_ = ot.emd(a, b, cost, numItermax=MAX_ITER, log=True)
    return np.asarray(log_["u"]), np.asarray(log_["v"])


def wmd(xa: np.ndarray, wa: np.ndarray, xb: np.ndarray, wb: np.ndarray) -> float:
    """Word Mover's Distance between two documents given their word vectors and raw weights."""
    return emd_from_cost(normalised_weights(wa), normalised_weights(wb), ground_cost(xa, xb))


def rwmd_from_cost(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> float:
    """Relaxed WMD (Kusner et al.): the larger of the two one-sided relaxations, a lower bound of WMD."""
    return float(max(a @ cost.min(axis=1), b @ cost.min(axis=0)))


def centroids(ps: Pointsets) -> np.ndarray:
    """Weighted mean word vector per document (float64)."""
    out = np.empty((len(ps), ps.dim), dtype=np.float64)
    for i in range(len(ps)):
        v, w = ps.doc(i)
        out[i] = normalised_weights(w) @ v.astype(np.float64)
    return out


def wcd_matrix(ps: Pointsets, rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> np.ndarray:
    """Word Centroid Distance: distance between weighted centroids, a lower bound of WMD."""
    c = centroids(ps)
    return cdist(c if rows is None else c[rows], c if cols is None else c[cols])


def shard_row_bounds(n: int, n_shards: int) -> list[tuple[int, int]]:
    """Split rows 0..n into ``n_shards`` contiguous blocks holding about equal numbers of
    upper-triangle pairs (row i holds n-1-i pairs), so shards take about equal time."""
    if n_shards < 1:
        raise DmlReproError(f"ot.n_shards must be >= 1, got {n_shards}")
    pairs_before = np.concatenate([[0], np.cumsum(np.arange(n - 1, -1, -1))])  # pairs in rows < i
    total = pairs_before[-1]
    cuts = [0]
    for s in range(1, n_shards):
        cuts.append(int(np.searchsorted(pairs_before, total * s / n_shards)))
    cuts.append(n)
    cuts = np.maximum.accumulate(np.minimum(cuts, n))
    return [(int(cuts[s]), int(cuts[s + 1])) for s in range(n_shards)]
