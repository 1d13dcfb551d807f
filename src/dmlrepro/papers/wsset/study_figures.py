"""Figures 4 and 6 of WSSET: the small-data study and the c grid, each with its summary table.

Both read the per-run ``metrics.json`` of a study, given as the workflow's manifest of runs
(``study_manifest`` in ``workflow/rules/papers/wsset_common.smk``): each run's metrics file with
its study point (the key of ``studies.<study>.points``, the name of its run directory) and that
point's setting as configured (Fig. 4: the average number of train documents per class; Fig. 6:
WSSET's weight scale c). Nothing is parsed from a path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from dmlrepro import DmlReproError
from dmlrepro.io import atomic_path
from dmlrepro.reporting.figures import new_figure, save_figure
from dmlrepro.papers.wsset.paper_values import dataset_label, paper_row_label
from dmlrepro.papers.wsset.claims import CLAIMS, QUERY_TIME_CLAIM

__all__ = ["study_frame", "summarise", "plot_small_data", "plot_c_grid", "write_summary"]

# Fig. 4's line styles: solid without external data, dashed with it
_EXTERNAL = {"ours_ext", "bert_base"}


def _paper_caption(figure: str) -> str:
    """The paper's claims about ``figure`` (texts from papers/wsset/claims.py, the one place they are written)."""
    texts = dict.fromkeys(c.text for c in CLAIMS if c.reads == figure)  # in order, each once
    return f"Paper ({figure}): " + " ".join(t if t.endswith(".") else f"{t}." for t in texts)


# figure captions in the HTML report
PAPER_CLAIMS = {
    "small_data": _paper_caption("Fig. 4"),
    "c_grid": _paper_caption("Fig. 6") + " (Recipe in the paper.)",
    "query_time": f"Paper (Fig. 5, Amazon; §VI-D): {QUERY_TIME_CLAIM}",
}


def study_frame(runs: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run and metric: dataset, method, split, setting, metric, value. ``runs``: one
    ``{"point": key, "setting": value, "metrics": path}`` per run (the workflow's manifest)."""
    rows = []
    for run in runs:
        if not isinstance(run, Mapping) or not {"setting", "metrics"} <= set(run):
            raise DmlReproError(f"study run {run!r}: needs 'setting' and 'metrics' (and its 'point')")
        path = Path(run["metrics"])
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DmlReproError(f"{path}: cannot read study metrics ({exc})") from exc
        setting = float(run["setting"])
        base = {"dataset": rec["dataset"], "method": rec["method"], "split": rec["split"], "setting": setting}
        rows.append({**base, "metric": "knn_accuracy", "value": float(rec["knn_accuracy"])})
        for k, v in rec.get("recall_at", {}).items():
            rows.append({**base, "metric": f"R@{int(k)}", "value": float(v)})
    if not rows:
        raise DmlReproError("no study metrics given")
    return pd.DataFrame(rows)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and number of splits per dataset x method x setting x metric."""
    g = frame.groupby(["dataset", "method", "setting", "metric"], sort=True)["value"]
    out = g.agg(mean="mean", std="std", n_splits="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def write_summary(summary: pd.DataFrame, out_csv: str | os.PathLike) -> None:
    with atomic_path(out_csv, suffix=".csv") as tmp:
        summary.to_csv(tmp, index=False, float_format="%.4f")


def plot_small_data(summary: pd.DataFrame, out_png: str | os.PathLike) -> dict[str, Path]:
    """Fig. 4: kNN accuracy against the average number of train documents per class."""
    acc = summary[summary["metric"] == "knn_accuracy"]
    datasets = sorted(acc["dataset"].unique())
    fig = new_figure(5.0 * len(datasets), 3.8)
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    for ax, ds in zip(axes, datasets):
        part = acc[acc["dataset"] == ds]
        for method, line in part.groupby("method", sort=True):
            line = line.sort_values("setting")
            ax.errorbar(line["setting"], line["mean"], yerr=line["std"], capsize=3, marker="o",
                        linestyle="--" if method in _EXTERNAL else "-", label=paper_row_label(method))
        ax.set_title(dataset_label(ds))
        ax.set_xlabel("average train documents per class")
        ax.set_ylabel("10-NN accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Small-data study (WSSET Fig. 4); solid: no external data, dashed: external data", fontsize=10)
    return save_figure(fig, out_png)


def plot_c_grid(summary: pd.DataFrame, out_png: str | os.PathLike) -> dict[str, Path]:
    """Fig. 6: WSSET's Recall@K against c, one line per K, the paper's good range shaded."""
    rec = summary[summary["metric"].str.startswith("R@")]
    if rec.empty:
        raise DmlReproError("c grid: no Recall@K in the study metrics")
    datasets = sorted(rec["dataset"].unique())
    fig = new_figure(5.0 * len(datasets), 3.8)
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    for ax, ds in zip(axes, datasets):
        part = rec[rec["dataset"] == ds]
        for metric in sorted(part["metric"].unique(), key=lambda m: int(m[2:])):
            line = part[part["metric"] == metric].sort_values("setting")
            ax.errorbar(line["setting"], line["mean"], yerr=line["std"], capsize=3, marker="o", label=metric)
        ax.axvspan(7, 13, color="0.85", zorder=0, label="paper's best c (7-13)")
        ax.set_xscale("log")
        ax.set_title(f"{ds}: WSSET")
        ax.set_xlabel("c (weight scale of Eq. 3)")
        ax.set_ylabel("Recall@K (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Recall@K against c (WSSET Fig. 6)", fontsize=10)
    return save_figure(fig, out_png)
