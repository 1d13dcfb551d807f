"""BERT_BASE baseline of Tables I/II: a pretrained BERT fine-tuned on the raw text, then kNN.

The paper reports BERT_BASE (110M parameters, external pretraining data) on BBCSport, Amazon
and Twitter, not on Recipe (no raw text), and as the dashed line of Fig. 4, but gives no
fine-tuning protocol. Our choices, all of them the standard BERT classification recipe
(Devlin et al., 2019, Sec. 4 and Appendix A.3, as in Hugging Face's ``run_glue``) unless said:

* **Weights**: ``bert-base-uncased`` (12 layers, hidden 768), downloaded by ``transformers``
  at run time. The row therefore needs a machine with internet, and in practice a GPU
  (config/paper.yaml); ``model_name`` may also be a local directory written with
  ``save_pretrained`` (the tests use a tiny one).
* **Input**: the dataset's *raw text* (``dmlrepro.data.build.read_raw_documents``), not its
  pointsets: BERT reads word pieces in order. The tokenizer lowercases (uncased model) and
  every document becomes ``[CLS] tokens [SEP]``, **truncated to the first ``max_length`` = 256
  word pieces** (head truncation; BBCSport and Amazon documents are often longer; the paper
  says nothing, 512 would cost four times the attention). A document that tokenises to
  nothing is ``[CLS] [SEP]`` and still gets an embedding.
* **Pooling** (``pooling``): ``"cls"`` = the last hidden state of ``[CLS]`` (default), or
  ``"mean"`` = the attention-masked mean of all last hidden states (``[CLS]``/``[SEP]``
  included). The pooled vector is both the classifier's input and the embedding, so the
  space the loss shapes is the space the kNN is computed in. BERT's own tanh "pooler" layer
  (trained for next-sentence prediction) is not used.
* **Objective**: supervised fine-tuning of all weights with a linear softmax classifier
  (dropout 0.1 = the model's ``hidden_dropout_prob``, then one linear layer) and
  cross-entropy, on the **fit** documents only (train minus validation; only their labels
  are read for training). Classes are the labels present in the fit split.
* **Optimisation**: AdamW (betas 0.9/0.999, eps 1e-8), lr 2e-5, weight decay 0.01 (not on
  biases and LayerNorm weights), linear warmup over the first 10 % of steps then linear decay
  to 0, gradient norm clipped at 1.0, batch size 16, **4 epochs** (Devlin et al.'s grid:
  lr {5e-5, 3e-5, 2e-5}, batch {16, 32}, epochs {2, 3, 4}; we take the most conservative
  lr and the most epochs, with no per-dataset search). fp32, no mixed precision.
* **Model selection**: after every epoch, distance-weighted kNN accuracy (k = ``knn_k`` = 10)
  of the validation documents against the fit documents on the L2-normalised pooled
  embeddings; the best epoch is kept (ties: the earliest), as in our trainer's
  ``selection: val_knn``. Without validation documents the last epoch is kept. The test
  split is never looked at.
* **Evaluation** (done by the caller): the kNN accuracy and Recall@K of Tables I/II are
  computed on the returned **L2-normalised pooled embeddings** with Euclidean distance, the
  same evaluation code as every other method (not on the classifier's predictions).

Training runs on the shared trainer (``training/loop.py``): the pooled encoder is its model,
the classifier lives in the objective, the warm-up/decay schedule is a hook
(``training/schedules.py``) and gradient clipping the trainer's ``max_grad_norm``. Its
checkpoint (``out_dir/checkpoint/last.pt``, written atomically after every epoch; with bert-base
about 1.3 GB for weights and AdamW moments, plus 0.4 GB for the best epoch's weights) lets a
re-started run with the same configuration resume and return what an uninterrupted run returns
(each epoch's batch order comes from ``(seed, epoch)``, dropout from the RNG state the checkpoint
carries); a checkpoint written for another configuration is ignored with a warning. The device
is not part of the configuration: a run may resume on another one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from dmlrepro import DmlReproError
from dmlrepro.evaluation.knn import embedding_distances, weighted_knn_accuracy
from dmlrepro.training.loop import Batch, Objective, Trainer, write_history
from dmlrepro.training.schedules import linear_warmup_decay

log = logging.getLogger(__name__)

__all__ = ["finetune_bert", "HISTORY_COLUMNS", "POOLINGS"]

HISTORY_COLUMNS = ("epoch", "loss", "val_accuracy", "seconds")
POOLINGS = ("cls", "mean")
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
MAX_GRAD_NORM = 1.0
EVAL_BATCH_SIZE = 64
# bump when a change here would make an old checkpoint resume into a different result
_PROTOCOL_VERSION = 2  # 2: the shared trainer (training/loop.py)
_NEEDS_GPU_AND_INTERNET = ("the BERT_BASE row downloads its pretrained weights at run time: run it on a "
                           "GPU machine with internet (config/paper.yaml), or pass a local directory "
                           "written with save_pretrained as model_name")


def finetune_bert(texts: Sequence[str], labels: np.ndarray, fit: np.ndarray, val: np.ndarray,
                  out_dir: str | os.PathLike, model_name: str = "bert-base-uncased", max_length: int = 256,
                  epochs: int = 4, batch_size: int = 16, lr: float = 2e-5, weight_decay: float = 0.01,
                  warmup_ratio: float = 0.1, pooling: str = "cls", seed: int = 0, device: str = "cpu",
                  knn_k: int = 10, *, on_epoch_end: Callable[[int], None] | None = None) -> np.ndarray:
    """Fine-tune ``model_name`` on the ``fit`` documents, select the epoch by validation kNN, and
    return the L2-normalised pooled embeddings (float32, (len(texts), hidden size)) of all
    documents from the selected state.

    ``labels`` index the same documents as ``texts``; only ``labels[fit]`` (training) and
    ``labels[val]`` (selection) are read. Writes ``out_dir/history.csv`` and checkpoints to
    ``out_dir/checkpoint/``. ``device`` is a torch device or ``"auto"`` (CUDA when available).
    ``on_epoch_end`` is a test hook (e.g. to interrupt a run after a given epoch).
    """
    texts = [str(t) for t in texts]
    labels = np.asarray(labels)
    fit, val = np.asarray(fit, np.int64), np.asarray(val, np.int64)
    _check_arguments(len(texts), labels, fit, val, max_length, epochs, batch_size, warmup_ratio, pooling, knn_k)
    out_dir = Path(out_dir)
    torch_device = torch.device("cuda" if device == "auto" and torch.cuda.is_available()
                                else "cpu" if device == "auto" else device)
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise DmlReproError(f"device '{device}' asked for, but torch {torch.__version__} sees no CUDA GPU; "
                            f"the BERT_BASE row is meant for a GPU machine (config/paper.yaml)")

    torch.manual_seed(seed)  # weights from_pretrained leaves out, and the classifier, start from the seed
    tokenizer, encoder = _load_pretrained(model_name)
    hidden = int(encoder.config.hidden_size)
    max_positions = getattr(encoder.config, "max_position_embeddings", None)
    if max_positions is not None and max_length > max_positions:
        raise DmlReproError(f"max_length={max_length} exceeds the {max_positions} positions of '{model_name}'")
    classes = np.unique(labels[fit])
    model = _PooledEncoder(encoder, pooling)
    objective = _ClassifierObjective(hidden, len(classes), float(getattr(encoder.config, "hidden_dropout_prob", 0.1)))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    token_ids = tokenizer(texts, truncation=True, max_length=int(max_length))["input_ids"]
    fit_targets = torch.from_numpy(np.searchsorted(classes, labels[fit]))

    optimiser = torch.optim.AdamW(_parameter_groups([encoder, objective], weight_decay), lr=lr,
                                  betas=ADAM_BETAS, eps=ADAM_EPS)
    schedule = linear_warmup_decay(optimiser, math.ceil(len(fit) / batch_size) * epochs, warmup_ratio)

    def plan(epoch: int) -> list[np.ndarray]:
        # epoch e's batch order comes from (seed, e); dropout from the torch RNG the checkpoints carry
        order = np.random.default_rng([seed, epoch]).permutation(len(fit))
        return [order[s:s + batch_size] for s in range(0, len(order), batch_size)]

    def load(batches: Sequence[np.ndarray]):
        for rows in batches:
            yield Batch(_pad([token_ids[i] for i in fit[rows]], pad_id, torch_device),
                        fit_targets[torch.from_numpy(rows)].to(torch_device), rows)

    def validate(net: nn.Module) -> dict[str, float]:
        emb = _embed(encoder, token_ids, np.concatenate([fit, val]), pooling, pad_id, torch_device)
        return {"accuracy": weighted_knn_accuracy(embedding_distances(emb[len(fit):], emb[:len(fit)]),
                                                  labels[fit], labels[val], knn_k)}

    config = {"model_name": model_name, "max_length": int(max_length), "epochs": int(epochs),
              "batch_size": int(batch_size), "lr": float(lr), "weight_decay": float(weight_decay),
              "warmup_ratio": float(warmup_ratio), "pooling": pooling, "seed": int(seed), "knn_k": int(knn_k),
              "protocol": _PROTOCOL_VERSION, "model_config": encoder.config.to_json_string()}
    trainer = Trainer(model, objective, optimiser, plan=plan, load=load, epochs=int(epochs),
                      checkpoint=out_dir / "checkpoint" / "last.pt",
                      signature=_signature(config, texts, labels, fit, val),
                      validate=validate if len(val) else None, selection_metric="accuracy" if len(val) else None,
                      hooks=[schedule], device=torch_device, max_grad_norm=MAX_GRAD_NORM, name="BERT")
    result = trainer.fit(on_epoch_end)
    log.info("BERT: selected epoch %d (val kNN accuracy %s)", result.best_epoch,
             "-" if result.best_score is None else f"{result.best_score:.2f}")
    embeddings = _embed(encoder, token_ids, np.arange(len(texts)), pooling, pad_id, torch_device)
    write_history(out_dir / "history.csv", result.history, HISTORY_COLUMNS)
    return embeddings


class _PooledEncoder(nn.Module):
    """The pretrained encoder read through its pooling: the model the trainer optimises and selects."""

    def __init__(self, encoder: nn.Module, pooling: str):
        super().__init__()
        self.encoder, self.pooling = encoder, pooling

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _pooled(self.encoder, input_ids, mask, self.pooling)


class _ClassifierObjective(Objective):
    """Dropout, one linear layer, cross-entropy: BERT's classification head on the pooled vector."""

    def __init__(self, hidden: int, n_classes: int, dropout: float):
        super().__init__()
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    def forward(self, model, batch):
        return nn.functional.cross_entropy(self.head(model(*batch.inputs)), batch.labels), len(batch.index)


