"""Figures: training curves, ours-vs-paper bars (Table I) and Recall@K curves (Table II).

matplotlib with the Agg canvas and no pyplot state. Every figure is written as PNG and, beside
it, as PDF (same stem), both atomically; PDF creation dates are omitted so reruns are identical.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dmlrepro import DmlReproError
from dmlrepro.io import atomic_path

__all__ = ["plot_training_curve", "plot_paper_comparison", "plot_recall_curves", "save_figure"]

HISTORY_COLUMNS = ("epoch", "loss", "val_accuracy", "n_triplets", "seconds")
_OURS_COLOR = "#1f77b4"
_PAPER_COLOR = "#ff7f0e"


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_png: str | os.PathLike) -> dict[str, Path]:
    """Save ``fig`` to ``out_png`` and to the same path with suffix ``.pdf``, atomically."""
    out_png = Path(out_png)
    if out_png.suffix.lower() != ".png":
        raise DmlReproError(f"figure path must end in .png, got {out_png}")
    out_pdf = out_png.with_suffix(".pdf")
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    with atomic_path(out_pdf, suffix=".pdf") as tmp:
        fig.savefig(tmp, format="pdf", metadata={"CreationDate": None, "ModDate": None})
    return {"png": out_png, "pdf": out_pdf}


def _paper_float(text) -> float:
    """Parse the table's "Paper" cell ("95.0", "63.31 [?]", "–") to a float (NaN where none)."""
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return float("nan")
    s = str(text).replace("[?]", "").strip()
    try:
        return float(s)
    except ValueError:
        return float("nan")


def read_table(path: str | os.PathLike, what: str) -> pd.DataFrame:
    """A CSV the figures read; a missing or empty file is an error naming it and what it should hold."""
    path = Path(path)
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise DmlReproError(f"{what} not found: {path}") from None
    except pd.errors.EmptyDataError:
        raise DmlReproError(f"{path}: {what} is empty") from None


def _require_columns(df: pd.DataFrame, cols, what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DmlReproError(f"{what} lacks column(s) {missing}; has {list(df.columns)}")


# ----------------------------------------------------------------------------- training curve

def plot_training_curve(history_csv: str | os.PathLike, out_png: str | os.PathLike, title: str) -> dict:
    """Loss (left) and validation kNN accuracy (right) per epoch; the selected epoch (best
    validation accuracy, first one on ties) is marked in both panels.

    Returns ``{"png", "pdf", "best_epoch", "best_val_accuracy"}`` (None when no epoch has a
    validation accuracy).
    """
    path = Path(history_csv)
    hist = read_table(path, "training history")
    _require_columns(hist, ("epoch", "loss", "val_accuracy"), str(path))
    if hist.empty:
        raise DmlReproError(f"{path}: training history has a header but no epochs")
    for col in ("epoch", "loss", "val_accuracy"):
        hist[col] = pd.to_numeric(hist[col], errors="coerce")
    if hist["epoch"].isna().any():
        raise DmlReproError(f"{path}: column 'epoch' has missing or non-numeric values")

    val = hist.dropna(subset=["val_accuracy"])
    best_epoch = best_acc = None
    if not val.empty:
        best_row = val.loc[val["val_accuracy"].idxmax()]
        best_epoch, best_acc = int(best_row["epoch"]), float(best_row["val_accuracy"])

    fig = _new_figure(11, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(hist["epoch"], hist["loss"], color=_OURS_COLOR, lw=1.2)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("Loss")
    ax_loss.grid(alpha=0.3)

    if val.empty:
        ax_acc.text(0.5, 0.5, "no validation accuracy recorded", ha="center", va="center", transform=ax_acc.transAxes)
    else:
        ax_acc.plot(val["epoch"], val["val_accuracy"], color="#2ca02c", marker="o", ms=3, lw=1.2)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation kNN accuracy (%)")
    ax_acc.set_title("Validation accuracy")
    ax_acc.grid(alpha=0.3)
    if best_epoch is not None:
        for ax in (ax_loss, ax_acc):
            ax.axvline(best_epoch, color="#d62728", ls="--", lw=1, label=f"selected epoch {best_epoch}")
        ax_acc.plot([best_epoch], [best_acc], marker="*", ms=12, color="#d62728")
        ax_acc.annotate(f"{best_acc:.2f}% @ {best_epoch}", (best_epoch, best_acc),
                        textcoords="offset points", xytext=(6, -12), fontsize=8, color="#d62728")
        ax_loss.legend(loc="best", fontsize=8)
    fig.suptitle(title)
    out = save_figure(fig, out_png)
    return {**out, "best_epoch": best_epoch, "best_val_accuracy": best_acc}


# ----------------------------------------------------------------------------- Table I bars

def _datasets_in_order(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["Dataset"].tolist()))


def plot_paper_comparison(table1_df: pd.DataFrame, out_png: str | os.PathLike, title: str = "kNN accuracy: ours vs paper") -> dict:
    """One panel per dataset; per method, our mean (error bar = std over splits) beside the
    published value (hatched; absent where the paper has none)."""
    _require_columns(table1_df, ("Method", "Dataset", "ours_mean", "ours_std", "Paper"), "table1_df")
    if table1_df.empty:
        raise DmlReproError("table1_df is empty; nothing to plot")
    datasets = _datasets_in_order(table1_df)
    n_methods = max(len(table1_df[table1_df["Dataset"] == d]) for d in datasets)
    ncols = 1 if n_methods > 6 else min(2, len(datasets))
    nrows = math.ceil(len(datasets) / ncols)
    fig = _new_figure(max(6.0, 0.65 * n_methods + 2) * ncols, 3.8 * nrows + 0.5)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    width = 0.38
    for ax, dataset in zip(axes, datasets):
        sub = table1_df[table1_df["Dataset"] == dataset].reset_index(drop=True)
        x = np.arange(len(sub))
        ours = sub["ours_mean"].astype(float).to_numpy()
        err = np.nan_to_num(sub["ours_std"].astype(float).to_numpy(), nan=0.0)
        paper = np.array([_paper_float(v) for v in sub["Paper"]])
        ax.bar(x - width / 2, np.nan_to_num(ours, nan=0.0), width, yerr=err, capsize=3,
               color=_OURS_COLOR, label="ours (mean ± std)")
        has_paper = ~np.isnan(paper)
        ax.bar(x[has_paper] + width / 2, paper[has_paper], width, color=_PAPER_COLOR,
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
    _require_columns(table2_df, ("Method", "Dataset", "K", "ours_mean", "ours_std", "Paper"), "table2_df")
    if table2_df.empty:
        raise DmlReproError("table2_df is empty; nothing to plot")
    datasets = _datasets_in_order(table2_df)
    methods = list(dict.fromkeys(table2_df["Method"].tolist()))
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    ncols = min(2, len(datasets))
    nrows = math.ceil(len(datasets) / ncols)
    fig = _new_figure(6.0 * ncols, 4.2 * nrows)
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
