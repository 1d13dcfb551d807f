"""SSDML's angular triplet loss with a low-rank Mahalanobis metric (Dutta, Harandi & Sekhar,
AAAI 2021, Eq. 3).

    J = Σ_{i=1}^{T_b} log(1 + exp(m_i)),
    m_i = δ²_L(z_i, z_i⁺) − 4 tan²α · δ²_L(z_i⁻, (z_i + z_i⁺)/2),
    δ²_L(x, y) = (x − y)ᵀ L Lᵀ (x − y) = ||Lᵀ(x − y)||²,

with L (d × l) the metric's factor (M = L Lᵀ) and α the angle at the negative (Wang et al.
2017), given in degrees (the paper: 40° on MNIST/Fashion/CIFAR-10, 45° on CUB/Cars).

Decisions:

* **Sum over the triplets**, as Eq. 3 writes it (the default reducer is PML's ``SumReducer``;
  the same-authors' GUML notebook takes a mean instead: pass ``reducer=MeanReducer()`` for it).
* Embeddings are used as given: the network already ends in an l2 layer before L (paper,
  Implementation details), so no normalisation happens here and ``δ²_L`` is not re-normalised.
* ``log(1 + exp(m))`` is ``torch.nn.functional.softplus`` (exact for large m, no overflow).
* ``L`` is a buffer, not a parameter: SSDML alternates (Algorithm 1) between a Manopt step on L
  with the network fixed (:mod:`dmlrepro.losses.stiefel_metric`) and SGD on the network with L
  fixed, so the SGD optimiser must not see L. ``L=None`` means the identity (plain squared
  Euclidean distances).

Why not pytorch-metric-learning's ``AngularLoss``: it is the N-pair form of Wang et al. (one
anchor-positive pair against *all* negatives through a log-sum-exp of
``4 tan²α (a + p)ᵀ n − 2(1 + tan²α) aᵀp``, on unit-normalised embeddings, reduced per pair). That
equals the triplet form only for unit vectors and a single negative, has no metric L, and cannot
take SSDML's mined triplets one by one. Eq. 3 is the triplet form, with distances under L.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.reducers import SumReducer
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from dmlrepro import DmlReproError


def tan2_from_degrees(alpha_deg: float) -> float:
    """``tan²α`` for α in degrees, 0 < α < 90."""
    alpha_deg = float(alpha_deg)
    if not 0.0 < alpha_deg < 90.0:
        raise DmlReproError(f"alpha_deg must lie in (0, 90) degrees, got {alpha_deg}")
    return math.tan(math.radians(alpha_deg)) ** 2


def _as_triplet_indices(triplets, n: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if isinstance(triplets, (tuple, list)) and len(triplets) == 3:
        a, p, q = (torch.as_tensor(t, device=device).long().reshape(-1) for t in triplets)
    else:
        t = torch.as_tensor(triplets, device=device).long()
        if t.ndim != 2 or t.shape[1] != 3:
            raise DmlReproError(f"triplets must be (T, 3) or a tuple (anchors, positives, negatives), got shape {tuple(t.shape)}")
        a, p, q = t[:, 0], t[:, 1], t[:, 2]
    if not (a.numel() == p.numel() == q.numel()):
        raise DmlReproError("anchors, positives and negatives must have the same length")
    if a.numel() and (min(a.min(), p.min(), q.min()) < 0 or max(a.max(), p.max(), q.max()) >= n):
        raise DmlReproError(f"triplet indices must lie in [0, {n - 1}]")
    return a, p, q


def ssdml_triplet_margins(emb: torch.Tensor, triplets, L: torch.Tensor | None,
                          alpha_deg: float) -> torch.Tensor:
    """``m_i`` of Eq. 3 for each triplet, shape (T,)."""
    tan2 = tan2_from_degrees(alpha_deg)
    a, p, q = _as_triplet_indices(triplets, emb.shape[0], emb.device)
    if L is not None:
        if L.ndim != 2 or L.shape[0] != emb.shape[1]:
            raise DmlReproError(f"L must be (d, l) with d = {emb.shape[1]}, got shape {tuple(L.shape)}")
        emb = emb @ L.to(emb.dtype)          # δ²_L(x, y) = ||Lᵀx − Lᵀy||²: project once
    za, zp, zn = emb[a], emb[p], emb[q]
    d_ap = (za - zp).pow(2).sum(-1)
    d_n_mid = (zn - 0.5 * (za + zp)).pow(2).sum(-1)
    return d_ap - 4.0 * tan2 * d_n_mid


def ssdml_angular_loss(emb: torch.Tensor, triplets, L: torch.Tensor | None = None,
                       alpha_deg: float = 40.0, reduction: str = "sum") -> torch.Tensor:
    """Eq. 3: ``Σ_i softplus(m_i)`` over ``triplets`` (``reduction="mean"``: the mean; ``"none"``:
    the (T,) per-triplet losses).

    ``emb`` (n, d); ``triplets`` (T, 3) or ``(anchors, positives, negatives)`` row indices into
    ``emb``; ``L`` (d, l) or None for the identity. Differentiable in ``emb`` and ``L``.
    """
    losses = F.softplus(ssdml_triplet_margins(emb, triplets, L, alpha_deg))
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.mean() if losses.numel() else losses.sum()
    if reduction == "none":
        return losses
    raise DmlReproError(f"unknown reduction '{reduction}' (sum | mean | none)")


class SSDMLAngularLoss(BaseMetricLossFunction):
    """Eq. 3 as a pytorch-metric-learning loss: ``loss(embeddings, indices_tuple=(a, p, n))``.

    ``embeddings`` are the features before L (z in the paper). Without ``indices_tuple``,
    triplets come from ``labels`` (PML's ``convert_to_triplets``, ``triplets_per_anchor``), which
    makes the same loss usable on labelled data alone. Default reducer: sum (Eq. 3).
    """

    def __init__(self, alpha_deg: float = 40.0, L: torch.Tensor | None = None,
                 triplets_per_anchor="all", **kwargs):
        super().__init__(**kwargs)
        self.alpha_deg = float(alpha_deg)
        tan2_from_degrees(self.alpha_deg)     # validate now
        self.triplets_per_anchor = triplets_per_anchor
        self.register_buffer("L", None if L is None else torch.as_tensor(L).detach().clone())
        self.add_to_recordable_attributes(list_of_names=["alpha_deg"], is_stat=False)

    def get_default_reducer(self):
        return SumReducer()

    def set_metric(self, L: torch.Tensor | None) -> None:
        """Replace L (after a metric step); it is copied and detached."""
        self.L = None if L is None else torch.as_tensor(L).detach().clone()

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        if ref_emb is not embeddings:
            raise DmlReproError("SSDMLAngularLoss works within one set of embeddings: ref_emb is not supported")
        if indices_tuple is None and labels is None:
            raise DmlReproError("SSDMLAngularLoss needs indices_tuple (mined triplets) or labels")
        anchors, positives, negatives = lmu.convert_to_triplets(
            indices_tuple, labels, ref_labels, t_per_anchor=self.triplets_per_anchor)
        if len(anchors) == 0:
            return self.zero_losses()
        L = None if self.L is None else self.L.to(embeddings.device)
        losses = ssdml_angular_loss(embeddings, (anchors, positives, negatives), L,
                                    self.alpha_deg, reduction="none")
        return {"loss": {"losses": losses, "indices": (anchors, positives, negatives),
                         "reduction_type": "triplet"}}
