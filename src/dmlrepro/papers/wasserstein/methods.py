"""Table 1's ten rows, and the WCRAIG variant, as declarative method specs.

A row is ``{"loss": spec, "miner": spec (optional), "distance": "sinkhorn" (optional),
"coreset": {...} (optional), "loss_lr": float (optional)}``. Specs resolve through
:func:`dmlrepro.training.components.build` (pytorch-metric-learning names first, then
``dmlrepro.losses``), so the eight baselines are PML's own classes and a row in the config is data.

* ``distance: sinkhorn`` makes a row a W-row: the loss (and miner) get a
  :class:`~dmlrepro.distances.sinkhorn_divergence.SinkhornDivergenceDistance` on the per-image
  point clouds, with the dataset block's ``sinkhorn`` options; every other row trains the clouds'
  pooled embedding (the normalised mean point) with its own distance.
* ``distance: sinkhorn_histogram`` is the second reading of the measure (decision 1): the pooled
  embedding read as a histogram over its dimensions on a learned support
  (:class:`~dmlrepro.distances.histogram_sinkhorn.HistogramSinkhornDistance`), same ``sinkhorn``
  options. ``wtriplet_hist`` and ``wcontrastive_hist`` are W-triplet and W-contrastive under it, with
  the same margins; they are compared with the cloud reading beside Table 1, not rows of it.
* ``coreset`` (WCRAIG, Eq. 6): each epoch (or every ``every`` epochs) a per-class coreset of
  ``fraction`` of the fit images is selected by facility location on 1/SD; batches are drawn from
  it with probability proportional to the CRAIG weights and the epoch has ``fraction`` times the
  batches (``scale_iterations``), so the budget is what the coreset saves.

Parameters (TARGETS.md 002-§2: the paper gives none and says "follow Roth et al. 2020"): Roth's
``parameters.py`` defaults as IMAGE-ANCHORS.md §2 lists them, translated to PML's arguments:

* Triplet: margin 0.2 on the squared L2 distance, semi-hard triplets (Roth's "Triplet" has four
  miners; TARGETS.md 002-§5.3 and the issue pick semi-hard);
* Contrastive: positive margin 0, negative margin 1;
* N-pair: PML's ``NPairsLoss`` (Roth's L2 penalty 0.005 on the embeddings is constant on our
  unit-norm embeddings and left out);
* ProxyNCA: proxies at 50 × the learning rate (``loss_lr_mult``);
* generalised lifted structure: negative margin 1, positive margin 0;
* Histogram: 65 nodes = PML ``n_bins`` 64 (IMAGE-ANCHORS.md §3: Δ = 2 / n_bins);
* Margin: margin 0.2, β 1.2 learnt per class at lr 5e-4 (``loss_lr``), distance-weighted
  sampling (0.5, 1.4), Roth's default miner for it;
* Multi-Similarity: α 2, β 40, base 0.5, miner ε 0.1 (Roth's values; the MS paper prints β 50).

The W-rows: Eq. 2 and Eq. 1 literally (every triplet / pair of the batch, one mean), with Roth's
margins carried to the ground cost ``½‖x − y‖²`` of the divergence (exact for one-point clouds,
where ``S_eps = ½‖x − y‖²``): W-triplet margin 0.1 (= 0.2 / 2), W-contrastive margin 0.5 (= 1² / 2).
"""

from __future__ import annotations

import copy
from typing import Any

from dmlrepro import DmlReproError

__all__ = ["ROWS", "TABLE1_ROWS", "HISTOGRAM_ROWS", "LABELS", "TABLE1_METHODS", "row_label", "is_wasserstein", "method_spec"]

TABLE1_ROWS: tuple[str, ...] = ("wtriplet", "wcontrastive", "triplet", "contrastive", "npair", "proxynca",
                                "genlifted", "histogram", "margin", "multisimilarity")
# the coreset's effect and the histogram reading are reported beside Table 1, not as its rows
HISTOGRAM_ROWS: tuple[str, ...] = ("wtriplet_hist", "wcontrastive_hist")
ROWS: tuple[str, ...] = TABLE1_ROWS + ("wtriplet_wcraig",) + HISTOGRAM_ROWS

