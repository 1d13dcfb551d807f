"""Table 1's seven rows as declarative method specs: ``{"loss": spec, "miner": spec or None}``.

A spec is what :func:`dmlrepro.training.components.build` resolves (pytorch-metric-learning names
first, then ``dmlrepro.losses`` / ``dmlrepro.miners``), so a row in the config is data, not code,
and runs through the image foundation's trainer unchanged. The values are the paper's (Sec. 6:
VTHM margin 0.1, alpha 2, beta 50, gamma 0.5 "in both Eq. 13 and Eq. 17"), the same rows that
:func:`dmlrepro.losses.unified_view.build_table1_row` builds in code (tested equal, loss values and
mined pairs). Parameters the paper does not give (TARGETS.md 004-§5.6): distance-weighted sampling
uses Wu et al.'s cutoffs (0.5, 1.4); semi-hard mining uses margin 0.1 on cosine similarity.

``config/config.yaml`` and ``config/paper.yaml`` list exactly these specs (tested), so that what a
run did is readable in its config and in its job's command line; a variant (the official code's
beta 40, ``variant: official``) is a config edit.
"""

from __future__ import annotations

from typing import Any

from dmlrepro.losses.unified_view import PAPER_PARAMS, TABLE1_LABELS, TABLE1_ROWS

__all__ = ["ROWS", "TABLE1_METHODS", "row_label"]

ROWS: tuple[str, ...] = tuple(TABLE1_ROWS)  # the paper's row order

_P = PAPER_PARAMS
_BINOMIAL = {"name": "BinomialDevianceLoss", "alpha": _P["alpha"], "beta": _P["beta"], "gamma": _P["gamma"]}
_RAW = {"name": "RAWLoss", "alpha": _P["alpha"], "beta": _P["beta"], "gamma": _P["gamma"]}
_EQUAL = {"name": "EqualWeightLoss"}
_VTHM = {"name": "VTHMMiner", "margin": _P["margin"]}
_DW = {"name": "DistanceWeightedMiner", "cutoff": 0.5, "nonzero_loss_cutoff": 1.4}
_SEMIHARD = {"name": "TripletMarginMiner", "margin": _P["margin"], "type_of_triplets": "semihard",
             "distance": {"name": "CosineSimilarity"}}

TABLE1_METHODS: dict[str, dict[str, Any]] = {
    "binomial": {"loss": _BINOMIAL},
    "raw": {"loss": _RAW},
    "vthm": {"loss": _EQUAL, "miner": _VTHM},
    "binomial_vthm": {"loss": _BINOMIAL, "miner": _VTHM},
    "raw_dw": {"loss": _RAW, "miner": _DW},
    "raw_semihard": {"loss": _RAW, "miner": _SEMIHARD},
    "raw_vthm": {"loss": _RAW, "miner": _VTHM},
}
assert tuple(TABLE1_METHODS) == ROWS


def row_label(row: str) -> str:
    """The paper's row label ("RAW+VTHM (ours)"); an unknown name is returned as is."""
    return TABLE1_LABELS.get(row, row)

