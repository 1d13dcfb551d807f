"""The seven rows of paper 004's Table 1 (ablation) as declarative (loss, miner) combinations.

``TABLE1_ROWS[name] = (loss_factory, miner_factory or None)``; :func:`build_table1_row` builds a
row with the paper's hyperparameters (Sec. 6: VTHM margin 0.1, alpha=2, beta=50, gamma=0.5 "in
both Eq. 13 and Eq. 17"), overridable by keyword. A keyword goes to every factory of the row that
takes it (``variant`` reaches both RAW and VTHM in "raw_vthm"); one no factory takes is an error.

Rows (paper label -> name -> loss on which pairs):

* Binomial        -> "binomial":      binomial deviance (Eq. 12) on all pairs.
* RAW             -> "raw":           RAW (Eq. 17) on all pairs.
* VTHM            -> "vthm":          equal weights (w = 1 per selected pair, see
  :class:`~dmlrepro.losses.pair_weighting.EqualWeightLoss`) on VTHM pairs.
* Binomial+VTHM   -> "binomial_vthm": binomial deviance on VTHM pairs (1/|P~_i|, 1/|N~_i|).
* RAW+DW          -> "raw_dw":        RAW on PML ``DistanceWeightedMiner(cutoff=0.5,
  nonzero_loss_cutoff=1.4)`` triplets (Wu et al.'s values; the paper gives none), converted to
  pairs (a, p), (a, n) as PML's ``convert_to_pairs`` does; repeated pairs count once.
* RAW+SemiHard    -> "raw_semihard":  RAW on PML ``TripletMarginMiner(margin, "semihard")`` on
  cosine similarity: all triplets with 0 < s_ap - s_an <= margin, margin 0.1 (the paper gives
  none; 0.1 is its VTHM margin on the same cosine scale), converted to pairs likewise.
* RAW+VTHM (ours) -> "raw_vthm":      RAW on VTHM pairs. Equal (values, gradients, mined pairs)
  to PML ``MultiSimilarityLoss(2, 50, 0.5)`` + ``MultiSimilarityMiner(0.1)`` on random batches,
  except that PML returns 0 when the miner yields <= 1 pair of each kind. ``variant="official"``
  follows msight-tech/research-ms-loss instead: positives with s >= 1 - 1e-5 dropped (not just
  j = i), anchors with an empty mined half skipped. All three divide by the batch size m.

The official code's beta is 40 (``OFFICIAL_BETA``); the paper's 50 is the default here.
"""

from __future__ import annotations

import inspect
from typing import Callable

from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.miners import DistanceWeightedMiner, TripletMarginMiner

from dmlrepro import DmlReproError
from dmlrepro.losses.pair_weighting import BinomialDevianceLoss, EqualWeightLoss, RAWLoss
from dmlrepro.miners.vthm import VTHMMiner

__all__ = ["TABLE1_ROWS", "TABLE1_LABELS", "build_table1_row", "PAPER_PARAMS", "OFFICIAL_BETA"]

PAPER_PARAMS = {"alpha": 2.0, "beta": 50.0, "gamma": 0.5, "margin": 0.1}
OFFICIAL_BETA = 40.0


def _binomial(alpha=PAPER_PARAMS["alpha"], beta=PAPER_PARAMS["beta"], gamma=PAPER_PARAMS["gamma"]):
    return BinomialDevianceLoss(alpha=alpha, beta=beta, gamma=gamma)


def _raw(alpha=PAPER_PARAMS["alpha"], beta=PAPER_PARAMS["beta"], gamma=PAPER_PARAMS["gamma"], variant="paper"):
    return RAWLoss(alpha=alpha, beta=beta, gamma=gamma, variant=variant)


def _equal_weights():
    return EqualWeightLoss()


def _vthm(margin=PAPER_PARAMS["margin"], variant="paper"):
    return VTHMMiner(margin=margin, variant=variant)


def _distance_weighted(cutoff=0.5, nonzero_loss_cutoff=1.4):
    return DistanceWeightedMiner(cutoff=cutoff, nonzero_loss_cutoff=nonzero_loss_cutoff)


def _semihard(margin=PAPER_PARAMS["margin"]):
    return TripletMarginMiner(margin=margin, type_of_triplets="semihard", distance=CosineSimilarity())


TABLE1_ROWS: dict[str, tuple[Callable, Callable | None]] = {
    "binomial": (_binomial, None),
    "raw": (_raw, None),
    "vthm": (_equal_weights, _vthm),
    "binomial_vthm": (_binomial, _vthm),
    "raw_dw": (_raw, _distance_weighted),
    "raw_semihard": (_raw, _semihard),
    "raw_vthm": (_raw, _vthm),
}

TABLE1_LABELS = {
    "binomial": "Binomial",
    "raw": "RAW",
    "vthm": "VTHM",
    "binomial_vthm": "Binomial+VTHM",
    "raw_dw": "RAW+DW",
    "raw_semihard": "RAW + SemiHard",
    "raw_vthm": "RAW+VTHM (ours)",
}


def _accepts(factory: Callable | None) -> set[str]:
    return set() if factory is None else set(inspect.signature(factory).parameters)


def build_table1_row(name: str, **params):
    """``(loss, miner)`` of Table 1 row ``name`` (miner ``None`` = all pairs), paper defaults
    overridden by ``params``."""
    if name not in TABLE1_ROWS:
        raise DmlReproError(f"unknown Table 1 row '{name}' ({' | '.join(TABLE1_ROWS)})")
    loss_factory, miner_factory = TABLE1_ROWS[name]
    loss_keys, miner_keys = _accepts(loss_factory), _accepts(miner_factory)
    unknown = sorted(set(params) - loss_keys - miner_keys)
    if unknown:
        raise DmlReproError(f"Table 1 row '{name}': unknown parameter '{unknown[0]}' "
                            f"(accepted: {', '.join(sorted(loss_keys | miner_keys)) or 'none'})")
    loss = loss_factory(**{k: v for k, v in params.items() if k in loss_keys})
    miner = None if miner_factory is None else miner_factory(**{k: v for k, v in params.items() if k in miner_keys})
    return loss, miner
