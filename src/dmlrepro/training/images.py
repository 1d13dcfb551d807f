"""What every image method shares around the loop: batch plans, loading, embedding, objectives.

* Batch plans: :func:`m_per_class_plan` (pytorch-metric-learning's ``MPerClassSampler``, m images
  of each of ``batch_size / m`` classes), :func:`weighted_m_per_class_plan` (the same from a
  weighted subset, e.g. a coreset) and :func:`shuffled_plan`. All draw from a generator
  seeded by (seed, epoch) and never from the global one, so a resumed run plans the same batches.
* Loading: :class:`ImageBatches` turns planned rows into :class:`~dmlrepro.training.loop.Batch`
  through a ``DataLoader`` (workers on a GPU node). Array-backed datasets whose images already
  have the network's input size (MNIST, Fashion-MNIST for the small SSDML nets) skip PIL and are
  normalised as whole tensors: the same numbers, about 20x faster on a CPU.
* :func:`embed_rows`: embeddings of dataset rows in eval mode.
* Objectives: :class:`MetricLossObjective` (any PML-style loss, optionally with a miner) and
  :class:`SoftmaxObjective` (cross-entropy on the pooled features, for supervised pretraining).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from dmlrepro import DmlReproError
from dmlrepro.training.loop import Batch, Objective


# ------------------------------------------------------------------------------ batch plans
def _epoch_generator(seed: int, epoch: int) -> np.random.RandomState:
    return np.random.RandomState(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(1)[0])


@contextmanager
def _pml_random(generator: np.random.RandomState) -> Iterator[None]:
    """PML's samplers draw from ``common_functions.NUMPY_RANDOM``; lend them our generator."""
    from pytorch_metric_learning.utils import common_functions as c_f
    saved = c_f.NUMPY_RANDOM
    c_f.NUMPY_RANDOM = generator
    try:
        yield
    finally:
        c_f.NUMPY_RANDOM = saved


def m_per_class_plan(rows: np.ndarray, labels: np.ndarray, *, m: int, batch_size: int, iterations: int,
                     seed: int, epoch: int, where: str = "train") -> list[np.ndarray]:
    """``iterations`` batches of ``batch_size // m`` random classes with ``m`` images each.

    ``rows`` are dataset rows and ``labels`` their classes. A class with fewer than ``m`` images
    is an error (PML would silently repeat images)."""
    from pytorch_metric_learning.samplers import MPerClassSampler
    rows, labels = np.asarray(rows), np.asarray(labels)
    if batch_size % m:
        raise DmlReproError(f"batch_size {batch_size} is not a multiple of m = {m} images per class")
    classes, counts = np.unique(labels, return_counts=True)
    if (counts < m).any():
        c = classes[counts < m][0]
        raise DmlReproError(f"{where}: class {c} has {counts[counts < m][0]} images, fewer than m = {m} of the sampler")
    if len(classes) * m < batch_size:
        raise DmlReproError(f"{where}: {len(classes)} classes x m = {m} cannot fill a batch of {batch_size}")
    with _pml_random(_epoch_generator(seed, epoch)):
        sampler = MPerClassSampler(labels, m=m, batch_size=batch_size, length_before_new_iter=iterations * batch_size)
        order = np.fromiter(iter(sampler), dtype=np.int64)
    return [rows[order[s:s + batch_size]] for s in range(0, len(order), batch_size)]


def weighted_m_per_class_plan(rows: np.ndarray, labels: np.ndarray, weights: np.ndarray, *, m: int,
                              batch_size: int, iterations: int, seed: int, epoch: int) -> list[np.ndarray]:
    """``iterations`` batches of ``batch_size // m`` classes (uniformly, without replacement) with
    ``m`` of each class's ``rows`` drawn without replacement with probability ∝ ``weights`` (a
    weighted coreset's batches: WCRAIG). Seeded by (seed, epoch) like :func:`m_per_class_plan`."""
    rows, labels, weights = np.asarray(rows), np.asarray(labels), np.asarray(weights, dtype=np.float64)
    if batch_size % m:
        raise DmlReproError(f"batch_size {batch_size} is not a multiple of m = {m} images per class")
    classes = np.unique(labels)
    members = {c: np.flatnonzero(labels == c) for c in classes}
    short = [c for c in classes if len(members[c]) < m]
    if short:
        raise DmlReproError(f"class {short[0]} has {len(members[short[0]])} rows to draw from, fewer than m = {m}")
    per_batch = batch_size // m
    if per_batch > len(classes):
        raise DmlReproError(f"{len(classes)} classes x m = {m} cannot fill a batch of {batch_size}")
    gen = _epoch_generator(seed, epoch)
    batches = []
    for _ in range(iterations):
        chosen = gen.choice(classes, size=per_batch, replace=False)
        parts = []
        for c in chosen:
            w = weights[members[c]]
            parts.append(rows[members[c][gen.choice(len(w), size=m, replace=False, p=w / w.sum())]])
        batches.append(np.concatenate(parts))
    return batches


