"""One metric step of SSDML and of its five baselines on the same fixed features, same run.

    python benchmarks/bench_ssdml_metric_step.py                      # d 128, l 64, N 1000, 1000 triplets
    python benchmarks/bench_ssdml_metric_step.py --n 2000 --repeats 1

Random features (N × d, seeded, a 10-class Gaussian mixture so that the graph and the labels
mean something), N_L labelled rows (``--labelled``, default 100 = 10 per class) and N − N_L
unlabelled; SSDML's step runs its 10 Stiefel-CG iterations on ``--triplets`` triplets mined by
affinity propagation (mining not timed: the baselines' times include their own graph and
propagation, which is part of their step). Each method's default hyperparameters; SERAPH uses
all unlabelled pairs. Prints each step's median time over ``--repeats`` runs and its ratio to
SSDML's, and appends the table with a machine line to ``benchmarks/results/ssdml_metric_step.md``.
No target: the SSDML paper only claims O(l d T_b) for its step against O(d³) (LRML) and
O(d³ + N³) (APLLR, APIT).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import append_markdown, timed_median  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "ssdml_metric_step.md"
COST = {
    "ssdml": "O(iters · T_b d l)",
    "lrml": "O(N k d + N d² + N_L² d + d³)",
    "isdml": "O(N k d + N d² + N_L² d + d³)",
    "seraph": "O(iters · trials · ((N_L² + N_U²) d + d³))",
    "apllr": "O(N_L² d + N³ + N² d + d³)",
    "apit": "O(#proj · d² + N³ + N² d + d³)",
}


def features(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(size=(classes, d))
    return centres[y] + rng.normal(size=(n, d)), y


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000, help="rows, labelled + unlabelled")
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--l", type=int, default=64)
    parser.add_argument("--labelled", type=int, default=100)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--triplets", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-append", action="store_true", help="print only")
    args = parser.parse_args(argv)

    from dmlrepro.losses.ssml_baselines import make_metric_step
    from dmlrepro.miners.affinity_propagation import mine_ssdml_triplets

    x, y = features(args.n, args.d, args.classes, args.seed)
    rng = np.random.default_rng(args.seed)
    labelled = np.sort(rng.choice(args.n, args.labelled, replace=False))
    triplets = mine_ssdml_triplets(x, labelled, y[labelled], k=10, gamma=0.99)
    triplets = triplets[rng.choice(len(triplets), min(args.triplets, len(triplets)), replace=False)]

    times = {}
    for name in COST:
        step = make_metric_step(name)

        def one_step():
            step.init(args.d, args.l, seed=args.seed)
            step.update(x, labelled, y[labelled], mined=triplets)
            return step.project(torch.as_tensor(x[:2]))

        _, times[name] = timed_median(args.repeats, one_step)
        print(f"{name:7s} {times[name]:9.3f} s", flush=True)

    rows = ["| method | one metric step (s) | ratio to SSDML | cost class |", "|---|---|---|---|"]
    for name, t in times.items():
        rows.append(f"| {name} | {t:.3f} | {t / times['ssdml']:.1f}× | {COST[name]} |")
    table = "\n".join(rows)
    title = (f"N = {args.n} (N_L = {args.labelled}), d = {args.d}, l = {args.l}, T_b = {len(triplets)} triplets, "
             f"median of {args.repeats}")
    print(f"\n{title}\n\n{table}")
    if not args.no_append:
        append_markdown(RESULTS, title, table)


if __name__ == "__main__":
    main()
