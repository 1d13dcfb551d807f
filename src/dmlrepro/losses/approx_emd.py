"""Approx.EMD baseline: regress squared embedding distances on EMD (WSSET, Sec. IV-A)."""

from __future__ import annotations

import torch


class ApproxEMDLoss(torch.nn.Module):
    """``(1/n^2) sum_ij ( EMD_ij / scale - |f_i - f_j|^2 )^2``.

    Embeddings are L2-normalised, so squared distances live in [0, 4] while WMDs on GloVe or
    word2vec are of order 1-5; ``scale`` maps EMDs into the reachable range (the pipeline sets it
    so the largest training EMD maps to 4; ``scale=1`` is the paper's literal formula).
    """

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = float(scale)

    def forward(self, emb: torch.Tensor, emd_batch: torch.Tensor) -> torch.Tensor:
        sq = (emb.unsqueeze(1) - emb.unsqueeze(0)).pow(2).sum(-1)
        target = emd_batch.to(emb.dtype) / self.scale
        return (target - sq).pow(2).mean()
