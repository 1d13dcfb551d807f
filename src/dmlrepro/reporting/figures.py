"""Shared figure helpers and the training-curve figure of a run's ``history.csv``.

matplotlib with the Agg canvas and no pyplot state. Every figure is written as PNG and, beside
it, as PDF (same stem), both atomically; PDF creation dates are omitted so reruns are identical.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dmlrepro import DmlReproError
from dmlrepro.io import atomic_path

__all__ = ["plot_training_curve", "save_figure", "new_figure", "read_table", "require_columns", "OURS_COLOR",
           "PAPER_COLOR"]

HISTORY_COLUMNS = ("epoch", "loss", "val_accuracy", "n_triplets", "seconds")
OURS_COLOR = "#1f77b4"
PAPER_COLOR = "#ff7f0e"


def new_figure(width: float, height: float) -> Figure:
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


def read_table(path: str | os.PathLike, what: str) -> pd.DataFrame:
    """A CSV the figures read; a missing or empty file is an error naming it and what it should hold."""
    path = Path(path)
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise DmlReproError(f"{what} not found: {path}") from None
    except pd.errors.EmptyDataError:
        raise DmlReproError(f"{path}: {what} is empty") from None


def require_columns(df: pd.DataFrame, cols, what: str) -> None:
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
    require_columns(hist, ("epoch", "loss", "val_accuracy"), str(path))
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

    fig = new_figure(11, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(hist["epoch"], hist["loss"], color=OURS_COLOR, lw=1.2)
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
