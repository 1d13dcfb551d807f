"""FaceNet semi-hard triplet mining with the semantics of TF-Addons' ``triplet_semihard_loss``.

The WSSET authors trained their triplet-loss baselines (DeepSets+TL, SelfAttn+TL, DSPN+TL) and
the supervised fine-tuning of Ours+Int./Ext. with ``tfa.losses.triplet_semihard_loss`` (TF-Addons
0.11.2, margin 0.1). That function forms one triplet per *ordered* positive pair ``(a, p)``,
``a != p``, and picks the negative among the anchor's valid negatives ``n``:

* the closest one with ``d(a, n) > d(a, p)`` (semi-hard), if there is one;
* otherwise the farthest one;
* if the anchor has no valid negative at all, TF-Addons' masked maximum returns the row minimum
  of the distance matrix, i.e. ``d(a, a) = 0``. We reproduce that by using the anchor itself as
  the negative (``d_an = 0``, loss ``[d_ap + margin]_+``).

The loss is the mean over all ordered positive pairs, inactive ones included, which is what
:class:`~dmlrepro.losses.triplet.WeightedTripletMarginLoss` computes from the returned triplets.

The miner is a pytorch-metric-learning ``BaseMiner``: ``miner(embeddings, labels)`` returns PML's
``(anchors, positives, negatives)`` index tuple, so any PML triplet loss can consume it, and PML's
miners can replace it. :meth:`SemiHardTripletMiner.mine_from_masks` mines from explicit masks
(UDML-SS's pseudo-positives) instead of labels.

Distances: TF-Addons 0.11.2 mines and computes the loss on squared Euclidean distances
(``pairwise_distance(squared=True)``), our default. ``metric="euclidean"`` (later TF-Addons'
``"L2"``) mines on plain distances; the choice of negative is the same either way, because
the semi-hard rule only compares distances and the square root is monotone. The distance
matters only to the loss, and ``WeightedTripletMarginLoss`` uses squared distances. (Mining
computes its own float64 distances rather than through a PML ``distance`` object: PML's
``LpDistance`` goes through ``torch.cdist``, whose last bits can flip a tie and so a negative.)

Positives and negatives come from ``labels`` (supervised) or from explicit boolean masks (e.g.
UDML-SS's pseudo-positives, ``papers/wsset/udml_ss.py``). Mining runs without gradients, in float64.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning.miners import BaseMiner

from dmlrepro import DmlReproError

DISTANCES = ("squared", "euclidean")


class WeightedTriplets(tuple):
    """PML's ``(anchors, positives, negatives)`` index tuple with per-triplet ``weights`` on the
    anchor-negative distance (WSSET's w). PML code that reads it as a 3-tuple sees plain triplets."""

    weights: torch.Tensor | None

    def __new__(cls, anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
                weights: torch.Tensor | None = None):
        triplets = super().__new__(cls, (anchors, positives, negatives))
        triplets.weights = weights
        return triplets

    anchors = property(lambda self: self[0])
    positives = property(lambda self: self[1])
    negatives = property(lambda self: self[2])


def empty_triplets(device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    empty = torch.empty(0, dtype=torch.long, device=device)
    return empty, empty, empty


def label_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(positive_mask, negative_mask)``, both (b, b) bool: same label off the diagonal, and
    different label."""
    labels = torch.as_tensor(labels).reshape(-1)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


def pairwise_distances(emb: torch.Tensor, distance: str = "squared") -> torch.Tensor:
    """(b, b) squared or plain Euclidean distances, exact zeros on the diagonal."""
    sq = (emb.unsqueeze(1) - emb.unsqueeze(0)).pow(2).sum(-1)
    if distance == "squared":
        return sq
    if distance == "euclidean":
        return sq.sqrt()
    raise DmlReproError(f"unknown distance '{distance}' ({' | '.join(DISTANCES)})")


def _check_mask(mask: torch.Tensor, name: str, b: int, device: torch.device) -> torch.Tensor:
    mask = torch.as_tensor(mask, device=device)
    if mask.dtype != torch.bool:
        raise DmlReproError(f"{name} must be a boolean tensor, got dtype {mask.dtype}")
    if tuple(mask.shape) != (b, b):
        raise DmlReproError(f"{name} must have shape ({b}, {b}) for a batch of {b}, got {tuple(mask.shape)}")
    return mask


class SemiHardTripletMiner(BaseMiner):
    """One triplet per ordered positive pair, negative chosen by FaceNet's semi-hard rule.

    ``miner(embeddings, labels)`` (PML's call) or :meth:`mine_from_masks` with (b, b) bool masks.
    Diagonals are ignored (an element is never its own positive or negative). A pair may not be
    both positive and negative. Returns ``(anchors, positives, negatives)`` (a
    :class:`WeightedTriplets` without weights) ordered by anchor, then positive.
    """

    def __init__(self, metric: str = "squared", **kwargs):
        super().__init__(**kwargs)
        if metric not in DISTANCES:
            raise DmlReproError(f"unknown distance '{metric}' for semi-hard mining ({' | '.join(DISTANCES)})")
        self.metric = metric

    def forward(self, embeddings, labels, ref_emb=None, ref_labels=None):
        labels = torch.as_tensor(labels).reshape(-1)  # PML's shape check would raise a bare ValueError
        if labels.numel() != embeddings.shape[0]:
            raise DmlReproError(f"labels has {labels.numel()} entries for a batch of {embeddings.shape[0]} embeddings")
        return super().forward(embeddings, labels, ref_emb, ref_labels)

    def mine(self, embeddings, labels, ref_emb, ref_labels) -> WeightedTriplets:
        return self._mine(embeddings, *label_masks(labels))

    @torch.no_grad()
    def mine_from_masks(self, embeddings: torch.Tensor, positive_mask: torch.Tensor,
                        negative_mask: torch.Tensor) -> WeightedTriplets:
        b, device = embeddings.shape[0], embeddings.device
        eye = torch.eye(b, dtype=torch.bool, device=device)
        positive_mask = _check_mask(positive_mask, "positive_mask", b, device) & ~eye
        negative_mask = _check_mask(negative_mask, "negative_mask", b, device) & ~eye
        if (positive_mask & negative_mask).any():
            i, j = (positive_mask & negative_mask).nonzero()[0].tolist()
            raise DmlReproError(f"positive_mask and negative_mask overlap (first at row {i}, column {j})")
        triplets = self._mine(embeddings, positive_mask, negative_mask)
        self.output_assertion(triplets)
        return triplets

    def _mine(self, emb, positive_mask, negative_mask):
        anchors, positives = positive_mask.nonzero(as_tuple=True)
        if anchors.numel() == 0:
            return WeightedTriplets(*empty_triplets(emb.device))
        dist = pairwise_distances(emb.detach().double(), self.metric)
        d_an = dist[anchors]                                   # (P, b): every candidate per pair
        d_ap = dist[anchors, positives].unsqueeze(1)           # (P, 1)
        valid = negative_mask[anchors]                         # (P, b)
        semi_hard = valid & (d_an > d_ap)
        inf = torch.tensor(float("inf"), dtype=dist.dtype, device=emb.device)
        nearest_semi_hard = torch.where(semi_hard, d_an, inf).argmin(dim=1)
        farthest = torch.where(valid, d_an, -inf).argmax(dim=1)
        negatives = torch.where(semi_hard.any(dim=1), nearest_semi_hard,
                                torch.where(valid.any(dim=1), farthest, anchors))
        return WeightedTriplets(anchors, positives, negatives)
