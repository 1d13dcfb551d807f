"""Cost of one training step (forward + backward) of W-triplet (Paper 002, Eq. 2) against the Euclidean triplet loss.

    python benchmarks/bench_wasserstein.py                   # CPU, and the GPU when torch.cuda.is_available()
    python benchmarks/bench_wasserstein.py --grid 0.1:0.5,0.05:0.9 --repeats 5

Two settings, each timed on every available device (``cpu``; ``cuda`` when there is one):

* **stand-in**: the embedded default's real step. The ``PointCloudEmbedder`` on ``lenet_ssdml``'s
  ``pool2`` map (16 points in R^32, untrained weights: the cost does not depend on them) on a
  batch of 30 Fashion-MNIST training images (the first 6 of classes 0-4, the config's sampler;
  noise of that shape without the data mirror). Forward through the
  network, the loss, backward into the network's parameters.
* **ResNet-50 head**: the loss alone on the clouds a ResNet-50 at 224 gives (49 points in R^128,
  unit norm, random), 2 images per class (Roth et al.'s sampler). The backbone's forward and
  backward cost the same for every loss and are left out, so the ratio is the loss's own. 32
  images on the CPU (112, Roth's batch, takes about 14x longer: 6,216 pair problems against
  496); on a GPU both 32 and 112.

The baseline of every setting is measured in the same run on the same batch: the same triplet
loss (every valid triplet, ``MeanReducer``, margin 0.1: only the distance differs) on the pooled
embedding (the normalised mean of the cloud's points: what the Euclidean rows train) with
``LpDistance(power=2)``; the Table 1 "Triplet" row (semi-hard miner, margin 0.2) is timed beside
it. Columns: ``blur`` (geomloss's; ``eps = blur ** p``, ``p = 2``), ``scaling`` and the number
of Sinkhorn iterations it implies: geomloss's eps-scaling schedule (``epsilon_schedule``) from
the batch's bounding-box diameter down to ``blur`` by a factor ``scaling`` a step, each step one
symmetric update of the four dual potentials (OT(a, b) both ways, OT(a, a), OT(b, b)), plus one
last extrapolation with gradients. The error column is the largest relative error of ``S_eps``
against POT's exact ``ot.emd2`` (cost ``||x - y||^2 / 2``) on 16 pairs of the batch: the price
of a cheaper setting. Timings: median of ``--repeats`` runs (the first included); on the CPU the
process's CPU time (``time.process_time``: other processes on a shared machine do not inflate it;
with more than one torch thread it adds the threads up, so run with ``OMP_NUM_THREADS=1``, as the
results were), on a GPU wall time after ``torch.cuda.synchronize``. Prints a Markdown table and
appends it, with a machine line, to ``benchmarks/results/wasserstein.md`` (``--no-save``: print only).
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
from common import RESULTS, machine, timed_median  # noqa: E402

DEFAULT_GRID = "0.1:0.5,0.1:0.7,0.1:0.9,0.05:0.5,0.05:0.7,0.05:0.9"   # blur:scaling; the stand-in's is 0.1:0.5
ERROR_PAIRS = 16
MARGIN = 0.1   # the stand-in W-triplet's margin, on 1/2 ||x - y||^2 (docs/wasserstein.md, decision 5)


def sinkhorn_iterations(clouds: torch.Tensor, blur: float, scaling: float, p: int = 2) -> int:
    """The eps-scaling steps geomloss runs on ``clouds`` ``(n, P, D)``: the length of its own
    schedule from the batch's diameter (as ``SinkhornDivergenceDistance`` fixes it) to ``blur``."""
    from geomloss._legacy.sinkhorn_divergence import epsilon_schedule

    from dmlrepro.distances.sinkhorn_divergence import cloud_diameter
    return len(epsilon_schedule(p, max(cloud_diameter(clouds), blur), blur, scaling))


