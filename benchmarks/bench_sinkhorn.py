"""Approximate all-pairs WMD (batched Sinkhorn) vs the exact engine: speed, error, nearest neighbours.

    python benchmarks/bench_sinkhorn.py                                  # bbcsport, CPU
    python benchmarks/bench_sinkhorn.py --dataset twitter --docs 300
    python benchmarks/bench_sinkhorn.py --dataset amazon --device cuda --dtype float64,float32
    python benchmarks/bench_sinkhorn.py --kernels matmul,log,pot         # the iteration kernels

On a fixed seeded sample of N real documents (data mirror: ``$DMLREPRO_DATA_MIRROR``, default
``<repo>/../shared/data``) it times the exact engine (``all_pairs_wmd``, 2 processes) and
``sinkhorn_all_pairs`` at several ``reg`` values (relative to the median word-to-word distance of
the *whole* dataset, as the pipeline uses it), and reports pairs/s, the speed ratio, the
mean/max relative error against the exact WMD and the share of documents whose nearest
neighbour (what the pseudo-labels use) is unchanged. Prints a Markdown table and appends it,
with a machine line, to ``benchmarks/results/sinkhorn.md`` (written atomically).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: no spin-waiting on shared cores

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, load_dataset, machine, sample  # noqa: E402

DEFAULT_DOCS = {"bbcsport": 100, "twitter": 600, "amazon": 250}   # about a minute each on 2 shared cores
DEFAULT_REGS = "0.05,0.02,0.01"


def machine_line(device: torch.device) -> str:
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    return machine(f"device {device} ({dev}), {torch.get_num_threads()} torch threads, "
                   f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")


def nearest(d: np.ndarray) -> np.ndarray:
    return (d + np.diag(np.full(len(d), np.inf))).argmin(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", nargs="+", default=["bbcsport"], choices=sorted(DEFAULT_DOCS))
    parser.add_argument("--docs", type=int, help="documents in the sample (default: per dataset, ~1 minute)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    parser.add_argument("--reg", default=DEFAULT_REGS, help="relative reg values, comma-separated")
    parser.add_argument("--dtype", default="float64", help="float64 and/or float32, comma-separated")
    parser.add_argument("--kernels", default="matmul", help="matmul, log, pot (POT's ot.batch), comma-separated")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()

    from dmlrepro.io import write_text
    from dmlrepro.ot.engine import all_pairs_wmd
    from dmlrepro.ot.sinkhorn import ground_cost_scale, resolve_device, sinkhorn_all_pairs

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    regs = [float(r) for r in args.reg.split(",")]
    dtypes = [getattr(torch, name) for name in args.dtype.split(",")]
    kernels = args.kernels.split(",")

    header = ["dataset", "docs", "words/doc", "pairs", "engine", "reg (eps)", "s", "pairs/s", "speed vs exact",
              "mean rel err", "max rel err", "NN unchanged"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    print(rows[0], flush=True)

    def emit(cells):
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)

    for name in args.dataset:
        full = load_dataset(name)
        scale = ground_cost_scale(full)              # the pipeline scales reg by the whole dataset
        ps = sample(full, args.docs or DEFAULT_DOCS[name], args.seed)
        n = len(ps)
        pairs = n * (n - 1) // 2
        iu = np.triu_indices(n, 1)
        common = [name, str(n), f"{ps.lengths.mean():.1f}", str(pairs)]

        t0 = time.perf_counter()
        exact = all_pairs_wmd(ps, processes=2)
        t_exact = time.perf_counter() - t0
        nn_exact = nearest(exact)
        emit(common + ["exact (2 processes)", "–", f"{t_exact:.1f}", f"{pairs / t_exact:.0f}", "1.00", "0", "0",
                       "100%"])
        if device.type == "cuda":   # CUDA start-up and kernel loading outside the timings
            sinkhorn_all_pairs(ps.subset(np.arange(min(n, 8))), regs[0], device=device, cost_scale=scale)
            torch.cuda.synchronize(device)

        positive = exact[iu] > 0
        for kernel in kernels:
            for dtype in dtypes:
                for reg in regs:
                    t0 = time.perf_counter()
                    approx = sinkhorn_all_pairs(ps, reg, device=device, dtype=dtype, cost_scale=scale,
                                                method=kernel)
                    dt = time.perf_counter() - t0
                    rel = approx[iu][positive] / exact[iu][positive] - 1
                    same = np.mean(nearest(approx) == nn_exact)
                    label = f"sinkhorn {kernel} {str(dtype).replace('torch.', '')} ({device.type})"
                    emit(common + [label, f"{reg:g} ({reg * scale:.3f})", f"{dt:.1f}", f"{pairs / dt:.0f}",
                                   f"{t_exact / dt:.2f}", f"{100 * rel.mean():.2f}%", f"{100 * rel.max():.2f}%",
                                   f"{100 * same:.1f}%"])

    notes = ("reg is relative: eps = reg x the median word-to-word distance of the whole dataset (shown in "
             "brackets). Values are transport costs of feasible entropic plans (upper bounds of the WMD), so the "
             "relative error is one-sided. 'speed vs exact' > 1 means Sinkhorn is faster. 'NN unchanged': share "
             "of sampled documents whose nearest other document is the same under both distances.")
    print(notes)
    if not args.no_save:
        path = RESULTS / "sinkhorn.md"
        old = path.read_text() if path.exists() else ""
        title = f"Sinkhorn vs exact WMD ({', '.join(args.dataset)}, {device.type})"
        write_text(path, old + f"\n## {title}\n\n{machine_line(device)}\n\n" + "\n".join(rows) + f"\n\n{notes}\n")
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
