"""Triplet losses on squared Euclidean distances (Eqs. 1 and 2 of WSSET)."""

from __future__ import annotations

import torch

from dmlrepro.miners.semihard import Triplets


class WeightedTripletLoss(torch.nn.Module):
    """``mean_i [ |f_a - f_p|^2 - w_i |f_a - f_n|^2 + margin ]_+`` over the mined triplets.

    With all weights 1 this is SSET (Eq. 1); with EMD weights it is WSSET (Eq. 2). The mean runs
    over all triplets (the paper's n-hat), inactive ones included. No triplet gives a zero loss
    that still carries a graph, so training steps are uniform.
    """

    def __init__(self, margin: float = 0.1):
        super().__init__()
        self.margin = float(margin)

    def forward(self, emb: torch.Tensor, triplets: Triplets) -> torch.Tensor:
        if len(triplets) == 0:
            return emb.sum() * 0.0
        a = emb[triplets.anchors]
        d_ap = (a - emb[triplets.positives]).pow(2).sum(-1)
        d_an = (a - emb[triplets.negatives]).pow(2).sum(-1)
        return torch.relu(d_ap - triplets.weights.to(emb.dtype) * d_an + self.margin).mean()
