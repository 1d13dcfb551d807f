"""WSSET's comparison figures: ours-vs-paper bars (Table I) and Recall@K curves (Table II), drawn
from the tables' CSV files (``papers/wsset/tables.py``)."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from dmlrepro import DmlReproError
from dmlrepro.reporting.figures import OURS_COLOR, PAPER_COLOR, new_figure, require_columns, save_figure

__all__ = ["plot_paper_comparison", "plot_recall_curves"]


def _paper_float(text) -> float:
    """Parse the table's "Paper" cell ("95.0", "63.31 [?]", "–") to a float (NaN where none)."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return float("nan")
    s = str(text).replace("[?]", "").strip()
    try:
        return float(s)
    except ValueError:
        return float("nan")



# ----------------------------------------------------------------------------- Table I bars

def _datasets_in_order(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["Dataset"].tolist()))


def plot_paper_comparison(table1_df: pd.DataFrame, out_png: str | os.PathLike, title: str = "kNN accuracy: ours vs paper") -> dict:
    """One panel per dataset; per method, our mean (error bar = std over splits) beside the
    published value (hatched; absent where the paper has none)."""
    require_columns(table1_df, ("Method", "Dataset", "ours_mean", "ours_std", "Paper"), "table1_df")
    if table1_df.empty:
        raise DmlReproError("table1_df is empty; nothing to plot")
    datasets = _datasets_in_order(table1_df)
    n_methods = max(len(table1_df[table1_df["Dataset"] == d]) for d in datasets)
    ncols = 1 if n_methods > 6 else min(2, len(datasets))
    nrows = math.ceil(len(datasets) / ncols)
    fig = new_figure(max(6.0, 0.65 * n_methods + 2) * ncols, 3.8 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    width = 0.38
    for ax, dataset in zip(axes, datasets):
        sub = table1_df[table1_df["Dataset"] == dataset].reset_index(drop=True)
        x = np.arange(len(sub))
        ours = sub["ours_mean"].astype(float).to_numpy()
        err = np.nan_to_num(sub["ours_std"].astype(float).to_numpy(), nan=0.0)
        paper = np.array([_paper_float(v) for v in sub["Paper"]])
        ax.bar(x - width / 2, np.nan_to_num(ours, nan=0.0), width, yerr=err, capsize=3,
               color=OURS_COLOR, label="ours (mean ± std)")
        has_paper = ~np.isnan(paper)
        ax.bar(x[has_paper] + width / 2, paper[has_paper], width, color=PAPER_COLOR,
               hatch="//", edgecolor="white", label="paper")
        for xi, v in zip(x, ours):
            if np.isnan(v):
                ax.text(xi - width / 2, 1, "not run", rotation=90, ha="center", va="bottom", fontsize=7)
        ax.set_xticks(x, sub["Method"].tolist(), rotation=40, ha="right", fontsize=8)
        ax.set_ylabel("kNN accuracy (%)")
        ax.set_ylim(0, 105)
        ax.set_title(dataset)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(datasets):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=2, fontsize=9)
    fig.suptitle(title)
    return save_figure(fig, out_png)


# ----------------------------------------------------------------------------- Table II curves

def plot_recall_curves(table2_df: pd.DataFrame, out_png: str | os.PathLike, title: str = "Recall@K: ours (solid) vs paper (dashed)") -> dict:
    """One panel per dataset: Recall@K vs K, one colour per method; ours solid (band = ± std
    over splits), the paper's published values dashed."""
    require_columns(table2_df, ("Method", "Dataset", "K", "ours_mean", "ours_std", "Paper"), "table2_df")
    if table2_df.empty:
        raise DmlReproError("table2_df is empty; nothing to plot")
    datasets = _datasets_in_order(table2_df)
    methods = list(dict.fromkeys(table2_df["Method"].tolist()))
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    ncols = min(2, len(datasets))
    nrows = math.ceil(len(datasets) / ncols)
    fig = new_figure(6.0 * ncols, 4.2 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, dataset in zip(axes, datasets):
        sub = table2_df[table2_df["Dataset"] == dataset]
        for method in methods:
            m = sub[sub["Method"] == method].sort_values("K")
            if m.empty:
                continue
            k = m["K"].astype(float).to_numpy()
            ours = m["ours_mean"].astype(float).to_numpy()
            std = np.nan_to_num(m["ours_std"].astype(float).to_numpy(), nan=0.0)
            paper = np.array([_paper_float(v) for v in m["Paper"]])
            if not np.all(np.isnan(ours)):
                ax.plot(k, ours, "-o", ms=3.5, color=colors[method], label=f"{method} (ours)")
                ax.fill_between(k, ours - std, ours + std, color=colors[method], alpha=0.15, lw=0)
            if not np.all(np.isnan(paper)):
                ax.plot(k, paper, "--s", ms=3, color=colors[method], alpha=0.9, label=f"{method} (paper)")
        ax.set_xlabel("K")
        ax.set_ylabel("Recall@K (%)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    for ax in axes[len(datasets):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return save_figure(fig, out_png)
