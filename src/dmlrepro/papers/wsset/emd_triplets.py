"""Self-supervised triplets from EMD pseudo-labels (WSSET, Sec. IV-A/B of the paper).

Every document of a mini-batch is an anchor. Its positive is its EMD-nearest document in the
batch; its negative is mined in embedding space with FaceNet's semi-hard rule: the document
closest to the anchor whose squared embedding distance exceeds the anchor-positive distance.
When no such document exists (early in training, or a collapsed batch) the negative falls back
to the farthest one, as TF-Addons' ``triplet_semihard_loss`` does, which the authors used.

The re-weighting ``w = exp(-EMD(a, n) / (2 (c sigma)^2))`` is computed separately
(:func:`negative_weights`) and travels with PML's ``(anchors, positives, negatives)`` index tuple
(:class:`~dmlrepro.miners.semihard.WeightedTriplets`) to
:class:`~dmlrepro.losses.triplet.WeightedTripletMarginLoss`. The miner is not a PML ``BaseMiner``:
it mines from the batch's EMD matrix, not from labels. ``variant="released_code"`` reproduces the authors' code instead of
Eq. 3: squared EMD in the exponent, sigma per anchor row, positives only when their EMD is
below a batch percentile, negatives mined on weighted distances.
"""

from __future__ import annotations

import torch

from dmlrepro import DmlReproError
from dmlrepro.miners.semihard import WeightedTriplets, empty_triplets

VARIANTS = ("paper", "released_code")


def squared_distances(emb: torch.Tensor) -> torch.Tensor:
    """Pairwise squared Euclidean distances, exact zeros on the diagonal."""
    sq = (emb.unsqueeze(1) - emb.unsqueeze(0)).pow(2).sum(-1)
    return sq


def batch_sigma(emd_batch: torch.Tensor, per_row: bool = False) -> torch.Tensor:
    """Std of the pairwise EMDs of a batch (i < j), or of each anchor's row (j != i)."""
    n = emd_batch.shape[0]
    if per_row:
        off = ~torch.eye(n, dtype=torch.bool, device=emd_batch.device)
        rows = emd_batch[off].view(n, n - 1)
        return rows.std(dim=1, unbiased=False)
    iu = torch.triu_indices(n, n, 1, device=emd_batch.device)
    return emd_batch[iu[0], iu[1]].std(unbiased=False)


def negative_weights(emd_batch: torch.Tensor, anchors: torch.Tensor, negatives: torch.Tensor,
                     c: float, variant: str = "paper") -> torch.Tensor:
    """Eq. 3 (``paper``) or the released code's form (``released_code``), one weight per triplet."""
    emd_an = emd_batch[anchors, negatives]
    if variant == "paper":
        sigma = batch_sigma(emd_batch).clamp_min(1e-12)
        return torch.exp(-emd_an / (2.0 * (c * sigma) ** 2))
    if variant == "released_code":
        sigma = batch_sigma(emd_batch, per_row=True)[anchors].clamp_min(1e-12)
        return torch.exp(-emd_an.pow(2) / (2.0 * (c * sigma) ** 2))
    raise DmlReproError(f"unknown WSSET variant '{variant}'; choose one of {VARIANTS}")


class EMDTripletMiner:
    """Mine one (anchor, EMD-nearest positive, semi-hard negative) triplet per anchor.

    Args:
        weighting: ``"emd"`` for WSSET weights, ``"none"`` for SSET (all weights 1).
        c: the scale of Eq. 3 (paper: 7; the released code hard-codes 12).
        variant: ``"paper"`` or ``"released_code"`` (see the module docstring).
        positive_percentile: released code only: keep an anchor only if its positive's EMD is
            below this percentile of the batch's pairwise EMDs (the code's ``--treshold``).
    """

    def __init__(self, weighting: str = "emd", c: float = 7.0, variant: str = "paper",
                 positive_percentile: float = 20.0):
        if weighting not in ("emd", "none"):
            raise DmlReproError(f"unknown weighting '{weighting}' (emd | none)")
        if variant not in VARIANTS:
            raise DmlReproError(f"unknown WSSET variant '{variant}'; choose one of {VARIANTS}")
        self.weighting, self.c, self.variant = weighting, float(c), variant
        self.positive_percentile = float(positive_percentile)

    @torch.no_grad()
    def __call__(self, emb: torch.Tensor, emd_batch: torch.Tensor) -> WeightedTriplets:
        n = emb.shape[0]
        device = emb.device
        if n < 3:
            return WeightedTriplets(*empty_triplets(device))
        emd_batch = emd_batch.to(device=device, dtype=torch.float64)
        eye = torch.eye(n, dtype=torch.bool, device=device)
        anchors = torch.arange(n, device=device)
        positives = emd_batch.masked_fill(eye, float("inf")).argmin(dim=1)

        if self.variant == "released_code":
            iu = torch.triu_indices(n, n, 1, device=device)
            threshold = torch.quantile(emd_batch[iu[0], iu[1]], self.positive_percentile / 100.0)
            keep = emd_batch[anchors, positives] <= threshold
            anchors, positives = anchors[keep], positives[keep]
            if anchors.numel() == 0:
                return WeightedTriplets(*empty_triplets(device))

        dist = squared_distances(emb.double())
        if self.weighting == "emd" and self.variant == "released_code":
            # the code ranks negatives by the weighted distance w * d^2 (all candidates weighted)
            all_n = torch.arange(n, device=device)
            w_all = negative_weights(emd_batch, anchors.repeat_interleave(n), all_n.repeat(anchors.numel()),
                                     self.c, self.variant).view(-1, n)
            neg_dist = w_all * dist[anchors]
        else:
            neg_dist = dist[anchors]
        d_ap = neg_dist.gather(1, positives[:, None])
        candidate = torch.ones_like(neg_dist, dtype=torch.bool)
        candidate[torch.arange(anchors.numel(), device=device), anchors] = False
        candidate[torch.arange(anchors.numel(), device=device), positives] = False

        semi_hard = candidate & (neg_dist > d_ap)
        inf = torch.tensor(float("inf"), dtype=neg_dist.dtype, device=device)
        nearest_semi_hard = torch.where(semi_hard, neg_dist, inf).argmin(dim=1)
        farthest = torch.where(candidate, neg_dist, -inf).argmax(dim=1)
        has_semi_hard = semi_hard.any(dim=1)
        negatives = torch.where(has_semi_hard, nearest_semi_hard, farthest)

        if self.weighting == "emd":
            weights = negative_weights(emd_batch, anchors, negatives, self.c, self.variant).to(emb.dtype)
        else:
            weights = None  # SSET: w = 1
        return WeightedTriplets(anchors, positives, negatives, weights)
