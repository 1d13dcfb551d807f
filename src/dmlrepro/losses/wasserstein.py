"""W-contrastive (Eq. 1) and W-triplet (Eq. 2) losses of Paper 002 ("An Optimal Transport
Approach to Deep Metric Learning"): the contrastive and triplet losses with the Euclidean
distance replaced by ``d_w``. Here ``d_w`` is the debiased Sinkhorn divergence between
per-image point clouds (:class:`dmlrepro.distances.sinkhorn_divergence.SinkhornDivergenceDistance`).

What pytorch-metric-learning already computes, checked against naive loops in
``tests/test_wasserstein_losses.py``:

* **Eq. 2** ``(1/b) sum_{(a,p,n) in T} [d_w(a,p) - d_w(a,n) + gamma]_+`` is exactly PML's
  ``TripletMarginLoss(margin=gamma)`` with a ``MeanReducer``: ``b = |T|``, the inactive triplets
  included. PML's default ``AvgNonZeroReducer`` divides by the number of *active* triplets, which
  is not Eq. 2. ``T`` is every valid triplet of the batch (``y_a = y_p != y_n``, ``a != p``), or
  the triplets of a miner.
* **Eq. 1** ``(1/b) sum_{(i,j) in P} I[y_i=y_j] d_w + I[y_i!=y_j] [gamma - d_w]_+`` is **not**
  PML's ``ContrastiveLoss``. PML reduces the positive and negative pairs as two separate losses
  and adds them, ``mean_pos + mean_neg`` (that is also Roth et al.'s ``criteria/contrastive.py``
  on mined triplets). Eq. 1 has one sum over all pairs ``P`` divided by ``b``. Decision:
  ``b = |P|``, the number of pairs summed (the paper's ``sum^b``), and ``P`` = every ordered
  pair ``i != j`` of the batch (or a miner's pairs). :class:`WContrastiveLoss` implements that.
  The positive term is ``[d_w - pos_margin]_+``, which is ``d_w`` itself for
  ``pos_margin = 0`` because ``d_w >= 0``. The ``[.]_+`` only absorbs tiny negative values
  left by unconverged Sinkhorn iterations.

Mining: the paper names none. Roth et al.'s default batch miner, distance-weighted sampling
(``--batch_mining distance``), corrects with the density of *Euclidean distances between unit
vectors in R^D*. That correction means nothing for Sinkhorn divergences between clouds, and
PML's ``DistanceWeightedMiner`` accepts only an ``LpDistance``, so it is not offered. The
factories take ``mining="all"`` (the literal Eqs. 1-2: every pair/triplet of the batch; the
default), or ``"semihard"`` / ``"hard"``: PML's ``TripletMarginMiner`` on the same distance.
A miner computes its own distance matrix (without gradients), so it roughly doubles the
Sinkhorn work of a step.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning.losses import GenericPairLoss, TripletMarginLoss
from pytorch_metric_learning.miners import BaseMiner, TripletMarginMiner
from pytorch_metric_learning.reducers import MeanReducer
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from dmlrepro import DmlReproError
from dmlrepro.distances.sinkhorn_divergence import SinkhornDivergenceDistance

MINING = ("all", "semihard", "hard")


class WContrastiveLoss(GenericPairLoss):
    """Eq. 1: ``(1/|P|) sum_{(i,j) in P} I[y_i=y_j] [d_ij - pos_margin]_+ + I[y_i!=y_j] [margin - d_ij]_+``.

    One mean over the positive and negative pairs together (``MeanReducer`` by default), unlike
    PML's ``ContrastiveLoss`` (a mean over each kind, added). ``P``: all ordered pairs
    ``i != j`` of the batch, or the pairs of ``indices_tuple`` (a miner's triplets give their
    ``(a, p)`` and ``(a, n)`` pairs). Works with any PML distance that is not inverted. A batch
    with a single pair still gives its loss (PML's pair losses return 0 unless some kind has
    two or more pairs).
    """

    def __init__(self, margin: float, pos_margin: float = 0.0, **kwargs):
        super().__init__(mat_based_loss=False, **kwargs)
        if self.distance.is_inverted:
            raise DmlReproError("WContrastiveLoss needs a distance (is_inverted=False), not a similarity")
        self.margin = float(margin)
        self.pos_margin = float(pos_margin)
        self.add_to_recordable_attributes(list_of_names=["margin", "pos_margin"], is_stat=False)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.labels_or_indices_tuple_required(labels, indices_tuple)
        indices_tuple = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
        if len(indices_tuple[0]) + len(indices_tuple[2]) == 0:
            return self.zero_losses()
        mat = self.distance(embeddings, ref_emb)
        return self.loss_method(mat, indices_tuple)

    def _compute_loss(self, pos_pair_dist, neg_pair_dist, indices_tuple):
        a1, _, a2, _ = indices_tuple
        parts = []
        if len(a1):
            parts.append(torch.relu(pos_pair_dist - self.pos_margin))
        if len(a2):
            parts.append(torch.relu(self.margin - neg_pair_dist))
        return {"loss": {"losses": torch.cat(parts), "indices": torch.cat([a1, a2]),
                         "reduction_type": "element"}}

    def get_default_reducer(self):
        return MeanReducer()


def _miner(mining: str, margin: float, distance) -> BaseMiner | None:
    if mining == "distance":
        raise DmlReproError("mining 'distance' (Roth's default) samples by the density of Euclidean distances "
                            f"on the unit sphere; it does not apply to Sinkhorn divergences (use one of {MINING})")
    if mining not in MINING:
        raise DmlReproError(f"unknown mining '{mining}' (known: {', '.join(MINING)})")
    if mining == "all":
        return None
    return TripletMarginMiner(margin=margin, type_of_triplets=mining, distance=distance)


def _check_distance(distance) -> None:
    if not isinstance(distance, SinkhornDivergenceDistance):
        raise DmlReproError(f"the W-losses need a SinkhornDivergenceDistance, got {type(distance).__name__}")


def w_triplet_loss(distance: SinkhornDivergenceDistance, *, margin: float,
                   mining: str = "all") -> tuple[TripletMarginLoss, BaseMiner | None]:
    """Eq. 2: PML's ``TripletMarginLoss(margin)`` on ``distance`` with a ``MeanReducer`` (``b = |T|``),
    and the miner for ``mining`` (``None`` for ``"all"``: every valid triplet of the batch).

    Call as ``loss(rows, labels, miner(rows, labels) if miner else None)`` with ``rows`` the
    flattened clouds."""
    _check_distance(distance)
    loss = TripletMarginLoss(margin=margin, distance=distance, reducer=MeanReducer(), triplets_per_anchor="all")
    return loss, _miner(mining, margin, distance)


def w_contrastive_loss(distance: SinkhornDivergenceDistance, *, margin: float, pos_margin: float = 0.0,
                       mining: str = "all", miner_margin: float | None = None
                       ) -> tuple[WContrastiveLoss, BaseMiner | None]:
    """Eq. 1: :class:`WContrastiveLoss` (``margin`` = the paper's ``gamma``) on ``distance``, and
    the miner for ``mining``. A triplet miner needs a triplet margin of its own
    (``miner_margin``, default ``margin``)."""
    _check_distance(distance)
    loss = WContrastiveLoss(margin=margin, pos_margin=pos_margin, distance=distance)
    return loss, _miner(mining, margin if miner_margin is None else miner_margin, distance)