# ---------------------------------------------------------------------------------- loading
def _import_transformers():
    try:
        import transformers
    except ImportError as err:
        raise DmlReproError(
            f"the BERT_BASE baseline needs the 'transformers' package, which is not installed ({err}); "
            f"use the workflow's conda env workflow/envs/bert.yaml. {_NEEDS_GPU_AND_INTERNET}") from err
    return transformers


def _load_pretrained(model_name: str):
    """Tokenizer and bare encoder (no task head) of ``model_name``, a hub name or a local directory."""
    transformers = _import_transformers()
    as_path = Path(model_name).expanduser()
    looks_local = as_path.is_absolute() or model_name.startswith((".", "~")) or as_path.exists()
    if looks_local and not as_path.is_dir():
        raise DmlReproError(f"pretrained model directory not found: {as_path} (model_name '{model_name}'); "
                            f"{_NEEDS_GPU_AND_INTERNET}")
    source = str(as_path) if looks_local else model_name
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        encoder = transformers.AutoModel.from_pretrained(source).float()  # fp32 whatever the saved dtype
    except (OSError, ValueError) as err:  # offline, unknown name, or an incomplete directory
        raise DmlReproError(f"cannot load the pretrained model '{model_name}' with transformers "
                            f"{transformers.__version__}: {err}\n{_NEEDS_GPU_AND_INTERNET}") from err
    if not getattr(tokenizer, "is_fast", False):
        log.warning("tokenizer of %s is not a fast tokenizer; tokenising may be slow", model_name)
    return tokenizer, encoder


