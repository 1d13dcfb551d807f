"""All-pairs exact WMD: our engine vs a plain POT loop vs pyemd (FastEMD), same machine, same run.

    python benchmarks/bench_allpairs.py                 # bbcsport, twitter, amazon samples
    python benchmarks/bench_allpairs.py --dataset bbcsport --docs 80

Prints pairs/second and the ratios against the POT loop, checks every value against POT, and
appends a Markdown table (with the machine description) to benchmarks/results/allpairs.md.
The POT loop is what gensim's ``wmdistance`` does: ``ot.emd2(a, b, ot.dist(xa, xb))`` per pair,
one process. Also reports how the cost grows with the number of documents and with words per
document, and where the engine's time goes (ground costs, solver, the rest).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot

from common import RESULTS, append_markdown, load_dataset, sample, timed

DEFAULT_DOCS = {"bbcsport": 60, "twitter": 400, "amazon": 120}


def pot_loop(ps, exact_costs: bool = False) -> np.ndarray:
    """One ``ot.emd2`` call per pair. ``ot.dist``'s |a|^2+|b|^2-2ab expansion (what a plain loop
    uses) is off by up to ~1e-4 on near-identical vectors; ``exact_costs`` uses cdist instead and
    is the reference the engine must match to 1e-8."""
    from scipy.spatial.distance import cdist
    n = len(ps)
    out = np.zeros((n, n))
    for i in range(n):
        xa, wa = ps.doc(i)
        for j in range(i + 1, n):
            xb, wb = ps.doc(j)
            xa64, xb64 = xa.astype(np.float64), xb.astype(np.float64)
            cost = cdist(xa64, xb64) if exact_costs else ot.dist(xa64, xb64, metric="euclidean")
            out[i, j] = ot.emd2(wa / wa.sum(), wb / wb.sum(), cost, numItermax=1_000_000)
    return out + out.T


def pyemd_loop(ps) -> np.ndarray:
    """FastEMD (Pele & Werman) through pyemd, on the union of both documents' words, as gensim did."""
    from pyemd import emd
    from scipy.spatial.distance import cdist
    n = len(ps)
    out = np.zeros((n, n))
    for i in range(n):
        xa, wa = ps.doc(i)
        for j in range(i + 1, n):
            xb, wb = ps.doc(j)
            x = np.concatenate([xa, xb]).astype(np.float64)
            ha = np.concatenate([wa / wa.sum(), np.zeros(len(wb))])
            hb = np.concatenate([np.zeros(len(wa)), wb / wb.sum()])
            out[i, j] = emd(ha, hb, cdist(x, x))
    return out + out.T


def compare(name: str, n_docs: int, with_pyemd: bool) -> list[str]:
    from dmlrepro.ot.engine import PreparedDocs, all_pairs_wmd
    ps = sample(load_dataset(name), n_docs)
    pairs = n_docs * (n_docs - 1) // 2
    plain, t_pot = timed(pot_loop, ps)
    reference = pot_loop(ps, exact_costs=True)
    docs = PreparedDocs.from_pointsets(ps)
    one, t_one = timed(all_pairs_wmd, docs, 1)
    two, t_two = timed(all_pairs_wmd, docs, 2)
    err = max(np.abs(one - reference).max(), np.abs(two - reference).max())
    plain_err = np.abs(plain - reference).max()
    row = [name, str(n_docs), f"{ps.lengths.mean():.1f}", str(pairs), f"{pairs / t_pot:.0f}"]
    if with_pyemd:
        fast, t_fast = timed(pyemd_loop, ps)
        row += [f"{pairs / t_fast:.0f}", f"{np.abs(fast - reference).max():.1e}"]
    else:
        row += ["–", "–"]
    row += [f"{pairs / t_one:.0f}", f"{t_pot / t_one:.1f}x", f"{pairs / t_two:.0f}", f"{t_pot / t_two:.1f}x",
            f"{err:.1e}", f"{plain_err:.1e}"]
    print(" | ".join(row), flush=True)
    return row


