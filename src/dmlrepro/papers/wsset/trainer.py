"""WSSET's set-embedding runs on the generic trainer; the loss (and its miner) comes from the method.

Protocol (docs/wsset.md, "Fair protocol"): the model is trained on the *fit* part of a split (train
minus validation). Every ``eval_every`` epochs it is scored by distance-weighted kNN accuracy of
validation documents against the fit documents; the best-scoring state is kept (``selection:
val_knn``, as the paper's "best accuracy on the validation set"), or the last one
(``selection: last``, fully label-free). The test split is never looked at here.

The loop, its checkpoints (model, objective, optimiser, RNG states, history, best state, written
atomically after every epoch; a re-started job resumes and produces the same result) and the
selection are the generic trainer's (``training/loop.py``); this module supplies what is WSSET's:
the set encoder, the method's objective and batch sampler, the batches' EMD sub-matrices and
labels, validation kNN accuracy, and ``model.pt`` / ``history.csv`` in the format the workflow reads.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from dmlrepro import DmlReproError
from dmlrepro.data.pointsets import Pointsets, pad_batch
from dmlrepro.evaluation.knn import embedding_distances, weighted_knn_accuracy
from dmlrepro.io import atomic_path, save_npy
from dmlrepro.papers.wsset.methods import method_spec
from dmlrepro.papers.wsset.objectives import ObjectiveContext, build_objective
from dmlrepro.training.bucketing import LengthBucketedEncoder
from dmlrepro.training.loop import Batch, Hook, Objective, Trainer, run_signature, seed_everything, write_history

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "loss", "val_accuracy", "n_triplets", "seconds")
# with ``train.monitor_test: true`` (the training-budget study, papers/wsset/studies.py) every
# evaluation also records the test kNN accuracy; the column's name says it is never selected on
MONITOR_COLUMN = "test_accuracy_not_for_selection"
# settings a run may change and still resume its checkpoint (more epochs, another device)
_RESUMABLE_KEYS = ("epochs", "device", "threads", "chunk_size")


# ---------------------------------------------------------------------------------- helpers
def build_model(input_dim: int, model_cfg: dict[str, Any], architecture: str = "self_attention") -> nn.Module:
    from dmlrepro.models.registry import build_encoder
    # weight_feature says how pad_batch fills the input's last column, not how the encoder is built
    return build_encoder(architecture, input_dim, {k: v for k, v in model_cfg.items() if k != "weight_feature"})


def document_centroids(ps: Pointsets) -> np.ndarray:
    """Weight-averaged word vector of every document (WCD's centroid; UDML-SS's feature space)."""
    lengths = ps.lengths
    doc_of_word = np.repeat(np.arange(len(ps)), lengths)
    totals = np.bincount(doc_of_word, weights=ps.weights, minlength=len(ps))
    out = np.zeros((len(ps), ps.dim))
    np.add.at(out, doc_of_word, ps.vectors * (ps.weights / totals[doc_of_word])[:, None])
    return out


@torch.no_grad()
def embed(model: nn.Module, ps: Pointsets, index: np.ndarray, batch_size: int = 32,
          weight_feature: str = "count") -> np.ndarray:
    """Embeddings of documents ``index`` in eval mode, batched by length to limit padding."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    index = np.asarray(index, dtype=np.int64)
    order = np.argsort(ps.lengths[index], kind="stable")
    out = np.empty((len(index), model.embedding_dim), dtype=np.float32)
    for s in range(0, len(order), batch_size):
        rows = order[s:s + batch_size]
        x, mask = pad_batch(ps, index[rows], weight_feature)
        out[rows] = model(torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device)).cpu().numpy()
    model.train(was_training)
    return out


def validation_accuracy(model, ps: Pointsets, fit: np.ndarray, val: np.ndarray, k: int,
                        weight_feature: str) -> float:
    emb_fit = embed(model, ps, fit, weight_feature=weight_feature)
    emb_val = embed(model, ps, val, weight_feature=weight_feature)
    return weighted_knn_accuracy(embedding_distances(emb_val, emb_fit), ps.labels[fit], ps.labels[val], k)


def monitored_test_accuracy(model, ps: Pointsets, gallery: np.ndarray, test: np.ndarray, k: int, weight_feature: str) -> float:
    """Test kNN accuracy against the labelled train gallery, computed as the run's ``metrics.json``
    is (``run.evaluate_run``: every document embedded in one pass, then the test and gallery rows)."""
    emb = embed(model, ps, np.arange(len(ps)), weight_feature=weight_feature)
    return weighted_knn_accuracy(embedding_distances(emb[test], emb[gallery]), ps.labels[gallery], ps.labels[test], k)


@dataclass
class TrainResult:
    best_epoch: int
    best_val_accuracy: float | None
    history: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------------- training
