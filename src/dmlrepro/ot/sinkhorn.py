"""Approximate all-pairs WMD with batched, log-stabilised Sinkhorn (entropic OT), on CPU or GPU.

Selected in the configuration as ``ot.engine: sinkhorn`` (``exact`` is :mod:`dmlrepro.ot.engine`).
This is an **approximation** of the Word Mover's Distance:

* It solves the entropy-regularised problem ``min_T <T, C> - eps * H(T)`` on the same marginals
  and the same Euclidean ground cost as the exact WMD, and reports the **transport cost**
  ``<T, C>`` of its plan ``T`` (the entropy term is *not* included), i.e. the number that is
  comparable to the EMD.
* The plan is made exactly feasible before its cost is taken (the rounding of Altschuler, Weed
  and Rigollet, 2017, which moves at most the remaining marginal error ``tol`` of mass), so the
  reported value is the cost of a transport plan between the two documents and therefore an
  **upper bound of the exact WMD** (up to float rounding).
* The gap (the *entropic bias*) is positive and shrinks with ``eps``, faster than linearly here:
  on real BBCSport documents the mean relative error is about 7% at ``reg=0.05``, 1.4% at 0.02
  and 0.3% at 0.01; halving ``eps`` roughly doubles the iterations. See
  ``benchmarks/results/sinkhorn.md`` for measured errors, speeds and nearest-neighbour agreement
  with the exact engine (``benchmarks/bench_sinkhorn.py``).

``reg`` is **relative** by default: ``eps = reg * cost_scale``, where ``cost_scale`` is the median
Euclidean distance between two word vectors of the collection (:func:`ground_cost_scale`, a
seeded sample), so one ``reg`` means the same thing for every dataset and embedding. Pass
``absolute_reg=True`` to use ``reg`` as ``eps`` itself, or ``cost_scale=`` to fix the scale (for
instance to compare subsets of one collection on the same footing).

Mass that two documents share (the same word vector in both) stays in place, as in the exact
engine: for a metric cost this changes nothing in the EMD, the plan stays feasible (so the value
is still an upper bound), identical documents get exactly 0, and the problems left are smaller
and converge faster (2x faster on BBCSport; the error changes little there, it drops a little
at large ``reg``). ``shared_mass=False`` solves the full problems.

How it runs: documents are sorted into geometric length buckets; the pairs of each bucket pair
are solved together as zero-padded batches ``(B, n, m)``. Padded words carry zero mass (log
weight ``-inf``), so they contribute exactly nothing to any sum: a pair's value does not depend
on what it is batched with. Each problem stops on its own when its marginal error falls below
``tol`` (converged problems leave the batch). Ground costs are exact Euclidean distances in
float64 (clamped at 0 before the square root), whatever ``dtype`` the iterations use.

Iteration kernels (``method``), all with the same fixed point:

* ``matmul`` (default): Sinkhorn scalings on a kernel that has the current log-domain potentials
  absorbed into it (``K = exp(-C/eps + alpha + beta)``, re-absorbed every ``check_every``
  iterations), so the kernel stays close to the plan itself and nothing over- or underflows;
  each iteration is two batched matrix-vector products, and ``overrelaxation`` (1.5) cuts the
  iterations of slow problems 2-3x. About 5x faster than ``log`` on CPU.
* ``log``: textbook log-domain updates (``logsumexp`` over the batch); the reference.
* ``pot``: POT 0.9.7's ``ot.batch.solve_batch(method='log_sinkhorn')`` on the same padded
  batches. It handles zero weights (``log 0 = -inf``) as long as the costs hold no NaN (its own
  ``dist_batch`` can take the square root of a slightly negative number, hence our costs), but
  it stops a whole batch together on an L2 criterion and was 10x slower than ``matmul`` here.

On CPUs shared with other jobs, set ``OMP_WAIT_POLICY=PASSIVE`` (before torch starts) or use
one torch thread: OpenMP's spin-waiting made small batches up to 10x slower there.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from tqdm import tqdm

from dmlrepro import DmlReproError
from dmlrepro.data.pointsets import Pointsets
from dmlrepro.ot.engine import PreparedDocs

log = logging.getLogger(__name__)

DEFAULT_REG = 0.02          # relative: eps = 0.02 * median word-to-word distance
DEFAULT_MAX_ITER = 2000
DEFAULT_TOL = 1e-4          # L1 marginal error of the plan when a problem stops
DEFAULT_BATCH_PAIRS = 16384
DEFAULT_MAX_BATCH_ELEMENTS = 1 << 23   # B * n * m per batch (64 MiB per float64 tensor)
BUCKET_RATIO = 1.25         # documents whose lengths differ by less than this share a bucket ...
BUCKET_MIN = 16             # ... and all documents of up to this many words share the first one
METHODS = ("matmul", "log", "pot")
DEFAULT_OVERRELAXATION = 1.5

# The options that define a Sinkhorn WMD computation (everything but the device), with their
# defaults: ``ot.sinkhorn`` in the configuration, ``compute_shard(..., sinkhorn_options=)``.
OPTION_DEFAULTS = {
    "reg": DEFAULT_REG, "absolute_reg": False, "cost_scale": None, "max_iter": DEFAULT_MAX_ITER,
    "tol": DEFAULT_TOL, "batch_pairs": DEFAULT_BATCH_PAIRS, "max_batch_elements": DEFAULT_MAX_BATCH_ELEMENTS,
    "dtype": "float64", "shared_mass": True, "method": "matmul", "check_every": 10,
    "overrelaxation": DEFAULT_OVERRELAXATION,
}


# ------------------------------------------------------------------------------------ settings
def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto``: CUDA when available, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DmlReproError(f"ot device '{device}' requested but CUDA is not available (use cpu or auto)")
    return dev


def ground_cost_scale(ps: Pointsets, n_samples: int = 20_000, seed: int = 0) -> float:
    """Median Euclidean distance between two word vectors drawn at random from ``ps`` (seeded).

    The unit of the relative ``reg``: ``eps = reg * ground_cost_scale(ps)``.
    """
    vectors = ps.vectors
    if len(vectors) < 2:
        return 1.0
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(vectors), n_samples)
    j = rng.integers(0, len(vectors), n_samples)
    keep = i != j
    d = np.linalg.norm(vectors[i[keep]].astype(np.float64) - vectors[j[keep]].astype(np.float64), axis=1)
    d = d[d > 0]
    return float(np.median(d)) if len(d) else 1.0


def _check_args(reg: float, max_iter: int, tol: float, batch_pairs: int, method: str) -> None:
    if not (reg > 0 and math.isfinite(reg)):
        raise DmlReproError(f"sinkhorn reg must be a positive number, got {reg}")
    if max_iter < 1 or batch_pairs < 1:
        raise DmlReproError(f"sinkhorn max_iter and batch_pairs must be >= 1 (got {max_iter}, {batch_pairs})")
    if not tol > 0:
        raise DmlReproError(f"sinkhorn tol must be > 0, got {tol}")
    if method not in METHODS:
        raise DmlReproError(f"unknown sinkhorn method '{method}' ({' | '.join(METHODS)})")


def normalise_options(options: dict | None) -> dict:
    """``options`` with the defaults filled in and canonical types (plain JSON: ``dtype`` by name),
    so that two equal computations have equal option dicts. Unknown names, wrong types and values
    out of range raise :class:`DmlReproError` (before any work is done)."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTION_DEFAULTS))
    if unknown:
        raise DmlReproError(f"unknown sinkhorn option(s) {', '.join(map(repr, unknown))} "
                            f"(known: {', '.join(OPTION_DEFAULTS)})")
    out = {**OPTION_DEFAULTS, **options}
    try:
        for key in ("reg", "tol", "overrelaxation"):
            out[key] = float(out[key])
        for key in ("max_iter", "batch_pairs", "max_batch_elements", "check_every"):
            if isinstance(out[key], bool) or float(out[key]) != int(out[key]):
                raise ValueError(key)
            out[key] = int(out[key])
        for key in ("absolute_reg", "shared_mass"):
            if not isinstance(out[key], (bool, np.bool_)):
                raise ValueError(key)
            out[key] = bool(out[key])
        out["cost_scale"] = None if out["cost_scale"] is None else float(out["cost_scale"])
    except (TypeError, ValueError) as e:
        raise DmlReproError(f"sinkhorn options: bad value in {options}") from e
    dtype = out["dtype"]
    if isinstance(dtype, torch.dtype):
        dtype = str(dtype).replace("torch.", "")
    if dtype not in ("float32", "float64"):
        raise DmlReproError(f"sinkhorn dtype must be float32 or float64, got {out['dtype']}")
    out["dtype"] = dtype
    out["method"] = str(out["method"])
    _check_args(out["reg"], out["max_iter"], out["tol"], out["batch_pairs"], out["method"])
    if not 1.0 <= out["overrelaxation"] < 2.0:
        raise DmlReproError(f"sinkhorn overrelaxation must be in [1, 2), got {out['overrelaxation']}")
    if out["max_batch_elements"] < 1 or out["check_every"] < 1:
        raise DmlReproError("sinkhorn max_batch_elements and check_every must be >= 1 "
                            f"(got {out['max_batch_elements']}, {out['check_every']})")
    if out["cost_scale"] is not None and not (out["cost_scale"] > 0 and math.isfinite(out["cost_scale"])):
        raise DmlReproError(f"sinkhorn cost_scale must be a positive number, got {out['cost_scale']}")
    return out


