"""Exact k-nearest-neighbour search under WMD: Kusner et al.'s (2015) prefetch and prune.

For each query the neighbours are the ``k`` gallery documents with the smallest exact WMD,
ranked by ``(distance, gallery position)``: a tie goes to the smaller position in ``gallery``,
so the answer is one well-defined list. :func:`exact_wmd_knn` returns exactly the lists of
:func:`exhaustive_wmd_knn` (every pair solved), in less time, because most pairs are ruled out
by lower bounds of WMD that cost far less than solving the transport problem:

* **WCD**, the distance between the documents' weighted mean vectors (Jensen); one vectorised
  call per query for the whole gallery.
* **RWMD** (Kusner et al.), each side's mass moved to the other side's nearest word.
* **Reduced RWMD**: the RWMD of the problem left once the mass a word has in both documents,
  ``min(a_w, b_w)``, is taken out (it stays in place in some optimal plan, see
  :mod:`dmlrepro.ot.engine`: same WMD), never below the RWMD.
* **ICT** (Atasu & Mittelholzer, 2019): each word's mass goes to the other side's nearest words
  first, no word taking more than its own mass (the transport LP without one marginal but with
  ``T_ij <= b_j``), here on the reduced problem; never below the reduced RWMD.
* **Dual** (long documents only): LP duality. A few Sinkhorn iterations on the reduced problem
  give potentials ``f``; their c-transforms ``g_j = min_i C_ij - f_i`` and back
  ``f_i = min_j C_ij - g_j`` make them feasible (``f_i + g_j <= C_ij``) whatever the iterations
  reached, so ``a.f + b.g`` is a lower bound of the EMD. On BBCSport pairs, 15 iterations give on
  average 0.98 of the WMD (ICT: 0.9) at about a ninth of an exact solve's time.
* **Neighbour potential** (the whole gallery at once): LP duality again, with one potential for
  every candidate. The optimal potential ``alpha`` of the query against its nearest document
  solved so far is c-transformed over the gallery's distinct words, ``g_w = min_i C_iw - alpha_i``,
  and back per candidate, ``f_i = min_(w in candidate) C_iw - g_w``; feasible whatever ``alpha``
  is, and close to optimal for the documents around that neighbour, which are the ones the
  search must rule out. One gather over the candidates' words, like the RWMD's.

Two strategies, both exact (``strategy=``):

``"kusner"``: the paper's prefetch and prune. Sort the gallery by WCD; solve the first ``k``
exactly; walk the rest in WCD order: stop as soon as a WCD exceeds the current k-th distance
(every later one does too: all pruned), else compute the RWMD and skip the candidate when it
exceeds the k-th distance, else solve it exactly and update the top ``k``.

``"best_first"`` (default): the same bounds, tightened and applied in the cheapest order. WCD
and the reduced RWMD come for the whole gallery at once (ground costs from one matrix product);
every candidate waits in a heap keyed by its best bound so far. When the first ``k`` are solved,
every candidate still in play gets the neighbour-potential bound in one batch. Then the smallest
is taken: if its bound prunes, every other candidate's does too and the search ends; otherwise its
bound is tightened and it goes back: to the ICT (short documents: the next few candidates in one
vectorised call) or, for long documents, to the dual bound (ICT rarely prunes what the neighbour
bound left, and the dual bound is tighter); and only a
candidate whose tightest bound is the smallest of all and does not prune is solved exactly. So a
pair is solved only when no bound can rule it out at that point, and the k-th distance falls as
fast as the bounds allow.

Both return the same lists; ``"best_first"`` solves far fewer pairs exactly than the paper's
walk (BBCSport, k = 10: 2.7% against 48%) and is 4-6x faster (``benchmarks/bench_knn.py``).

Pruning is exact, ties included: a candidate at position ``p`` with lower bound ``L`` is pruned
only if it cannot enter the top ``k`` whose last member is ``(d_k, p_k)``, i.e. when ``L > t``,
or ``L == t`` and ``p > p_k``, with ``t = d_k + 1e-12 * max(1, d_k)``. The tolerance covers
float64 rounding, by which a bound can exceed the computed WMD of the same pair (identical
documents can get a WCD of 1e-17 and a WMD of exactly 0); with it, a pruned candidate's WMD is
surely above ``d_k``, so a candidate that ties with the k-th distance is always solved and
ranked by position. The matrix-product ground costs are lowered by a bound on their rounding
error, so they never exceed the exact Euclidean distance; the batch passes over every gallery
word (reduced RWMD, neighbour potential) read a float32 copy, rounded down, and lower the
neighbour bound by more than float32's rounding, so they stay bounds (about 1e-6 looser). Exact
values come from :func:`dmlrepro.ot.engine.wmd_and_rwmd` in both functions, so pruned and
exhaustive distances are identical, bit for bit.

Neighbour indices are **positions in** ``gallery`` (``np.asarray(gallery)[idx]`` gives document
ids). ``exclude_self=True`` leaves out, for each query, every gallery position that holds the
query's own document id (leave-one-out when queries and gallery overlap).
"""

from __future__ import annotations

import bisect
import heapq
import math
import multiprocessing as mp
import time
from typing import Sequence

import numpy as np
from scipy.spatial.distance import cdist

from dmlrepro import DmlReproError
from dmlrepro.data.pointsets import Pointsets
from dmlrepro.ot.emd import emd_potentials_from_cost, ground_cost
from dmlrepro.ot.engine import PreparedDocs, one_blas_thread, prepare_document, wmd_and_rwmd

