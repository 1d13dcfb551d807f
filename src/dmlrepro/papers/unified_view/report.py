"""Table 1 per dataset, the claims table and Figure 1 of paper 004.

Table 1 (:func:`table1`): the Initial row (the pretrained backbone before metric learning, where it
ran) then one row per configured Table 1 row, in the paper's order, built by the
image foundation's :func:`~dmlrepro.papers.image_foundation.report.stand_in_table`: test R@K, NMI,
F1 and MAP@R of the validation-selected epoch as mean ± std (ddof 1) over seeds, and, labelled
"inflated", the R@1 that picking the best epoch on test (as the official code does, validating on
the test set every 200 iterations) would report. On the paper's datasets only, a column
"R@1, paper (Table 1)" holds the printed value and "Δ R@1 (ours − paper)" our mean minus it, and a
second table sets RAW+VTHM's R@K beside Tables 2-3 with the same difference
(:func:`raw_vthm_recall_table`). A stand-in dataset gets neither: its table's title says
it is a check of method.

Claims (:func:`claims_table`): :data:`~dmlrepro.papers.unified_view.claims.CLAIMS` evaluated on the
runs' R@1 by :func:`dmlrepro.reporting.claims.evaluate_claims`; the title names the datasets and says
"stand-in" when any is one.

Figure 1 (:func:`figure1`): :func:`dmlrepro.reporting.weight_curves.plot_pair_weights`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from dmlrepro import DmlReproError
from dmlrepro.io import write_text
from dmlrepro.papers.image_foundation.report import METHOD_LABELS as IF_LABELS
from dmlrepro.papers.image_foundation.report import stand_in_table
from dmlrepro.reporting.claims import evaluate_claims, stand_in_claims_title, write_claims
from dmlrepro.reporting.tables import format_delta, format_mean_std, markdown_document

from .claims import CLAIMS, results_frame
from .methods import ROWS, row_label
from .paper_values import dataset_label, is_paper_dataset, paper_r1, paper_recall

__all__ = ["INITIAL", "ROW_LABELS", "PAPER_R1_COLUMN", "DELTA_R1_COLUMN", "table1", "raw_vthm_recall_table", "table1_title", "write_table1", "claims_table",
           "claims_title", "write_claims_table", "figure1"]

# the Initial row (the pretrained backbone's features, before metric learning: image-initial) heads
# the table; the paper has no such row
INITIAL = "initial"
ROW_LABELS = {INITIAL: IF_LABELS[INITIAL], **{r: row_label(r) for r in ROWS}}
PAPER_R1_COLUMN = "R@1, paper (Table 1)"
DELTA_R1_COLUMN = "Δ R@1 (ours − paper)"


def _runs(metric_files: Sequence[str | os.PathLike]) -> list[dict]:
    runs = []
    for path in metric_files:
        try:
            runs.append(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            raise DmlReproError(f"{path}: cannot read a run's metrics.json ({exc})") from exc
    return runs


def _in_row_order(metric_files: Sequence[str | os.PathLike], dataset: str) -> list[str | os.PathLike]:
    """The files sorted by Table 1 row (stable within a row); every run must be on ``dataset``."""
    order = {row: i for i, row in enumerate((INITIAL,) + ROWS)}
    keyed = []
    for path, run in zip(metric_files, _runs(metric_files)):
        if run.get("dataset") != dataset:
            raise DmlReproError(f"{path}: a run on '{run.get('dataset')}' in the table of '{dataset}'")
        if run.get("method") not in order:
            raise DmlReproError(f"{path}: method '{run.get('method')}' is not a Table 1 row "
                                f"({' | '.join((INITIAL,) + ROWS)})")
        keyed.append((order[run["method"]], path))
    return [p for _, p in sorted(keyed, key=lambda t: t[0])]


def table1(metric_files: Sequence[str | os.PathLike], dataset: str, recall_ks: Sequence[int],
           data_note: str) -> pd.DataFrame:
    """Table 1 on ``dataset`` from its runs (module docstring); the paper's R@1 column only on the
    paper's datasets."""
    files = _in_row_order(metric_files, dataset)
    if not files:
        raise DmlReproError(f"Table 1 of '{dataset}': no runs")
    df = stand_in_table(files, recall_ks, data_note, labels=ROW_LABELS)
    if is_paper_dataset(dataset):
        labels_to_row = {label: r for r, label in ROW_LABELS.items()}
        paper = [paper_r1(labels_to_row.get(label, ""), dataset) for label in df["Method"]]
        ours = [_mean_r1(files, labels_to_row.get(label)) for label in df["Method"]]
        at = list(df.columns).index("R@1") + 1
        df.insert(at, PAPER_R1_COLUMN, [p or "–" for p in paper])
        df.insert(at + 1, DELTA_R1_COLUMN, [format_delta(o, None if p is None else float(p)) for o, p in zip(ours, paper)])
    return df