# ------------------------------------------------------------------------------------ the solver
@dataclass
class SinkhornResult:
    """One batch of problems. ``value``: transport cost of the rounded (feasible) plan;
    ``marginal_error``: L1 row-marginal error of the Sinkhorn plan before rounding (its column
    marginals are exact); ``n_iter``: iterations per problem; ``plan``: the rounded plans
    (only when asked for)."""
    value: torch.Tensor
    marginal_error: torch.Tensor
    n_iter: torch.Tensor
    plan: torch.Tensor | None = None


def _log(x: torch.Tensor) -> torch.Tensor:
    """log with log(0) = -inf and no warning (zero mass: padding, or shared mass removed)."""
    return torch.where(x > 0, x, 1.0).log().masked_fill_(x <= 0, -math.inf)


def _log_kernel(C, a, b, eps, max_iter, tol, check_every, omega, plans, err_out, it_out):
    """Log-domain iterations on potentials ``alpha = log a + f/eps``, ``beta = log b + g/eps``
    (no over-relaxation: ``omega`` is ignored)."""
    Kc = C / -eps
    loga, logb = _log(a), _log(b)
    active = torch.arange(len(C), device=C.device)
    beta = logb.clone()
    alpha = loga - torch.logsumexp(Kc + beta[:, None, :], 2)
    it = 0
    while True:
        it += 1
        beta = logb - torch.logsumexp(Kc + alpha[:, :, None], 1)
        alpha_next = loga - torch.logsumexp(Kc + beta[:, None, :], 2)
        if it % check_every == 0 or it >= max_iter:
            # row sums of the plan (alpha, beta) are a * exp(alpha - alpha_next); columns are exact
            err = torch.where(a > 0, a * torch.expm1(alpha - alpha_next).abs(), 0.0).sum(1)
            done = (err <= tol) | (it >= max_iter)
            if bool(done.any()):
                d = done.nonzero().squeeze(1)
                plans[active[d]] = torch.exp(Kc[d] + alpha[d][:, :, None] + beta[d][:, None, :])
                err_out[active[d]] = err[d]
                it_out[active[d]] = it
                keep = (~done).nonzero().squeeze(1)
                if len(keep) == 0:
                    return
                active, Kc, loga, logb, a, alpha_next, beta = (
                    t[keep] for t in (active, Kc, loga, logb, a, alpha_next, beta))
        alpha = alpha_next


