"""Paper 004's Table 1 claims as data (:data:`CLAIMS`), and the per-seed results table they read.

Each claim compares two rows on R@1 on every dataset that ran both (``dataset=None``), with the
verdict rules of :mod:`dmlrepro.reporting.claims` (means apart by more than ±1 std over seeds).
On the default config that is the Fashion-MNIST stand-in: a check that the stand-in behaves like
the paper says, not a test of the paper's numbers (the claims table's title says which datasets).

Claims and their source (Sec. 6.1 and Table 1):

- "RAW+VTHM (ours)" is the best row (bold in Table 1; "our RAW+VTHM further improves the
  performance"): RAW+VTHM > each of the other six rows.
- "VTHM leads to improvement on all datasets for Binomial and RAW": Binomial+VTHM > Binomial, and
  RAW+VTHM > RAW.
- RAW beats Binomial: Table 1's numbers (RAW above Binomial on all four datasets) and Sec. 5.2's
  argument (relative as well as absolute similarity); the text claims it only with VTHM (below).
- "Binomial+VTHM outperforms VTHM on all datasets".
- "our RAW+VTHM further improves the performance by considering the relative hardness of pairs":
  RAW+VTHM > Binomial+VTHM (part of "best row"; kept once, under that claim).
"""

from __future__ import annotations

import os
from typing import Iterable

import pandas as pd

from dmlrepro.reporting.claims import ClaimSpec, Rows, runs_frame

from .methods import ROWS

__all__ = ["CLAIMS", "results_frame"]

_S61 = "§6.1, Table 1"
_BEST = ("Table 1: RAW+VTHM (ours) is the best row; \"our RAW+VTHM further improves the performance by "
         "considering the relative hardness of pairs\"")
_VTHM_HELPS = "VTHM leads to improvement on all datasets for Binomial and RAW."
_RAW_OVER_BINOMIAL = "Table 1: RAW above Binomial on every dataset (relative and absolute similarity, §5.2)"
_BV_OVER_V = "Binomial+VTHM outperforms VTHM on all datasets simultaneously"

CLAIMS: list[ClaimSpec] = [
    *[ClaimSpec(f"T1-raw_vthm>{other}", _BEST, _S61, "Table 1", "R@1", Rows("raw_vthm", None), Rows(other, None))
      for other in ROWS if other != "raw_vthm"],
    ClaimSpec("T1-vthm_helps_binomial", _VTHM_HELPS, _S61, "Table 1", "R@1",
              Rows("binomial_vthm", None), Rows("binomial", None)),
    ClaimSpec("T1-vthm_helps_raw", _VTHM_HELPS, _S61, "Table 1", "R@1",
              Rows("raw_vthm", None), Rows("raw", None)),
    ClaimSpec("T1-raw>binomial", _RAW_OVER_BINOMIAL, "Table 1", "Table 1", "R@1", Rows("raw", None), Rows("binomial", None)),
    ClaimSpec("T1-binomial_vthm>vthm", _BV_OVER_V, _S61, "Table 1", "R@1", Rows("binomial_vthm", None), Rows("vthm", None)),
]


def results_frame(metric_files: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """The per-seed R@K table (:func:`dmlrepro.reporting.claims.runs_frame`) of the runs'
    ``metrics.json`` (written by ``image_foundation.run.train``)."""
    return runs_frame(metric_files)
