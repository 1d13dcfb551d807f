"""One Table 1 run of paper 002 (any of its ten rows, or W-triplet + WCRAIG) through the shared trainer.

Splits and the pretrained stand-in backbone are the image foundation's (``image-split``,
``image-pretrain``). Every row trains the same network, a
:class:`~dmlrepro.models.images.PointCloudEmbedder` (an image = the unit-norm projected cells of a
feature map); only the loss differs:

* a **W-row** (``distance: sinkhorn``) hands the flattened clouds to its loss, whose distance is
  the debiased Sinkhorn divergence (:class:`~dmlrepro.distances.sinkhorn_divergence.SinkhornDivergenceDistance`);
* a **Euclidean row** hands the pooled embedding (the normalised mean point) to its PML loss.

So on a given backbone the two families differ by the distance alone.

**Evaluation** (all rows, the same): R@K, NMI, F1, MAP@R and Roth's mAP@1000 (``k`` = the
references per query when fewer, recorded as ``map_k``) of the pooled embedding on the test classes (``evaluation/image_retrieval.py``, faiss). Exact kNN by Sinkhorn
divergence over a test set is n² divergences (5,000 images: 12.5 M problems), too slow on a CPU, so
for the W-rows the pooled embedding's top-``k`` neighbours of a seeded subset of queries are
re-ranked by the divergence between their clouds (``sd_rerank``), recorded beside the pooled R@1 of
the same queries (``test_sd_rerank`` in ``metrics.json``).

**Selection**: validation R@1 (pooled) every ``eval_every`` epochs; the test R@1 of every epoch is
recorded beside it, never used.

**WCRAIG** (:class:`WCraigHook`): before each epoch (every ``every`` epochs) the fit images' clouds
are computed in eval mode, and :func:`~dmlrepro.miners.coreset.wasserstein_coreset` selects
``fraction`` of each class by facility location on 1/SD (same Sinkhorn options as the loss). The
epoch's batches are m images of each of ``batch_size / m`` classes, drawn from the coreset without
replacement with probability proportional to the CRAIG weights (the cluster sizes): in expectation
a per-image loss then sums to CRAIG's weighted gradient. With ``scale_iterations`` the epoch takes
``fraction × iterations`` batches. The selection's time is counted in the run's training time.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dmlrepro import DmlReproError
from dmlrepro.papers.image_foundation.run import load_run_inputs
from dmlrepro.training import components
from dmlrepro.training.images import (ImageBatches, MetricLossObjective, embed_rows, m_per_class_plan,
                                      tensor_fast_path, weighted_m_per_class_plan)
from dmlrepro.training.loop import Hook, Trainer, run_signature, save_run, seed_everything

from .methods import is_wasserstein

log = logging.getLogger(__name__)

METRICS = ("recall", "nmi", "f1", "map_at_r", "map_at_1000")
SINKHORN_KEYS = ("blur", "p", "scaling", "max_pairs")


# ------------------------------------------------------------------------------ pieces
def build_model(model_cfg: dict[str, Any], init: str | Path | None):
    from dmlrepro.models.images import build_cloud_embedder
    return build_cloud_embedder(model_cfg["backbone"], embedding_dim=int(model_cfg.get("embedding_dim", 128)),
                                cloud_layer=model_cfg.get("cloud_layer"), pretrained=init or False,
                                freeze_bn=bool(model_cfg.get("freeze_bn", False)))


def sinkhorn_options(cfg: dict[str, Any] | None) -> dict[str, Any]:
    cfg = dict(cfg or {})
    unknown = set(cfg) - set(SINKHORN_KEYS)
    if unknown:
        raise DmlReproError(f"sinkhorn: unknown option(s) {sorted(unknown)} (known: {', '.join(SINKHORN_KEYS)})")
    return cfg


def build_objective(method_cfg: dict[str, Any], point_dim: int, n_classes: int, sinkhorn: dict[str, Any]):
    """The row's loss and miner; W-rows get the Sinkhorn distance on clouds of ``point_dim``, the
    histogram rows the histogram reading on the ``point_dim``-dimensional pooled embedding."""
    loss_spec, miner_spec = dict(method_cfg["loss"]), method_cfg.get("miner")
    if method_cfg.get("distance") is not None:
        if "distance" in loss_spec:
            raise DmlReproError("a W-row's loss takes the Sinkhorn distance; remove its own 'distance'")
        if is_wasserstein(method_cfg):
            from dmlrepro.distances.sinkhorn_divergence import SinkhornDivergenceDistance
            loss_spec["distance"] = SinkhornDivergenceDistance(point_dim, **sinkhorn)
        else:  # the histogram reading, on the pooled embedding (point_dim = its dimension)
            from dmlrepro.distances.histogram_sinkhorn import HistogramSinkhornDistance
            loss_spec["distance"] = HistogramSinkhornDistance(point_dim, **sinkhorn)
        if miner_spec is not None:
            miner_spec = {"name": miner_spec} if isinstance(miner_spec, str) else dict(miner_spec)
            miner_spec["distance"] = loss_spec["distance"]
    loss = components.build("losses", loss_spec, num_classes=n_classes, embedding_size=point_dim)
    miner = components.build("miners", miner_spec)
    return MetricLossObjective(loss, miner)


class WCraigHook(Hook):
    """WCRAIG's per-epoch coreset of the fit images (module docstring). State: the coreset of the
    epoch it was computed for, so a run resumed inside an epoch plans the same batches."""

    def __init__(self, model, index, rows: np.ndarray, labels: np.ndarray, spec, *, fraction: float, every: int,
                 sinkhorn: dict[str, Any], device):
        if not 0 < float(fraction) <= 1:
            raise DmlReproError(f"coreset.fraction must be in (0, 1], got {fraction}")
        self.model, self.index, self.spec, self.device = model, index, spec, device
        self.rows, self.labels = np.asarray(rows), np.asarray(labels)
        self.fraction, self.every, self.sinkhorn = float(fraction), max(1, int(every)), sinkhorn
        self.epoch: int | None = None
        self.selected: np.ndarray | None = None
        self.weights: np.ndarray | None = None
        self.seconds = 0.0
        self.sizes: list[int] = []

    def on_epoch_start(self, trainer, epoch: int) -> None:
        if self.epoch == epoch or (self.selected is not None and (epoch - 1) % self.every):
            return
        from dmlrepro.miners.coreset import wasserstein_coreset
        t0 = time.perf_counter()
        flat = embed_rows(self.model, self.index, self.rows, self.spec, device=self.device)
        clouds = torch.from_numpy(flat).reshape(len(flat), -1, self.model.point_dim)
        core = wasserstein_coreset(clouds, self.fraction, labels=self.labels, **self.sinkhorn)
        self.selected, self.weights = self.rows[core.indices], core.weights.astype(np.float64)
        self.epoch = epoch
        self.seconds += time.perf_counter() - t0
        self.sizes.append(len(core.indices))
        log.info("WCRAIG epoch %d: %d of %d images (%.1fs)", epoch, len(core.indices), len(self.rows),
                 time.perf_counter() - t0)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "selected": self.selected, "weights": self.weights, "seconds": self.seconds,
                "sizes": list(self.sizes)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch, self.selected, self.weights = state["epoch"], state["selected"], state["weights"]
        self.seconds, self.sizes = float(state["seconds"]), list(state["sizes"])


def fit_rows(split, labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    """The fit rows a run trains on: all, or ``per_class`` of each class (seeded, sorted)."""
    if not per_class:
        return split.fit
    gen = np.random.default_rng([int(seed), 2])
    keep = []
    for c in np.unique(labels[split.fit]):
        members = split.fit[labels[split.fit] == c]
        keep.append(gen.choice(members, size=min(len(members), int(per_class)), replace=False))
    return np.sort(np.concatenate(keep))


# ------------------------------------------------------------------------------ evaluation
def sd_rerank(model, index, rows: np.ndarray, pooled: np.ndarray, *, queries: int, k: int, seed: int,
              sinkhorn: dict[str, Any], device="cpu") -> dict[str, float]:
    """R@1 of ``queries`` seeded test queries when the pooled embedding's top-``k`` neighbours
    (leave-one-out) are re-ranked by the Sinkhorn divergence of their clouds, beside the pooled R@1
    of the same queries and the pooled R@k (the ceiling of the re-ranking)."""
    from dmlrepro.distances.sinkhorn_divergence import paired_sinkhorn_divergence
    from dmlrepro.evaluation.image_retrieval import knn_search
    labels = index.labels[rows]
    chosen = np.sort(np.random.default_rng([int(seed), 3]).choice(len(rows), size=min(int(queries), len(rows)),
                                                                  replace=False))
    _, nn_idx = knn_search(pooled, None, int(k), exclude_self=True)
    nn_idx = nn_idx[chosen]
    needed = np.unique(np.concatenate([chosen, nn_idx.ravel()]))
    flat = embed_rows(model, index, rows[needed], model.input_spec, device=device)
    clouds = torch.from_numpy(flat).reshape(len(flat), -1, model.point_dim)
    pos = {r: i for i, r in enumerate(needed)}
    qi = torch.as_tensor([pos[q] for q in chosen for _ in range(nn_idx.shape[1])])
    ni = torch.as_tensor([pos[n] for n in nn_idx.ravel()])
    with torch.no_grad():
        sd = paired_sinkhorn_divergence(clouds[qi], clouds[ni], **sinkhorn).reshape(nn_idx.shape).numpy()
    best = nn_idx[np.arange(len(chosen)), sd.argmin(1)]
    hit = labels[nn_idx] == labels[chosen][:, None]
    return {"queries": int(len(chosen)), "k": int(k), "recall@1_pooled": float(hit[:, 0].mean()),
            "recall@1_sd": float((labels[best] == labels[chosen]).mean()),
            f"recall@{int(k)}_pooled": float(hit.any(1).mean())}


# ------------------------------------------------------------------------------ one run
def train(dataset: str, raw_root: str | Path, split_path: str | Path, method: str, method_cfg: dict[str, Any],
          model_cfg: dict[str, Any], train_cfg: dict[str, Any], init: str | Path | None, seed: int,
          out_dir: str | Path, recall_ks: Sequence[int], *, sinkhorn: dict[str, Any] | None = None,
          evaluation: dict[str, Any] | None = None, device: str = "cpu", after_epoch=None) -> dict[str, Any]:
    """One run; writes ``model.pt``, ``history.csv`` and ``metrics.json`` in ``out_dir``."""
    from dmlrepro.evaluation.image_retrieval import evaluate_image_embeddings, recall_at_k
    from dmlrepro.models.images import PooledView
    t_start = time.perf_counter()
    seed_everything(seed)
    sinkhorn = sinkhorn_options(sinkhorn)
    evaluation = dict(evaluation or {})
    index, split = load_run_inputs(dataset, raw_root, split_path)
    out_dir = Path(out_dir)
    net = build_model(model_cfg, init)
    if not tensor_fast_path(index, net.input_spec) or train_cfg.get("augment", False):
        from dmlrepro.models.images import build_transforms
        train_tf = build_transforms(net.input_spec, train=bool(train_cfg.get("augment", False)))
        test_tf = build_transforms(net.input_spec, train=False)
    else:
        train_tf = test_tf = None
    wasserstein = is_wasserstein(method_cfg)
    pooled_net = PooledView(net)
    model = net if wasserstein else pooled_net
    rows = fit_rows(split, index.labels, train_cfg.get("fit_per_class"), seed)
    fit_labels = index.labels[rows]
    objective = build_objective(method_cfg, net.point_dim, len(np.unique(fit_labels)), sinkhorn)
    lr = float(train_cfg.get("lr", 1e-4))
    loss_lr = float(method_cfg.get("loss_lr", lr * float(method_cfg.get("loss_lr_mult", 1.0))))
    groups = [{"params": list(net.parameters()), "lr": lr}, {"params": list(objective.parameters()), "lr": loss_lr}]
    optimizer = torch.optim.Adam([g for g in groups if g["params"]], lr=lr,
                                 weight_decay=float(train_cfg.get("weight_decay", 0.0)))
    m, batch_size = int(train_cfg.get("m", 2)), int(train_cfg.get("batch_size", 112))
    iterations = int(train_cfg.get("iterations", 100))
    spec = net.input_spec

    hooks: list[Hook] = []
    coreset = method_cfg.get("coreset")
    if coreset:
        if not wasserstein:
            raise DmlReproError(f"method {method}: WCRAIG needs the Sinkhorn distance (distance: sinkhorn)")
        hook = WCraigHook(net, index, rows, fit_labels, spec, fraction=float(coreset["fraction"]),
                          every=int(coreset.get("every", 1)), sinkhorn=sinkhorn, device=device)
        hooks.append(hook)
        core_iterations = (max(1, round(float(coreset["fraction"]) * iterations))
                           if coreset.get("scale_iterations", True) else iterations)

        def plan(e):
            try:
                return weighted_m_per_class_plan(hook.selected, index.labels[hook.selected], hook.weights, m=m,
                                                 batch_size=batch_size, iterations=core_iterations, seed=seed,
                                                 epoch=e)
            except DmlReproError as exc:
                raise DmlReproError(f"method {method}: coreset.fraction {coreset['fraction']}: {exc}") from exc
    else:
        def plan(e):
            return m_per_class_plan(rows, fit_labels, m=m, batch_size=batch_size, iterations=iterations, seed=seed,
                                    epoch=e, where=f"{dataset} fit rows")

    def val_recall1(_model):
        emb = embed_rows(pooled_net, index, split.val, spec, test_tf, device=device)
        return {"recall@1": recall_at_k(emb, index.labels[split.val], ks=(1,))[1]}

    def test_recall1(_model):  # recorded beside selection, never used for it
        emb = embed_rows(pooled_net, index, split.test, spec, test_tf, device=device)
        return {"recall@1": recall_at_k(emb, index.labels[split.test], ks=(1,))[1]}

    trainer = Trainer(
        model, objective, optimizer, plan=plan,
        load=ImageBatches(index, spec, train_tf, labels=index.labels, device=device,
                          num_workers=int(train_cfg.get("num_workers", 0))),
        epochs=int(train_cfg.get("epochs", 5)), checkpoint=out_dir / "checkpoint" / "last.pt",
        signature=run_signature("wasserstein", dataset, method, method_cfg, model_cfg, sinkhorn,
                                {k: v for k, v in train_cfg.items() if k not in ("device", "num_workers", "monitor_test")}, seed,
                                rows.tolist(), split.val.tolist(),
                                hashlib.sha256(Path(init).read_bytes()).hexdigest() if init else None),
        validate=val_recall1, selection_metric="recall@1",
        monitor=test_recall1 if train_cfg.get("monitor_test", True) else None, hooks=hooks,
        eval_every=int(train_cfg.get("eval_every", 1)), checkpoint_every=int(train_cfg.get("checkpoint_every", 0)),
        device=device, amp=bool(train_cfg.get("amp", False)), name=f"{method} seed {seed}")
    cpu0 = time.process_time()
    result = trainer.fit(after_epoch)
    train_seconds = float(sum(r["seconds"] for r in result.history))
    # CPU time of this process's training (selection and validation included): comparable across runs
    # on a loaded machine, where wall time is not (meaningful on a CPU-only run)
    train_cpu_seconds = time.process_time() - cpu0

    test_rows = split.test
    pooled = embed_rows(pooled_net, index, test_rows, spec, test_tf, device=device)
    # Roth's mAP@1000; k = the references per query where a (tiny) test set has fewer
    map_k = min(1000, len(test_rows) - 1)
    metrics = evaluate_image_embeddings(pooled, index.labels[test_rows], recall_ks=recall_ks,
                                        metrics=METRICS[:-1] + (f"map_at_{map_k}",), seed=seed)
    metrics["map_at_1000"] = metrics.pop(f"map_at_{map_k}")
    rerank = None
    rr = evaluation.get("sd_rerank")
    if wasserstein and rr:
        rerank = sd_rerank(net, index, test_rows, pooled, queries=int(rr["queries"]), k=int(rr["k"]), seed=seed,
                           sinkhorn=sinkhorn, device=device)
    with torch.no_grad():
        n_points = int(net.clouds(torch.zeros(1, spec.channels, spec.size, spec.size, device=device)).shape[1])
    by_test = [r for r in result.history if "test_recall@1" in r]
    best_test = max(by_test, key=lambda r: r["test_recall@1"]) if by_test else None
    summary = {"dataset": dataset, "method": method, "seed": seed, "wasserstein": wasserstein,
               "best_epoch": result.best_epoch, "val_recall@1": result.best_score, "retrieval": "pooled",
               "test": metrics, "map_k": map_k, "test_sd_rerank": rerank,
               "test_selected": None if best_test is None else {"epoch": best_test["epoch"],
                                                                "recall@1": best_test["test_recall@1"]},
               "fit_images": int(len(rows)), "n_points": n_points, "train_seconds": round(train_seconds, 3),
               "train_cpu_seconds": round(train_cpu_seconds, 3),
               "batches_per_epoch": core_iterations if coreset else iterations,
               "coreset": None if not coreset else {"fraction": float(coreset["fraction"]),
                                                    "selection_seconds": round(hooks[0].seconds, 3),
                                                    "sizes": hooks[0].sizes},
               "run_seconds": round(time.perf_counter() - t_start, 3)}
    return save_run(out_dir, {"state_dict": net.state_dict(), "model_cfg": model_cfg, "method": method,
                                  "best_epoch": result.best_epoch}, result.history, summary)