# ---------------------------------------------------------------------------------- model pieces
def _pooled(encoder: nn.Module, input_ids: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    hidden = encoder(input_ids=input_ids, attention_mask=mask).last_hidden_state
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def _pad(sequences: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def _embed(encoder: nn.Module, token_ids: list[list[int]], index: np.ndarray, pooling: str, pad_id: int,
           device: torch.device) -> np.ndarray:
    """L2-normalised pooled embeddings of documents ``index`` (eval mode), batched by length."""
    was_training = encoder.training
    encoder.eval()
    index = np.asarray(index, np.int64)
    order = np.argsort([len(token_ids[i]) for i in index], kind="stable")
    out = np.empty((len(index), int(encoder.config.hidden_size)), dtype=np.float32)
    for s in range(0, len(order), EVAL_BATCH_SIZE):
        rows = order[s:s + EVAL_BATCH_SIZE]
        input_ids, mask = _pad([token_ids[i] for i in index[rows]], pad_id, device)
        pooled = _pooled(encoder, input_ids, mask, pooling)
        out[rows] = nn.functional.normalize(pooled.float(), dim=1).cpu().numpy()
    encoder.train(was_training)
    return out


def _parameter_groups(modules: list[nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and LayerNorm weights (BERT's recipe)."""
    decay, no_decay = [], []
    for module in modules:
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]




# ---------------------------------------------------------------------------------- checks and files
def _check_arguments(n_texts, labels, fit, val, max_length, epochs, batch_size, warmup_ratio, pooling, knn_k):
    if labels.ndim != 1 or len(labels) != n_texts:
        raise DmlReproError(f"labels must be a 1-D array with one label per text: {n_texts} texts, "
                            f"labels of shape {labels.shape}")
    for name, index in (("fit", fit), ("val", val)):
        if index.ndim != 1 or (len(index) and (index.min() < 0 or index.max() >= n_texts)):
            raise DmlReproError(f"{name} must be a 1-D array of document indices in [0, {n_texts})")
    if len(fit) == 0:
        raise DmlReproError("BERT fine-tuning needs at least one fit document")
    if np.intersect1d(fit, val).size:
        raise DmlReproError("fit and val share documents; validation must be held out of fine-tuning")
    if pooling not in POOLINGS:
        raise DmlReproError(f"unknown BERT pooling '{pooling}' ({' | '.join(POOLINGS)})")
    if max_length < 2:
        raise DmlReproError(f"max_length must leave room for [CLS] and [SEP], got {max_length}")
    if epochs < 0 or batch_size < 1:
        raise DmlReproError(f"epochs must be >= 0 and batch_size >= 1, got {epochs} and {batch_size}")
    if not 0.0 <= warmup_ratio <= 1.0:
        raise DmlReproError(f"warmup_ratio must be in [0, 1], got {warmup_ratio}")
    if len(val) and not 1 <= knn_k <= len(fit):
        raise DmlReproError(f"knn_k={knn_k} must be between 1 and the number of fit documents ({len(fit)})")


def _signature(config: dict[str, Any], texts: list[str], labels: np.ndarray, fit: np.ndarray,
               val: np.ndarray) -> str:
    h = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    for text in texts:
        h.update(text.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    for index in (fit, val):  # labels outside fit and val are never read, so not part of the key
        h.update(index.tobytes())
        h.update(np.asarray(labels[index]).astype(str).tobytes())
    return h.hexdigest()