def breakdown(name: str, n_docs: int) -> str:
    """Where one engine process spends its time (profiled): ground costs, the solver, everything else."""
    import cProfile
    import pstats
    from dmlrepro.ot.engine import PreparedDocs, all_pairs_wmd
    ps = sample(load_dataset(name), n_docs)
    docs = PreparedDocs.from_pointsets(ps)
    n = len(docs)
    profile = cProfile.Profile()
    t0 = time.perf_counter()
    profile.runcall(all_pairs_wmd, docs, 1)
    t_all = time.perf_counter() - t0
    own = {func[2]: row[2] for func, row in pstats.Stats(profile).stats.items()}  # function name -> own time
    t_cost, t_solve = own.get("block_ground_cost", 0.0), own.get("emd_from_cost", 0.0)
    rest = max(t_all - t_cost - t_solve, 0.0)
    return (f"{name}: {n * (n - 1) // 2} pairs, engine (1 process, profiled) {t_all:.2f} s = ground costs "
            f"{t_cost:.2f} s ({100 * t_cost / t_all:.0f}%) + solver {t_solve:.2f} s ({100 * t_solve / t_all:.0f}%) "
            f"+ the rest {rest:.2f} s ({100 * rest / t_all:.0f}%)")


def scaling(name: str) -> tuple[list[str], str, list[tuple[float, float]]]:
    """Milliseconds per pair by document length: table rows, the fitted power, (words, ms) points."""
    from dmlrepro.ot.engine import PreparedDocs, wmd_and_rwmd
    ps = load_dataset(name)
    docs = PreparedDocs.from_pointsets(ps)
    lengths = np.array([len(w) for w in docs.weights])
    rng = np.random.default_rng(0)
    lines, xs, ys = [], [], []
    for lo, hi in [(1, 20), (20, 50), (50, 100), (100, 200), (200, 400)]:
        pool = np.flatnonzero((lengths >= lo) & (lengths < hi))
        if len(pool) < 12:
            continue
        pick = rng.choice(pool, 12, replace=False)
        t0 = time.perf_counter()
        count = 0
        for a in range(len(pick)):
            for b in range(a + 1, len(pick)):
                wmd_and_rwmd(docs, int(pick[a]), int(pick[b]))
                count += 1
        per_pair = (time.perf_counter() - t0) / count
        xs.append(np.log(lengths[pick].mean()))
        ys.append(np.log(per_pair))
        lines.append(f"| {name} | {lo}-{hi} | {lengths[pick].mean():.0f} | {1e3 * per_pair:.3f} |")
    slope = np.polyfit(xs, ys, 1)[0] if len(xs) >= 2 else float("nan")
    growth = f"Per-pair time grows as (words per document)^{slope:.2f} on {name}."
    return lines, growth, [(float(np.exp(x)), 1e3 * float(np.exp(y))) for x, y in zip(xs, ys)]


def collection_scaling(name: str, sizes: list[int], seconds: float) -> tuple[list[str], list[tuple[int, float]],
                                                                                tuple[int, float] | None]:
    """All-pairs time against the number of documents, measured, not assumed.

    For each size a random collection of that many documents is drawn; whole rows (document i
    against every j > i, what one shard job does) are solved for about ``seconds``; the measured
    pairs/s projects the n(n-1)/2 pairs of the whole collection. The smallest size is also solved
    completely, which checks the projection. Returns the table's lines, (n, pairs/s) per size and
    (n, seconds) of that complete 2-process run.
    """
    from dmlrepro.ot.engine import PreparedDocs, StackedDocs, all_pairs_wmd, solve_row
    full = load_dataset(name)
    lines = ["", f"All-pairs exact WMD against the number of documents ({name}, engine, 1 process):", "",
             "| documents | pairs | rows timed | pairs timed | pairs/s | projected all-pairs, 1 process | "
             "projected, 2 processes | measured all-pairs, 2 processes |", "|---|---|---|---|---|---|---|---|"]
    rates, checked = [], None
    for n in [s for s in sizes if s <= len(full)]:
        docs = PreparedDocs.from_pointsets(sample(full, n, seed=1))
        stack = StackedDocs(docs)
        rows = np.random.default_rng(n).permutation(n - 1)  # rows of every length, not the first ones
        pairs = done = 0
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds and done < len(rows):
            pairs += n - 1 - int(rows[done])
            solve_row(stack, int(rows[done]))
            done += 1
        rate = pairs / (time.perf_counter() - t0)
        rates.append((n, rate))
        total = n * (n - 1) // 2
        measured = "–"
        if n == min(sizes):
            _, t_full = timed(all_pairs_wmd, docs, 2)
            measured = f"{t_full:.0f} s"
            checked = (n, t_full)
        lines.append(f"| {n:,} | {total:,} | {done} | {pairs:,} | {rate:.0f} | {_duration(total / rate)} | "
                     f"{_duration(total / rate / 2)} | {measured} |")
        print(lines[-1], flush=True)
    if len(rates) >= 2:
        slope = np.polyfit(np.log([n for n, _ in rates]), np.log([n * (n - 1) / 2 / r for n, r in rates]), 1)[0]
        lines.append(f"\nAll-pairs time grows as n^{slope:.2f} on {name} (n(n-1)/2 pairs at a near-constant "
                     "rate per pair: each pair is its own transport problem). 2-process projections assume "
                     "both cores are free.")
    return lines, rates, checked


