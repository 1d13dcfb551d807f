"""Paper 002's claims about Table 1 as :class:`~dmlrepro.reporting.claims.ClaimSpec` data.

Evaluated on our per-seed results (:func:`results_frame`, every Table 1 metric in percent) with
the shared verdict rule (means apart by more than ±1 std over seeds), on every dataset that ran
both rows (``dataset=None``). On the default config those are the Fashion-MNIST and MNIST
stand-ins: a check of method, not a test of the paper's numbers (the claims table's title says so).

* "wtriplet achieves superior performance in most metrics" (the abstract's result paragraph):
  W-triplet above each of the nine other rows, on each of Table 1's five metrics (45 comparisons;
  "most metrics" is judged by the reader from the verdict counts per metric).
* W-triplet beats Triplet and W-contrastive beats Contrastive, on every metric: the paper's point
  (replacing the Euclidean distance by W₁ helps), read from Table 1 (issue 16 lists both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd

from dmlrepro.reporting.claims import ClaimSpec, Rows, runs_frame

from .methods import TABLE1_ROWS
from .paper_values import METRICS

__all__ = ["CLAIMS", "results_frame"]

_BEST = "wtriplet achieves superior performance in most metrics"
_W_HELPS = "Table 1: replacing the Euclidean distance by W1 improves the loss (W-{0} above {0})"

CLAIMS: list[ClaimSpec] = [
    *[ClaimSpec(f"T1-wtriplet>{other}-{metric}", _BEST, "Results, Table 1", "Table 1", metric,
                Rows("wtriplet", None), Rows(other, None))
      for metric in METRICS for other in TABLE1_ROWS if other != "wtriplet"],
    *[ClaimSpec(f"T1-w_helps_triplet-{metric}", _W_HELPS.format("triplet"), "Table 1", "Table 1", metric,
                Rows("wtriplet", None), Rows("triplet", None)) for metric in METRICS],
    *[ClaimSpec(f"T1-w_helps_contrastive-{metric}", _W_HELPS.format("contrastive"), "Table 1", "Table 1",
                metric, Rows("wcontrastive", None), Rows("contrastive", None)) for metric in METRICS],
]


def results_frame(metric_files: Iterable[str | Path]) -> pd.DataFrame:
    """One row per (run, Table 1 metric) in percent, ``split`` = the seed (:func:`runs_frame`)."""
    return runs_frame(metric_files, lambda test: {name: test[key] for name, key in METRICS.items()})
