"""Paper 003's claims as data (:data:`CLAIMS`), and the per-seed results table they read.

Claims on R@1 of the runs (verdicts by :mod:`dmlrepro.reporting.claims`: means apart by more than
their ±1 std intervals), on every dataset that ran both sides:

- "our method outperforms ... STML" (Sec. 4.2, Table 1): Ours > STML*;
- Table 3 / Appendix A: each ablation lowers R@1: Ours > (1), (2), (3);
- Fig. 3(c): "stable when N_α ≫ N_β" and "about 10% degradation at N_α = N_β", degrades when
  N_β = 0: Ours (N_α 4, N_β 0.5) > each Fig. 3 point with N_α ≤ N_β + 1 or N_β = 0 that ran.

Table 2's claim (ours purer and better correlated than K-Means, hierarchical clustering and the
random walk) is checked in :func:`table2_claims` on its single evaluation (no seeds: a plain
comparison, the verdict "holds" or "does not hold").
"""

from __future__ import annotations

import os
from typing import Any, Iterable

import pandas as pd

from dmlrepro.reporting.claims import DOES_NOT_HOLD, HOLDS, ClaimSpec, Rows, runs_frame

from .methods import figure3_runs

__all__ = ["CLAIMS", "claims_for", "results_frame", "table2_claims"]

_T1 = ("Sec. 4.2: our method outperforms the state of the art (STML*, re-run under the same settings) "
       "on every dataset and dimension")
_T3 = "Appendix A, Table 3: removing the PL manifold, the similarity, or both lowers R@1"
_F3 = ("Fig. 3(c): R@1 is stable when N_α ≫ N_β, degrades as N_α approaches N_β (about 10% at N_α = N_β) "
       "and when N_β = 0")

CLAIMS: list[ClaimSpec] = [
    ClaimSpec("T1-ours>stml", _T1, "Sec. 4.2", "Table 1", "R@1", Rows("ours", None), Rows("stml", None)),
    *[ClaimSpec(f"T3-ours>{row}", _T3, "Appendix A", "Table 3", "R@1", Rows("ours", None), Rows(row, None))
      for row in ("ours_no_pl", "ours_no_sim", "ours_no_pl_no_sim")],
]


def claims_for(grid: dict[str, list] | None) -> list[ClaimSpec]:
    """:data:`CLAIMS` and, for the Fig. 3 grid, one claim per N_α/N_β point with N_α ≤ N_β + 1 or N_β = 0."""
    extra = []
    for name, params in figure3_runs(grid).items():
        if set(params) == {"n_alpha", "n_beta"} and (params["n_alpha"] <= params["n_beta"] + 1 or params["n_beta"] == 0):
            extra.append(ClaimSpec(f"F3-ours>{name}", _F3, "Sec. 4.4", "Fig. 3(c)", "R@1",
                                   Rows("ours", None), Rows(name, None)))
    return CLAIMS + extra


def results_frame(metric_files: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per run and R@K, in percent, ``split`` = the seed; the dataset is tagged with the
    embedding dimension (``cub200@128``) so that claims compare runs of one dimension only."""
    return runs_frame(metric_files, dataset=lambda rec: f"{rec['dataset']}@{rec['embedding_dim']}")

def table2_claims(results: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Ours vs each baseline on purity and correlation, per dataset (Table 2's caption)."""
    out = []
    for rec in results:
        rows = rec["rows"]
        for metric in ("purity", "correlation"):
            for base in ("kmeans", "hierarchical", "random_walk"):
                a, b = rows["ours"][metric], rows[base][metric]
                if a is None or b is None:
                    continue
                out.append({"id": f"T2-ours>{base}-{metric}", "dataset": rec["dataset"], "metric": metric,
                            "ours": round(float(a), 3), "baseline": base, "baseline value": round(float(b), 3),
                            "verdict": HOLDS if a > b else DOES_NOT_HOLD})
    return pd.DataFrame(out)
