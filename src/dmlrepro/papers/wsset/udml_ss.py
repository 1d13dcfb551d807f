"""UDML-SS (Cao, Chen & Lim 2019, arXiv 1911.07072) adapted to pointsets.

What the original does (paper and released code, xuefeicao/UDML_SS): an ImageNet-pretrained CNN
gives the initial feature space; k-means on those features (100 clusters on CUB) gives
pseudo-labels; batches hold a few pseudo-classes with several images each; a metric-learning
loss on the pseudo-labels is trained jointly with an auxiliary rotation loss (a linear head
predicts which of 0/90/180/270 degrees a copy was rotated by; 16 images per batch, each in all
four rotations, weight 0.1); the pseudo-labels are re-computed with k-means on the current
embedding every few epochs. WSSET summarises it as "a pretrained ImageNet model provides an
intermediate embedded space for mining triplets" and runs it on DeepSets without saying how
(TARGETS 000-§5, ambiguity 9).

Our set adaptation (the default, ``pseudo_labels="knn"``):

* **Intermediate space = document centroids.** The weight-averaged word vector of each document
  (Kusner's WCD centroid, ``training.trainer.document_centroids``). Pretrained word vectors play
  the part of the pretrained CNN: a fixed, label-free space in which nearby documents are likely
  to share a topic. It is computed once and never updated.
* **Pseudo-positives = k nearest neighbours there** (:func:`intermediate_neighbours`, scikit-learn
  ``NearestNeighbors``). Cosine by default: averaging shrinks a centroid's norm the more diverse
  (and usually the longer) the document is, so Euclidean neighbours would also match on length;
  the direction carries the topic. ``i ~ j`` if either is among the other's k neighbours
  (:func:`pseudo_positive_mask`, symmetric); every other document of the batch is a negative.
* **Batches** (:func:`neighbour_batches`) pair anchors with one of their neighbours, so every
  document of a batch has at least one pseudo-positive (the role of the original's
  several-instances-per-pseudo-class sampler).
* **Metric loss** = the paper's triplet loss with semi-hard mining on those masks
  (:class:`~dmlrepro.miners.semihard.SemiHardTripletMiner` +
  :class:`~dmlrepro.losses.triplet.WeightedTripletMarginLoss`, margin 0.1), the loss of WSSET's other
  triplet rows, instead of the original's multi-similarity-style "Weight" loss.
* **Rotation task** = :class:`~dmlrepro.data.augment.SetRotations`: ``n`` fixed rotations of the
  word-vector space (the first the identity) applied to every word of a set; a linear head on
  the L2-normalised embedding (:class:`~dmlrepro.losses.classification.RotationPredictionLoss`)
  predicts which one. ``rotation_batch`` sets of each batch are embedded under all ``n``
  transforms. The original's head sits on the pooled backbone feature; our encoders expose only
  the embedding (``model(x, padding_mask)``), so the head reads that.
* ``total = triplet + rotation_weight * rotation`` (:class:`UDMLSSLoss`).

``pseudo_labels="kmeans"`` keeps the original's clustering instead: :func:`kmeans_pseudo_labels`
on the centroids (or on current embeddings, if the trainer refreshes them) and
:func:`cluster_batches` (``per_cluster`` documents of each of ``batch_size / per_cluster``
clusters); the masks then come from :func:`~dmlrepro.miners.semihard.label_masks`.

Index convention: ``neighbours`` rows, batch positions and cluster labels all index the *fit*
documents ``0..n-1`` (the rows of the centroid matrix given to :func:`intermediate_neighbours`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn

from dmlrepro import DmlReproError
from dmlrepro.data.augment import SetRotations
from dmlrepro.losses.classification import RotationPredictionLoss
from dmlrepro.losses.triplet import WeightedTripletMarginLoss
from dmlrepro.miners.semihard import SemiHardTripletMiner

NEIGHBOUR_METRICS = ("cosine", "euclidean")


# ---------------------------------------------------------------------------------- pseudo-positives
def intermediate_neighbours(centroids: np.ndarray, k: int, metric: str = "cosine") -> np.ndarray:
    """(n, k) int64: each document's k nearest other documents in the intermediate space,
    closest first."""
    from sklearn.neighbors import NearestNeighbors

    feats = np.asarray(centroids, dtype=np.float64)
    n = feats.shape[0]
    if metric not in NEIGHBOUR_METRICS:
        raise DmlReproError(f"unknown neighbour metric '{metric}' ({' | '.join(NEIGHBOUR_METRICS)})")
    if not 1 <= int(k) < n:
        raise DmlReproError(f"udml_ss neighbours k={k} must lie in [1, {n - 1}] for {n} fit documents")
    k = int(k)
    if metric == "cosine":
        # on unit vectors Euclidean order = cosine order, and the fast tree search still applies
        feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(feats).kneighbors(feats)
    out = np.empty((n, k), dtype=np.int64)
    for i in range(n):
        row = idx[i][idx[i] != i]  # self is usually first, but duplicates can displace it
        out[i] = row[:k]
    return out


def pseudo_positive_mask(batch: np.ndarray, neighbours: np.ndarray,
                         device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive_mask, negative_mask)`` (b, b) bool for batch positions ``batch``.

    Positive: the two are neighbours either way round (or the same document twice), never the
    diagonal. Negative: everything else but the diagonal.
    """
    batch = np.asarray(batch, dtype=np.int64).reshape(-1)
    if batch.size and (batch.min() < 0 or batch.max() >= len(neighbours)):
        raise DmlReproError(f"batch positions must index the {len(neighbours)} fit documents")
    nb = np.asarray(neighbours)[batch]                                     # (b, k)
    is_neighbour = (nb[:, None, :] == batch[None, :, None]).any(axis=-1)  # j in kNN(i)
    related = is_neighbour | is_neighbour.T | (batch[:, None] == batch[None, :])
    eye = np.eye(len(batch), dtype=bool)
    pos = torch.from_numpy(related & ~eye)
    neg = torch.from_numpy(~related)
    return pos.to(device) if device is not None else pos, neg.to(device) if device is not None else neg


