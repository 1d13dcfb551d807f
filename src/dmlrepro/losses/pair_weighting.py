"""Pair-based losses of "A unified view of deep metric learning via gradient analysis" (paper 004),
written over the batch similarity matrix S, and their pair weights (Theorem 3.1).

Every loss here is a pytorch-metric-learning ``BaseMetricLossFunction`` whose ``_compute_loss(S,
pos_mask, neg_mask)`` maps the (m, m) cosine-similarity matrix (rows = anchors) and two boolean
pair masks (the mined, or all, positive and negative pairs) to one loss per anchor; PML's
``MeanReducer`` then takes the batch mean. Because the loss is a function of S alone,
:func:`similarity_loss` can evaluate it on any S, and :func:`pair_weight_matrix` obtains the pair
weights of Theorem 3.1 by differentiating it:

    w_ij = -dL/dS_ij for positive pairs,   w_ij = +dL/dS_ij for negative pairs,

with S's entries treated as independent (row i = anchor i). The paper's Eq. 4 differentiates
w.r.t. the symmetric s_ij = s_ji, giving (G_ij + G_ji)/2 per ordered pair; both forms produce
the same gradient w.r.t. the network (sum_ij G_ij ds_ij/dtheta), and the paper's Eqs. 10-11,
13-16 are written per anchor row, i.e. in the G_ij form used here.

Losses (paper equation -> class; defaults in brackets):

* contrastive, Eq. 5 -> :class:`ContrastiveSimilarityLoss` [lambda=0.5]: per anchor
  sum_N [s - lambda]_+ - sum_P s. Weights Eq. 6: 1 on positives and on negatives with s > lambda.
* triplet, Eq. 7 -> :class:`TripletSimilarityLoss` [lambda=0.1]: per anchor, the sum over the
  triplets (i, p, n) formed by its masked positives and negatives of [s_in - s_ip + lambda]_+.
  Weights: the number of violating triplets a pair is in; Eq. 8's indicator 1_B when each anchor
  has one positive and one negative (one sampled triplet, the paper's setting).
* lifted structure, Eq. 9 -> :func:`lifted_structure_loss` = PML's
  ``GeneralizedLiftedStructureLoss(pos_margin=0, neg_margin=-lambda)`` on cosine similarity
  [lambda=1.0]: per anchor {log sum_P exp(-s) + log sum_N exp(s + lambda)}_+.
  **Sign decision:** Eq. 9 as printed has "- log sum_N exp(lambda - s)", whose gradient gives a
  negative pair the weight exp(-s_ij)/sum exp(-s_ik) (largest for the *least* similar negative),
  contradicting Eq. 11 (exp(s_ij)/sum exp(s_ik)). Hermans et al. (2017), which the paper cites,
  write [log sum_P exp(D_ap) + log sum_N exp(m - D_an)]_+ on distances D; with D -> -s that is
  "+ log sum_N exp(lambda + s)", which reproduces Eqs. 10 and 11 exactly. We use that.
  lambda is not given in the paper; 1.0 is Oh Song et al.'s margin. (Eq. 11's second equality
  also has its sign flipped: exp(s_ij)/sum exp(s_ik) = 1/sum exp(s_ik - s_ij); its first form,
  which we reproduce, is the right one. Eq. 10's second form is correct.)
* binomial deviance, Eq. 12 -> :class:`BinomialDevianceLoss` [alpha=2, beta=50, gamma=0.5, the
  paper's Sec. 6 values "in both Eq. 13 and Eq. 17"]: per anchor the mean over its masked
  positives of softplus(alpha(gamma - s)) plus the mean over its masked negatives of
  softplus(beta(s - gamma)). With a miner, 1/|P_i| and 1/|N_i| become the mined counts
  (Binomial+VTHM). Weights Eqs. 13-14.
* RAW, Eq. 17 -> :class:`RAWLoss` [alpha=2, beta=50, gamma=0.5]: per anchor
  (1/alpha) log[1 + sum_P exp(-alpha(s - gamma))] + (1/beta) log[1 + sum_N exp(beta(s - gamma))].
  Weights Eqs. 15-16. This is the function of PML's ``MultiSimilarityLoss(2, 50, 0.5)``; ours is
  written independently and tested equal to it (tests/test_unified_losses.py).
* equal weights (Table 1's "VTHM" row) -> :class:`EqualWeightLoss`: per anchor
  sum_N s - sum_P s, i.e. Theorem 3.1's F with every selected pair weighted 1.
  **Decision:** "gives equal weights to the pairs selected by VTHM" is read literally as w = 1 for
  every selected pair (no per-anchor 1/|P~_i|, 1/|N~_i|), the same convention as contrastive's
  Eq. 6; the batch mean 1/m is the same as for every other loss here.

Normalisation: every loss is the mean over the m anchors of the batch (PML ``MeanReducer`` on
per-anchor "element" losses), anchors without pairs included with loss 0. Eq. 9 and Eq. 17 print
this 1/m; Eqs. 5, 7 and 12 print no batch reduction, so with the 1/m their autograd weights are
the printed weights times 1/m -- the one "stated factor" of Theorem 3.1's check.

RAW variants (``variant=``): "paper" (default) follows Eq. 17 literally -- an anchor whose mined
positive (or negative) set is empty still contributes the other half (log(1 + 0) = 0 for the
empty one); this is also what PML does. "official" follows msight-tech/research-ms-loss: an
anchor with an empty mined half is skipped (loss 0). Both divide by the batch size m.
Unlike PML's ``GenericPairLoss``, no loss here returns 0 when every mined index tensor has at most
one entry (PML does; a batch with exactly one mined positive and one negative pair trains nothing).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.losses import (
    BaseMetricLossFunction,
    GeneralizedLiftedStructureLoss,
    GenericPairLoss,
)
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from dmlrepro import DmlReproError

__all__ = [
    "SimilarityMatrixLoss",
    "ContrastiveSimilarityLoss",
    "TripletSimilarityLoss",
    "BinomialDevianceLoss",
    "RAWLoss",
    "EqualWeightLoss",
    "lifted_structure_loss",
    "pair_masks",
    "similarity_loss",
    "pair_weight_matrix",
    "pair_weights",
    "PairWeights",
    "RAW_VARIANTS",
]

RAW_VARIANTS = ("paper", "official")


def pair_masks(indices_tuple, labels, ref_labels, n_rows: int, n_cols: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean (n_rows, n_cols) masks of the positive and negative pairs in ``indices_tuple``.

    ``None`` means all pairs of ``labels`` (diagonal excluded when ``ref_labels is labels``);
    a triplet tuple (a, p, n) becomes pairs (a, p) and (a, n) as PML's ``convert_to_pairs`` does.
    A pair listed twice is still one pair (masks, as in PML's mat-based losses).
    """
    if indices_tuple is None and labels is None:
        raise DmlReproError("pair_masks: labels and indices_tuple cannot both be None")
    if indices_tuple is not None and len(indices_tuple) not in (3, 4):
        raise DmlReproError(f"pair_masks: indices_tuple must have 3 or 4 tensors, got {len(indices_tuple)}")
    a1, p, a2, n = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
    pos_mask = torch.zeros(n_rows, n_cols, dtype=torch.bool, device=device)
    neg_mask = torch.zeros_like(pos_mask)
    pos_mask[a1.to(device).long(), p.to(device).long()] = True
    neg_mask[a2.to(device).long(), n.to(device).long()] = True
    return pos_mask, neg_mask


