"""The stand-in's table (mean ± std over seeds) and its training-curve figure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from dmlrepro.io import atomic_path, write_text

METHOD_LABELS = {"initial": "Initial (no metric learning)",
                 "triplet_semihard": "Triplet + semi-hard miner (PML)",
                 "multi_similarity": "Multi-Similarity + MS miner (PML)"}


def _label(method: str, labels: Mapping[str, str] | None = None) -> str:
    return (METHOD_LABELS if labels is None else labels).get(method, method)


def _mean_std(values: Sequence[float]) -> str:
    v = 100.0 * np.asarray(values, float)
    if len(v) == 0:
        return "–"
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}"


def stand_in_table(metric_files: Sequence[str | Path], recall_ks: Sequence[int], data_note: str,
                   labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per method (in the order of first appearance): test metrics of the validation-selected
    epoch, and beside them, labelled, the R@1 that picking the best epoch on test would have reported.
    ``labels`` maps method names to row labels (default: the foundation's own)."""
    runs = [json.loads(Path(p).read_text()) for p in metric_files]
    rows: list[dict[str, Any]] = []
    for method in dict.fromkeys(r["method"] for r in runs):
        mine = [r for r in runs if r["method"] == method]
        row: dict[str, Any] = {"Method": _label(method, labels)}
        for k in recall_ks:
            row[f"R@{k}"] = _mean_std([r["test"][f"recall@{k}"] for r in mine])
        row["NMI"] = _mean_std([r["test"]["nmi"] for r in mine])
        row["F1"] = _mean_std([r["test"]["f1"] for r in mine])
        row["MAP@R"] = _mean_std([r["test"]["map_at_r"] for r in mine])
        chosen = [r["test_selected"]["recall@1"] for r in mine if r.get("test_selected")]
        row["R@1 if selected on test (inflated)"] = _mean_std(chosen)
        row["Δ R@1 (test − val selection)"] = (f"{100 * (np.mean(chosen) - np.mean([r['test']['recall@1'] for r in mine])):+.2f}"
                                                if chosen else "–")
        row["seeds"] = len(mine)
        row["Data"] = data_note
        rows.append(row)
    return pd.DataFrame(rows)


def write_table(df: pd.DataFrame, csv_path: str | Path, md_path: str | Path, notes: Sequence[str]) -> None:
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    text = df.to_markdown(index=False, disable_numparse=True) + "\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    write_text(md_path, text)


def curves_figure(histories: Sequence[str | Path], out: str | Path) -> None:
    """Loss, validation R@1 and test R@1 per epoch, mean over seeds, one line per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    frames = []
    for path in histories:
        df = pd.read_csv(path)
        df["method"] = Path(path).parent.name
        frames.append(df)
    data = pd.concat(frames)
    panels = [("loss", "training loss"), ("val_recall@1", "validation R@1 (selection)"),
              ("test_recall@1", "test R@1 (recorded, never used)")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, (column, title) in zip(axes, panels):
        for method, df in data.groupby("method", sort=False):
            if column not in df:
                continue
            curve = df.groupby("epoch")[column].agg(["mean", "std"])
            ax.plot(curve.index, curve["mean"], marker="o", label=_label(method))
            ax.fill_between(curve.index, curve["mean"] - curve["std"].fillna(0), curve["mean"] + curve["std"].fillna(0),
                            alpha=0.2)
        ax.set_title(title)
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