__all__ = ["exact_wmd_knn", "exhaustive_wmd_knn", "WmdSearchIndex", "wcd_lower_bounds", "rwmd_lower_bounds", "pair_lower_bounds",
           "document_centroids", "STRATEGIES", "PRUNE_RTOL"]

PRUNE_RTOL = 1e-12  # relative tolerance (absolute below 1) before a bound may prune; see module docstring
STRATEGIES = ("best_first", "kusner")
ICT_COLUMNS = 8  # ICT fills each word's nearest 7 words; the rest of its mass costs at least the 8th distance
ICT_SORT_COLUMNS = 32  # up to this many words on the other side, ICT sorts whole rows instead
ICT_GROUP = 32  # short documents: candidates whose ICT is computed in one vectorised call

DUAL_MIN_WORDS = 24  # the dual bound only where an exact solve costs more than it (both sides this long)
DUAL_ITERATIONS = 15
DUAL_EPS = 0.02  # Sinkhorn's epsilon relative to the pair's mean ground cost

COUNT_KEYS = ("pairs_total", "pairs_exact", "pruned_wcd", "pruned_rwmd", "pruned_neighbour", "pruned_ict",
              "pruned_dual")
TIME_KEYS = ("seconds_bounds", "seconds_exact")
_EPS = float(np.finfo(np.float64).eps)
_F32_SLACK = 2.0 ** -21  # float32 rounds within 2^-24 relative: 8x that keeps float32 copies below the costs

# stages of a candidate's bound in the best-first heap
_KEY, _NEIGHBOUR, _ICT, _DUAL = 0, 1, 2, 3


# ------------------------------------------------------------------------------------ bounds
def document_centroids(docs: PreparedDocs, ids: Sequence[int]) -> np.ndarray:
    """Weighted mean vector (float64) of each document in ``ids``, shape ``(len(ids), d)``."""
    ids = [int(i) for i in ids]
    if not ids:
        return np.empty((0, docs.vectors[0].shape[1] if len(docs) else 0))
    return np.stack([docs.weights[i] @ docs.vectors[i] for i in ids])


def wcd_lower_bounds(docs: PreparedDocs, q: int, gallery: Sequence[int]) -> np.ndarray:
    """Word Centroid Distance from document ``q`` to each document of ``gallery`` (a lower bound of WMD)."""
    return cdist(document_centroids(docs, [q]), document_centroids(docs, gallery))[0]


def rwmd_lower_bounds(docs: PreparedDocs, q: int, gallery: Sequence[int]) -> np.ndarray:
    """Kusner's RWMD from document ``q`` to each document of ``gallery``, from lowered ground costs."""
    gallery = np.asarray(gallery, dtype=np.int64).reshape(-1)
    return _QueryBounds(_Gallery(docs, gallery), docs, int(q), batch=True, plain=True).rwmd


def pair_lower_bounds(docs: PreparedDocs, i: int, j: int, neighbour: int | None = None) -> dict[str, float]:
    """Every bound this module uses for one pair (each at most their WMD, up to rounding): ``wcd``,
    ``rwmd`` (Kusner's), ``batch_reduced_rwmd`` (as computed for a whole gallery), ``reduced_rwmd``
    and ``ict`` (as computed per pair), ``grouped_ict`` (as computed for a group of short
    documents), ``dual`` (the c-transformed Sinkhorn potentials, at any length), ``neighbour``
    (from the optimal potential of ``i`` against document ``neighbour``; by default ``j`` itself,
    which makes it the WMD up to rounding)."""
    gallery = np.array([j], dtype=np.int64)
    qb = _QueryBounds(_Gallery(docs, gallery), docs, int(i), batch=True, plain=True)
    problem = qb.reduced_problem(0)
    reduced = 0.0 if problem is None else float(max(problem[0] @ problem[2].min(axis=1),
                                                    problem[1] @ problem[2].min(axis=0)))
    return {"wcd": float(qb.wcd[0]), "rwmd": float(qb.rwmd[0]), "batch_reduced_rwmd": float(qb.reduced_rwmd[0]),
            "reduced_rwmd": reduced, "ict": qb.ict(0), "grouped_ict": float(qb.ict_many([0])[0]),
            "dual": 0.0 if problem is None else _dual_bound(*problem),
            "neighbour": float(qb.neighbour_bounds(_query_potential(docs, int(i), j if neighbour is None else neighbour),
                                                   np.zeros(1, dtype=np.int64))[0])}


def _query_potential(docs: PreparedDocs, q: int, neighbour: int) -> np.ndarray:
    """The optimal dual potential on the words of document ``q`` in its EMD to document ``neighbour``."""
    return emd_potentials_from_cost(docs.weights[q], docs.weights[neighbour],
                                    ground_cost(docs.vectors[q], docs.vectors[neighbour]))[0]