class SimilarityMatrixLoss(BaseMetricLossFunction):
    """Base class: a pair-based loss H(S, y) computed by ``_compute_loss(S, pos_mask, neg_mask)``.

    ``S`` is (m, n) with larger = more similar (cosine by default), ``pos_mask``/``neg_mask`` are
    (m, n) masks of the pairs that take part; ``_compute_loss`` returns PML's loss dict with one
    loss per anchor row ("element" reduction).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not self.distance.is_inverted:
            raise DmlReproError(f"{type(self).__name__}: distance must be a similarity "
                                f"(is_inverted=True), got {type(self.distance).__name__}")

    def get_default_distance(self):
        return CosineSimilarity()

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.labels_or_indices_tuple_required(labels, indices_tuple)
        similarities = self.distance(embeddings, ref_emb)
        pos_mask, neg_mask = pair_masks(indices_tuple, labels, ref_labels, *similarities.shape,
                                        device=similarities.device)
        return self._compute_loss(similarities, pos_mask, neg_mask)

    def _compute_loss(self, similarities, pos_mask, neg_mask):
        raise NotImplementedError

    @staticmethod
    def _per_anchor(losses: torch.Tensor, similarities: torch.Tensor) -> dict:
        return {"loss": {"losses": losses, "indices": c_f.torch_arange_from_size(similarities),
                         "reduction_type": "element"}}


def _masked_sum(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row sums of ``values`` over ``mask`` (masked entries contribute exactly 0, also to gradients)."""
    return torch.where(mask, values, torch.zeros_like(values)).sum(dim=1)