def plot_scaling(per_length: dict[str, list[tuple[float, float]]], name: str, rates: list[tuple[int, float]],
                 checked: tuple[int, float] | None) -> None:
    """``results/allpairs_scaling.png``: ms per pair against words per document, and all-pairs
    time against the number of documents (projected from the measured rate; the checked point)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    from dmlrepro.reporting.figures import save_figure
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    for dataset, points in per_length.items():
        if points:
            left.loglog(*zip(*points), "o-", label=dataset)
    left.set(xlabel="words per document (mean of the bucket)", ylabel="ms per pair (engine, 1 process)",
             title="Exact WMD: cost per pair")
    left.legend()
    if rates:
        sizes = np.array([n for n, _ in rates], dtype=float)
        hours = sizes * (sizes - 1) / 2 / np.array([r for _, r in rates]) / 3600
        right.loglog(sizes, hours, "o-", label="projected, 1 process")
        right.loglog(sizes, hours / 2, "o--", label="projected, 2 processes")
        if checked:
            right.loglog([checked[0]], [checked[1] / 3600], "k*", markersize=12, label="measured, 2 processes")
        right.set_xticks(sizes, labels=[f"{int(n):,}" for n in sizes])
        right.xaxis.set_minor_locator(NullLocator())
        right.legend()
    right.set(xlabel="documents", ylabel="hours for all pairs", title=f"All-pairs exact WMD, {name}")
    save_figure(fig, RESULTS / "allpairs_scaling.png")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", nargs="+", default=list(DEFAULT_DOCS))
    parser.add_argument("--docs", type=int, help="documents per sample (default: per dataset)")
    parser.add_argument("--no-pyemd", action="store_true")
    parser.add_argument("--scale-dataset", default="amazon", help="collection for the documents-scaling table")
    parser.add_argument("--scale-docs", type=int, nargs="+", default=[500, 1000, 2000, 4000, 8000])
    parser.add_argument("--scale-seconds", type=float, default=15.0, help="solver time per collection size")
    args = parser.parse_args()
    header = ("| dataset | docs | words/doc | pairs | POT loop pairs/s | pyemd pairs/s | pyemd max err | "
              "engine 1 proc pairs/s | ratio | engine 2 proc pairs/s | ratio | engine max abs err | POT-loop max abs err |")
    rows = [header, "|" + "---|" * 13,
            ]
    print(header)
    for name in args.dataset:
        rows.append("| " + " | ".join(compare(name, args.docs or DEFAULT_DOCS[name], not args.no_pyemd)) + " |")
    notes = [breakdown(name, min(args.docs or DEFAULT_DOCS[name], 60)) for name in args.dataset]
    scale = ["| dataset | words/doc bucket | mean words | ms per pair (engine, 1 process) |", "|---|---|---|---|"]
    growths, per_length = [], {}
    for name in args.dataset:
        lines, growth, per_length[name] = scaling(name)
        scale += lines
        growths.append(growth)
    scale += [""] + growths
    for line in notes + scale:
        print(line)
    projection, rates, checked = collection_scaling(args.scale_dataset, args.scale_docs, args.scale_seconds)
    for line in projection:
        print(line)
    plot_scaling(per_length, args.scale_dataset, rates, checked)
    legend = ("Errors are against `ot.emd2` on exact (cdist) ground costs; the plain POT loop's error comes "
              "from `ot.dist`'s expansion formula.")
    append_markdown(RESULTS / "allpairs.md", "All-pairs exact WMD",
                    "\n".join([legend, ""] + rows + [""] + [f"- {n}" for n in notes] + [""] + scale + projection))


if __name__ == "__main__":
    main()