class _Bucketed(Objective):
    """Encode each random batch in length-sorted chunks (same embeddings, a third of the padded
    work): the objective sees a :class:`LengthBucketedEncoder` around the model."""

    def __init__(self, objective: Objective, chunk_size: int):
        super().__init__()
        self.objective, self.chunk_size = objective, int(chunk_size)

    def forward(self, model, batch):
        return self.objective(LengthBucketedEncoder(model, self.chunk_size), batch)


class _EpochLoss(Hook):
    """The epoch's loss as the history reports it: ``np.average`` of the batch losses weighted by
    batch size (the generic loop sums in Python floats, which may differ in the last bits)."""

    def __init__(self):
        self.epochs: dict[int, float] = {}
        self._losses: list[float] = []
        self._counts: list[int] = []

    def on_epoch_start(self, trainer, epoch):
        self._losses, self._counts = [], []

    def on_step_end(self, trainer, batch, loss):
        self._losses.append(loss)
        self._counts.append(len(batch.index))

    def on_epoch_end(self, trainer, epoch):
        self.epochs[epoch] = float(np.average(self._losses, weights=self._counts)) if self._losses else float("nan")

    def state_dict(self):
        return {"epochs": dict(self.epochs)}

    def load_state_dict(self, state):
        self.epochs = dict(state["epochs"])


def train_embedder(ps: Pointsets, emd: np.ndarray | None, fit: np.ndarray, val: np.ndarray, method: str,
                   method_params: dict[str, Any], model_cfg: dict[str, Any], train_cfg: dict[str, Any],
                   out_dir: str | os.PathLike, seed: int = 0, init_model: str | os.PathLike | None = None,
                   on_epoch_end: Callable[[int], None] | None = None,
                   monitor: tuple[np.ndarray, np.ndarray] | None = None) -> TrainResult:
    """Train one embedder with ``method`` (``papers/wsset/methods.py``) on the generic trainer
    (``training/loop.py``); write ``model.pt`` and ``history.csv`` to ``out_dir``.

    ``emd`` is the dataset's full WMD matrix (rows and columns index documents of ``ps``); only
    EMD-based methods read it (others may pass None); a batch carries its EMD sub-matrix as the
    extra ``"emd"``. Supervised methods read the labels of ``fit`` only. ``init_model`` is the
    ``model.pt`` a transfer stage starts from. ``on_epoch_end`` is a test hook (e.g. to interrupt
    a run after a given epoch). ``monitor`` = (labelled gallery, test documents): with
    ``train_cfg["monitor_test"]`` every evaluation records the test kNN accuracy in the column
    :data:`MONITOR_COLUMN` (the generic loop's ``monitor``: recorded, never read for selection;
    the budget study reads it at the epoch validation picks). Without the flag the history has
    exactly :data:`HISTORY_COLUMNS`.
    """
    spec = method_spec(method)
    out_dir = Path(out_dir)
    epochs = int(train_cfg.get("epochs", 1000))
    batch_size = int(train_cfg.get("batch_size", 64))
    selection = train_cfg.get("selection", "val_knn")
    knn_k = int(train_cfg.get("knn_k", 10))
    weight_feature = model_cfg.get("weight_feature", "count")
    fit, val = np.asarray(fit, np.int64), np.asarray(val, np.int64)
    if len(fit) < 3:
        raise DmlReproError(f"training needs at least 3 documents, the fit split has {len(fit)}")
    if selection not in ("val_knn", "last"):
        raise DmlReproError(f"unknown train.selection '{selection}' (val_knn | last)")
    if spec.uses_emd and emd is None:
        raise DmlReproError(f"method '{method}' learns from EMD pseudo-labels but no EMD matrix was given")
    if (spec.init_from or spec.external_init) and init_model is None:
        raise DmlReproError(f"method '{method}' is a transfer stage and needs the model it starts from")

    device = torch.device(train_cfg.get("device", "cpu"))
    seed_everything(seed)
    model = build_model(ps.dim + 1, model_cfg, spec.architecture)
    if init_model is not None:
        _load_initial_weights(model, init_model, spec.architecture, model_cfg)
        if spec.reset_head:
            model.reset_head()
    model = model.to(device)
    objective = build_objective(spec.objective, method_params, ObjectiveContext(
        embedding_dim=model.embedding_dim, input_dim=ps.dim + 1, n_classes=ps.n_classes, fit=fit,
        emd_fit=np.asarray(emd[np.ix_(fit, fit)]) if spec.uses_emd else None,
        centroids=lambda: document_centroids(ps), seed=seed, weight_feature=weight_feature)).to(device)
    optimiser = torch.optim.Adam(list(model.parameters()) + list(objective.parameters()),
                                 lr=float(train_cfg.get("lr", 1e-5)),
                                 betas=tuple(train_cfg.get("betas", (0.9, 0.999))),
                                 eps=float(train_cfg.get("eps", 1e-7)))
    # random batches, encoded in length-sorted chunks (same result, a third of the padded work)
    chunk = int(train_cfg.get("chunk_size", 8))
    has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    labels = torch.from_numpy(ps.labels).to(device)
    batches_of = objective.batches  # the method's batch sampler (a shuffled pass, or UDML-SS's neighbours)
    if chunk > 0 and not has_batch_norm:
        objective = _Bucketed(objective, chunk)

    def plan(epoch: int) -> list[np.ndarray]:
        # epoch e's batches come from (seed, e), so a resumed run sees the same batches
        rng = np.random.default_rng([seed, epoch])
        return [b for b in batches_of(fit, batch_size, rng) if len(b) >= 3]  # a triplet needs three documents

    def load(batches):
        for index in batches:
            x, mask = pad_batch(ps, index, weight_feature)
            extras = {"emd": torch.from_numpy(np.asarray(emd[np.ix_(index, index)])).to(device)} if spec.uses_emd else {}
            yield Batch((torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device)),
                        labels[torch.from_numpy(index).to(device)] if spec.uses_labels else None, index, extras)

    validate = (lambda m: {"accuracy": validation_accuracy(m, ps, fit, val, knn_k, weight_feature)}) if len(val) else None
    watch = None
    if train_cfg.get("monitor_test", False):
        if monitor is None:
            raise DmlReproError("train.monitor_test needs the split's labelled gallery and test documents")
        gallery, test = (np.asarray(part, np.int64) for part in monitor)
        watch = lambda m: {"accuracy": monitored_test_accuracy(m, ps, gallery, test, knn_k, weight_feature)}  # noqa: E731
    epoch_loss = _EpochLoss()
    signature = run_signature(method, method_params, model_cfg,
                              {k: v for k, v in train_cfg.items() if k not in _RESUMABLE_KEYS}, seed, fit.tolist(),
                              val.tolist(), _file_digest(init_model))
    trainer = Trainer(model, objective, optimiser, plan=plan, load=load, epochs=epochs,
                      checkpoint=out_dir / "checkpoint" / "last.pt", signature=signature, validate=validate,
                      selection_metric="accuracy" if selection == "val_knn" else None,
                      monitor=watch, hooks=[epoch_loss], eval_every=int(train_cfg.get("eval_every", 1)), device=device,
                      progress=False, name=method)
    result = trainer.fit(after_epoch=on_epoch_end)
    history = [{"epoch": r["epoch"], "loss": epoch_loss.epochs[r["epoch"]], "val_accuracy": r.get("val_accuracy", ""),
                "n_triplets": r["n_terms"], "seconds": r["seconds"],
                MONITOR_COLUMN: r.get("test_accuracy", "")} for r in result.history]
    best_accuracy = result.best_score
    if selection == "last" and history:  # the selected (last) epoch's validation accuracy, where measured
        best_accuracy = history[-1]["val_accuracy"] or None
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save({"state_dict": trainer.best["state"], "input_dim": ps.dim + 1, "model_cfg": dict(model_cfg),
                    "architecture": spec.architecture, "method": method, "best_epoch": result.best_epoch,
                    "best_val_accuracy": best_accuracy}, tmp)
    write_history(out_dir / "history.csv", history, HISTORY_COLUMNS + ((MONITOR_COLUMN,) if watch else ()))
    return TrainResult(result.best_epoch, best_accuracy, history)