def _matmul_kernel(C, a, b, eps, max_iter, tol, check_every, omega, plans, err_out, it_out):
    """Scaling iterations ``u = a / K v``, ``v = b / K^T u`` on a kernel with the log potentials
    absorbed (``K = exp(-C/eps + alpha + beta)``), re-absorbed at every check.

    ``omega`` > 1 over-relaxes the updates (``u <- u^(1-omega) (a / K v)^omega``, Thibault et al.
    2017), which cuts the iterations of slowly converging problems by 2-3x; the update just
    before each check is a plain one, so the checked plan has exact column sums."""
    tiny = torch.finfo(C.dtype).tiny
    Kc = C / -eps
    loga, logb = _log(a), _log(b)
    active = torch.arange(len(C), device=C.device)
    # one log-domain iteration: finite potentials, columns of the kernel sum to b exactly
    alpha = loga - torch.logsumexp(Kc + logb[:, None, :], 2)
    beta = logb - torch.logsumexp(Kc + alpha[:, :, None], 1)
    K = torch.exp(Kc + alpha[:, :, None] + beta[:, None, :])
    u = torch.ones_like(a)
    v = torch.ones_like(b)
    it = 0
    while True:
        it += 1
        Kv = torch.bmm(K, v[:, :, None]).squeeze(2)
        check = it % check_every == 0 or it >= max_iter
        if check:
            err = (u * Kv - a).abs().sum(1)   # row marginal error of the plan (u, v)
            u_plan = u
        u_new = a / Kv.clamp_min(tiny)
        u = u_new if omega == 1 else torch.where(a > 0, u.pow(1 - omega) * u_new.pow(omega), 0.0)
        if check:
            done = (err <= tol) | (it >= max_iter)
            if bool(done.any()):
                d = done.nonzero().squeeze(1)
                plans[active[d]] = u_plan[d][:, :, None] * K[d] * v[d][:, None, :]
                err_out[active[d]] = err[d]
                it_out[active[d]] = it
                keep = (~done).nonzero().squeeze(1)
                if len(keep) == 0:
                    return
                active, Kc, K, a, b, u, v, alpha, beta = (
                    t[keep] for t in (active, Kc, K, a, b, u, v, alpha, beta))
        v_new = b / torch.bmm(u[:, None, :], K).squeeze(1).clamp_min(tiny)
        plain = omega == 1 or (it + 1) % check_every == 0 or it + 1 >= max_iter
        v = v_new if plain else torch.where(b > 0, v.pow(1 - omega) * v_new.pow(omega), 0.0)
        if check:  # absorb the scalings into the potentials (zero mass stays at -inf)
            alpha = alpha + _log(u)
            beta = beta + _log(v)
            K = torch.exp(Kc + alpha[:, :, None] + beta[:, None, :])
            u = torch.ones_like(u)
            v = torch.ones_like(v)