def shuffled_plan(rows: np.ndarray, *, batch_size: int, seed: int, epoch: int,
                  iterations: int | None = None) -> list[np.ndarray]:
    """A shuffled pass over ``rows`` (the last short batch dropped), at most ``iterations`` batches."""
    order = np.asarray(rows)[_epoch_generator(seed, epoch).permutation(len(rows))]
    batches = [order[s:s + batch_size] for s in range(0, len(order) - batch_size + 1, batch_size)]
    return batches[:iterations] if iterations else batches


# ------------------------------------------------------------------------------ loading
def tensor_fast_path(index: Any, spec: Any) -> bool:
    """Whether rows of ``index`` can be normalised as whole tensors (no resize, crop or PIL)."""
    arr = getattr(index, "array", None)
    return arr is not None and spec.resize is None and arr.shape[1] == spec.size and arr.shape[2] == spec.size


def array_batch(index: Any, rows: np.ndarray, spec: Any) -> torch.Tensor:
    """Rows of an array-backed dataset as a normalised float batch (b, C, H, W)."""
    x = torch.from_numpy(np.ascontiguousarray(index.array[rows])).float().div_(255.0)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    if x.shape[1] != spec.channels:
        x = x.expand(-1, spec.channels, -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True)
    mean = torch.tensor(spec.mean, dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


class _RowsDataset(torch.utils.data.Dataset):
    def __init__(self, index: Any, transform: Callable):
        self.index, self.transform = index, transform

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, row: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.index.image(int(row))), int(row)


class ImageBatches:
    """``load(planned_batches) -> Batch`` for :class:`~dmlrepro.training.loop.Trainer`."""

    def __init__(self, index: Any, spec: Any, transform: Callable | None, *, labels: np.ndarray | None,
                 device: str | torch.device = "cpu", num_workers: int = 0):
        self.index, self.spec, self.transform = index, spec, transform
        self.labels = None if labels is None else torch.as_tensor(np.asarray(labels), dtype=torch.long)
        self.device, self.num_workers = torch.device(device), int(num_workers)
        self.fast = transform is None
        if self.fast and not tensor_fast_path(index, spec):
            raise DmlReproError(f"{getattr(index, 'name', 'dataset')}: images need a transform "
                                f"(not array-backed at the input size {spec.size})")

    def __call__(self, planned: Sequence[np.ndarray]) -> Iterable[Batch]:
        if self.fast:
            for rows in planned:
                yield self._batch(array_batch(self.index, rows, self.spec), np.asarray(rows))
            return
        loader = torch.utils.data.DataLoader(_RowsDataset(self.index, self.transform), batch_sampler=list(planned),
                                             num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                                             persistent_workers=False)
        for x, rows in loader:
            yield self._batch(x, rows.numpy())

    def _batch(self, x: torch.Tensor, rows: np.ndarray) -> Batch:
        labels = None if self.labels is None else self.labels[torch.from_numpy(rows)].to(self.device)
        return Batch(x.to(self.device, non_blocking=True), labels, rows)


@torch.no_grad()
def embed_rows(model: nn.Module, index: Any, rows: np.ndarray, spec: Any, transform: Callable | None = None, *,
               batch_size: int = 512, device: str | torch.device = "cpu", num_workers: int = 0,
               features: bool = False) -> np.ndarray:
    """Embeddings (or pooled features, ``features=True``) of dataset ``rows`` in eval mode."""
    was_training = model.training
    model.eval()
    loader = ImageBatches(index, spec, transform, labels=None, device=device, num_workers=num_workers)
    rows = np.asarray(rows)
    out = []
    for batch in loader([rows[s:s + batch_size] for s in range(0, len(rows), batch_size)]):
        out.append((model.features(batch.inputs) if features else model(batch.inputs)).float().cpu().numpy())
    model.train(was_training)
    dim = model.feature_dim if features else model.embedding_dim
    return np.concatenate(out) if out else np.zeros((0, dim), np.float32)


# ------------------------------------------------------------------------------ objectives
class MetricLossObjective(Objective):
    """A pytorch-metric-learning-style loss on the embeddings, its tuples from ``miner`` if any."""

    def __init__(self, loss: nn.Module, miner: nn.Module | None = None):
        super().__init__()
        self.loss, self.miner = loss, miner

    def forward(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        emb = model(batch.inputs)
        tuples = self.miner(emb, batch.labels) if self.miner is not None else None
        n_terms = len(tuples[0]) if tuples is not None else emb.shape[0]
        return self.loss(emb, batch.labels, tuples), n_terms


class SoftmaxObjective(Objective):
    """Cross-entropy of a linear layer on the pooled features: supervised pretraining."""

    def __init__(self, feature_dim: int, n_classes: int):
        super().__init__()
        self.classifier = nn.Linear(int(feature_dim), int(n_classes))

    def forward(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        logits = self.classifier(model.features(batch.inputs))
        return nn.functional.cross_entropy(logits, batch.labels), logits.shape[0]