def _load_initial_weights(model: nn.Module, path: str | os.PathLike, architecture: str,
                          model_cfg: dict[str, Any]) -> None:
    """Start a transfer stage from a saved model of the same architecture and size."""
    path = Path(path)
    if not path.exists():
        raise DmlReproError(f"initial model not found: {path}")
    saved = torch.load(path, weights_only=False, map_location="cpu")
    if saved.get("architecture", "self_attention") != architecture or saved["model_cfg"] != dict(model_cfg):
        raise DmlReproError(f"{path}: saved for architecture {saved.get('architecture', 'self_attention')} "
                            f"with another model config; a transfer stage needs the same encoder")
    model.load_state_dict(saved["state_dict"])


def load_model(path: str | os.PathLike) -> nn.Module:
    path = Path(path)
    if not path.exists():
        raise DmlReproError(f"model file not found: {path}")
    saved = torch.load(path, weights_only=False, map_location="cpu")
    model = build_model(saved["input_dim"], saved["model_cfg"], saved.get("architecture", "self_attention"))
    model.load_state_dict(saved["state_dict"])
    model.eval()
    return model


def _file_digest(path: str | os.PathLike | None) -> str | None:
    """A re-trained base model invalidates the transfer stages built on it."""
    if path is None:
        return None
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_embeddings(path: str | os.PathLike, embeddings: np.ndarray) -> None:
    save_npy(path, embeddings.astype(np.float32))