LABELS: dict[str, str] = {
    "wtriplet": "Wtriplet", "wcontrastive": "Wcontrastive", "triplet": "Triplet", "contrastive": "Contrastive",
    "npair": "Npair", "proxynca": "ProxyNCA", "genlifted": "GenLifted", "histogram": "Histogram",
    "margin": "Margin", "multisimilarity": "Multisimilarity", "wtriplet_wcraig": "Wtriplet + WCRAIG coreset",
    "wtriplet_hist": "Wtriplet, histogram reading", "wcontrastive_hist": "Wcontrastive, histogram reading",
}

_SQ_L2 = {"name": "LpDistance", "power": 2}
_WTRIPLET = {"loss": {"name": "TripletMarginLoss", "margin": 0.1, "triplets_per_anchor": "all",
                      "reducer": "MeanReducer"}, "distance": "sinkhorn"}

TABLE1_METHODS: dict[str, dict[str, Any]] = {
    "wtriplet": _WTRIPLET,
    "wcontrastive": {"loss": {"name": "WContrastiveLoss", "margin": 0.5}, "distance": "sinkhorn"},
    "triplet": {"loss": {"name": "TripletMarginLoss", "margin": 0.2, "distance": _SQ_L2},
                "miner": {"name": "TripletMarginMiner", "margin": 0.2, "type_of_triplets": "semihard",
                          "distance": _SQ_L2}},
    "contrastive": {"loss": {"name": "ContrastiveLoss", "pos_margin": 0.0, "neg_margin": 1.0}},
    "npair": {"loss": {"name": "NPairsLoss"}},
    "proxynca": {"loss": {"name": "ProxyNCALoss"}, "loss_lr_mult": 50.0},
    "genlifted": {"loss": {"name": "GeneralizedLiftedStructureLoss", "neg_margin": 1.0, "pos_margin": 0.0}},
    "histogram": {"loss": {"name": "HistogramLoss", "n_bins": 64}},
    "margin": {"loss": {"name": "MarginLoss", "margin": 0.2, "beta": 1.2, "learn_beta": True},
               "miner": {"name": "DistanceWeightedMiner", "cutoff": 0.5, "nonzero_loss_cutoff": 1.4},
               "loss_lr": 5.0e-4},
    "multisimilarity": {"loss": {"name": "MultiSimilarityLoss", "alpha": 2.0, "beta": 40.0, "base": 0.5},
                        "miner": {"name": "MultiSimilarityMiner", "epsilon": 0.1}},
    "wtriplet_wcraig": {**_WTRIPLET, "coreset": {"fraction": 0.3, "every": 1, "scale_iterations": True}},
    "wtriplet_hist": {**_WTRIPLET, "distance": "sinkhorn_histogram"},
    "wcontrastive_hist": {"loss": {"name": "WContrastiveLoss", "margin": 0.5}, "distance": "sinkhorn_histogram"},
}
assert tuple(TABLE1_METHODS) == ROWS


def row_label(row: str) -> str:
    """The paper's row label ("Wtriplet"); an unknown name is returned as is."""
    return LABELS.get(row, row)


DISTANCES = (None, "sinkhorn", "sinkhorn_histogram")


def is_wasserstein(method_cfg: dict[str, Any]) -> bool:
    """Whether the row trains point clouds (the cloud reading); every other row trains the pooled embedding."""
    distance = method_cfg.get("distance")
    if distance not in DISTANCES:
        raise DmlReproError(f"method distance '{distance}' is not 'sinkhorn' or 'sinkhorn_histogram' "
                            "(omit it for the pooled embedding)")
    return distance == "sinkhorn"


def method_spec(row: str) -> dict[str, Any]:
    """A copy of the paper's spec of ``row``."""
    if row not in TABLE1_METHODS:
        raise DmlReproError(f"'{row}' is not a row of Table 1 ({' | '.join(ROWS)})")
    return copy.deepcopy(TABLE1_METHODS[row])
