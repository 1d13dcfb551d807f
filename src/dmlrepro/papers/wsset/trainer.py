"""One trainer for every set-embedding method; the loss (and its miner) comes from the method.

Protocol (docs/wsset.md, "Fair protocol"): the model is trained on the *fit* part of a split (train
minus validation). Every ``eval_every`` epochs it is scored by distance-weighted kNN accuracy of
validation documents against the fit documents; the best-scoring state is kept (``selection:
val_knn``, as the paper's "best accuracy on the validation set"), or the last one
(``selection: last``, fully label-free). The test split is never looked at here.

A checkpoint (model, optimiser, RNG states, history, best state) is written atomically after
every epoch; a re-started job resumes from it and produces the same result it would have.
"""

from __future__ import annotations

import csv
import logging
import os
import time
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
from dmlrepro.training.bucketing import LengthBucketedEncoder
from dmlrepro.training.loop import cpu_state, rng_state, seed_everything, set_rng_state
from dmlrepro.papers.wsset.methods import method_spec
from dmlrepro.papers.wsset.objectives import Batch, build_objective

log = logging.getLogger(__name__)

HISTORY_COLUMNS = ("epoch", "loss", "val_accuracy", "n_triplets", "seconds")
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




@dataclass
class TrainResult:
    best_epoch: int
    best_val_accuracy: float | None
    history: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------------- training
