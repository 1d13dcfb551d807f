"""Paper 003's steps: one unsupervised run (Ours, an ablation, a Fig. 3 point, or STML) and Table 2's
supervision quality of the pretrained embeddings.

A run is the shared trainer (:class:`dmlrepro.training.loop.Trainer`) with

* **batches** (:class:`TwoViewBatches`): a nearest-neighbour plan
  (:class:`dmlrepro.training.nn_batches.NeighbourBatches`, rebuilt every epoch) of ``batch_size``
  *images*, N = batch_size / n_per_seed seeds and each seed's n_per_seed − 1 nearest neighbours,
  every image in ``views`` random augmentations (the views concatenated, as STML does). **Labels
  never leave the dataset**: the loader builds batches with ``labels=None`` and the objectives read
  only images and which view belongs to which image (tested);
* **the momentum encoder** as a hook (:class:`dmlrepro.training.momentum.MomentumEncoder`), which
  owns the teacher and checkpoints it; the proxies' QR retraction as a second hook
  (:class:`dmlrepro.training.pl_manifold.ProxyRetraction`);
* **the objective**: :class:`PLManifoldObjective` (Eqs. 6–9 from the teacher's pieces) or
  :class:`STMLObjective` (STML's loss on the student's two heads and the teacher's g head). The
  proxies are the objective's parameters, in their own optimiser group at lr × ``proxy_lr_mult``.

Selection: R@1 on the labelled validation split, images of the *training* classes held out of the
fit rows (never read by the objective, nor by the neighbour search). It is the one place labels are
read during training; the paper, like STML's code, reports the best test epoch instead, which
``test_selected`` records for comparison. Test = the unseen classes (zero-shot).

Neighbour space: Ours embeds the fit rows with the momentum encoder (the paper computes everything
on f_φ); STML with the student's auxiliary head g, un-normalised (its ``NNBatchSampler``). Both on
un-augmented images (the test transform).
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dmlrepro import DmlReproError
from dmlrepro.io import write_json
from dmlrepro.losses.pl_manifold import PLManifoldLoss
from dmlrepro.losses.stml import STMLLoss
from dmlrepro.training.images import ImageBatches, embed_rows, tensor_fast_path
from dmlrepro.training.loop import Batch, Objective, Trainer, run_signature, save_run, seed_everything
from dmlrepro.training.momentum import MomentumEncoder
from dmlrepro.training.nn_batches import NeighbourBatches
from dmlrepro.training.pl_manifold import ProxyRetraction

log = logging.getLogger(__name__)

OBJECTIVES = ("pl_manifold", "stml")


# ------------------------------------------------------------------------------ two views
def random_resized_crops(x: torch.Tensor, scale: tuple[float, float] = (0.16, 1.0),
                         ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """A random resized crop of every image of a normalised batch (b, C, H, W), resampled to (H, W)
    bilinearly: torchvision's ``RandomResizedCrop`` on tensors, batched (the crop stays inside the
    image). Draws from the global torch generator, which the trainer seeds and checkpoints."""
    b = x.shape[0]
    area = torch.empty(b).uniform_(*scale)
    log_r = torch.empty(b).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    w = (area * log_r.exp()).sqrt().clamp(max=1.0)          # crop width / image width
    h = (area / log_r.exp()).sqrt().clamp(max=1.0)
    cx = (torch.rand(b) * 2 - 1) * (1 - w)                  # centre, in [-1, 1] coordinates
    cy = (torch.rand(b) * 2 - 1) * (1 - h)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w, cx, h, cy
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class _Views:
    """A PIL transform applied ``views`` times: (views, C, H, W)."""

    def __init__(self, transform: Callable, views: int):
        self.transform, self.views = transform, int(views)

    def __call__(self, image) -> torch.Tensor:
        return torch.stack([self.transform(image) for _ in range(self.views)])


class TwoViewBatches:
    """``load(planned) -> Batch`` with ``inputs`` (views × b, C, H, W): all first views, then all
    second views; ``labels`` None; ``extras["image_ids"]`` (views × b,) = position of the image in
    the batch. Array-backed datasets at the input size are augmented as tensors
    (:func:`random_resized_crops`, ``crop_scale``); others through ``train_transform`` (PIL)."""

    def __init__(self, index: Any, spec: Any, train_transform: Callable | None, *, views: int = 2,
                 crop_scale: tuple[float, float] = (0.16, 1.0), device: str | torch.device = "cpu",
                 num_workers: int = 0):
        if int(views) < 1:
            raise DmlReproError(f"views={views}: need at least one view per image")
        self.views, self.crop_scale, self.fast = int(views), tuple(crop_scale), train_transform is None
        tf = None if self.fast else _Views(train_transform, self.views)
        self.images = ImageBatches(index, spec, tf, labels=None, device=device, num_workers=num_workers)

    def __call__(self, planned: Sequence[np.ndarray]) -> Iterable[Batch]:
        for batch in self.images(planned):
            x = batch.inputs
            if self.fast:
                x = torch.cat([random_resized_crops(x, self.crop_scale) for _ in range(self.views)])
            else:  # (b, views, C, H, W) -> (views * b, C, H, W), view-major
                x = x.transpose(0, 1).reshape(-1, *x.shape[2:])
            ids = torch.arange(len(batch.index), device=x.device).repeat(self.views)
            yield Batch(x, None, batch.index, {"image_ids": ids})


# ------------------------------------------------------------------------------ objectives
class PLManifoldObjective(Objective):
    """Eqs. 6–9 (:class:`~dmlrepro.losses.pl_manifold.PLManifoldLoss`): the student's embeddings
    of the batch against the momentum encoder's, whose pieces and similarities are the targets.
    The last batch's loss terms are kept in ``last_terms`` (for logs and tests)."""

    def __init__(self, loss: PLManifoldLoss, momentum: MomentumEncoder):
        super().__init__()
        self.loss, self.momentum = loss, momentum            # the hook owns (and checkpoints) the teacher
        self.last_terms: dict[str, float] = {}

    def forward(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        student = model(batch.inputs)
        teacher = self.momentum(batch.inputs)                 # no_grad, eval mode
        terms = self.loss(student, teacher)
        self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        return terms["loss"], student.shape[0]


class STMLObjective(Objective):
    """STML's loss (:class:`~dmlrepro.losses.stml.STMLLoss`): the student's two heads (f, g), the
    teacher's g head, and which rows are views of one image."""

    def __init__(self, loss: STMLLoss, momentum: MomentumEncoder):
        super().__init__()
        self.loss, self.momentum = loss, momentum
        self.last_terms: dict[str, float] = {}

    def forward(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        f, g = model.heads(batch.inputs)
        with torch.no_grad():
            self.momentum.teacher.eval()
            teacher_g = self.momentum.teacher.heads(batch.inputs)[1]
        terms = self.loss(f, g, teacher_g, batch.extras.get("image_ids"))
        self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        return terms["loss"], f.shape[0]


class _AuxHead(nn.Module):
    """The g head of a two-head model as an embedder, for :func:`embed_rows`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.embedding_dim, self.input_spec = model, model.aux_dim, model.input_spec
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.heads(x)[1]


# ------------------------------------------------------------------------------ building a run
def _transforms(spec, index):
    """(train, test) transforms: None, None for array-backed images at the input size (augmented as
    tensors); else STML's (RandomResizedCrop 0.16–1 + flip; Resize + CenterCrop)."""
    from dmlrepro.models.images import build_transforms
    if tensor_fast_path(index, spec):
        return None, None
    return build_transforms(spec, train=True), build_transforms(spec, train=False)


def build_model(model_cfg: dict[str, Any], method_cfg: dict[str, Any], init: str | Path | None) -> nn.Module:
    """The student: the backbone (pretrained from ``init``) with its embedding head; STML's with a
    second head (``aux_dim``) and un-normalised outputs (its ``student_norm 0``)."""
    from dmlrepro.models.images import TwoHeadEmbedder, build_image_embedder
    stml = method_cfg["objective"] == "stml"
    embedder = build_image_embedder(model_cfg["backbone"], embedding_dim=int(model_cfg.get("embedding_dim", 128)),
                                    pretrained=init or False, pooling=model_cfg.get("pooling", "avg"),
                                    freeze_bn=bool(model_cfg.get("freeze_bn", False)),
                                    normalize=not stml or bool(method_cfg.get("normalize_student", False)))
    if stml:
        return TwoHeadEmbedder(embedder, int(method_cfg.get("aux_dim", 1024)))
    return embedder


def build_objective(method_cfg: dict[str, Any], model: nn.Module, train_cfg: dict[str, Any],
                    seed: int) -> tuple[Objective, MomentumEncoder, list]:
    """(objective, momentum encoder hook, extra hooks) of a method spec (:mod:`.methods`)."""
    kind = method_cfg.get("objective")
    if kind not in OBJECTIVES:
        raise DmlReproError(f"method objective '{kind}' is not one of {', '.join(OBJECTIVES)}")
    views = int(train_cfg.get("views", 2))
    momentum = MomentumEncoder(model, float(method_cfg.get("momentum", 0.999)))
    if kind == "stml":
        loss = STMLLoss(sigma=float(method_cfg.get("sigma", 3.0)), delta=float(method_cfg.get("delta", 1.0)),
                        num_neighbors=int(method_cfg.get("num_neighbors", 5)), views=views)
        return STMLObjective(loss, momentum), momentum, []
    k = int(train_cfg.get("n_per_seed", 5))
    # the candidates of each piece: the other embeddings of the point's own seed group (k images x views)
    n_neighbours = method_cfg.get("n_neighbours") or views * k - 1
    loss = PLManifoldLoss(model.embedding_dim, n_proxies=int(method_cfg.get("n_proxies", 100)),
                          m=int(method_cfg.get("m", 3)), n_alpha=float(method_cfg.get("n_alpha", 4.0)),
                          n_beta=float(method_cfg.get("n_beta", 0.5)), delta=float(method_cfg.get("delta", 2.0)),
                          threshold=float(method_cfg.get("threshold", 0.9)), n_neighbours=int(n_neighbours),
                          subset_selection=bool(method_cfg.get("subset_selection", True)),
                          similarity=method_cfg.get("similarity", "manifold"), seed=seed)
    return PLManifoldObjective(loss, momentum), momentum, [ProxyRetraction(loss)]


def _optimizer(train_cfg: dict[str, Any], method_cfg: dict[str, Any], model: nn.Module,
               objective: nn.Module) -> torch.optim.Optimizer:
    """Adam (the paper's), the network at ``lr`` and the objective's parameters (the proxies) at
    ``lr × proxy_lr_mult`` (the paper: × 100)."""
    lr = float(method_cfg.get("lr", train_cfg.get("lr", 5e-4)))
    groups = [{"params": list(model.parameters()), "lr": lr},
              {"params": list(objective.parameters()), "lr": lr * float(method_cfg.get("proxy_lr_mult", 1.0))}]
    groups = [g for g in groups if g["params"]]
    name = str(train_cfg.get("optimizer", "adam")).lower()
    wd = float(train_cfg.get("weight_decay", 0.0))
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)
    raise DmlReproError(f"train.optimizer: unknown optimizer '{name}' (adam | adamw)")


def _subsample(rows: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    if not n or n >= len(rows):
        return np.asarray(rows)
    return np.sort(np.random.default_rng(seed).choice(rows, size=int(n), replace=False))


def train(dataset: str, raw_root: str | Path, split_path: str | Path, run: str, method_cfg: dict[str, Any],
          model_cfg: dict[str, Any], train_cfg: dict[str, Any], init: str | Path | None, seed: int,
          out_dir: str | Path, recall_ks: Sequence[int], device: str = "cpu", after_epoch=None,
          trainer_out: list | None = None) -> dict[str, Any]:
    """One unsupervised run; writes ``model.pt``, ``history.csv`` and ``metrics.json``.

    ``train_cfg``: ``epochs``, ``batch_size`` (images), ``n_per_seed`` (k), ``views``, ``lr``,
    ``fit_subsample`` / ``val_subsample`` (seeded subsets of the fit and validation rows),
    ``crop_scale``, ``eval_every``, ``checkpoint_every``, ``num_workers``, ``amp``."""
    from dmlrepro.evaluation.image_retrieval import evaluate_image_embeddings, recall_at_k
    from dmlrepro.papers.image_foundation.run import load_run_inputs
    seed_everything(seed)
    index, split = load_run_inputs(dataset, raw_root, split_path)
    out_dir = Path(out_dir)
    model = build_model(model_cfg, method_cfg, init)
    spec = model.input_spec
    train_tf, test_tf = _transforms(spec, index)
    objective, momentum, hooks = build_objective(method_cfg, model, train_cfg, seed)
    optimizer = _optimizer(train_cfg, method_cfg, model, objective)
    fit_rows = _subsample(split.fit, train_cfg.get("fit_subsample"), seed)
    val_rows = _subsample(split.val, train_cfg.get("val_subsample"), seed)
    workers = int(train_cfg.get("num_workers", 0))
    stml = method_cfg["objective"] == "stml"

    def neighbour_space(trainer: Trainer) -> np.ndarray:
        net = _AuxHead(model) if stml else momentum.teacher
        return embed_rows(net, index, fit_rows, spec, test_tf, device=device, num_workers=workers)

    batches = NeighbourBatches(neighbour_space, fit_rows, batch_size=int(train_cfg.get("batch_size", 100)),
                               n_per_seed=int(train_cfg.get("n_per_seed", 5)), seed=seed)

    def val_recall1(net):
        emb = embed_rows(net, index, val_rows, spec, test_tf, device=device, num_workers=workers)
        return {"recall@1": recall_at_k(emb, index.labels[val_rows], ks=(1,))[1]}

    def test_recall1(net):  # recorded beside selection, never used for it
        emb = embed_rows(net, index, split.test, spec, test_tf, device=device, num_workers=workers)
        return {"recall@1": recall_at_k(emb, index.labels[split.test], ks=(1,))[1]}

    trainer = Trainer(
        model, objective, optimizer, plan=batches.plan,
        load=TwoViewBatches(index, spec, train_tf, views=int(train_cfg.get("views", 2)),
                            crop_scale=tuple(train_cfg.get("crop_scale", (0.16, 1.0))), device=device,
                            num_workers=workers),
        epochs=int(train_cfg.get("epochs", 5)), checkpoint=out_dir / "checkpoint" / "last.pt",
        signature=run_signature("pl_manifolds", dataset, run, method_cfg, model_cfg,
                                {k: v for k, v in train_cfg.items() if k not in ("device", "monitor_test")}, seed,
                                split.fit.tolist(), split.val.tolist(),
                                hashlib.sha256(Path(init).read_bytes()).hexdigest() if init else None),
        validate=val_recall1, selection_metric="recall@1",
        monitor=test_recall1 if train_cfg.get("monitor_test", True) else None,
        hooks=[momentum, batches, *hooks], eval_every=int(train_cfg.get("eval_every", 1)),
        checkpoint_every=int(train_cfg.get("checkpoint_every", 0)), device=device,
        amp=bool(train_cfg.get("amp", False)), name=f"pl_manifolds {run} seed {seed}")
    if trainer_out is not None:  # tests: see the trainer
        trainer_out.append(trainer)
    result = trainer.fit(after_epoch)
    emb = embed_rows(model, index, split.test, spec, test_tf, device=device, num_workers=workers)
    test = evaluate_image_embeddings(emb, index.labels[split.test], recall_ks=recall_ks,
                                     metrics=("recall", "nmi", "f1", "map_at_r"), seed=seed)
    by_test = [r for r in result.history if "test_recall@1" in r]
    best_test = max(by_test, key=lambda r: r["test_recall@1"]) if by_test else None
    summary = {"dataset": dataset, "method": run, "seed": seed, "embedding_dim": int(model.embedding_dim),
               "best_epoch": result.best_epoch, "val_recall@1": result.best_score, "test": test,
               "test_selected": None if best_test is None else {"epoch": best_test["epoch"],
                                                                "recall@1": best_test["test_recall@1"]},
               "fit_images": len(fit_rows), "val_images": len(val_rows), "method_cfg": method_cfg}
    return save_run(out_dir, {"state_dict": model.state_dict(), "objective": objective.state_dict(),
                                  "model_cfg": model_cfg, "method": run, "method_cfg": method_cfg,
                                  "best_epoch": result.best_epoch}, result.history, summary)


# ------------------------------------------------------------------------------ Table 2
def supervision(dataset: str, raw_root: str | Path, split_path: str | Path, model_cfg: dict[str, Any],
                table2_cfg: dict[str, Any], init: str | Path | None, seed: int, out: str | Path,
                device: str = "cpu") -> dict[str, Any]:
    """Table 2 on the pretrained representation (before any training): the backbone's pooled
    features, L2-normalised (the Initial row's), of a seeded subsample of the test images (the
    unseen classes); :func:`dmlrepro.evaluation.supervision_quality.supervision_quality`."""
    from dmlrepro.evaluation.supervision_quality import supervision_quality
    from dmlrepro.models.images import build_image_embedder
    from dmlrepro.papers.image_foundation.run import load_run_inputs
    seed_everything(seed)
    index, split = load_run_inputs(dataset, raw_root, split_path)
    model = build_image_embedder(model_cfg["backbone"], embedding_dim=None, pretrained=init or False,
                                 pooling=model_cfg.get("pooling", "avg"))
    _, test_tf = _transforms(model.input_spec, index)
    rows = _subsample(split.test, table2_cfg.get("subsample", 2000), seed)
    emb = embed_rows(model, index, rows, model.input_spec, test_tf, device=device, features=True)
    labels = index.labels[rows]
    result = supervision_quality(emb, labels, n_clusters=table2_cfg.get("n_clusters"),
                                 knn=int(table2_cfg.get("knn", 10)), m=int(table2_cfg.get("m", 3)),
                                 threshold=float(table2_cfg.get("threshold", 0.9)),
                                 n_neighbours=int(table2_cfg.get("n_neighbours", 9)),
                                 n_alpha=float(table2_cfg.get("n_alpha", 4.0)),
                                 n_beta=float(table2_cfg.get("n_beta", 0.5)), seed=seed)
    summary = {"dataset": dataset, "seed": seed, "images": len(rows), "classes": int(len(np.unique(labels))),
               "settings": table2_cfg, "rows": result}
    write_json(out, summary)
    return summary
