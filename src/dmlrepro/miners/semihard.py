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
:class:`~dmlrepro.losses.triplet.WeightedTripletLoss` computes from the returned triplets.

Distances: TF-Addons 0.11.2 mines and computes the loss on squared Euclidean distances
(``pairwise_distance(squared=True)``), our default. ``distance="euclidean"`` (later TF-Addons'
``"L2"``) mines on plain distances; the choice of negative is the same either way, because
the semi-hard rule only compares distances and the square root is monotone. The distance
matters only to the loss, and ``WeightedTripletLoss`` uses squared distances.

Positives and negatives come from ``labels`` (supervised) or from explicit boolean masks (e.g.
UDML-SS's pseudo-positives, ``papers/wsset/udml_ss.py``). Mining runs without gradients, in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dmlrepro import DmlReproError

DISTANCES = ("squared", "euclidean")


@dataclass
class Triplets:
    anchors: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor
    weights: torch.Tensor  # multiplies the anchor-negative distance; ones when unweighted

    def __len__(self) -> int:
        return int(self.anchors.numel())


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


class SemiHardTripletMiner:
    """One triplet per ordered positive pair, negative chosen by FaceNet's semi-hard rule.

    Call with ``labels`` (b,) *or* with both ``positive_mask`` and ``negative_mask`` (b, b) bool.
    Diagonals are ignored (an element is never its own positive or negative). A pair may not be
    both positive and negative. Returns :class:`Triplets` with unit weights, ordered by anchor,
    then positive.
    """

    def __init__(self, distance: str = "squared"):
        if distance not in DISTANCES:
            raise DmlReproError(f"unknown distance '{distance}' for semi-hard mining ({' | '.join(DISTANCES)})")
        self.distance = distance

    @torch.no_grad()
    def __call__(self, emb: torch.Tensor, labels: torch.Tensor | None = None,
                 positive_mask: torch.Tensor | None = None,
                 negative_mask: torch.Tensor | None = None) -> Triplets:
        b, device = emb.shape[0], emb.device
        if labels is not None:
            if positive_mask is not None or negative_mask is not None:
                raise DmlReproError("give either labels or positive_mask/negative_mask, not both")
            labels = torch.as_tensor(labels, device=device).reshape(-1)
            if labels.numel() != b:
                raise DmlReproError(f"labels has {labels.numel()} entries for a batch of {b} embeddings")
            positive_mask, negative_mask = label_masks(labels)
        elif positive_mask is None or negative_mask is None:
            raise DmlReproError("semi-hard mining needs labels, or both positive_mask and negative_mask")
        else:
            eye = torch.eye(b, dtype=torch.bool, device=device)
            positive_mask = _check_mask(positive_mask, "positive_mask", b, device) & ~eye
            negative_mask = _check_mask(negative_mask, "negative_mask", b, device) & ~eye
            if (positive_mask & negative_mask).any():
                i, j = (positive_mask & negative_mask).nonzero()[0].tolist()
                raise DmlReproError(f"positive_mask and negative_mask overlap (first at row {i}, column {j})")

        anchors, positives = positive_mask.nonzero(as_tuple=True)
        if anchors.numel() == 0:
            empty = torch.empty(0, dtype=torch.long, device=device)
            return Triplets(empty, empty, empty, torch.empty(0, dtype=emb.dtype, device=device))

        dist = pairwise_distances(emb.detach().double(), self.distance)
        d_an = dist[anchors]                                   # (P, b): every candidate per pair
        d_ap = dist[anchors, positives].unsqueeze(1)           # (P, 1)
        valid = negative_mask[anchors]                         # (P, b)
        semi_hard = valid & (d_an > d_ap)
        inf = torch.tensor(float("inf"), dtype=dist.dtype, device=device)
        nearest_semi_hard = torch.where(semi_hard, d_an, inf).argmin(dim=1)
        farthest = torch.where(valid, d_an, -inf).argmax(dim=1)
        negatives = torch.where(semi_hard.any(dim=1), nearest_semi_hard,
                                torch.where(valid.any(dim=1), farthest, anchors))
        weights = torch.ones(anchors.numel(), dtype=emb.dtype, device=device)
        return Triplets(anchors, positives, negatives, weights)
