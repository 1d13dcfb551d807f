"""Diagnosis of SSDML's Algorithm 1 on MNIST: triplet purity, the scale of Eq. 3 under L, the gradient
the network receives, and short training runs with one knob changed at a time.

    PYTHONPATH=src python benchmarks/diag_ssdml_training.py --raw-root resources/images \
        --split results/ssdml/mnist/splits/seed1.json --seed 1 probe
    ... train --epochs 3 --variant sum_lr1e-4 ...

The hidden labels of the unlabelled images are read here ONLY to measure the purity of the mined
triplets (positive of the anchor's class, negative not); training never sees them.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from dmlrepro.evaluation.image_retrieval import evaluate_image_embeddings
from dmlrepro.losses.ssdml import ssdml_triplet_margins
from dmlrepro.losses.stiefel_metric import run_metric_step
from dmlrepro.miners.affinity_propagation import knn_neighbours
from dmlrepro.papers.image_foundation.run import load_run_inputs
from dmlrepro.papers.ssdml.algorithm import SSDMLAlgorithm, draw_partition
from dmlrepro.papers.ssdml.run import _build_model
from dmlrepro.training.images import embed_rows
from dmlrepro.training.loop import seed_everything


def purity(triplets: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    a, p, n = (labels[triplets[:, i]] for i in range(3))
    return {"pos_same": float((a == p).mean()), "neg_diff": float((a != n).mean()),
            "both": float(((a == p) & (a != n)).mean())}


def neighbour_purity(features: np.ndarray, labels: np.ndarray, k: int) -> dict[str, float]:
    nb = knn_neighbours(features, k)
    same = labels[nb] == labels[:, None]
    half = k // 2
    by_distance = {"pos_same": float(same[:, :half].mean()), "neg_diff": float((~same[:, half:]).mean())}
    return {"knn_same": float(same.mean()), "by_distance": by_distance}


def probe(args) -> None:
    seed_everything(args.seed)
    index, split = load_run_inputs("mnist", args.raw_root, args.split)
    model = _build_model({"backbone": "lenet_ssdml"})
    alg = SSDMLAlgorithm(index, model.input_spec, split.fit, index.labels[split.fit], seed=args.seed,
                         partition_size=args.partition_size, epochs_per_partition=1)
    alg.step.orthogonal = True
    alg.on_fit_start(type("T", (), {"model": model})())
    alg._open_partition(model, 0)
    labels = np.asarray(index.labels)[alg.partition]
    feats = embed_rows(model, index, alg.partition, model.input_spec)
    out = {"n": len(alg.partition), "triplets": len(alg.triplets),
           "affinity": purity(alg.triplets, labels), **neighbour_purity(feats, labels, alg.k)}
    nl = len(alg.labelled)
    lab = alg.triplets[:, 0] < nl
    out["affinity_labelled_anchors"] = purity(alg.triplets[lab], labels)
    out["affinity_unlabelled_anchors"] = purity(alg.triplets[~lab], labels)
    # Eq. 3 on one batch of 100 triplets: the margins under L0 (orthonormal) and after one metric step
    rng = np.random.default_rng(0)
    batch = alg.triplets[rng.choice(len(alg.triplets), 100, replace=False)]
    z = torch.from_numpy(feats).double()
    L0 = alg.L.clone()
    scale = {}
    for name, orth in (("stiefel", True), ("euclidean", False)):
        L, res = run_metric_step(L0, z, batch, 40.0, 10, orth)
        m0 = ssdml_triplet_margins(z, batch, L0, 40.0)
        m1 = ssdml_triplet_margins(z, batch, L, 40.0)
        # the gradient the network would get: d loss / d z under L (batch sum), its norm
        zz = z.clone().requires_grad_(True)
        loss = torch.nn.functional.softplus(ssdml_triplet_margins(zz, batch, L, 40.0)).sum()
        loss.backward()
        scale[name] = {"L_fro": float(L.norm()), "L_sv_max": float(torch.linalg.svdvals(L)[0]),
                       "cost_before": float(torch.nn.functional.softplus(m0).sum()),
                       "cost_after": float(loss), "mean_m_before": float(m0.mean()),
                       "mean_m_after": float(m1.mean()), "frac_m_pos_after": float((m1 > 0).float().mean()),
                       "grad_z_norm": float(zz.grad.norm())}
    out["metric_step_on_one_batch"] = scale
    print(json.dumps(out, indent=1))


def train(args) -> None:
    """A short Algorithm-1 run with the given knobs; prints test metrics (a seeded 3,000-image test
    subset, diagnosis only) and the purity of each partition's triplets."""
    from dmlrepro.losses.ssml_baselines import SSDMLStep
    from dmlrepro.papers.ssdml.algorithm import SSDMLObjective, TripletBatches
    from dmlrepro.papers.ssdml.run import _optimizer
    import tempfile

    from dmlrepro.training.loop import Hook, Trainer

    seed_everything(args.seed)
    index, split = load_run_inputs("mnist", args.raw_root, args.split)
    model = _build_model({"backbone": "lenet_ssdml"})
    step = SSDMLStep(alpha_deg=args.alpha, max_iter=args.max_iter, orthogonal=not args.no_orth)
    alg = SSDMLAlgorithm(index, model.input_spec, split.fit, index.labels[split.fit], seed=args.seed,
                         partition_size=args.partition_size, epochs_per_partition=args.epochs_per_partition,
                         metric_step=step, metric_every=args.metric_every)
    objective = SSDMLObjective(alg, alpha_deg=args.alpha)
    if args.reduction == "mean":
        from pytorch_metric_learning.reducers import MeanReducer
        objective.loss.reducer = MeanReducer()
    opt = _optimizer({"lr": args.lr, "momentum": args.momentum}, model.parameters())
    test = np.sort(np.random.default_rng(0).choice(split.test, 3000, replace=False))

    def report(tag):
        z = embed_rows(model, index, test, model.input_spec)
        m = evaluate_image_embeddings(z, index.labels[test], recall_ks=(1,), metrics=("recall", "nmi"), seed=0)
        zl = z @ alg.L.numpy().astype(z.dtype)
        ml = evaluate_image_embeddings(zl, index.labels[test], recall_ks=(1,), metrics=("recall", "nmi"), seed=0)
        pur = purity(alg.triplets, np.asarray(index.labels)[alg.partition]) if len(alg.triplets) else None
        print(json.dumps({"at": tag, "before_L": m, "after_L": ml, "purity": pur,
                          "L_fro": float(alg.L.norm())}), flush=True)

    class Probe(Hook):
        def on_epoch_end(self, t, e):
            report(f"epoch {e}")

    alg.on_fit_start(type("T", (), {"model": model})())
    report("init")
    tmp = tempfile.mkdtemp()
    t0 = time.perf_counter()
    Trainer(model, objective, opt, plan=alg.plan, load=TripletBatches(alg), epochs=args.epochs,
            checkpoint=f"{tmp}/last.pt", signature=args.variant, hooks=[alg, Probe()], progress=False, name=args.variant).fit()
    print(json.dumps({"variant": args.variant, "seconds": time.perf_counter() - t0}))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["probe", "train"])
    p.add_argument("--raw-root", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--partition-size", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--epochs-per-partition", type=int, default=1)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--alpha", type=float, default=40.0)
    p.add_argument("--max-iter", type=int, default=10)
    p.add_argument("--metric-every", type=int, default=1)
    p.add_argument("--reduction", default="sum")
    p.add_argument("--no-orth", action="store_true")
    p.add_argument("--variant", default="default")
    args = p.parse_args()
    probe(args) if args.what == "probe" else train(args)


if __name__ == "__main__":
    main()
