"""The stand-in's steps: split, supervised pretraining, metric-learning runs, the Initial row.

Every step writes its outputs atomically; training steps checkpoint every epoch and resume.
Selection reads the validation split only (R@1 of validation images among themselves, a part of
the training classes' images held out by the split). The test metrics of every epoch are recorded
beside it, to show what picking the best epoch on test, as the public anchors do, would report.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dmlrepro import DmlReproError
from dmlrepro.io import atomic_path, write_json
from dmlrepro.training import components
from dmlrepro.training.images import (ImageBatches, MetricLossObjective, SoftmaxObjective, embed_rows,
                                      m_per_class_plan, shuffled_plan, tensor_fast_path)
from dmlrepro.training.loop import Trainer, run_signature, save_run, seed_everything

log = logging.getLogger(__name__)



def _transforms(model, index, augment: bool):
    """None where rows can be normalised as tensors (the small nets on MNIST-sized arrays)."""
    from dmlrepro.models.images import build_transforms
    spec = model.input_spec
    if tensor_fast_path(index, spec) and not augment:
        return None, None
    return build_transforms(spec, train=augment), build_transforms(spec, train=False)


def _optimizer(name: str, groups: list[dict[str, Any]], params: dict[str, Any]) -> torch.optim.Optimizer:
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}.get(name.lower())
    if cls is None:
        raise DmlReproError(f"train.optimizer: unknown optimizer '{name}' (adam | adamw | sgd)")
    return cls([g for g in groups if g["params"]], **params)


def make_splits(dataset: str, raw_root: str | Path, protocol: dict[str, Any], seeds: Sequence[int],
                outputs: Sequence[str | Path]) -> None:
    from dmlrepro.data.images import load_image_dataset, make_image_split
    index = load_image_dataset(dataset, raw_root)
    for seed, out in zip(seeds, outputs):
        split = make_image_split(index, protocol=protocol.get("protocol", "zero_shot"),
                                 val_fraction=float(protocol.get("val_fraction", 0.15)),
                                 val_by=protocol.get("val_by", "classes"), seed=int(seed),
                                 train_classes=protocol.get("train_classes"), test_classes=protocol.get("test_classes"))
        split.save(out)
        log.info("%s seed %d: %d fit, %d val, %d test images -> %s", dataset, seed, len(split.fit), len(split.val),
                 len(split.test), out)


def pretrain(dataset: str, raw_root: str | Path, cfg: dict[str, Any], out: str | Path, *, seed: int = 0,
             device: str = "cpu") -> None:
    """Supervised softmax pretraining of a backbone on every training image of ``dataset``."""
    from dmlrepro.data.images import load_image_dataset
    from dmlrepro.models.images import build_image_embedder
    seed_everything(seed)
    index = load_image_dataset(dataset, raw_root)
    rows = index.rows("train")
    classes, labels = np.unique(index.labels, return_inverse=True)
    model = build_image_embedder(cfg["backbone"], embedding_dim=None, pretrained=False)
    train_tf, _ = _transforms(model, index, bool(cfg.get("augment", False)))
    objective = SoftmaxObjective(model.feature_dim, len(classes))
    optimizer = _optimizer(cfg.get("optimizer", "adam"), [{"params": list(model.parameters()) + list(objective.parameters())}],
                           {"lr": float(cfg.get("lr", 1e-3))})
    out = Path(out)
    batch_size, iterations = int(cfg.get("batch_size", 256)), cfg.get("iterations")
    trainer = Trainer(model, objective, optimizer,
                      plan=lambda e: shuffled_plan(rows, batch_size=batch_size, seed=seed, epoch=e, iterations=iterations),
                      load=ImageBatches(index, model.input_spec, train_tf, labels=labels, device=device),
                      epochs=int(cfg.get("epochs", 1)), checkpoint=out.parent / f".{out.stem}.checkpoint.pt",
                      signature=run_signature("pretrain", dataset, cfg, seed), device=device, name=f"pretrain {dataset}")
    trainer.fit()
    with atomic_path(out, suffix=".pt") as tmp:
        # the backbone alone: runs put their own embedding head on it
        torch.save({"state_dict": {k: v.cpu() for k, v in model.backbone.state_dict().items()}, "backbone": cfg["backbone"],
                    "pretrained_on": dataset, "classes": classes.tolist(), "history": trainer.history}, tmp)


def load_run_inputs(dataset: str, raw_root: str | Path, split_path: str | Path):
    from dmlrepro.data.images import ImageSplit, load_image_dataset
    return load_image_dataset(dataset, raw_root), ImageSplit.load(split_path)


def _test_embeddings(model, index, split, spec, tf, device, features: bool = False):
    """(query embeddings, query labels, gallery embeddings or None, gallery labels or None) of the
    test part: leave-one-out inside it, or query -> gallery where the dataset has both (In-shop)."""
    def emb(rows):
        e = embed_rows(model, index, rows, spec, tf, device=device, features=features)
        # the pretrained representation: pooled features, L2-normalised as embeddings are
        return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12) if features else e
    if split.query is not None and split.gallery is not None and len(split.query):
        return emb(split.query), index.labels[split.query], emb(split.gallery), index.labels[split.gallery]
    return emb(split.test), index.labels[split.test], None, None


def _metrics(model, index, split, spec, tf, recall_ks, seed, device, features: bool = False) -> dict[str, float]:
    from dmlrepro.evaluation.image_retrieval import evaluate_image_embeddings
    q, ql, g, gl = _test_embeddings(model, index, split, spec, tf, device, features)
    return evaluate_image_embeddings(q, ql, g, gl, recall_ks=recall_ks, metrics=("recall", "nmi", "f1", "map_at_r"),
                                     seed=seed)


def train(dataset: str, raw_root: str | Path, split_path: str | Path, method: str, method_cfg: dict[str, Any],
          model_cfg: dict[str, Any], train_cfg: dict[str, Any], init: str | Path | None, seed: int,
          out_dir: str | Path, recall_ks: Sequence[int], device: str = "cpu",
          after_epoch=None) -> dict[str, Any]:
    """One metric-learning run; writes ``model.pt``, ``history.csv`` and ``metrics.json``."""
    from dmlrepro.evaluation.image_retrieval import recall_at_k
    from dmlrepro.models.images import build_image_embedder
    seed_everything(seed)
    index, split = load_run_inputs(dataset, raw_root, split_path)
    out_dir = Path(out_dir)
    model = build_image_embedder(model_cfg["backbone"], embedding_dim=int(model_cfg.get("embedding_dim", 128)),
                                 pretrained=init or False, pooling=model_cfg.get("pooling", "avg"),
                                 freeze_bn=bool(model_cfg.get("freeze_bn", False)))
    train_tf, test_tf = _transforms(model, index, bool(train_cfg.get("augment", False)))
    fit_labels = index.labels[split.fit]
    n_classes = len(np.unique(fit_labels))
    loss = components.build("losses", method_cfg["loss"], num_classes=n_classes, embedding_size=model.embedding_dim)
    miner = components.build("miners", method_cfg.get("miner"))
    objective = MetricLossObjective(loss, miner)
    lr = float(train_cfg.get("lr", 1e-4))
    optimizer = _optimizer(train_cfg.get("optimizer", "adam"),
                           [{"params": list(model.parameters()), "lr": lr},
                            {"params": list(objective.parameters()), "lr": lr * float(method_cfg.get("loss_lr_mult", 1.0))}],
                           {"lr": lr, "weight_decay": float(train_cfg.get("weight_decay", 0.0))})
    m, batch_size = int(train_cfg.get("m", 4)), int(train_cfg.get("batch_size", 64))
    iterations = int(train_cfg.get("iterations", 100))
    spec = model.input_spec

    def val_recall1(net):
        emb = embed_rows(net, index, split.val, spec, test_tf, device=device)
        return {"recall@1": recall_at_k(emb, index.labels[split.val], ks=(1,))[1]}

    def test_recall1(net):  # recorded beside selection, never used for it
        return {"recall@1": recall_at_k(*_test_embeddings(net, index, split, spec, test_tf, device), ks=(1,))[1]}

    trainer = Trainer(
        model, objective, optimizer,
        plan=lambda e: m_per_class_plan(split.fit, fit_labels, m=m, batch_size=batch_size, iterations=iterations,
                                        seed=seed, epoch=e, where=f"{dataset} fit split"),
        load=ImageBatches(index, spec, train_tf, labels=index.labels, device=device,
                          num_workers=int(train_cfg.get("num_workers", 0))),
        epochs=int(train_cfg.get("epochs", 5)), checkpoint=out_dir / "checkpoint" / "last.pt",
        signature=run_signature(dataset, method, method_cfg, model_cfg,
                                {k: v for k, v in train_cfg.items() if k not in ("device", "monitor_test")},
                             seed, split.fit.tolist(), split.val.tolist(),
                             hashlib.sha256(Path(init).read_bytes()).hexdigest() if init else None),
        validate=val_recall1, selection_metric="recall@1",
        monitor=test_recall1 if train_cfg.get("monitor_test", True) else None,
        eval_every=int(train_cfg.get("eval_every", 1)), checkpoint_every=int(train_cfg.get("checkpoint_every", 0)),
        device=device, amp=bool(train_cfg.get("amp", False)), name=f"{method} seed {seed}")
    result = trainer.fit(after_epoch)
    metrics = _metrics(model, index, split, spec, test_tf, recall_ks, seed, device)
    by_test = [r for r in result.history if "test_recall@1" in r]
    best_test = max(by_test, key=lambda r: r["test_recall@1"]) if by_test else None
    summary = {"dataset": dataset, "method": method, "seed": seed, "best_epoch": result.best_epoch,
               "val_recall@1": result.best_score, "test": metrics,
               "test_selected": None if best_test is None else {"epoch": best_test["epoch"],
                                                                "recall@1": best_test["test_recall@1"]}}
    return save_run(out_dir, {"state_dict": model.state_dict(), "model_cfg": model_cfg, "method": method,
                                  "best_epoch": result.best_epoch}, result.history, summary)


def initial(dataset: str, raw_root: str | Path, split_path: str | Path, model_cfg: dict[str, Any],
            init: str | Path | None, seed: int, out: str | Path, recall_ks: Sequence[int], device: str = "cpu") -> None:
    """The "Initial" row: the pretrained backbone's pooled features, before any metric learning."""
    from dmlrepro.models.images import build_image_embedder
    index, split = load_run_inputs(dataset, raw_root, split_path)
    model = build_image_embedder(model_cfg["backbone"], embedding_dim=None, pretrained=init or False,
                                 pooling=model_cfg.get("pooling", "avg"))
    _, test_tf = _transforms(model, index, False)
    metrics = _metrics(model, index, split, model.input_spec, test_tf, recall_ks, seed, device, features=True)
    write_json(out, {"dataset": dataset, "method": "initial", "seed": seed, "best_epoch": 0, "val_recall@1": None,
                     "test": metrics, "test_selected": None})