def train_embedder(ps: Pointsets, emd: np.ndarray | None, fit: np.ndarray, val: np.ndarray, method: str,
                   method_params: dict[str, Any], model_cfg: dict[str, Any], train_cfg: dict[str, Any],
                   out_dir: str | os.PathLike, seed: int = 0, init_model: str | os.PathLike | None = None,
                   on_epoch_end: Callable[[int], None] | None = None) -> TrainResult:
    """Train one embedder with ``method`` (``papers/wsset/methods.py``); write ``model.pt`` and
    ``history.csv`` to ``out_dir``.

    ``emd`` is the dataset's full WMD matrix (rows and columns index documents of ``ps``); only
    EMD-based methods read it (others may pass None). Supervised methods read the labels of
    ``fit`` only. ``init_model`` is the ``model.pt`` a transfer stage starts from.
    ``on_epoch_end`` is a test hook (e.g. to interrupt a run after a given epoch).
    """
    spec = method_spec(method)
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoint" / "last.pt"
    epochs = int(train_cfg.get("epochs", 1000))
    batch_size = int(train_cfg.get("batch_size", 64))
    eval_every = int(train_cfg.get("eval_every", 1))
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
    objective = build_objective(
        spec.objective, method_params, embedding_dim=model.embedding_dim, input_dim=ps.dim + 1,
        n_classes=ps.n_classes, fit=fit, emd_fit=np.asarray(emd[np.ix_(fit, fit)]) if spec.uses_emd else None,
        centroids=document_centroids(ps) if spec.objective == "udml_ss" else None, seed=seed,
        weight_feature=weight_feature).to(device)
    optimiser = torch.optim.Adam(list(model.parameters()) + list(objective.parameters()),
                                 lr=float(train_cfg.get("lr", 1e-5)),
                                 betas=tuple(train_cfg.get("betas", (0.9, 0.999))),
                                 eps=float(train_cfg.get("eps", 1e-7)))
    # random batches, encoded in length-sorted chunks (same result, a third of the padded work)
    chunk = int(train_cfg.get("chunk_size", 8))
    has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    encoder = LengthBucketedEncoder(model, chunk) if chunk > 0 and not has_batch_norm else model
    labels = torch.from_numpy(ps.labels).to(device)
    history: list[dict[str, Any]] = []
    best = {"epoch": 0, "val_accuracy": None, "state": None}
    start_epoch = 1
    signature = _signature(method, method_params, model_cfg, train_cfg, seed, fit, val, init_model)

    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, weights_only=False, map_location=device)
        if ckpt.get("signature") == signature:
            model.load_state_dict(ckpt["model"])
            objective.load_state_dict(ckpt["objective"])
            optimiser.load_state_dict(ckpt["optimiser"])
            history, best, start_epoch = ckpt["history"], ckpt["best"], ckpt["epoch"] + 1
            set_rng_state(ckpt["rng"])
            log.info("resuming %s from epoch %d (%s)", method, start_epoch, ckpt_path)
        else:
            log.warning("ignoring checkpoint %s: written for another configuration", ckpt_path)

    model.train()
    for epoch in range(start_epoch, epochs + 1):
        t0 = time.perf_counter()
        # epoch e's batches come from (seed, e), so a resumed run sees the same batches
        rng = np.random.default_rng([seed, epoch])
        losses, counts, n_terms = [], [], 0
        for batch_index in objective.batches(fit, batch_size, rng):
            if len(batch_index) < 3:  # a triplet needs three documents
                continue
            x, mask = pad_batch(ps, batch_index, weight_feature)
            batch = Batch(torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device), batch_index,
                          labels[torch.from_numpy(batch_index).to(device)] if spec.uses_labels else None,
                          torch.from_numpy(np.asarray(emd[np.ix_(batch_index, batch_index)])).to(device)
                          if spec.uses_emd else None)
            loss, n = objective(encoder, batch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            counts.append(len(batch_index))
            n_terms += n
        row = {"epoch": epoch, "loss": float(np.average(losses, weights=counts)) if losses else float("nan"),
               "val_accuracy": "", "n_triplets": n_terms, "seconds": 0.0}
        if len(val) and (epoch % eval_every == 0 or epoch == epochs):
            acc = validation_accuracy(model, ps, fit, val, knn_k, weight_feature)
            row["val_accuracy"] = acc
            if selection == "val_knn" and (best["val_accuracy"] is None or acc > best["val_accuracy"]):
                best = {"epoch": epoch, "val_accuracy": acc, "state": cpu_state(model)}
        if selection == "last" or not len(val):
            best = {"epoch": epoch, "val_accuracy": row["val_accuracy"] or None, "state": cpu_state(model)}
        row["seconds"] = round(time.perf_counter() - t0, 3)
        history.append(row)
        log.info("%s epoch %d/%d loss %.4f val_acc %s (%.1fs)", method, epoch, epochs, row["loss"],
                 f"{row['val_accuracy']:.2f}" if row["val_accuracy"] != "" else "-", row["seconds"])
        _save_checkpoint(ckpt_path, model, objective, optimiser, epoch, history, best, signature)
        if on_epoch_end is not None:
            on_epoch_end(epoch)

    if best["state"] is None:  # zero epochs requested
        best = {"epoch": 0, "val_accuracy": None, "state": cpu_state(model)}
    model.load_state_dict(best["state"])
    with atomic_path(out_dir / "model.pt") as tmp:
        torch.save({"state_dict": best["state"], "input_dim": ps.dim + 1, "model_cfg": dict(model_cfg),
                    "architecture": spec.architecture, "method": method, "best_epoch": best["epoch"],
                    "best_val_accuracy": best["val_accuracy"]}, tmp)
    write_history(out_dir / "history.csv", history)
    return TrainResult(best["epoch"], best["val_accuracy"], history)


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


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k, "") for k in HISTORY_COLUMNS})


def _signature(method, params, model_cfg, train_cfg, seed, fit, val, init_model=None) -> str:
    import hashlib
    import json
    h = hashlib.sha256(json.dumps([method, params, model_cfg, {k: v for k, v in train_cfg.items() if k not in _RESUMABLE_KEYS},
                                   seed], sort_keys=True, default=str).encode())
    h.update(np.asarray(fit).tobytes())
    h.update(np.asarray(val).tobytes())
    if init_model is not None:  # a re-trained base model invalidates the stages built on it
        h.update(Path(init_model).read_bytes())
    return h.hexdigest()


def _save_checkpoint(path: Path, model, objective, optimiser, epoch, history, best, signature) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"model": model.state_dict(), "objective": objective.state_dict(), "optimiser": optimiser.state_dict(), "epoch": epoch,
                    "history": history, "best": best, "rng": rng_state(), "signature": signature}, tmp)


def save_embeddings(path: str | os.PathLike, embeddings: np.ndarray) -> None:
    save_npy(path, embeddings.astype(np.float32))