def neighbour_batches(n: int, neighbours: np.ndarray, batch_size: int, rng: np.random.Generator,
                      n_batches: int | None = None) -> Iterator[np.ndarray]:
    """One epoch of batches (positions 0..n-1) where every document has a pseudo-positive.

    Anchors are taken in a random order without repetition (a fresh permutation when exhausted);
    each anchor not yet in the batch is added with one random neighbour, unless one of its
    neighbours is already there. An odd last slot takes a neighbour of a random member. The
    epoch has ``n_batches`` batches (default ``max(1, n // batch_size)``: as many optimiser steps
    as a shuffled pass over the fit documents).
    """
    neighbours = np.asarray(neighbours, dtype=np.int64)
    if len(neighbours) != n:
        raise DmlReproError(f"neighbours has {len(neighbours)} rows for {n} fit documents")
    if batch_size < 2:
        raise DmlReproError(f"udml_ss batches need batch_size >= 2, got {batch_size}")
    size = min(int(batch_size), n)
    n_batches = max(1, n // int(batch_size)) if n_batches is None else int(n_batches)
    stream: list[int] = []

    def next_anchor() -> int:
        if not stream:
            stream.extend(rng.permutation(n).tolist()[::-1])
        return stream.pop()

    for _ in range(n_batches):
        members: list[int] = []
        present: set[int] = set()
        while len(members) <= size - 2:
            a = next_anchor()
            if a in present:
                continue
            members.append(a)
            present.add(a)
            if not any(int(j) in present for j in neighbours[a]):
                j = int(rng.choice(neighbours[a]))
                members.append(j)
                present.add(j)
        if len(members) < size:  # one slot left: a neighbour of a member keeps the guarantee
            candidates = sorted({int(j) for m in members for j in neighbours[m]} - present)
            if not candidates:  # neighbourhoods closed within the batch (tiny data sets)
                candidates = sorted(set(range(n)) - present)
            members.append(int(rng.choice(candidates)))
        yield np.asarray(members, dtype=np.int64)


# ---------------------------------------------------------------------------------- k-means variant
def kmeans_pseudo_labels(features: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """(n,) int64 cluster index per document: the original UDML-SS pseudo-labels (k-means++)."""
    from sklearn.cluster import KMeans

    feats = np.asarray(features, dtype=np.float64)
    if not 2 <= int(n_clusters) <= len(feats):
        raise DmlReproError(f"udml_ss n_clusters={n_clusters} must lie in [2, {len(feats)}]")
    km = KMeans(n_clusters=int(n_clusters), n_init=10, max_iter=100, random_state=int(seed))
    return km.fit_predict(feats).astype(np.int64)


def cluster_batches(labels: np.ndarray, batch_size: int, per_cluster: int, rng: np.random.Generator,
                    n_batches: int | None = None) -> Iterator[np.ndarray]:
    """Batches of ``batch_size // per_cluster`` random clusters, ``per_cluster`` documents each
    (drawn with replacement from clusters smaller than that, as the original sampler does)."""
    labels = np.asarray(labels, dtype=np.int64)
    if per_cluster < 2 or batch_size < per_cluster:
        raise DmlReproError(f"udml_ss per_cluster={per_cluster} must be >= 2 and <= batch_size={batch_size}")
    clusters = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    n_batches = max(1, len(labels) // int(batch_size)) if n_batches is None else int(n_batches)
    per_batch = min(int(batch_size) // int(per_cluster), len(clusters))
    for _ in range(n_batches):
        picked = rng.choice(len(clusters), size=per_batch, replace=False)
        rows = [rng.choice(clusters[c], size=per_cluster, replace=len(clusters[c]) < per_cluster)
                for c in picked]
        yield np.concatenate(rows).astype(np.int64)


# ---------------------------------------------------------------------------------- the loss
@dataclass
class UDMLSSLossParts:
    total: torch.Tensor        # what to back-propagate
    triplet: torch.Tensor      # detached
    rotation: torch.Tensor     # detached (0 when rotation_weight is 0)
    n_triplets: int


def udml_ss_loss(model: nn.Module, x: torch.Tensor, mask: torch.Tensor, positive_mask: torch.Tensor,
                 negative_mask: torch.Tensor, rotations: SetRotations, rotation_head: RotationPredictionLoss,
                 rotation_weight: float, triplet_loss: WeightedTripletMarginLoss,
                 miner: SemiHardTripletMiner | None = None, rotation_batch: int | None = 16,
                 generator: torch.Generator | None = None) -> UDMLSSLossParts:
    """``triplet(semi-hard on the pseudo masks) + rotation_weight * rotation prediction``.

    ``model(x, padding_mask) -> (b, F)`` embeddings. The rotation term embeds ``rotation_batch``
    randomly chosen sets of the batch (all when None) under every transform of ``rotations``.
    """
    miner = miner or SemiHardTripletMiner()
    emb = model(x, mask)
    triplets = miner.mine_from_masks(emb.detach(), positive_mask.to(emb.device), negative_mask.to(emb.device))
    triplet = triplet_loss(emb, indices_tuple=triplets)
    rotation = torch.zeros((), dtype=emb.dtype, device=emb.device)
    if rotation_weight > 0:
        b = x.shape[0]
        m = b if rotation_batch is None else min(int(rotation_batch), b)
        # drawn on the CPU without a generator: the trainer checkpoints the CPU RNG, not CUDA's
        device = generator.device if generator is not None else torch.device("cpu")
        rows = torch.randperm(b, generator=generator, device=device)[:m].to(x.device)
        xr, mr, targets = rotations.all_transforms(x[rows], mask[rows])
        rotation = rotation_head(model(xr, mr), targets)
    total = triplet + rotation_weight * rotation
    return UDMLSSLossParts(total, triplet.detach(), rotation.detach(), len(triplets[0]))


class UDMLSSLoss(nn.Module):
    """UDML-SS's objective on one batch; owns the rotations and the rotation head (optimise and
    checkpoint it with the encoder).

    ``forward(model, x, mask, rows, neighbours) -> (loss, n_triplets)`` builds the pseudo masks
    from fit positions ``rows`` and the neighbour table; :meth:`from_masks` takes the masks
    directly (e.g. from k-means pseudo-labels) and returns all parts. ``last_parts`` keeps the
    parts of the latest call for logging.
    """

    def __init__(self, embedding_dim: int, word_dim: int, margin: float = 0.1, rotation_weight: float = 0.1,
                 n_rotations: int = 4, seed: int = 0, rotation_batch: int | None = 16,
                 distance: str = "squared"):
        super().__init__()
        if rotation_weight < 0:
            raise DmlReproError(f"udml_ss rotation_weight must be >= 0, got {rotation_weight}")
        if rotation_batch is not None and int(rotation_batch) < 1:
            raise DmlReproError(f"udml_ss rotation_batch must be >= 1 (or None for the whole batch), "
                                f"got {rotation_batch}")
        self.rotations = SetRotations(word_dim, n_rotations, seed)
        self.rotation_head = RotationPredictionLoss(embedding_dim, n_rotations)
        self.triplet_loss = WeightedTripletMarginLoss(margin)
        self.miner = SemiHardTripletMiner(distance)
        self.rotation_weight = float(rotation_weight)
        self.rotation_batch = None if rotation_batch is None else int(rotation_batch)
        self.last_parts: UDMLSSLossParts | None = None

    def from_masks(self, model: nn.Module, x: torch.Tensor, mask: torch.Tensor, positive_mask: torch.Tensor,
                   negative_mask: torch.Tensor, generator: torch.Generator | None = None) -> UDMLSSLossParts:
        parts = udml_ss_loss(model, x, mask, positive_mask, negative_mask, self.rotations, self.rotation_head,
                             self.rotation_weight, self.triplet_loss, self.miner, self.rotation_batch, generator)
        self.last_parts = parts
        return parts

    def forward(self, model: nn.Module, x: torch.Tensor, mask: torch.Tensor, rows: np.ndarray,
                neighbours: np.ndarray, generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
        pos, neg = pseudo_positive_mask(rows, neighbours, device=x.device)
        parts = self.from_masks(model, x, mask, pos, neg, generator)
        return parts.total, parts.n_triplets
