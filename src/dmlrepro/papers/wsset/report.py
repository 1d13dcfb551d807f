"""WSSET's report: Tables I/II and the DML-metrics table with their titles, the claims check, and
the captions of its figures in the HTML report.

The tables' rows are built in :mod:`dmlrepro.papers.wsset.tables`; the claims are data in
:mod:`dmlrepro.papers.wsset.claims`, checked by the shared verdict rules of
:mod:`dmlrepro.reporting.claims`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from dmlrepro.io import write_text
from dmlrepro.papers.wsset.notes import protocol_notes
from dmlrepro.papers.wsset.paper_values import dataset_label, paper_row_label
from dmlrepro.papers.wsset.study_figures import PAPER_CLAIMS, study_frame
from dmlrepro.papers.wsset.tables import build_dml_table, build_table1, build_table2
from dmlrepro.reporting.claims import RESULT_COLUMNS, evaluate_claims, load_specs, write_claims
from dmlrepro.reporting.tables import NA, load_records, write_table

# the HTML report's caption of each WSSET figure (by file stem): the paper's claim it shows
FIGURE_CAPTIONS = {"fig4_small_data": PAPER_CLAIMS["small_data"], "fig6_c_grid": PAPER_CLAIMS["c_grid"],
                   "fig5_query_time": PAPER_CLAIMS["query_time"],
                   "budget": "Training-budget study (not in the paper): does WSSET reach exact WMD kNN with more "
                             "epochs or the paper's encoder? The paper's Table I has WSSET above WMD on BBCSport, "
                             "below on Twitter (their values: the Table I report)."}


def write_tables(metrics: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                 config: dict[str, Any] | None = None) -> None:
    """table1/table2/dml_metrics .csv + .md in ``out_dir`` from the runs' ``metrics.json``."""
    records = [json.loads(Path(p).read_text()) for p in metrics]
    out = Path(out_dir)
    notes = protocol_notes(records, config or {})
    # BERT_BASE fine-tunes downloaded weights on a GPU (config/paper.yaml); without its run the
    # row stays visible with the reason, beside the paper's value
    pending = {} if any(r["method"] == "bert_base" for r in records) else {
        "bert_base": "needs download (bert-base-uncased, GPU: config/paper.yaml)"}
    _write_paper_table(build_table1(records, pending=pending), out / "table1", "Table I: distance-weighted 10-NN accuracy (%)",
                       notes)
    _write_paper_table(build_table2(records, pending=pending), out / "table2",
                       "Table II: Recall@K (%), retrieval within the test split", notes)
    write_table(build_dml_table(records), out / "dml_metrics.csv", out / "dml_metrics.md",
                "Usual DML metrics (not in the paper): R@1 and MAP@R within the test split", notes)


def _write_paper_table(table: pd.DataFrame, stem: Path, title: str, notes: list[str]) -> None:
    """``<stem>.csv`` and ``<stem>.md``. Where no row has a published value (your own corpora,
    relabelled tasks) the Markdown has no Paper and Δ columns; the CSV keeps them ("–") for the figures."""
    if not (table["Paper"] == NA).all():
        write_table(table, stem.with_suffix(".csv"), stem.with_suffix(".md"), title, notes)
        return
    write_table(table.drop(columns=["Paper", "Δ"]), stem.with_suffix(".csv"), stem.with_suffix(".md"), title, notes)
    write_text(stem.with_suffix(".csv"), table.to_csv(index=False))


def results_frame(table_metrics: Iterable[str | os.PathLike] = (),
                  study_runs: dict[str, Sequence[Mapping[str, Any]]] | None = None) -> pd.DataFrame:
    """The per-split results table (:data:`RESULT_COLUMNS`) from the runs' ``metrics.json``: the
    Tables I/II runs (kNN accuracy and every Recall@K) and each figure study's runs
    (``{"small_data": [...], "c_grid": [...]}``, each a manifest of ``{point, setting, metrics}``
    read by ``study_figures.study_frame``)."""
    rows = []
    for rec in load_records(table_metrics):
        base = {"dataset": rec["dataset"], "method": rec["method"], "study": "", "setting": math.nan,
                "split": rec["split"]}
        rows.append({**base, "metric": "knn_accuracy", "value": float(rec["knn_accuracy"])})
        rows.extend({**base, "metric": f"R@{int(k)}", "value": float(v)} for k, v in rec["recall_at"].items())
    frames = [pd.DataFrame(rows, columns=list(RESULT_COLUMNS))]
    for study, runs in (study_runs or {}).items():
        if runs:
            frames.append(study_frame(runs).assign(study=study)[list(RESULT_COLUMNS)])
    return pd.concat(frames, ignore_index=True)


def check_claims(metrics: Sequence[str], small_data: Sequence[Mapping[str, Any]], c_grid: Sequence[Mapping[str, Any]],
                 claims: str, csv_out: str | Path, md_out: str | Path) -> pd.DataFrame:
    """Evaluate a claims list (``module:attribute``) on the runs' metrics (the figure studies' as
    manifests of ``{point, setting, metrics}``); write claims.{csv,md}."""
    table = results_frame(metrics, {"small_data": small_data, "c_grid": c_grid})
    result = evaluate_claims(load_specs(claims), table, paper_row_label, dataset_label)
    write_claims(result, Path(csv_out), Path(md_out))
    return result