def max_relative_error(clouds: torch.Tensor, blur: float, scaling: float, pairs: int = ERROR_PAIRS) -> float:
    """Largest ``|S_eps - OT_0| / OT_0`` over ``pairs`` pairs of different images ``(k, k + 1 + n // 2)``,
    OT_0 by POT's exact ``ot.emd2`` with cost ``||x - y||^2 / 2`` (geomloss's for p = 2)."""
    import ot

    from dmlrepro.distances.sinkhorn_divergence import cloud_diameter, paired_sinkhorn_divergence
    x = clouds.detach().double().cpu()
    n = len(x)
    idx = torch.arange(min(pairs, n - 1))
    first, second = idx, (idx + 1 + n // 2) % n
    second = torch.where(second == first, (second + 1) % n, second)
    approx = paired_sinkhorn_divergence(x[first], x[second], blur=blur, scaling=scaling,
                                        diameter=cloud_diameter(x)).numpy()
    errors = []
    for k, (i, j) in enumerate(zip(first.tolist(), second.tolist())):
        a, b = x[i].numpy(), x[j].numpy()
        w = np.full(len(a), 1 / len(a))
        exact = ot.emd2(w, np.full(len(b), 1 / len(b)), ot.dist(a, b) / 2)
        errors.append(abs(approx[k] - exact) / exact)
    return float(max(errors))


def losses(blur: float, scaling: float, point_dim: int):
    """(W-triplet on clouds, Euclidean triplet with every triplet, Table 1's semi-hard Triplet)."""
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.losses import TripletMarginLoss
    from pytorch_metric_learning.miners import TripletMarginMiner
    from pytorch_metric_learning.reducers import MeanReducer

    from dmlrepro.distances.sinkhorn_divergence import SinkhornDivergenceDistance
    from dmlrepro.losses.wasserstein import w_triplet_loss
    w_loss, _ = w_triplet_loss(SinkhornDivergenceDistance(point_dim=point_dim, blur=blur, scaling=scaling),
                               margin=MARGIN)
    euclid = TripletMarginLoss(margin=MARGIN, distance=LpDistance(power=2), reducer=MeanReducer())
    semihard_loss = TripletMarginLoss(margin=0.2, distance=LpDistance(power=2))
    miner = TripletMarginMiner(margin=0.2, type_of_triplets="semihard", distance=LpDistance(power=2))

    def semihard(emb, labels):
        return semihard_loss(emb, labels, miner(emb, labels))
    return w_loss, euclid, semihard


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fashion_mnist_batch(classes: int, m: int) -> torch.Tensor | None:
    """The first ``m`` training images of each of Fashion-MNIST's classes ``0 .. classes - 1`` (the
    stand-in's training classes), ``(classes * m, 1, 28, 28)`` in [0, 1]; None without the mirror."""
    from common import mirror

    from dmlrepro.data.images import read_idx
    folder = mirror() / "fashion-mnist"
    images, labels = folder / "train-images-idx3-ubyte.gz", folder / "train-labels-idx1-ubyte.gz"
    if not (images.exists() and labels.exists()):
        return None
    x, y = read_idx(images), read_idx(labels)
    rows = np.concatenate([np.flatnonzero(y == c)[:m] for c in range(classes)])
    return torch.from_numpy(x[rows].astype(np.float32) / 255.0).unsqueeze(1)


class StandIn:
    """The stand-in's step: LeNet to pool2, the 1x1 head, clouds, the loss, backward."""

    name = "stand-in (LeNet pool2)"

    def __init__(self, device: torch.device, batch: int, m: int, seed: int):
        from dmlrepro.models.images import build_cloud_embedder
        torch.manual_seed(seed)
        self.net = build_cloud_embedder("lenet_ssdml", embedding_dim=32, cloud_layer="pool2").to(device).train()
        spec = self.net.input_spec
        images = fashion_mnist_batch(batch // m, m)
        if images is None:   # no data mirror: noise of the same shape (the cost is the same; the clouds differ)
            gen = torch.Generator().manual_seed(seed)
            images = torch.randn(batch, spec.channels, spec.size, spec.size, generator=gen)
            self.name = "stand-in (LeNet pool2, noise images)"
        else:
            mean = torch.tensor(spec.mean).view(1, -1, 1, 1)
            images = (images - mean) / torch.tensor(spec.std).view(1, -1, 1, 1)
        self.images = images.to(device)
        self.labels = (torch.arange(batch) // m).to(device)
        self.device = device
        with torch.no_grad():
            self.clouds = self.net.clouds(self.images)
        self.shape = tuple(self.clouds.shape)

    def step(self, loss_fn, pooled: bool) -> float:
        self.net.zero_grad(set_to_none=True)
        clouds = self.net.clouds(self.images)
        emb = self.net.pool(clouds) if pooled else clouds.flatten(1)
        loss = loss_fn(emb, self.labels)
        loss.backward()
        sync(self.device)
        return float(loss.detach())


class Head:
    """The loss alone on given unit-norm clouds (a ResNet-50 head's 7 x 7 cells), backward to them."""

    name = "ResNet-50 head (loss only)"

    def __init__(self, device: torch.device, batch: int, m: int, seed: int, points: int = 49, dim: int = 128):
        gen = torch.Generator().manual_seed(seed)
        self.clouds = torch.nn.functional.normalize(torch.randn(batch, points, dim, generator=gen), dim=-1).to(device)
        self.labels = (torch.arange(batch) // m).to(device)
        self.device = device
        self.shape = tuple(self.clouds.shape)

    def step(self, loss_fn, pooled: bool) -> float:
        from dmlrepro.models.images import PointCloudEmbedder
        clouds = self.clouds.detach().requires_grad_(True)
        emb = PointCloudEmbedder.pool(clouds) if pooled else clouds.flatten(1)
        loss = loss_fn(emb, self.labels)
        loss.backward()
        sync(self.device)
        return float(loss.detach())


def settings(device: torch.device, seed: int, head_batches: list[int]):
    yield StandIn(device, batch=30, m=6, seed=seed)
    for batch in head_batches:
        yield Head(device, batch=batch, m=2, seed=seed)


def parse_grid(text: str) -> list[tuple[float, float]]:
    try:
        grid = [(float(b), float(s)) for b, s in (item.split(":") for item in text.split(","))]
    except ValueError as exc:
        raise SystemExit(f"--grid: expected blur:scaling pairs separated by commas, got '{text}'") from exc
    return grid


def ratio(r: float) -> str:
    return f"{r:.1f}" if r < 10 else f"{r:.0f}"


def run(grid, repeats: int, devices, seed: int = 0, head_batches=None, emit=print) -> list[list[str]]:
    """Time every setting x device x grid point; ``emit`` gets each Markdown row as it is measured."""
    rows = []

    def out(cells):
        rows.append(cells)
        emit("| " + " | ".join(cells) + " |")

    for device in devices:
        batches = head_batches if head_batches is not None else ([32, 112] if device.type == "cuda" else [32])
        clock = time.perf_counter if device.type == "cuda" else time.process_time
        for setting in settings(device, seed, batches):
            n, points, dim = setting.shape
            w_pairs = n * (n - 1) // 2
            shape = f"{n} x {points} x {dim}"
            base = [device.type, setting.name, shape]
            _, euclid, semihard = losses(0.1, 0.5, dim)
            _, t_euclid = timed_median(repeats, setting.step, euclid, True, clock=clock)
            _, t_semi = timed_median(repeats, setting.step, semihard, True, clock=clock)
            out(base + ["Euclidean triplet (pooled, all triplets): baseline", "-", "-", "-", "-", "-",
                        f"{t_euclid:.4f}", "1"])
            out(base + ["Triplet row of Table 1 (pooled, semi-hard)", "-", "-", "-", "-", "-", f"{t_semi:.4f}",
                        ratio(t_semi / t_euclid)])
            for blur, scaling in grid:
                w_loss, _, _ = losses(blur, scaling, dim)
                its = sinkhorn_iterations(setting.clouds, blur, scaling)
                err = max_relative_error(setting.clouds, blur, scaling)
                _, t = timed_median(repeats, setting.step, w_loss, False, clock=clock)
                out(base + [f"W-triplet (S_eps, {w_pairs} pairs)", f"{blur:g}", f"{blur ** 2:.4g}", f"{scaling:g}",
                            str(its), f"{100 * err:.1f}%", f"{t:.3f}", ratio(t / t_euclid)])
    return rows


HEADER = ["device", "setting", "images x points x dim", "loss", "blur", "eps = blur^2", "scaling",
          "Sinkhorn iterations", "max rel. error vs exact OT", "s per step (CPU: CPU s)", "x baseline"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default=DEFAULT_GRID, help="blur:scaling pairs, comma-separated")
    parser.add_argument("--repeats", type=int, default=5, help="timings per cell; the median is shown")
    parser.add_argument("--devices", default="auto", help="auto (cpu, and cuda when available) | cpu | cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()

    if args.devices == "auto":
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [torch.device(d) for d in args.devices.split(",")]
    gpu = ", ".join(torch.cuda.get_device_name(d) for d in devices if d.type == "cuda") or "no GPU"
    note = f"{torch.get_num_threads()} torch CPU threads, {gpu}"
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    print(f"# {machine(note)}\n")
    print("\n".join(lines), flush=True)
    t0 = time.perf_counter()

    def emit(line):
        lines.append(line)
        print(line, flush=True)

    run(parse_grid(args.grid), args.repeats, devices, args.seed, emit=emit)
    total = time.perf_counter() - t0
    print(f"\n({total:.0f} s in all)")
    if not args.no_save:
        from dmlrepro.io import write_text
        path = RESULTS / "wasserstein.md"
        old = path.read_text() if path.exists() else ""
        title = (f"W-triplet vs Euclidean triplet, one step (forward + backward), median of {args.repeats} "
                 f"(`bench_wasserstein.py --grid {args.grid}`, {total:.0f} s)")
        write_text(path, old + f"\n## {title}\n\n{machine(note)}\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
