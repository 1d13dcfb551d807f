"""Cost of one forward + backward of W-triplet (Paper 002, Eq. 2) against the Euclidean triplet loss.

A batch of ``--batch`` images (2 per class, Roth et al.'s sampler) as random unit-norm clouds of
``--points`` points in ``--dim`` dimensions (7x7 cells, 128-D). The Euclidean baseline is the same
triplet loss (all triplets, MeanReducer) on one ``--dim`` vector per image (the clouds' mean,
normalised), which is what a pooled embedding head gives. Timings: median of ``--repeats`` runs
on the current torch threads. Usage: ``PYTHONPATH=src python benchmarks/bench_wasserstein_triplet.py``.
"""

from __future__ import annotations

import argparse

import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.reducers import MeanReducer

from common import machine, timed_median
from dmlrepro.distances.sinkhorn_divergence import SinkhornDivergenceDistance, flatten_clouds
from dmlrepro.losses.wasserstein import w_triplet_loss


def step(loss_fn, rows, labels):
    rows = rows.detach().requires_grad_(True)
    loss = loss_fn(rows, labels)
    loss.backward()
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=49)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    gen = torch.Generator().manual_seed(0)
    clouds = torch.nn.functional.normalize(torch.randn(args.batch, args.points, args.dim, generator=gen), dim=-1)
    clouds = clouds.to(args.device)
    labels = torch.arange(args.batch, device=args.device) // 2
    pooled = torch.nn.functional.normalize(clouds.mean(1), dim=-1)
    euclidean = TripletMarginLoss(margin=0.2, distance=LpDistance(), reducer=MeanReducer())
    _, t_euclid = timed_median(args.repeats, step, euclidean, pooled, labels)
    print(f"# W-triplet vs Euclidean triplet: forward + backward, {args.batch} images x {args.points} points x "
          f"{args.dim}-D, {args.device}, {torch.get_num_threads()} torch thread(s)")
    print(f"# {machine()}\n")
    print("| loss | blur | scaling | seconds | x Euclidean |\n|---|---|---|---|---|")
    print(f"| Euclidean triplet (pooled {args.dim}-D) | - | - | {t_euclid:.4f} | 1 |")
    for blur, scaling in [(0.05, 0.9), (0.05, 0.5), (0.1, 0.9)]:
        distance = SinkhornDivergenceDistance(point_dim=args.dim, blur=blur, scaling=scaling)
        loss, _ = w_triplet_loss(distance, margin=0.2)
        _, t = timed_median(args.repeats, step, loss, flatten_clouds(clouds), labels)
        print(f"| W-triplet (S_eps, {args.batch * (args.batch - 1) // 2} pairs) | {blur} | {scaling} | {t:.3f} "
              f"| {t / t_euclid:.0f} |")


if __name__ == "__main__":
    main()
