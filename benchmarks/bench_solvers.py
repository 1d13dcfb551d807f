"""Exact transport solvers on the engine's own problems: how far the all-pairs engine can go.

    python benchmarks/bench_solvers.py                       # bbcsport, amazon, twitter
    python benchmarks/bench_solvers.py --dataset bbcsport --pairs 200

The all-pairs engine spends most of its time in POT's network simplex (``bench_allpairs.py``
profiles it), so its ratio against a plain POT loop is capped by how much of that loop is the
solver itself. This benchmark takes a seeded sample of real document pairs (the same document
samples as ``bench_allpairs.py``), builds each pair's shared-mass-reduced problem exactly as the
engine does, and times, on one process:

* ``POT loop``: ``ot.emd2(a, b, cdist(xa, xb))`` on the full problem, the baseline of the targets;
* ``solver``: POT's network simplex on the reduced problem, cold (what the engine runs per pair);
* ``setup only``: the same call stopped after one pivot (building the network and the output);
* ``warm, Sinkhorn``: POT's warm start (``potentials_init``) from the k-NN dual bound's
  potentials, their Sinkhorn iterations included;
* ``warm, exact``: warm start from the problem's own optimal potentials (not available in
  practice: the most any warm start can give);
* ``sparse, column generation``: POT's sparse solver on each word's 6 nearest words plus a
  north-west-corner plan (always feasible), arcs with negative reduced cost added until none is
  left (exact by LP optimality);
* ``OR-tools min-cost flow`` (only if ``ortools`` is installed): integer costs and masses
  (scaled by 2^24 and 2^20), so its value is close to, not equal to, the EMD.

It prints and appends to ``benchmarks/results/solvers.md`` the time per pair, each variant's
ratio to the cold solver, its largest difference from the cold solver's values, and the cap:
POT loop time / cold solver time, the most any engine built on this solver could reach per process,
and the same with the oracle warm start.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import ot
from scipy.spatial.distance import cdist

from bench_allpairs import DEFAULT_DOCS
from common import RESULTS, append_markdown, load_dataset, sample, timed

DEFAULT_PAIRS = {"bbcsport": 300, "amazon": 600, "twitter": 3000}
NEAREST_ARCS = 6
MAX_ITER = 1_000_000


def reduced_problems(name: str, n_pairs: int, seed: int = 0) -> tuple[list, list]:
    """The sampled pairs' full problems ``(a, b, xa, xb)`` and the engine's reduced ones ``(a', b', C')``."""
    from dmlrepro.ot.emd import ground_cost
    from dmlrepro.ot.engine import PreparedDocs, shared_mass_reduced
    ps = sample(load_dataset(name), DEFAULT_DOCS[name])
    docs = PreparedDocs.from_pointsets(ps)
    i, j = np.triu_indices(len(docs), 1)
    pick = np.random.default_rng(seed).choice(len(i), min(n_pairs, len(i)), replace=False)
    full, reduced = [], []
    for p, q in zip(i[pick].tolist(), j[pick].tolist()):
        xa, wa = ps.doc(p)
        xb, wb = ps.doc(q)
        problem = shared_mass_reduced(docs.weights[p], docs.vector_ids[p], docs.weights[q], docs.vector_ids[q],
                                      ground_cost(docs.vectors[p], docs.vectors[q]))
        if problem is not None:  # nothing to move: no solve in the engine either
            full.append((wa / wa.sum(), wb / wb.sum(), xa.astype(np.float64), xb.astype(np.float64)))
            reduced.append(problem[1:])
    return full, reduced


def pot_loop(full: list) -> None:
    for a, b, xa, xb in full:
        ot.emd2(a, b, cdist(xa, xb), numItermax=MAX_ITER)


def cold(problems: list, max_iter: int = MAX_ITER) -> np.ndarray:
    from dmlrepro.ot.emd import _emd_c
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "numItermax reached" is the point of the setup-only run
        return np.array([_emd_c(a, b, c, max_iter, 1)[1] for a, b, c in problems])


def warm(problems: list, starts: list) -> np.ndarray:
    from dmlrepro.ot.emd import emd_from_cost
    return np.array([emd_from_cost(a, b, c, start) for (a, b, c), start in zip(problems, starts)])


def sinkhorn_then_warm(problems: list) -> np.ndarray:
    from dmlrepro.ot.knn import dual_potentials
    return warm(problems, [dual_potentials(*p) for p in problems])


def column_generation(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> float:
    """Exact EMD on a growing arc set: solve sparse, add every arc the duals price below zero, repeat."""
    from ot.lp.emd_wrap import emd_c_sparse
    n, m = cost.shape
    arcs = np.zeros((n, m), dtype=bool)
    k_cols, k_rows = min(NEAREST_ARCS, m), min(NEAREST_ARCS, n)
    arcs[np.repeat(np.arange(n), k_cols), np.argpartition(cost, k_cols - 1, axis=1)[:, :k_cols].ravel()] = True
    arcs[np.argpartition(cost, k_rows - 1, axis=0)[:k_rows].ravel(), np.tile(np.arange(m), k_rows)] = True
    # north-west corner plan: the arcs where the cumulative masses' intervals overlap (feasible)
    starts = np.unique(np.concatenate([[0.0], np.cumsum(a)[:-1], np.cumsum(b)[:-1]]))
    arcs[np.minimum(np.searchsorted(np.cumsum(a), starts, side="right"), n - 1),
         np.minimum(np.searchsorted(np.cumsum(b), starts, side="right"), m - 1)] = True
    while True:
        rows, cols = np.nonzero(arcs)
        out = emd_c_sparse(a, b, rows.astype(np.uint64), cols.astype(np.uint64), cost[rows, cols], MAX_ITER)
        value, alpha, beta = out[3], np.asarray(out[4]), np.asarray(out[5])
        priced_below = (cost - alpha[:, None] - beta[None, :] < -1e-12) & ~arcs
        if not priced_below.any():
            return float(value)
        arcs |= priced_below


def ortools_flow(a: np.ndarray, b: np.ndarray, cost: np.ndarray) -> float:
    from ortools.graph.python import min_cost_flow
    mass_scale, cost_scale = 2 ** 20, 2 ** 24
    n, m = cost.shape
    sa, sb = np.floor(a * mass_scale).astype(np.int64), np.floor(b * mass_scale).astype(np.int64)
    sb[np.argmax(sb)] += sa.sum() - sb.sum()  # integer masses must balance
    flow = min_cost_flow.SimpleMinCostFlow()
    flow.add_arcs_with_capacity_and_unit_cost(np.repeat(np.arange(n), m), n + np.tile(np.arange(m), n),
                                              np.full(n * m, int(sa.sum()), dtype=np.int64),
                                              np.rint(cost.ravel() * cost_scale).astype(np.int64))
    flow.set_nodes_supplies(np.arange(n + m), np.concatenate([sa, -sb]))
    if flow.solve() != flow.OPTIMAL:
        return float("nan")
    return flow.optimal_cost() / cost_scale / mass_scale


def compare(name: str, n_pairs: int) -> tuple[list[list[str]], str]:
    full, problems = reduced_problems(name, n_pairs)
    n = len(problems)
    _, t_loop = timed(pot_loop, full)
    reference, t_cold = timed(cold, problems)
    from dmlrepro.ot.emd import emd_potentials_from_cost
    own = [emd_potentials_from_cost(*p) for p in problems]
    variants = [("setup only (1 pivot)", lambda: (None, timed(cold, problems, 1)[1])),
                ("warm, Sinkhorn potentials (their time included)", lambda: timed(sinkhorn_then_warm, problems)),
                ("warm, the problem's own optimal potentials", lambda: timed(warm, problems, own)),
                ("sparse, column generation", lambda: timed(lambda: np.array([column_generation(*p)
                                                                             for p in problems]))),
                ]
    try:
        import ortools  # noqa: F401
        variants.append(("OR-tools min-cost flow (integer-scaled)",
                         lambda: timed(lambda: np.array([ortools_flow(*p) for p in problems]))))
    except ImportError:
        pass
    words = np.mean([c.size for _, _, c in problems]) ** 0.5
    oracle = None
    rows = [[name, "POT loop (full problem)", str(n), f"{1e3 * t_loop / n:.3f}", f"{t_cold / t_loop:.2f}x", "–"],
            [name, "solver, cold (the engine's call)", str(n), f"{1e3 * t_cold / n:.3f}", "1.00x", "0"]]
    for label, run in variants:
        values, seconds = run()
        err = "–" if values is None else f"{np.nanmax(np.abs(values - reference)):.1e}"
        rows.append([name, label, str(n), f"{1e3 * seconds / n:.3f}", f"{t_cold / seconds:.2f}x", err])
        if label.startswith("warm, the problem's own"):
            oracle = seconds
    cap = (f"- {name}: reduced problems of about {words:.0f} x {words:.0f} words; POT's solver alone takes "
           f"{100 * t_cold / t_loop:.0f}% of the POT loop's time, so an engine that calls it once per pair, "
           f"everything else free, reaches at most {t_loop / t_cold:.1f}x per process "
           f"({2 * t_loop / t_cold:.1f}x on 2 cores); warm-started from each problem's own optimal potentials "
           f"(an oracle), at most {t_loop / oracle:.1f}x ({2 * t_loop / oracle:.1f}x on 2 cores).")
    return rows, cap


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", nargs="+", default=list(DEFAULT_PAIRS), choices=list(DEFAULT_PAIRS))
    parser.add_argument("--pairs", type=int, default=None, help="pairs per dataset (default: per dataset)")
    args = parser.parse_args()
    header = ["dataset", "solver", "pairs", "ms per pair", "vs cold solver", "max abs diff vs cold"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    caps = []
    for name in args.dataset:
        rows, cap = compare(name, args.pairs or DEFAULT_PAIRS[name])
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        caps.append(cap)
        print("\n".join(lines[-len(rows):]), "\n" + cap, flush=True)
    table = "\n".join(lines + [""] + caps)
    print("\n" + table)
    append_markdown(RESULTS / "solvers.md", "Exact transport solvers on the engine's reduced problems", table)


if __name__ == "__main__":
    main()