def _log1p_sum_exp(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Row-wise log(1 + sum_{mask} exp(logits)), stable; 0 for an empty row."""
    masked = torch.where(mask, logits, torch.full_like(logits, float("-inf")))
    with_one = torch.cat([masked, torch.zeros_like(logits[:, :1])], dim=1)
    return torch.logsumexp(with_one, dim=1)


class ContrastiveSimilarityLoss(SimilarityMatrixLoss):
    """Contrastive loss on similarities, Eq. 5: per anchor sum_N [s_ij - margin]_+ - sum_P s_ij.

    Ours rather than PML's ``ContrastiveLoss``: that one is pair-based (no ``_compute_loss`` on S
    and masks), its positive term [1 - s]_+ has zero gradient at s = 1, and its default
    ``AvgNonZeroReducer`` divides by the number of non-zero pairs, which changes the weights of
    Eq. 6 from 1 to 1/count. (The test checks ours against PML's with a sum reducer.)
    """

    def __init__(self, margin: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.margin = float(margin)
        self.add_to_recordable_attributes(name="margin", is_stat=False)

    def _compute_loss(self, similarities, pos_mask, neg_mask):
        neg = _masked_sum(F.relu(similarities - self.margin), neg_mask.bool())
        pos = _masked_sum(similarities, pos_mask.bool())
        return self._per_anchor(neg - pos, similarities)


class TripletSimilarityLoss(SimilarityMatrixLoss):
    """Triplet loss on similarities, Eq. 7: per anchor i, sum over its triplets (i, p, n) with
    p in the positive mask and n in the negative mask of [s_in - s_ip + margin]_+.

    Given a triplet miner's (a, p, n), the triplets are all positive x negative combinations of
    each anchor's mined pairs (a superset of the mined triplets when an anchor has several); with
    one triplet per anchor, the paper's setting in Sec. 4, they are exactly the mined ones.
    Memory is O(m n^2).
    """

    def __init__(self, margin: float = 0.1, **kwargs):
        super().__init__(**kwargs)
        self.margin = float(margin)
        self.add_to_recordable_attributes(name="margin", is_stat=False)

    def _compute_loss(self, similarities, pos_mask, neg_mask):
        # violation[i, p, n] = s_in - s_ip + margin
        violation = similarities[:, None, :] - similarities[:, :, None] + self.margin
        triplet_mask = pos_mask.bool()[:, :, None] & neg_mask.bool()[:, None, :]
        hinge = torch.where(triplet_mask, F.relu(violation), torch.zeros_like(violation))
        return self._per_anchor(hinge.sum(dim=(1, 2)), similarities)


class BinomialDevianceLoss(SimilarityMatrixLoss):
    """Binomial deviance, Eq. 12: per anchor
    (1/|P_i|) sum_P softplus(alpha (gamma - s)) + (1/|N_i|) sum_N softplus(beta (s - gamma)),
    over the masked pairs (an empty set contributes 0). Weights Eqs. 13-14.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, gamma: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.add_to_recordable_attributes(list_of_names=["alpha", "beta", "gamma"], is_stat=False)

    def _compute_loss(self, similarities, pos_mask, neg_mask):
        pos_mask, neg_mask = pos_mask.bool(), neg_mask.bool()
        pos = _masked_sum(F.softplus(self.alpha * (self.gamma - similarities)), pos_mask)
        neg = _masked_sum(F.softplus(self.beta * (similarities - self.gamma)), neg_mask)
        pos = pos / pos_mask.sum(dim=1).clamp(min=1)
        neg = neg / neg_mask.sum(dim=1).clamp(min=1)
        return self._per_anchor(pos + neg, similarities)


class RAWLoss(SimilarityMatrixLoss):
    """RAW, Eq. 17 (the multi-similarity loss): per anchor
    (1/alpha) log[1 + sum_P exp(-alpha (s - gamma))] + (1/beta) log[1 + sum_N exp(beta (s - gamma))]
    over the masked pairs; its gradient is Eqs. 15-16 times 1/m.

    ``variant="paper"``: an anchor with one empty half keeps the other (Eq. 17 as printed, = PML).
    ``variant="official"``: such an anchor is skipped, as msight-tech/research-ms-loss does.
    """

    def __init__(self, alpha: float = 2.0, beta: float = 50.0, gamma: float = 0.5,
                 variant: str = "paper", **kwargs):
        super().__init__(**kwargs)
        if variant not in RAW_VARIANTS:
            raise DmlReproError(f"RAWLoss: unknown variant '{variant}' ({' | '.join(RAW_VARIANTS)})")
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.variant = variant
        self.add_to_recordable_attributes(list_of_names=["alpha", "beta", "gamma"], is_stat=False)

    def _compute_loss(self, similarities, pos_mask, neg_mask):
        pos_mask, neg_mask = pos_mask.bool(), neg_mask.bool()
        pos = _log1p_sum_exp(-self.alpha * (similarities - self.gamma), pos_mask) / self.alpha
        neg = _log1p_sum_exp(self.beta * (similarities - self.gamma), neg_mask) / self.beta
        losses = pos + neg
        if self.variant == "official":
            complete = pos_mask.any(dim=1) & neg_mask.any(dim=1)
            losses = torch.where(complete, losses, torch.zeros_like(losses))
        return self._per_anchor(losses, similarities)


class EqualWeightLoss(SimilarityMatrixLoss):
    """Equal weights on the selected pairs (Table 1's "VTHM" row): per anchor
    sum_N s_ij - sum_P s_ij, i.e. Theorem 3.1's F (Eq. 2) with w_ij = 1 on every masked pair."""

    def _compute_loss(self, similarities, pos_mask, neg_mask):
        losses = _masked_sum(similarities, neg_mask.bool()) - _masked_sum(similarities, pos_mask.bool())
        return self._per_anchor(losses, similarities)


def lifted_structure_loss(margin: float = 1.0, **kwargs) -> GeneralizedLiftedStructureLoss:
    """Generalised lifted structure (Hermans et al. 2017; the paper's Eq. 9 with the sign fixed):
    per anchor {log sum_P exp(-s) + log sum_N exp(s + margin)}_+ on cosine similarity, mean over
    the batch. PML's ``GeneralizedLiftedStructureLoss`` computes exactly this."""
    kwargs.setdefault("distance", CosineSimilarity())
    return GeneralizedLiftedStructureLoss(neg_margin=-float(margin), pos_margin=0.0, **kwargs)


def _is_matrix_loss(loss) -> bool:
    if isinstance(loss, SimilarityMatrixLoss):
        return True
    return isinstance(loss, GenericPairLoss) and loss.loss_method == loss.mat_based_loss


def similarity_loss(loss, similarities: torch.Tensor, pos_mask: torch.Tensor, neg_mask: torch.Tensor,
                    labels: torch.Tensor | None = None) -> torch.Tensor:
    """The batch loss H(S, y) of ``loss`` evaluated on a given similarity matrix ``similarities``.

    ``loss`` is one of this module's losses or a PML mat-based ``GenericPairLoss`` (e.g.
    ``MultiSimilarityLoss``, ``GeneralizedLiftedStructureLoss``); its reducer is applied as in
    ``forward``. Differentiable w.r.t. ``similarities``.
    """
    if not _is_matrix_loss(loss):
        raise DmlReproError(f"similarity_loss: {type(loss).__name__} is not a loss over a similarity "
                            "matrix (a SimilarityMatrixLoss or a mat-based PML GenericPairLoss)")
    if similarities.ndim != 2 or pos_mask.shape != similarities.shape or neg_mask.shape != similarities.shape:
        raise DmlReproError(f"similarity_loss: S {tuple(similarities.shape)} and masks "
                            f"{tuple(pos_mask.shape)}, {tuple(neg_mask.shape)} must be the same 2-D shape")
    loss.reset_stats()
    loss_dict = loss._compute_loss(similarities, pos_mask, neg_mask)
    return loss.reducer(loss_dict, similarities, labels)


def pair_weight_matrix(loss, similarities: torch.Tensor, pos_mask: torch.Tensor,
                       neg_mask: torch.Tensor) -> torch.Tensor:
    """Theorem 3.1's pair weights as an (m, n) matrix: -dL/dS_ij on positive pairs, +dL/dS_ij on
    negative pairs, 0 elsewhere, with L = ``similarity_loss(loss, S, ...)`` and S's entries
    independent (row = anchor)."""
    s = similarities.detach().clone().requires_grad_(True)
    value = similarity_loss(loss, s, pos_mask, neg_mask)
    if not value.requires_grad:  # a constant loss (e.g. no pairs): all weights 0
        return torch.zeros_like(s)
    (grad,) = torch.autograd.grad(value, s, allow_unused=True)
    if grad is None:
        return torch.zeros_like(s)
    zeros = torch.zeros_like(grad)
    return torch.where(pos_mask.bool(), -grad, torch.where(neg_mask.bool(), grad, zeros))


class PairWeights(NamedTuple):
    """Similarities and weights of all positive and of all negative (ordered) pairs of a batch,
    row-major; pairs the miner did not select have weight 0."""

    pos_sims: torch.Tensor
    pos_weights: torch.Tensor
    neg_sims: torch.Tensor
    neg_weights: torch.Tensor


def pair_weights(loss, embeddings: torch.Tensor, labels: torch.Tensor, miner=None,
                 indices_tuple=None) -> PairWeights:
    """Pair weights of ``loss`` on a batch, by differentiating the loss w.r.t. S (Theorem 3.1).

    S = ``loss.distance(embeddings)``; the pairs taking part are ``indices_tuple``, else those
    ``miner(embeddings, labels)`` returns, else all pairs. Returns the similarity and weight of
    every positive and every negative pair of ``labels`` (diagonal excluded).
    """
    labels = torch.as_tensor(labels, device=embeddings.device)
    if embeddings.ndim != 2 or labels.ndim != 1 or len(labels) != len(embeddings):
        raise DmlReproError(f"pair_weights: embeddings {tuple(embeddings.shape)} and labels "
                            f"{tuple(labels.shape)} must be (m, d) and (m,)")
    if miner is not None and indices_tuple is not None:
        raise DmlReproError("pair_weights: give a miner or an indices_tuple, not both")
    embeddings = embeddings.detach()
    with torch.no_grad():
        similarities = loss.distance(embeddings)
        if miner is not None:
            indices_tuple = miner(embeddings, labels)
    m = len(labels)
    pos_mask, neg_mask = pair_masks(indices_tuple, labels, labels, m, m, device=similarities.device)
    weights = pair_weight_matrix(loss, similarities, pos_mask, neg_mask)
    all_pos, all_neg = pair_masks(None, labels, labels, m, m, device=similarities.device)
    return PairWeights(similarities[all_pos], weights[all_pos], similarities[all_neg], weights[all_neg])
