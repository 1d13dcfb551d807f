"""Fig. 5 of the WSSET paper: average time per step of a similarity search from one query.

Four panels (preprocessing, encoding, distance calculation, overall retrieval; the last two on a
log scale), one bar per method (mean over the queries, error bar = std). Methods that were not
run (BERT in this pipeline) keep their slot, marked "not run"; an encoding that does not apply
(the EMD methods have no encoder) is marked "n/a". The distance panel prints our speed-ups of
ours' distance stage beside the paper's (labelled "paper"). Style as :mod:`dmlrepro.reporting.figures`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dmlrepro import DmlReproError
from dmlrepro.papers.wsset.query_time import (
    EMD_METHODS,
    METHOD_LABELS,
    METHODS,
    PAPER_DISTANCE_SPEEDUP,
    stage_statistics,
)
from dmlrepro.reporting.figures import new_figure, require_columns, read_table, save_figure

__all__ = ["plot_query_time"]

_PANELS = (("preprocessing", "Input preprocessing", False), ("encoding", "Encoding (NN inference)", False),
           ("distance", "Distance calculation", True), ("total", "Overall retrieval", True))
_COLORS = {"classic_emd": "#7f7f7f", "threshold_emd": "#ff7f0e", "pruned_emd": "#8c564b", "bert": "#2ca02c",
           "ours": "#1f77b4"}


def _load_table(df_or_csv: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    df = df_or_csv if isinstance(df_or_csv, pd.DataFrame) else read_table(df_or_csv, "query-time table")
    require_columns(df, ("method", "stage", "seconds"), "query-time table")
    if df.empty:
        raise DmlReproError("query-time table has no rows; nothing to plot")
    return df


def _load_summary(summary: dict[str, Any] | str | os.PathLike | None) -> dict[str, Any]:
    if summary is None or isinstance(summary, dict):
        return dict(summary or {})
    path = Path(summary)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DmlReproError(f"query-time summary not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise DmlReproError(f"{path}: not valid JSON ({exc})") from None


def _seconds_label(s: float) -> str:
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def _speedup_text(speedups: dict[str, Any], summary: dict[str, Any]) -> str:
    lines = ["Ours' distance stage is faster by (ratio of means)"]
    for method in EMD_METHODS:
        ours = speedups.get(method)
        measured = "not run" if ours is None else f"{ours:,.1f}x"
        paper = PAPER_DISTANCE_SPEEDUP.get(method)
        lines.append(f"  vs {METHOD_LABELS[method]}: {measured} "
                     f"({'not in paper' if paper is None else f'paper: {paper:g}x'})")
    if "threshold" in summary:
        t = summary["threshold"]
        lines.append(f"Threshold EMD: t = {'none (exact ground distance)' if t is None else f'{t:g}'}")
    return "\n".join(lines)


def plot_query_time(df_or_csv: pd.DataFrame | str | os.PathLike, summary: dict[str, Any] | str | os.PathLike | None,
                    out_png: str | os.PathLike, title: str | None = None) -> dict:
    """Draw Fig. 5 from the tidy table of :func:`dmlrepro.papers.wsset.query_time.run_query_time`
    (a DataFrame or its CSV) and its summary (dict, JSON path or None: speed-ups recomputed
    from the table). Writes ``out_png`` and the PDF beside it; returns ``{"png", "pdf"}``."""
    df = _load_table(df_or_csv)
    summary = _load_summary(summary)
    stats = stage_statistics(df)
    extra = [m for m in stats["method"].unique() if m not in METHODS]
    methods = list(METHODS) + extra
    applicable = (df.groupby(["method", "stage"])["applicable"].any() if "applicable" in df.columns else None)

    speedups = summary.get("speedup_distance")
    if speedups is None:  # recompute from the table: ratio of mean distance times
        dist = stats[stats["stage"] == "distance"].set_index("method")["mean"]
        speedups = {m: (float(dist[m] / dist["ours"]) if m in dist and "ours" in dist and dist["ours"] > 0 else None)
                    for m in EMD_METHODS}

    fig = new_figure(13, 4.6)
    axes = fig.subplots(1, 4)
    x = np.arange(len(methods))
    for ax, (stage, panel_title, log_scale) in zip(axes, _PANELS):
        sub = stats[stats["stage"] == stage].set_index("method")
        means = np.array([sub["mean"].get(m, np.nan) for m in methods], dtype=float)
        stds = np.array([sub["std"].get(m, np.nan) for m in methods], dtype=float)
        ran = ~np.isnan(means)
        not_applicable = np.array([applicable is not None and (m, stage) in applicable.index
                                   and not applicable[(m, stage)] for m in methods])
        shown = ran & ~not_applicable
        ax.bar(x[shown], means[shown], 0.65, yerr=np.nan_to_num(stds[shown]), capsize=3,
               color=[_COLORS.get(m, "#9467bd") for m in np.array(methods)[shown]])
        if log_scale:
            ax.set_yscale("log")
            positive = means[shown][means[shown] > 0]
            if len(positive):  # fixed limits: a std larger than the mean must not stretch the axis to 0
                bottom = positive.min() / 5
                top = float(np.max(means[shown] + np.nan_to_num(stds[shown]))) * 5
                if stage == "distance":  # headroom for the speed-up box above the bars
                    top *= (top / bottom) ** 0.6
                ax.set_ylim(bottom, top)
        else:
            top = float(np.max(means[shown] + np.nan_to_num(stds[shown]))) if shown.any() else 0.0
            ax.set_ylim(0, top * 1.3 if top > 0 else 1.0)
        y_text = ax.get_ylim()[0] * (1.5 if log_scale else 1.0) + (0 if log_scale else 0.03 * ax.get_ylim()[1])
        for xi, m, mean, is_shown, is_na in zip(x, methods, means, shown, not_applicable):
            if is_shown:
                ax.annotate(_seconds_label(mean), (xi, mean), textcoords="offset points", xytext=(0, 3),
                            ha="center", va="bottom", fontsize=7)
            else:
                ax.text(xi, y_text, "n/a" if is_na else "not run", rotation=90, ha="center", va="bottom",
                        fontsize=8, color="#555555")
        ax.set_xticks(x, [METHOD_LABELS.get(m, m) for m in methods], rotation=35, ha="right", fontsize=8)
        ax.set_ylabel("seconds per query" + (" (log scale)" if log_scale else ""))
        ax.set_title(panel_title, fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both" if log_scale else "major")
        if stage == "distance":
            ax.text(0.02, 0.98, _speedup_text(speedups, summary), transform=ax.transAxes, ha="left", va="top",
                    fontsize=6.5,
                    bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.85, "edgecolor": "#bbbbbb"})

    if title is None:
        n_q = summary.get("n_queries", df["query"].nunique() if "query" in df.columns else "?")
        gallery = summary.get("gallery_size", "?")
        title = (f"Average time per step of a similarity search from one query "
                 f"({n_q} queries, gallery of {gallery} documents; mean ± std)")
    fig.suptitle(title, fontsize=11)
    env = summary.get("environment") or {}
    if env:
        fig.supxlabel(f"{env.get('processor', '?')}, {env.get('cpu_count', '?')} CPUs, torch threads "
                      f"{env.get('torch_threads', '?')}, model on {env.get('model_device', '?')}; EMDs one pair at "
                      "a time in one process (paper: Xeon E5-2698 v4, 20 processes; V100 for inference)",
                      fontsize=7, color="#555555")
    return save_figure(fig, out_png)