def _mean_r1(metric_files: Sequence[str | os.PathLike], row: str | None) -> float:
    """Mean test R@1 (%) of ``row``'s runs among ``metric_files`` (nan without runs)."""
    values = [100.0 * float(r["test"]["recall@1"]) for r in _runs(metric_files) if r.get("method") == row]
    return float(np.mean(values)) if values else float("nan")


def raw_vthm_recall_table(metric_files: Sequence[str | os.PathLike], dataset: str,
                          recall_ks: Sequence[int]) -> pd.DataFrame | None:
    """RAW+VTHM's R@K (mean ± std over seeds) beside Tables 2-3's printed row, at the Ks both have;
    None on a stand-in dataset or without a RAW+VTHM run."""
    if not is_paper_dataset(dataset):
        return None
    runs = [r for r in _runs(metric_files) if r.get("method") == "raw_vthm" and r.get("dataset") == dataset]
    if not runs:
        return None
    rows = []
    for k in recall_ks:
        printed = paper_recall(dataset, k)
        if printed is None:
            continue
        values = 100.0 * np.array([r["test"][f"recall@{k}"] for r in runs], dtype=float)
        std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        rows.append({"K": k, "RAW+VTHM, ours": format_mean_std(float(values.mean()), std),
                     "RAW+VTHM, paper (Tables 2-3)": printed,
                     "Δ (ours − paper)": format_delta(float(values.mean()), float(printed)), "seeds": len(values)})
    return pd.DataFrame(rows) if rows else None


def table1_title(dataset: str) -> str:
    if is_paper_dataset(dataset):
        return f"Table 1 (ablation) on {dataset_label(dataset)}"
    return (f"Table 1 (ablation) on {dataset_label(dataset)}: the offline stand-in, a check of method "
            "(no paper number exists for it)")


def write_table1(df: pd.DataFrame, recall: pd.DataFrame | None, csv_path, md_path, title: str,
                 notes: Sequence[str] = ()) -> None:
    """CSV of Table 1; Markdown: title, Table 1, the R@K comparison (paper datasets), notes."""
    write_text(csv_path, df.to_csv(index=False))
    sections = [(None, df)]
    if recall is not None:
        sections.append(("RAW+VTHM, Recall@K beside the paper's Tables 2-3", recall))
    write_text(md_path, markdown_document(title, sections, notes))


def claims_table(metric_files: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Every claim of :data:`CLAIMS` on every dataset the runs cover (verdicts on R@1 over seeds)."""
    return evaluate_claims(CLAIMS, results_frame(metric_files), row_label, dataset_label)


def claims_title(datasets: Sequence[str]) -> str:
    return stand_in_claims_title("the unified view (Table 1)", datasets, dataset_label, is_paper_dataset)


def write_claims_table(claims: pd.DataFrame, csv_path, md_path, datasets: Sequence[str]) -> None:
    write_claims(claims, csv_path, md_path, title=claims_title(datasets))


def figure1(out_png: str | os.PathLike) -> dict[str, Path]:
    """Figure 1 (weight vs. cosine similarity, from the losses' gradients) as PNG and PDF."""
    from dmlrepro.reporting.weight_curves import plot_pair_weights
    return plot_pair_weights(out_png)
