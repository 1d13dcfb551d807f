"""The triplet loss of WSSET's Eqs. 1 and 2 on squared Euclidean distances, as a
pytorch-metric-learning loss."""

from __future__ import annotations

import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.reducers import MeanReducer


class WeightedTripletMarginLoss(BaseMetricLossFunction):
    """``mean_i [ |f_a - f_p|^2 - w_i |f_a - f_n|^2 + margin ]_+`` over the given triplets.

    ``indices_tuple`` is PML's ``(anchors, positives, negatives)``; a
    :class:`~dmlrepro.miners.semihard.WeightedTriplets` adds the weights ``w`` (WSSET, Eq. 2);
    without them every ``w`` is 1 (SSET, Eq. 1, and the +TL rows). The mean runs over all
    triplets, inactive ones included (the paper's n-hat: PML's ``MeanReducer``). No triplet gives
    PML's zero loss, which still carries a graph, so training steps are uniform.

    Unweighted, this is PML's ``TripletMarginLoss(margin, distance=LpDistance(normalize_embeddings=
    False, power=2), reducer=MeanReducer())`` (``tests/test_mining_losses.py`` checks values and
    gradients). It is kept because it evaluates the distance on the triplets' pairs only, as the
    tables were computed, where PML's goes through ``torch.cdist`` over the whole batch, which
    changes the last bits of every step.
    """

    def __init__(self, margin: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.margin = float(margin)

    def get_default_reducer(self):
        return MeanReducer()

    def get_default_distance(self):
        return LpDistance(normalize_embeddings=False, p=2, power=2)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        anchors, positives, negatives = indices_tuple
        if len(anchors) == 0:
            return self.zero_losses()
        a = embeddings[anchors]
        d_ap = (a - ref_emb[positives]).pow(2).sum(-1)
        d_an = (a - ref_emb[negatives]).pow(2).sum(-1)
        weights = getattr(indices_tuple, "weights", None)
        if weights is not None:
            d_an = weights.to(embeddings.dtype) * d_an
        losses = torch.relu(d_ap - d_an + self.margin)
        return {"loss": {"losses": losses, "indices": indices_tuple, "reduction_type": "triplet"}}