def _pot_kernel(C, a, b, eps, max_iter, tol, check_every, omega, plans, err_out, it_out):
    """POT's ``ot.batch.solve_batch(method='log_sinkhorn')``, for comparison: the same log-domain
    updates, but one stopping rule for the whole batch (L2 row-marginal error of the worst problem,
    checked every 10 iterations). Zero weights are fine there (``log 0 = -inf``, as here) as long
    as the costs hold no NaN."""
    from ot.batch import solve_batch
    res = solve_batch(C, eps, a, b, max_iter=max_iter, tol=tol, method="log_sinkhorn", grad="detach")
    plans.copy_(res.plan)
    err_out.copy_((plans.sum(2) - a).abs().sum(1))
    it_out.fill_(int(res.log["n_iter"]) + 1)


_KERNELS = {"matmul": _matmul_kernel, "log": _log_kernel, "pot": _pot_kernel}


def _round_to_feasible(T: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Altschuler-Weed-Rigollet rounding: the nearest-ish plan with marginals exactly a and b."""
    r = T.sum(2)
    T = T * torch.where(r > a, a / r.clamp_min(torch.finfo(T.dtype).tiny), 1.0)[:, :, None]
    c = T.sum(1)
    T = T * torch.where(c > b, b / c.clamp_min(torch.finfo(T.dtype).tiny), 1.0)[:, None, :]
    ea = (a - T.sum(2)).clamp_min(0)
    eb = (b - T.sum(1)).clamp_min(0)
    total = ea.sum(1)
    fix = (ea[:, :, None] * eb[:, None, :]) / torch.where(total > 0, total, 1.0)[:, None, None]
    return T + fix


@torch.no_grad()
def sinkhorn_batch(C: torch.Tensor, a: torch.Tensor, b: torch.Tensor, eps: float, *,
                   max_iter: int = DEFAULT_MAX_ITER, tol: float = DEFAULT_TOL, check_every: int = 10,
                   method: str = "matmul", overrelaxation: float = DEFAULT_OVERRELAXATION,
                   dtype: torch.dtype | None = None, return_plan: bool = False) -> SinkhornResult:
    """Entropic OT for a batch of zero-padded problems; transport costs of the (rounded) plans.

    ``C`` (B, n, m) ground costs, ``a`` (B, n) and ``b`` (B, m) weights that sum to 1 per problem
    (zero on padding), ``eps`` the absolute regularisation (in cost units). Each problem stops
    when the L1 error of its row marginals is at most ``tol`` (columns are exact), or after
    ``max_iter`` iterations. The plans are then rounded to be exactly feasible and ``value`` is
    ``<T, C>`` (no entropy term). The iterations run in ``dtype`` (default: ``C.dtype``); the
    rounding and the value in float64 on the ``C``, ``a``, ``b`` given. ``overrelaxation``
    (``matmul`` only, in [1, 2)): see :func:`_matmul_kernel`; a problem that ends with a
    non-finite or clearly diverged plan is solved again without it.
    """
    if method not in METHODS:
        raise DmlReproError(f"unknown sinkhorn method '{method}' ({' | '.join(METHODS)})")
    if not 1.0 <= overrelaxation < 2.0:
        raise DmlReproError(f"sinkhorn overrelaxation must be in [1, 2), got {overrelaxation}")
    dtype = dtype or C.dtype
    Cw, aw, bw = C.to(dtype), a.to(dtype), b.to(dtype)
    B = C.shape[0]
    plans = torch.zeros_like(Cw)
    err = torch.zeros(B, dtype=dtype, device=C.device)
    n_iter = torch.zeros(B, dtype=torch.long, device=C.device)
    if B:
        kernel = _KERNELS[method]
        check_every = max(1, int(check_every))
        kernel(Cw, aw, bw, float(eps), max_iter, tol, check_every, overrelaxation, plans, err, n_iter)
        bad = ~(torch.isfinite(plans).all(2).all(1) & (err <= max(1e-2, tol)))
        if method == "matmul" and overrelaxation != 1.0 and bool(bad.any()):
            idx = bad.nonzero().squeeze(1)
            sub_plans = torch.zeros_like(plans[idx])
            sub_err, sub_it = err[idx].clone(), n_iter[idx].clone()
            kernel(Cw[idx], aw[idx], bw[idx], float(eps), max_iter, tol, check_every, 1.0, sub_plans, sub_err, sub_it)
            plans[idx], err[idx], n_iter[idx] = sub_plans, sub_err, n_iter[idx] + sub_it
    C64, a64, b64 = C.double(), a.double(), b.double()
    T = _round_to_feasible(plans.double(), a64, b64)
    value = (T * C64).sum((1, 2))
    if not bool(torch.isfinite(value).all()):
        raise DmlReproError(f"sinkhorn: non-finite transport cost with eps={eps:.3g} in {dtype} "
                            "(use a larger reg, or dtype float64)")
    return SinkhornResult(value, err, n_iter, T if return_plan else None)


# ------------------------------------------------------------------------------------ batching
@dataclass
class _Docs:
    """Documents on the device: stacked vectors, normalised weights, distinct-vector ids."""
    vectors: torch.Tensor     # (W, d) float64
    weights: torch.Tensor     # (W,) float64, each document's weights sum to 1
    ids: torch.Tensor         # (W,) int64, equal ids <=> identical vectors
    offsets: np.ndarray
    lengths: np.ndarray

    @classmethod
    def build(cls, ps: Pointsets, device: torch.device, prepared: PreparedDocs | None = None) -> "_Docs":
        # the exact engine's preparation: float64, normalised weights, repeated vectors merged
        prepared = prepared if prepared is not None else PreparedDocs.from_pointsets(ps)
        lengths = np.array([len(w) for w in prepared.weights], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        return cls(torch.as_tensor(np.concatenate(prepared.vectors), dtype=torch.float64, device=device),
                   torch.as_tensor(np.concatenate(prepared.weights), dtype=torch.float64, device=device),
                   torch.as_tensor(np.concatenate(prepared.vector_ids), dtype=torch.int64, device=device),
                   offsets, lengths)

    def padded(self, docs: np.ndarray, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Vectors (b, width, d), weights (b, width) (zero on padding), ids (b, width) (-1 on padding)."""
        dev = self.vectors.device
        start = torch.as_tensor(self.offsets[docs], device=dev)
        length = torch.as_tensor(self.lengths[docs], device=dev)
        pos = torch.arange(width, device=dev)
        real = pos[None, :] < length[:, None]
        rows = torch.where(real, start[:, None] + pos[None, :], 0)
        x = self.vectors[rows] * real[:, :, None]
        w = torch.where(real, self.weights[rows], 0.0)
        ids = torch.where(real, self.ids[rows], -1)
        return x, w, ids


def _euclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact (float64) Euclidean distances between the rows of x (B, n, d) and y (B, m, d)."""
    sq = (x * x).sum(2)[:, :, None] + (y * y).sum(2)[:, None, :] - 2.0 * torch.bmm(x, y.transpose(1, 2))
    return sq.clamp_min_(0.0).sqrt_()


def _remove_shared_mass(a, b, ida, idb):
    """Residual weights after mass shared by identical vectors stays in place, and the moved mass."""
    same = ida[:, :, None] == idb[:, None, :]
    common = torch.where(same, torch.minimum(a[:, :, None], b[:, None, :]), 0.0)
    a = (a - common.sum(2)).clamp_min_(0.0)
    b = (b - common.sum(1)).clamp_min_(0.0)
    a = torch.where(a > 1e-15, a, 0.0)
    b = torch.where(b > 1e-15, b, 0.0)
    moved, moved_b = a.sum(1), b.sum(1)
    nothing = (moved <= 1e-15) | (moved_b <= 1e-15)   # (near-)identical documents: no mass moves
    return a / moved.clamp_min(1e-300)[:, None], b / moved_b.clamp_min(1e-300)[:, None], moved, nothing


def _bucket(lengths: np.ndarray) -> np.ndarray:
    """Geometric length buckets; short documents share one (their padding costs little)."""
    ratio = np.maximum(np.asarray(lengths, dtype=np.float64), BUCKET_MIN) / BUCKET_MIN
    return np.floor(np.log(ratio) / math.log(BUCKET_RATIO) + 1e-9).astype(np.int64)


def _chunks(first: np.ndarray, second: np.ndarray, lengths: np.ndarray, batch_pairs: int,
            max_elements: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Split pairs of one bucket group into batches of at most ``batch_pairs`` pairs and about
    ``max_elements`` padded cost entries (never less than one pair)."""
    order = np.lexsort((lengths[second], lengths[first]))
    first, second = first[order], second[order]
    width = int(lengths[first].max()) * int(lengths[second].max())
    size = max(1, min(batch_pairs, max_elements // max(width, 1)))
    for s in range(0, len(first), size):
        yield first[s:s + size], second[s:s + size]


def _canonical(i: np.ndarray, j: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orient each pair (shorter document first, then lower index) so (i, j) and (j, i) are the
    same problem and give bit-identical values."""
    swap = (lengths[i] > lengths[j]) | ((lengths[i] == lengths[j]) & (i > j))
    return np.where(swap, j, i), np.where(swap, i, j)


def _groups_of_pairs(i: np.ndarray, j: np.ndarray, lengths: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Canonical pairs grouped by the length buckets of their two documents."""
    bi, bj = _bucket(lengths[i]), _bucket(lengths[j])
    key = bi * (int(bj.max()) + 1) + bj
    order = np.argsort(key, kind="stable")
    bounds = np.flatnonzero(np.diff(key[order])) + 1
    for part in np.split(order, bounds):
        if len(part):
            yield i[part], j[part]


def _groups_all_pairs(lengths: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """All pairs i < j of a collection, canonical, generated one bucket pair at a time."""
    bucket = _bucket(lengths)
    members = {int(b): np.flatnonzero(bucket == b) for b in np.unique(bucket)}
    keys = sorted(members)
    for p, bp in enumerate(keys):
        for bq in keys[p:]:
            rows, cols = members[bp], members[bq]
            if bp == bq:
                r, c = np.triu_indices(len(rows), 1)
                i, j = rows[r], rows[c]
            else:
                i, j = np.repeat(rows, len(cols)), np.tile(cols, len(rows))
            if len(i):
                yield _canonical(i, j, lengths)


def _groups_upper_rows(rows: np.ndarray, lengths: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """All pairs (i, j > i) with i in ``rows``, canonical, one bucket pair at a time, in an order
    that depends on ``rows`` and ``lengths`` only (so a shard is always batched the same way)."""
    n = len(lengths)
    bucket = _bucket(lengths)
    in_rows = np.zeros(n, dtype=bool)
    in_rows[np.asarray(rows, dtype=np.int64)] = True
    keys = [int(b) for b in np.unique(bucket)]
    members = {b: np.flatnonzero(bucket == b) for b in keys}

    def later(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pairs (x, y), x in xs, y in ys (both sorted), y > x, in the order of xs then ys."""
        starts = np.searchsorted(ys, xs, side="right")
        counts = len(ys) - starts
        first = np.cumsum(counts) - counts
        pos = np.arange(int(counts.sum())) - np.repeat(first - starts, counts)
        return np.repeat(xs, counts), ys[pos]

    for p, bp in enumerate(keys):
        for bq in keys[p:]:
            parts = [later(members[bp][in_rows[members[bp]]], members[bq])]
            if bq != bp:
                parts.append(later(members[bq][in_rows[members[bq]]], members[bp]))
            i = np.concatenate([q[0] for q in parts])
            j = np.concatenate([q[1] for q in parts])
            if len(i):
                yield _canonical(i, j, lengths)


class SinkhornEngine:
    """One Sinkhorn WMD computation on one collection: its documents on the device, ``eps``, the
    options; :meth:`solve` gives the values of one batch of canonical pairs. Built by
    :func:`sinkhorn_engine` (or by :func:`sinkhorn_all_pairs` / :func:`sinkhorn_pairs` themselves)."""

    def __init__(self, ps: Pointsets, reg: float, absolute_reg: bool, cost_scale: float | None,
                 max_iter: int, tol: float, batch_pairs: int, max_batch_elements: int,
                 device: str, dtype: torch.dtype, shared_mass: bool, method: str, check_every: int,
                 overrelaxation: float, prepared: PreparedDocs | None = None):
        _check_args(reg, max_iter, tol, batch_pairs, method)
        dtype = {"float32": torch.float32, "float64": torch.float64}.get(dtype, dtype) if isinstance(dtype, str) else dtype
        if dtype not in (torch.float32, torch.float64):
            raise DmlReproError(f"sinkhorn dtype must be float32 or float64, got {dtype}")
        self.device = resolve_device(device)
        self.dtype = dtype
        self.eps = float(reg) if absolute_reg else float(reg) * (cost_scale or ground_cost_scale(ps))
        self.max_iter, self.tol, self.method, self.check_every = max_iter, tol, method, check_every
        if not 1.0 <= overrelaxation < 2.0:
            raise DmlReproError(f"sinkhorn overrelaxation must be in [1, 2), got {overrelaxation}")
        self.overrelaxation = overrelaxation
        self.batch_pairs, self.max_elements = batch_pairs, max_batch_elements
        self.shared_mass = shared_mass
        self.docs = _Docs.build(ps, self.device, prepared)
        self.lengths = self.docs.lengths   # distinct vectors per document
        self.unconverged = 0
        self.max_error = 0.0

    def solve(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Values for one batch of canonical pairs."""
        width_a, width_b = int(self.lengths[i].max()), int(self.lengths[j].max())
        x, a, ida = self.docs.padded(i, width_a)
        y, b, idb = self.docs.padded(j, width_b)
        C = _euclidean(x, y)
        moved = None
        if self.shared_mass:
            a_res, b_res, moved, nothing = _remove_shared_mass(a, b, ida, idb)
            a = torch.where(nothing[:, None], a, a_res)
            b = torch.where(nothing[:, None], b, b_res)
        res = sinkhorn_batch(C, a, b, self.eps, max_iter=self.max_iter, tol=self.tol,
                             check_every=self.check_every, method=self.method,
                             overrelaxation=self.overrelaxation, dtype=self.dtype)
        value = res.value
        if moved is not None:
            value = torch.where(nothing, 0.0, value * moved)
        self.unconverged += int((res.marginal_error > self.tol).sum())
        self.max_error = max(self.max_error, float(res.marginal_error.max()))
        return value.cpu().numpy()

    def upper_row_batches(self, rows: Sequence[int] | np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Batches of canonical pairs covering every pair (i, j > i), i in ``rows``, each once.

        The batches are a function of ``rows``, the document lengths and the batch limits only,
        so solving them again (a resumed shard) gives bit-identical values."""
        for gi, gj in _groups_upper_rows(np.asarray(rows, dtype=np.int64), self.lengths):
            yield from _chunks(gi, gj, self.lengths, self.batch_pairs, self.max_elements)

    def run(self, groups: Iterator[tuple[np.ndarray, np.ndarray]], total: int, progress: bool,
            store) -> None:
        with tqdm(total=total, desc="Sinkhorn WMD", unit="pair", disable=not progress, smoothing=0.05) as bar:
            for gi, gj in groups:
                for ci, cj in _chunks(gi, gj, self.lengths, self.batch_pairs, self.max_elements):
                    store(ci, cj, self.solve(ci, cj))
                    bar.update(len(ci))
        self.warn_unconverged()

    def warn_unconverged(self) -> None:
        if self.unconverged:
            log.warning("sinkhorn: %d pair(s) ended with an L1 marginal error above tol=%.1e (up to %.2e; "
                        "max_iter=%d); their values are still transport costs of feasible plans, so upper "
                        "bounds of the WMD", self.unconverged, self.tol, self.max_error, self.max_iter)


_Engine = SinkhornEngine


# ------------------------------------------------------------------------------------ public API
def sinkhorn_engine(ps: Pointsets, options: dict | None = None, device: str = "auto",
                    prepared: PreparedDocs | None = None) -> SinkhornEngine:
    """A :class:`SinkhornEngine` for ``ps`` with the given options (:data:`OPTION_DEFAULTS` for the
    names; normalised by :func:`normalise_options`), reusable for many batches (shards use it).
    ``prepared``: the exact engine's :class:`PreparedDocs` of ``ps`` when already at hand."""
    o = normalise_options(options)
    return SinkhornEngine(ps, o["reg"], o["absolute_reg"], o["cost_scale"], o["max_iter"], o["tol"],
                          o["batch_pairs"], o["max_batch_elements"], device, o["dtype"], o["shared_mass"],
                          o["method"], o["check_every"], o["overrelaxation"], prepared)


def sinkhorn_all_pairs(ps: Pointsets, reg: float = DEFAULT_REG, *, max_iter: int = DEFAULT_MAX_ITER,
                       tol: float = DEFAULT_TOL, batch_pairs: int = DEFAULT_BATCH_PAIRS,
                       device: str = "auto", dtype: torch.dtype | str = torch.float64, progress: bool = False,
                       absolute_reg: bool = False, cost_scale: float | None = None, shared_mass: bool = True,
                       max_batch_elements: int = DEFAULT_MAX_BATCH_ELEMENTS, method: str = "matmul",
                       check_every: int = 10, overrelaxation: float = DEFAULT_OVERRELAXATION) -> np.ndarray:
    """Approximate WMD between every two documents of ``ps``: the (n, n) matrix, symmetric, zero diagonal.

    An approximation of :func:`dmlrepro.ot.engine.all_pairs_wmd` (``ot.engine: sinkhorn``):
    each value is the transport cost ``<T, C>`` of an entropic plan made exactly feasible, hence
    >= the exact WMD; the gap (entropic bias) shrinks with ``reg``.

    ``reg``: relative regularisation, ``eps = reg * cost_scale`` (median word-to-word distance of
    ``ps`` unless ``cost_scale`` is given), or ``eps = reg`` with ``absolute_reg=True``.
    ``max_iter``/``tol``: per-problem stop (L1 marginal error). ``batch_pairs``: pairs per batch
    (also capped by ``max_batch_elements`` padded cost entries). ``device``: ``cpu``, ``cuda``
    (``cuda:1`` ...) or ``auto``. ``dtype``: of the iterations, ``torch.float64``/``float32`` or
    their names (float32 is faster on GPUs; ground costs, rounding and values stay float64).
    ``progress``: a tqdm bar over pairs. ``shared_mass``, ``method``, ``overrelaxation``: see the
    module docstring; the defaults are the measured best.
    """
    n = len(ps)
    out = np.zeros((n, n))
    engine = _Engine(ps, reg, absolute_reg, cost_scale, max_iter, tol, batch_pairs, max_batch_elements,
                     device, dtype, shared_mass, method, check_every, overrelaxation)

    def store(i, j, values):
        out[i, j] = values
        out[j, i] = values

    engine.run(_groups_all_pairs(engine.lengths), n * (n - 1) // 2, progress, store)
    np.fill_diagonal(out, 0.0)
    return out


def sinkhorn_pairs(ps: Pointsets, pairs: Sequence[tuple[int, int]] | np.ndarray, reg: float = DEFAULT_REG, *,
                   max_iter: int = DEFAULT_MAX_ITER, tol: float = DEFAULT_TOL,
                   batch_pairs: int = DEFAULT_BATCH_PAIRS, device: str = "auto",
                   dtype: torch.dtype | str = torch.float64, progress: bool = False, absolute_reg: bool = False,
                   cost_scale: float | None = None, shared_mass: bool = True,
                   max_batch_elements: int = DEFAULT_MAX_BATCH_ELEMENTS, method: str = "matmul",
                   check_every: int = 10, overrelaxation: float = DEFAULT_OVERRELAXATION) -> np.ndarray:
    """Approximate WMD for an explicit list of document pairs ``(i, j)``: values in the same order.

    Same approximation and arguments as :func:`sinkhorn_all_pairs`. ``(i, j)`` and ``(j, i)``
    give the same value; ``(i, i)`` gives 0; repeated pairs are solved once. The relative
    ``reg`` is scaled by the whole of ``ps`` (not by the pairs), so values from separate calls
    on the same ``ps`` agree.
    """
    _check_args(reg, max_iter, tol, batch_pairs, method)
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    n = len(ps)
    if len(pairs) and (pairs.min() < 0 or pairs.max() >= n):
        raise DmlReproError(f"sinkhorn_pairs: document index out of range 0..{n - 1}")
    out = np.zeros(len(pairs))
    off = pairs[:, 0] != pairs[:, 1]
    if not off.any():
        return out
    engine = _Engine(ps, reg, absolute_reg, cost_scale, max_iter, tol, batch_pairs, max_batch_elements,
                     device, dtype, shared_mass, method, check_every, overrelaxation)
    ci, cj = _canonical(pairs[off, 0], pairs[off, 1], engine.lengths)
    keys, inverse = np.unique(ci * n + cj, return_inverse=True)   # each distinct pair once
    values = np.zeros(len(keys))

    def store(i, j, v):
        values[np.searchsorted(keys, i * n + j)] = v

    engine.run(_groups_of_pairs(keys // n, keys % n, engine.lengths), len(keys), progress, store)
    out[off] = values[inverse.reshape(-1)]
    return out