def _lowered_sq_distances(x: np.ndarray, x_sq: np.ndarray, y: np.ndarray, y_sq: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``(len(y), len(x))`` by one matrix product, minus a bound on their
    float64 rounding error (|x|^2, |y|^2 and x.y each err by at most ~d eps |x||y|), so the square
    root never exceeds the exact distance."""
    keep = 1.0 - (4 * x.shape[1] + 32) * _EPS  # the slack, folded into the norms (two passes fewer)
    sq = y @ (-2.0 * x.T)
    sq += (keep * y_sq)[:, None]
    sq += (keep * x_sq)[None, :]
    return np.maximum(sq, 0.0, out=sq)


def _ict(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> float:
    """Each row's mass to its nearest columns first, no column taking more than its own mass.

    The optimum of the transport LP without the column sums but with ``T_ij <= b_j`` (which every
    plan meets) is a lower bound of EMD, at least the one-sided RWMD. With more than
    ``ICT_SORT_COLUMNS`` columns only each row's nearest ``ICT_COLUMNS - 1`` are filled; the mass
    they cannot take is charged the next-nearest column's cost, at most what any other column
    costs, so the value stays a lower bound.
    """
    n_rows, n_cols = cost.shape
    if n_cols <= ICT_SORT_COLUMNS:  # short documents: sort whole rows (fewer numpy calls)
        cols = np.argsort(cost, axis=1)
        near = cost[np.arange(n_rows)[:, None], cols]
        caps = b[cols]
        before = np.cumsum(caps, axis=1)
        before -= caps
        flow = np.minimum(caps, np.maximum(a[:, None] - before, 0.0))
        rest = np.maximum(a - flow.sum(axis=1), 0.0)  # rounding only: the columns hold all the mass
        return float(np.sum(flow * near) + rest @ near[:, -1])
    rows = np.arange(n_rows)
    work = cost.copy()
    left = a.copy()
    total = 0.0
    for _ in range(ICT_COLUMNS - 1):
        j = work.argmin(axis=1)
        c = work[rows, j]
        flow = np.minimum(left, b[j])
        total += float(flow @ c)
        left -= flow
        work[rows, j] = np.inf
    return total + float(left @ work.min(axis=1))  # what is left costs at least the next-nearest column


def dual_potentials(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Feasible dual potentials ``(f, g)`` of EMD(a, b; cost), ``f_i + g_j <= C_ij``, near optimal:
    ``DUAL_ITERATIONS`` Sinkhorn iterations, then c-transforms both ways (see the module docstring).

    Sinkhorn runs in the scaling domain with each row of the kernel shifted by its minimum cost,
    so no row underflows, and in float32: the c-transforms, in float64, make any iterate feasible,
    so its precision only decides how tight the bound is (unchanged to ~1e-9 on BBCSport pairs).
    If it still breaks down (non-finite potentials) the result is None.
    """
    eps = DUAL_EPS * float(cost.mean())
    if not eps > 0:
        return None
    row_min = cost.min(axis=1)
    kernel = cost.astype(np.float32)
    kernel -= row_min.astype(np.float32)[:, None]
    kernel *= np.float32(-1.0 / eps)
    np.exp(kernel, out=kernel)
    kernel_t = np.ascontiguousarray(kernel.T)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    v = np.ones(len(b), dtype=np.float32)
    with np.errstate(all="ignore"):
        for _ in range(DUAL_ITERATIONS):
            u = a32 / (kernel @ v)
            v = b32 / (kernel_t @ u)
        f = eps * np.log(u.astype(np.float64)) + row_min
    if not np.all(np.isfinite(f)):
        return None
    g = (cost - f[:, None]).min(axis=0)  # c-transform: f_i + g_j <= C_ij for every i, j
    f = (cost - g[None, :]).min(axis=1)  # and back: still feasible, never smaller
    return f, g


def _dual_bound(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> float:
    """A lower bound of EMD(a, b; cost) from :func:`dual_potentials` (0 where they break down)."""
    potentials = dual_potentials(a, b, cost)
    if potentials is None:
        return 0.0
    f, g = potentials
    return float(a @ f + b @ g)


class _Gallery:
    """The gallery, prepared once per search: centroids and the distinct vectors its entries hold."""

    def __init__(self, docs: PreparedDocs, gallery: np.ndarray):
        self.docs = docs
        self.ids = gallery
        self.centroids = document_centroids(docs, gallery)
        self.lengths = np.array([len(docs.weights[int(g)]) for g in gallery], dtype=np.int64)
        self.ends = np.cumsum(self.lengths)
        self.starts = self.ends - self.lengths
        all_ids = np.concatenate([docs.vector_ids[int(g)] for g in gallery])
        self.vocab_ids, first, inverse = np.unique(all_ids, return_index=True, return_inverse=True)
        self.vectors = np.ascontiguousarray(np.concatenate([docs.vectors[int(g)] for g in gallery])[first])
        self.sq_norms = np.einsum("ij,ij->i", self.vectors, self.vectors)
        self.word = inverse.reshape(-1)  # per word of each entry, in order: its row of self.vectors
        self.weights = np.concatenate([docs.weights[int(g)] for g in gallery])
        self.entry = np.repeat(np.arange(len(gallery)), self.lengths)  # per word: its gallery entry


class _QueryBounds:
    """Lower bounds from one query to the gallery: WCD and (``batch``) RWMD for all, tighter ones per pair."""

    BLOCK = 1 << 18  # word-by-query-word entries per gather, to stay in cache

    def __init__(self, gallery: _Gallery, docs: PreparedDocs, q: int, batch: bool, plain: bool = False):
        self.g = gallery
        self.x, self.a, self.ids = docs.vectors[q], docs.weights[q], docs.vector_ids[q]
        self.x_sq = np.einsum("ij,ij->i", self.x, self.x)
        self.wcd = cdist((self.a @ self.x)[None, :], gallery.centroids)[0]
        # per distinct gallery vector: its position in the query, or -1 (finds shared words fast)
        by_id = np.argsort(self.ids, kind="stable")
        where = np.minimum(np.searchsorted(self.ids[by_id], gallery.vocab_ids), len(self.ids) - 1)
        self.query_pos = np.where(self.ids[by_id[where]] == gallery.vocab_ids, by_id[where], -1)
        self.short = len(self.a) <= ICT_SORT_COLUMNS  # group the ICT of short gallery entries
        self.cost = None
        self.rwmd = self.reduced_rwmd = None
        if batch:
            self._batch_rwmd(plain)

    def _batch_rwmd(self, plain: bool) -> None:
        """RWMD for every gallery entry at once, plain (Kusner's) and of the shared-mass-reduced problem.

        Reduced: a query word ``i`` keeps ``max(a_i - b_i, 0)`` of its mass (``b_i``: its weight in
        the entry) and can no longer send it to itself, so it costs its distance to the entry's
        nearest *other* word; likewise for the entry's words. (Per pair, words used up on the other
        side are excluded too, which can only raise the bound: this is a lower bound of that.)
        """
        g, a = self.g, self.a
        cost = np.sqrt(_lowered_sq_distances(self.x, self.x_sq, g.vectors, g.sq_norms))  # (V, u)
        self.cost = cost
        # float32 copy for the batch gathers (half the memory traffic), rounded down: never above
        self.cost32 = (cost * (1.0 - _F32_SLACK)).astype(np.float32)
        self.cost_max = float(cost.max(initial=0.0))
        shared_rows = np.flatnonzero(self.query_pos >= 0)
        # the same costs, a word no longer reaching its own copy: cost32 itself, restored below
        # (a copy per query costs more than the two passes it would save)
        other = self.cost32
        self_cells = (shared_rows, self.query_pos[shared_rows])
        other[self_cells] = np.inf
        n = len(g.starts)
        occ_pos = self.query_pos[g.word]  # per word of each entry: its position in the query, or -1
        occ_shared = np.flatnonzero(occ_pos >= 0)
        # entry side: each word's excess over the query's mass of it, to the nearest other query word
        b_excess = g.weights.copy()
        b_excess[occ_shared] = np.maximum(b_excess[occ_shared] - a[occ_pos[occ_shared]], 0.0)
        plain_b = np.add.reduceat(g.weights * cost.min(axis=1)[g.word], g.starts) if plain else None
        reduced_b = np.add.reduceat(_finite_product(b_excess, other.min(axis=1)[g.word].astype(np.float64)),
                                    g.starts)
        # query side: per entry, each query word's excess over the entry's mass of it
        b_of_query = np.zeros((n, len(a)))
        b_of_query[g.entry[occ_shared], occ_pos[occ_shared]] = g.weights[occ_shared]
        a_excess = np.maximum(a[None, :] - b_of_query, 0.0)
        plain_a = np.empty(n)
        reduced_a = np.empty(n)
        per_block = max(1, self.BLOCK // len(a))
        i = 0
        while i < n:
            stop = max(int(np.searchsorted(g.ends, g.starts[i] + per_block, side="right")), i + 1)
            lo, hi = g.starts[i], g.ends[stop - 1]
            words, starts = g.word[lo:hi], g.starts[i:stop] - lo
            if plain:
                plain_a[i:stop] = np.minimum.reduceat(cost[words], starts, axis=0) @ a
            nearest_other = np.minimum.reduceat(other[words], starts, axis=0).astype(np.float64)
            reduced_a[i:stop] = _finite_product(a_excess[i:stop], nearest_other).sum(axis=1)
            i = stop
        other[self_cells] = self.cost[self_cells] * (1.0 - _F32_SLACK)  # cost32's own values again
        self.rwmd = np.maximum(plain_a, plain_b) if plain else None
        self.reduced_rwmd = np.maximum(reduced_a, reduced_b)

    def pair_cost(self, p: int) -> np.ndarray:
        """Lowered ground costs ``(u_query, u_p)`` to gallery entry ``p``."""
        g = self.g
        rows = g.word[g.starts[p]:g.ends[p]]
        if self.cost is not None:
            return self.cost[rows].T
        y = g.vectors[rows]
        return np.sqrt(_lowered_sq_distances(y, g.sq_norms[rows], self.x, self.x_sq))

    def plain_rwmd(self, p: int) -> float:
        cost = self.pair_cost(p)
        b = self.g.weights[self.g.starts[p]:self.g.ends[p]]
        return float(max(self.a @ cost.min(axis=1), b @ cost.min(axis=0)))

    def reduced_problem(self, p: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Masses and lowered costs left once the shared mass is taken out (None: nothing left to move)."""
        g = self.g
        cost = self.pair_cost(p)
        b = g.weights[g.starts[p]:g.ends[p]]
        a = self.a
        pos = self.query_pos[g.word[g.starts[p]:g.ends[p]]]
        pb = np.flatnonzero(pos >= 0)
        if len(pb):
            pa = pos[pb]
            a, b = a.copy(), b.copy()
            common = np.minimum(a[pa], b[pb])
            a[pa] -= common
            b[pb] -= common
            keep_a, keep_b = a > 0, b > 0
            if not keep_a.any() or not keep_b.any():
                return None
            a, b = a[keep_a], b[keep_b]
            cost = cost[keep_a][:, keep_b]
        return a, b, cost

    def ict_many(self, positions: list[int]) -> np.ndarray:
        """:meth:`ict` for several entries at once (short documents), on zero-padded arrays.

        Shared mass is taken out by lowering the masses only: a word left with no mass sends or
        takes nothing, which is the same as leaving it out. Padding words have no mass and an
        infinite cost. Unlike :meth:`ict`, mass that finds no capacity (rounding only) is left
        uncharged, which keeps the value a lower bound.
        """
        g, a = self.g, self.a
        pos = np.asarray(positions)
        lengths = g.lengths[pos]
        width = int(lengths.max())
        n, u = len(pos), len(a)
        slot = np.arange(width)[None, :]
        pad = slot >= lengths[:, None]
        occ = np.where(pad, 0, g.starts[pos][:, None] + slot)  # (n, width) word occurrences
        rows = g.word[occ]
        b = np.where(pad, 0.0, g.weights[occ])
        qpos = np.where(pad, -1, self.query_pos[rows])
        a2 = np.broadcast_to(a, (n, u)).copy()
        hit_n, hit_w = np.nonzero(qpos >= 0)
        if len(hit_n):
            common = np.minimum(a2[hit_n, qpos[hit_n, hit_w]], b[hit_n, hit_w])
            a2[hit_n, qpos[hit_n, hit_w]] -= common
            b[hit_n, hit_w] -= common
        cost = self.cost[rows]  # (n, width, u)
        cost[pad] = np.inf
        to_entry = _ict_padded(a2, b, np.swapaxes(cost, 1, 2))  # query words to the entry's words
        to_query = _ict_padded(b, a2, cost)
        return np.maximum(to_entry, to_query)

    def neighbour_bounds(self, alpha: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Lower bounds to the entries at ``positions`` from one potential ``alpha`` on the query's words.

        Its c-transform over the gallery's distinct words, ``g_w = min_i C_iw - alpha_i``, and per
        entry back, ``f_i = min_(w in entry) C_iw - g_w``, are feasible for every entry whatever
        ``alpha`` is, so ``a.f + b.g`` bounds each entry's EMD; a potential that is optimal for one
        near neighbour is close to optimal for the documents around it.
        """
        g, a, cost = self.g, self.a, self.cost
        if not np.all(np.isfinite(alpha)):
            return np.zeros(len(positions))
        sink = (cost - alpha[None, :]).min(axis=1)  # per distinct gallery word
        # the per-candidate transform runs in float32 (half the memory traffic); lowering it by
        # more than its rounding and sink's (each < 2^-24 of max|C| + max|g|) keeps it feasible
        sink32 = sink.astype(np.float32)
        lowered_by = _F32_SLACK * (self.cost_max + float(np.abs(sink).max()))
        lengths = g.lengths[positions]
        ends = np.cumsum(lengths)
        per_block = max(1, self.BLOCK // len(a))
        out = np.empty(len(positions))
        i = 0
        while i < len(positions):
            stop = max(int(np.searchsorted(ends, ends[i] - lengths[i] + per_block, side="right")), i + 1)
            seg_len = lengths[i:stop]
            seg_start = np.cumsum(seg_len) - seg_len
            occ = np.repeat(g.starts[positions[i:stop]] - seg_start, seg_len) + np.arange(seg_start[-1] + seg_len[-1])
            words = g.word[occ]
            source = np.minimum.reduceat(self.cost32[words] - sink32[words][:, None], seg_start, axis=0)
            out[i:stop] = (source.astype(np.float64) - lowered_by) @ a + np.add.reduceat(g.weights[occ] * sink[words],
                                                                                          seg_start)
            i = stop
        return out

    def dual(self, p: int) -> float:
        """The dual bound of the reduced problem to entry ``p``."""
        reduced = self.reduced_problem(p)
        return 0.0 if reduced is None else _dual_bound(*reduced)

    def ict(self, p: int) -> float:
        """ICT of the reduced problem to entry ``p``, both ways (never below its RWMD)."""
        reduced = self.reduced_problem(p)
        if reduced is None:
            return 0.0  # the WMD is (about) zero
        a, b, cost = reduced
        return max(_ict(a, b, cost), _ict(b, a, cost.T))


def _ict_padded(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """:func:`_ict` for a stack of problems ``(n, rows, cols)``, whole rows sorted; mass that finds
    no capacity is left uncharged (a lower bound still), zero-mass rows and columns take part in nothing."""
    cols = np.argsort(cost, axis=2)
    n, r, _ = cost.shape
    stack, row = np.arange(n)[:, None, None], np.arange(r)[None, :, None]
    near = cost[stack, row, cols]
    caps = b[stack, cols]
    before = np.cumsum(caps, axis=2)
    before -= caps
    flow = np.minimum(caps, np.maximum(a[:, :, None] - before, 0.0))
    return np.where(flow > 0, flow * np.where(np.isfinite(near), near, 0.0), 0.0).sum(axis=(1, 2))


def _finite_product(mass: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """``mass * cost`` where the cost is finite, else 0 (no other word: only rounding mass is left)."""
    return np.where(np.isfinite(cost), mass * np.where(np.isfinite(cost), cost, 0.0), 0.0)


def _threshold(kth_distance: float) -> float:
    return kth_distance + PRUNE_RTOL * max(1.0, kth_distance)


def _retightened(old: float, new: float, position: int, stage: int, threshold: float, kth_position: int,
                 counts: dict, pruned_by: str) -> tuple[float, int, int] | None:
    """A candidate's heap entry with its tighter bound, or None (counted under ``pruned_by``) when it prunes."""
    tighter = max(float(new), old)
    if _prunes(tighter, threshold, position, kth_position):
        counts[pruned_by] += 1
        return None
    return tighter, position, stage


def _prunes(bound: float, threshold: float, position: int, kth_position: int) -> bool:
    """Can a candidate with this lower bound not enter the top k? (``threshold`` from :func:`_threshold`)."""
    return bound > threshold or (bound == threshold and position > kth_position)


# ------------------------------------------------------------------------------------ search
class _Search:
    """Everything a query needs; built once, inherited by worker processes."""

    def __init__(self, docs: PreparedDocs, gallery: np.ndarray, k: int, exclude_self: bool, strategy: str):
        self.docs, self.gallery, self.k = docs, gallery, k
        self.exclude_self, self.strategy = exclude_self, strategy
        self.prepared = _Gallery(docs, gallery) if strategy != "exhaustive" else None

    def candidates(self, q: int) -> np.ndarray:
        positions = np.arange(len(self.gallery))
        return positions[self.gallery != q] if self.exclude_self else positions

    def exact(self, q: int, p: int) -> float:
        return wmd_and_rwmd(self.docs, q, int(self.gallery[p]))[0]

    def run(self, q: int) -> tuple[np.ndarray, np.ndarray, dict]:
        stats = dict.fromkeys(COUNT_KEYS + TIME_KEYS, 0)
        if self.strategy == "exhaustive":
            top = self._exhaustive(q, stats)
        elif self.strategy == "kusner":
            top = self._kusner(q, stats)
        else:
            top = self._best_first(q, stats)
        counted = sum(stats[key] for key in COUNT_KEYS[1:])
        assert counted == stats["pairs_total"], stats  # every candidate is solved or pruned exactly once
        return (np.array([p for _, p in top], dtype=np.int64), np.array([d for d, _ in top], dtype=np.float64),
                stats)

    def _exhaustive(self, q: int, stats: dict) -> list[tuple[float, int]]:
        cand = self.candidates(q)
        t0 = time.perf_counter()
        dist = np.array([self.exact(q, int(p)) for p in cand])
        stats["seconds_exact"] = time.perf_counter() - t0
        stats["pairs_total"] = stats["pairs_exact"] = len(cand)
        best = np.lexsort((cand, dist))[: self.k]
        return [(float(dist[i]), int(cand[i])) for i in best]

    def _kusner(self, q: int, stats: dict) -> list[tuple[float, int]]:
        """The paper's walk: WCD order, first k exact, stop on WCD, skip on RWMD."""
        k = self.k
        t0 = time.perf_counter()
        qb = _QueryBounds(self.prepared, self.docs, q, batch=False)
        order = np.lexsort((np.arange(len(self.gallery)), qb.wcd))  # by (WCD, position)
        if self.exclude_self:
            order = order[self.gallery[order] != q]
        stats["pairs_total"] = len(order)
        t_bounds, t_exact = time.perf_counter() - t0, 0.0

        t0 = time.perf_counter()
        top = sorted((self.exact(q, p), p) for p in order[:k].tolist())
        t_exact += time.perf_counter() - t0
        exact, pruned_rwmd = len(top), 0
        kth_d, kth_p = top[-1]
        threshold = _threshold(kth_d)
        for p in order[k:].tolist():
            if qb.wcd[p] > threshold:  # every later candidate has a WCD at least as large
                break
            if qb.wcd[p] == threshold and p > kth_p:
                continue  # pruned by its WCD (counted below)
            t0 = time.perf_counter()
            bound = qb.plain_rwmd(p)
            t1 = time.perf_counter()
            t_bounds += t1 - t0
            if _prunes(bound, threshold, p, kth_p):
                pruned_rwmd += 1
                continue
            d = self.exact(q, p)
            t_exact += time.perf_counter() - t1
            exact += 1
            if (d, p) < (kth_d, kth_p):
                bisect.insort(top, (d, p))
                top.pop()
                kth_d, kth_p = top[-1]
                threshold = _threshold(kth_d)
        stats.update(pairs_exact=exact, pruned_rwmd=pruned_rwmd, pruned_wcd=len(order) - exact - pruned_rwmd,
                     seconds_bounds=t_bounds, seconds_exact=t_exact)
        return top

    def _best_first(self, q: int, stats: dict) -> list[tuple[float, int]]:
        """Solve a pair only when its tightest bound is the smallest outstanding and does not prune."""
        k = self.k
        t0 = time.perf_counter()
        qb = _QueryBounds(self.prepared, self.docs, q, batch=True)
        key = np.maximum(qb.wcd, qb.reduced_rwmd)  # the reduced RWMD is never below Kusner's
        cand = self.candidates(q)
        stats["pairs_total"] = len(cand)
        # (bound, position, stage): tuples order by bound, then position, as the tie rule needs
        heap = [(b, p, _KEY) for b, p in zip(key[cand].tolist(), cand.tolist())]
        heapq.heapify(heap)
        lengths = self.prepared.lengths
        t_bounds, t_exact = time.perf_counter() - t0, 0.0

        top: list[tuple[float, int]] = []
        threshold, kth_p = math.inf, -1
        counts = dict.fromkeys(COUNT_KEYS[1:], 0)
        dual_worth_it = len(qb.a) >= DUAL_MIN_WORDS
        neighbour_done = False

        while heap:
            bound, p, stage = heap[0]
            if len(top) == k and _prunes(bound, threshold, p, kth_p):
                break  # the smallest bound prunes, so every other does too
            heapq.heappop(heap)
            long_pair = dual_worth_it and lengths[p] >= DUAL_MIN_WORDS
            if len(top) == k and (stage == _KEY or (stage == _NEIGHBOUR and not long_pair)):
                t0 = time.perf_counter()
                group = [(bound, p)]
                if qb.short and lengths[p] <= ICT_SORT_COLUMNS:
                    # short documents: tighten the next few candidates in one vectorised call
                    aside = []  # candidates met on the way that are not for this group
                    while len(group) < ICT_GROUP and heap and not _prunes(heap[0][0], threshold, heap[0][1], kth_p):
                        item = heapq.heappop(heap)
                        if item[2] <= _NEIGHBOUR and lengths[item[1]] <= ICT_SORT_COLUMNS:
                            group.append(item[:2])
                        else:
                            aside.append(item)
                    for item in aside:
                        heapq.heappush(heap, item)
                    ict = qb.ict_many([p for _, p in group])
                else:
                    ict = [qb.ict(p)]
                for (b_old, p_old), b_new in zip(group, ict):
                    item = _retightened(b_old, b_new, p_old, _ICT, threshold, kth_p, counts, "pruned_ict")
                    if item:
                        heapq.heappush(heap, item)
                t_bounds += time.perf_counter() - t0
                continue
            if len(top) == k and stage in (_NEIGHBOUR, _ICT) and long_pair:
                t0 = time.perf_counter()
                item = _retightened(bound, qb.dual(p), p, _DUAL, threshold, kth_p, counts, "pruned_dual")
                if item:
                    heapq.heappush(heap, item)
                t_bounds += time.perf_counter() - t0
                continue
            t0 = time.perf_counter()
            d = self.exact(q, p)
            t_exact += time.perf_counter() - t0
            counts["pairs_exact"] += 1
            if len(top) < k:
                bisect.insort(top, (d, p))
            elif (d, p) < (top[-1][0], top[-1][1]):
                bisect.insort(top, (d, p))
                top.pop()
            else:
                continue
            if len(top) == k:
                threshold, kth_p = _threshold(top[-1][0]), top[-1][1]
                if not neighbour_done:  # the top k is first full: tighten every bound at once
                    neighbour_done = True
                    t0 = time.perf_counter()
                    heap = self._neighbour_tighten(q, qb, heap, top[0][1], threshold, kth_p, counts)
                    t_bounds += time.perf_counter() - t0
        if heap:  # everything left is pruned: attribute it to the bound that did it
            bound, pos, stage = (np.array(col) for col in zip(*heap))
            by_wcd = (qb.wcd[pos] > threshold) | ((qb.wcd[pos] == threshold) & (pos > kth_p))
            counts["pruned_neighbour"] += int(np.sum(stage == _NEIGHBOUR))
            counts["pruned_ict"] += int(np.sum(stage == _ICT))
            counts["pruned_dual"] += int(np.sum(stage == _DUAL))
            counts["pruned_wcd"] += int(np.sum((stage == _KEY) & by_wcd))
            counts["pruned_rwmd"] += int(np.sum((stage == _KEY) & ~by_wcd))
        stats.update(counts, seconds_bounds=t_bounds, seconds_exact=t_exact)
        return top

    def _neighbour_tighten(self, q: int, qb: _QueryBounds, heap: list, nearest: int, threshold: float,
                           kth_p: int, counts: dict) -> list:
        """Raise the bound of every candidate still in play by :meth:`_QueryBounds.neighbour_bounds`,
        with the optimal query potential of the nearest document solved so far; returns the new heap."""
        live = [i for i, (b, p, stage) in enumerate(heap) if stage == _KEY and not _prunes(b, threshold, p, kth_p)]
        if not live:
            return heap
        # one potential: those of the 2nd and 3rd nearest prune a little more but cost more than they save
        alpha = _query_potential(self.docs, q, int(self.gallery[nearest]))
        bounds = qb.neighbour_bounds(alpha, np.array([heap[i][1] for i in live], dtype=np.int64))
        for i, new in zip(live, bounds.tolist()):
            old, p, _ = heap[i]
            heap[i] = _retightened(old, new, p, _NEIGHBOUR, threshold, kth_p, counts, "pruned_neighbour")
        heap = [item for item in heap if item is not None]
        heapq.heapify(heap)
        return heap


_WORKER: _Search | None = None


def _init_worker(search: _Search) -> None:
    global _WORKER
    _WORKER = search
    one_blas_thread()  # kept for the worker's life


def _run_query(task: tuple[int, int]) -> tuple[int, np.ndarray, np.ndarray, dict]:
    row, q = task
    return (row, *_WORKER.run(q))


def _knn(docs: PreparedDocs, queries: Sequence[int], gallery: Sequence[int], k: int, exclude_self: bool,
         processes: int, strategy: str) -> tuple[np.ndarray, np.ndarray, dict]:
    queries = np.asarray(queries, dtype=np.int64).reshape(-1)
    gallery = np.asarray(gallery, dtype=np.int64).reshape(-1)
    n = len(docs)
    if len(gallery) == 0:
        raise DmlReproError("kNN search: the gallery is empty")
    for name, ids in (("queries", queries), ("gallery", gallery)):
        if len(ids) and (ids.min() < 0 or ids.max() >= n):
            raise DmlReproError(f"kNN search: {name} hold document ids outside 0..{n - 1}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DmlReproError(f"kNN search: k must be a positive integer, got {k!r}")
    k = int(k)
    if len(queries):
        fewest = len(gallery) - (max(int(np.sum(gallery == q)) for q in queries) if exclude_self else 0)
        if k > fewest:
            raise DmlReproError(f"kNN search: k={k} exceeds the {fewest} gallery documents some query can have "
                                f"as neighbours (gallery of {len(gallery)}{', self excluded' if exclude_self else ''})")

    search = _Search(docs, gallery, k, exclude_self, strategy)
    nq = len(queries)
    idx = np.empty((nq, k), dtype=np.int64)
    dist = np.empty((nq, k), dtype=np.float64)
    stats: dict = {"queries": nq, "gallery": len(gallery), "k": k, "strategy": strategy}
    stats.update(dict.fromkeys(COUNT_KEYS + TIME_KEYS, 0))
    tasks = list(enumerate(queries.tolist()))

    def store(row: int, i: np.ndarray, d: np.ndarray, s: dict) -> None:
        idx[row], dist[row] = i, d
        for key in COUNT_KEYS + TIME_KEYS:
            stats[key] += s[key]

    if processes <= 1 or nq < 2:
        with one_blas_thread():
            for row, q in tasks:
                store(row, *search.run(q))
    else:
        ctx = mp.get_context("fork")  # workers inherit the documents and the prepared gallery
        with ctx.Pool(min(processes, nq), initializer=_init_worker, initargs=(search,)) as pool:
            for result in pool.imap_unordered(_run_query, tasks, chunksize=max(1, nq // (processes * 8))):
                store(*result)
    return idx, dist, stats


def exact_wmd_knn(docs: PreparedDocs, queries: Sequence[int], gallery: Sequence[int], k: int,
                  exclude_self: bool = False, processes: int = 1,
                  strategy: str = "best_first") -> tuple[np.ndarray, np.ndarray, dict]:
    """The ``k`` nearest gallery documents of each query under exact WMD, found with pruning.

    ``queries``, ``gallery``: document ids (indices into ``docs``). Returns ``(idx, dist,
    stats)``: ``idx`` ``(len(queries), k)`` int64 **positions in** ``gallery``, ``dist`` their
    exact WMDs, each row ranked by ``(distance, position)``; always equal to
    :func:`exhaustive_wmd_knn`. ``exclude_self`` leaves out gallery entries holding the query's
    id. ``processes > 1`` splits the queries over a fork-context pool. ``strategy``:
    ``"best_first"`` or ``"kusner"`` (see the module docstring).

    ``stats``: ``queries``, ``gallery``, ``k``, ``strategy``, ``pairs_total`` (query-candidate
    pairs), ``pairs_exact`` (WMDs solved), ``pruned_wcd``, ``pruned_rwmd`` (RWMD or reduced
    RWMD), ``pruned_neighbour``, ``pruned_ict``, ``pruned_dual``, with ``pairs_exact`` plus the
    five pruned counts ``== pairs_total``; a pair counts under the last bound computed for it, the
    one that ruled it out. Also CPU seconds summed over processes: ``seconds_bounds`` and ``seconds_exact``.
    """
    if strategy not in STRATEGIES:
        raise DmlReproError(f"kNN search: unknown strategy '{strategy}' ({' | '.join(STRATEGIES)})")
    return _knn(docs, queries, gallery, k, exclude_self, processes, strategy)


def exhaustive_wmd_knn(docs: PreparedDocs, queries: Sequence[int], gallery: Sequence[int], k: int,
                       exclude_self: bool = False, processes: int = 1) -> tuple[np.ndarray, np.ndarray, dict]:
    """The reference for :func:`exact_wmd_knn`: every pair solved with ``engine.wmd_and_rwmd``.

    Same arguments and results; ``pairs_exact == pairs_total`` and nothing is pruned.
    """
    return _knn(docs, queries, gallery, k, exclude_self, processes, "exhaustive")


class WmdSearchIndex:
    """A gallery prepared once for exact k-NN queries that arrive one at a time (new documents).

    ``query(vectors, weights)`` gives the same neighbours and distances as
    :func:`exact_wmd_knn` would with the query inside the collection: gallery positions ranked
    by ``(distance, position)``, exact WMDs, and the search's stats. Query words equal to a
    gallery vector (byte for byte) share its id, so the shared-mass reduction applies to them.
    """

    def __init__(self, gallery: Pointsets, k: int):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(gallery):
            raise DmlReproError(f"WMD search index: k must be an integer in 1..{len(gallery)}, got {k!r}")
        self.dtype = gallery.vectors.dtype
        self.docs = PreparedDocs.from_pointsets(gallery)
        distinct = np.unique(gallery.vectors, axis=0)  # the order PreparedDocs numbers them in
        self._id_of = {row.tobytes(): i for i, row in enumerate(distinct)}
        self._n = len(gallery)
        self._search = _Search(self.docs, np.arange(self._n), int(k), exclude_self=False, strategy="best_first")

    def query(self, vectors: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
        vectors = np.ascontiguousarray(np.asarray(vectors, dtype=self.dtype))
        if vectors.ndim != 2 or vectors.shape[1] != self.docs.vectors[0].shape[1] or len(vectors) != len(weights):
            raise DmlReproError(f"WMD search index: query of {vectors.shape} vectors and {len(weights)} weights "
                                f"does not match the gallery's {self.docs.vectors[0].shape[1]}-d vectors")
        known = np.array([self._id_of.get(row.tobytes(), -1) for row in vectors], dtype=np.int64)
        unknown = np.flatnonzero(known < 0)
        if len(unknown):  # new words: fresh ids past the gallery's, equal rows sharing one
            _, fresh = np.unique(vectors[unknown], axis=0, return_inverse=True)
            known[unknown] = len(self._id_of) + fresh.reshape(-1)
        v, w, vid = prepare_document(vectors, weights, known)
        docs = self.docs
        docs.vectors.append(v)
        docs.weights.append(w)
        docs.vector_ids.append(vid)
        try:
            with one_blas_thread():
                return self._search.run(self._n)
        finally:
            del docs.vectors[self._n:], docs.weights[self._n:], docs.vector_ids[self._n:]
