"""Table 1 per dataset, the WCRAIG table and the claims table of paper 002.

Table 1 (:func:`table1`): one row per Table 1 row that ran, in the paper's order; R@1, R@4, NMI,
F1 and mAP (Roth's mAP@1000) of the test classes at the validation-selected epoch, in percent,
mean ± std (ddof 1) over seeds, and MAP@R beside them. For the W-rows, the R@1 of the Sinkhorn
re-ranking of the pooled top-k (:func:`~dmlrepro.papers.wasserstein.run.sd_rerank`) and the pooled
R@1 of the same queries. Where the paper has the dataset (CUB, SOP) each metric gets the paper's
printed value (fraction × 100, column "<metric>, paper") and the difference ours − paper; a
probable copy error of the paper (:data:`~dmlrepro.papers.wasserstein.paper_values.SUSPECT`) is
marked "†" and gets no difference. A stand-in dataset gets the paper's R@1 on CUB and SOP in two
columns labelled as the paper's, for orientation only: a different dataset, never a target.

WCRAIG (:func:`coreset_table`): W-triplet with and without the coreset (same epochs; the coreset
run takes ``fraction`` of the batches), test metrics and training time (selection included): wall
time, and the training's CPU time where the runs recorded it (the comparable one on a shared machine).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from dmlrepro import DmlReproError
from dmlrepro.io import write_text
from dmlrepro.reporting.claims import evaluate_claims, stand_in_claims_title, write_claims
from dmlrepro.reporting.tables import format_mean_std, markdown_document

from .claims import CLAIMS, results_frame
from .methods import HISTOGRAM_ROWS, ROWS, TABLE1_ROWS, row_label
from .paper_values import (METRICS, PAPER_DATASETS, dataset_label, is_paper_dataset, is_suspect, paper_percent)

__all__ = ["load_runs", "table1", "coreset_table", "table1_title", "write_tables", "claims_table", "claims_title",
           "write_claims_table", "SUSPECT_MARK"]

SUSPECT_MARK = " †"


def load_runs(metric_files: Sequence[str | os.PathLike], dataset: str | None = None) -> list[dict[str, Any]]:
    """The runs' ``metrics.json``; with ``dataset``, every run must be on it and be a known row."""
    runs = []
    for path in metric_files:
        try:
            run = json.loads(Path(path).read_text())
            run["dataset"], run["method"], run["test"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DmlReproError(f"{path}: cannot read a run's metrics.json ({exc!r})") from exc
        if dataset is not None and run["dataset"] != dataset:
            raise DmlReproError(f"{path}: a run on '{run['dataset']}' in the table of '{dataset}'")
        if run["method"] not in ROWS:
            raise DmlReproError(f"{path}: method '{run['method']}' is not a row of Table 1 ({' | '.join(ROWS)})")
        runs.append(run)
    return runs


def _pct(values: Sequence[float]) -> tuple[float, float]:
    v = 100.0 * np.asarray(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else float("nan"))


def _cell(values: Sequence[float]) -> str:
    return format_mean_std(*_pct(values)) if len(values) else "–"


def _plain(values: Sequence[float]) -> str:
    v = np.asarray(values, dtype=float)
    return format_mean_std(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan"))


def table1(runs: Sequence[dict[str, Any]], dataset: str) -> pd.DataFrame:
    """Table 1 on ``dataset`` (module docstring)."""
    mine = [r for r in runs if r["dataset"] == dataset]
    if not mine:
        raise DmlReproError(f"Table 1 of '{dataset}': no runs")
    paper = is_paper_dataset(dataset)
    out = []
    for row in TABLE1_ROWS:
        rr = [r for r in mine if r["method"] == row]
        if not rr:
            continue
        line: dict[str, Any] = {"Method": row_label(row)}
        for name, key in METRICS.items():
            values = [r["test"][key] for r in rr]
            line[name] = _cell(values)
            if paper:
                printed = paper_percent(dataset, row, name)
                suspect = is_suspect(dataset, row, name)
                line[f"{name}, paper"] = "–" if printed is None else printed + (SUSPECT_MARK if suspect else "")
                line[f"Δ {name}"] = ("–" if printed is None or suspect
                                     else f"{_pct(values)[0] - float(printed):+.2f}")
        if not paper:
            for ds in PAPER_DATASETS:
                printed = paper_percent(ds, row, "R@1")
                line[f"R@1, paper {dataset_label(ds)} (Table 1)"] = (
                    "–" if printed is None else printed + (SUSPECT_MARK if is_suspect(ds, row, "R@1") else ""))
        line["MAP@R"] = _cell([r["test"]["map_at_r"] for r in rr])
        reranked = [r["test_sd_rerank"] for r in rr if r.get("test_sd_rerank")]
        line["R@1, SD re-rank of pooled top-k"] = _cell([x["recall@1_sd"] for x in reranked])
        line["R@1, pooled (same queries)"] = _cell([x["recall@1_pooled"] for x in reranked])
        line["training wall s (validation included)"] = f"{np.mean([r['train_seconds'] for r in rr]):.1f}"
        line["seeds"] = len(rr)
        out.append(line)
    return pd.DataFrame(out)


def coreset_table(runs: Sequence[dict[str, Any]], dataset: str) -> pd.DataFrame | None:
    """W-triplet without and with WCRAIG on ``dataset``; None without a WCRAIG run."""
    mine = [r for r in runs if r["dataset"] == dataset]
    if not any(r["method"] == "wtriplet_wcraig" for r in mine):
        return None
    out = []
    for row in ("wtriplet", "wtriplet_wcraig"):
        rr = [r for r in mine if r["method"] == row]
        if not rr:
            continue
        core = [r["coreset"] for r in rr if r.get("coreset")]
        times = np.array([r["train_seconds"] for r in rr], dtype=float)
        out.append({
            "Method": row_label(row),
            **{name: _cell([r["test"][key] for r in rr]) for name, key in METRICS.items()},
            "training wall s (selection included)": _plain(times),
            "training CPU s": (_plain([r["train_cpu_seconds"] for r in rr])
                               if all("train_cpu_seconds" in r for r in rr) else "–"),
            "of which coreset selection s": (f"{np.mean([c['selection_seconds'] for c in core]):.1f}" if core else "0"),
            "batches per epoch": rr[0].get("batches_per_epoch", "–"),
            "images trained on per epoch": (f"{int(np.mean([np.mean(c['sizes']) for c in core]))} of {rr[0]['fit_images']}"
                                            if core else str(rr[0]["fit_images"])),
            "seeds": len(rr),
        })
    return pd.DataFrame(out)


def reading_table(runs: Sequence[dict[str, Any]], dataset: str) -> pd.DataFrame | None:
    """W-triplet and W-contrastive under the two readings of an image's measure (point clouds,
    histogram over the embedding's dimensions) on ``dataset``; None without a histogram run."""
    mine = [r for r in runs if r["dataset"] == dataset]
    if not any(r["method"] in HISTOGRAM_ROWS for r in mine):
        return None
    out = []
    for row in ("wtriplet", "wtriplet_hist", "wcontrastive", "wcontrastive_hist"):
        rr = [r for r in mine if r["method"] == row]
        if rr:
            out.append({"Method": row_label(row), "measure": "histogram" if row in HISTOGRAM_ROWS else "point cloud",
                        **{name: _cell([r["test"][key] for r in rr]) for name, key in METRICS.items()},
                        "training CPU s": (_plain([r["train_cpu_seconds"] for r in rr])
                                           if all("train_cpu_seconds" in r for r in rr) else "–"),
                        "seeds": len(rr)})
    return pd.DataFrame(out)


def table1_title(dataset: str) -> str:
    if is_paper_dataset(dataset):
        return f"Wasserstein DML, Table 1 on {dataset_label(dataset)} (percent; the paper's fractions × 100)"
    return (f"Wasserstein DML, Table 1 on {dataset_label(dataset)}: the offline stand-in, a check of method "
            "(the paper's CUB/SOP R@1 are shown for orientation only, in columns labelled as the paper's)")


def write_tables(table: pd.DataFrame, coreset: pd.DataFrame | None, csv_path, md_path, coreset_csv, title: str,
                 notes: Sequence[str] = (), reading: pd.DataFrame | None = None) -> None:
    """CSV of Table 1 and of the coreset table (empty when none ran); Markdown with both and the notes."""
    write_text(csv_path, table.to_csv(index=False))
    write_text(coreset_csv, (coreset if coreset is not None else pd.DataFrame()).to_csv(index=False))
    sections = [(None, table)]
    if coreset is not None:
        sections.append(("WCRAIG: W-triplet without and with the coreset (same epochs)", coreset))
    if reading is not None:
        sections.append(("The measure of an image: point clouds vs the embedding read as a histogram", reading))
    if any(SUSPECT_MARK.strip() in str(v) for v in table.to_numpy().ravel()):
        sections.append((None, f"{SUSPECT_MARK.strip()} a probable copy error of the paper (TARGETS.md 002-§1): no "
                               "difference is computed against it."))
    write_text(md_path, markdown_document(title, sections, notes))


def claims_table(metric_files: Sequence[str | os.PathLike]) -> pd.DataFrame:
    return evaluate_claims(CLAIMS, results_frame(metric_files), row_label, dataset_label)


def claims_title(datasets: Sequence[str]) -> str:
    return stand_in_claims_title("the Wasserstein DML paper (Table 1)", datasets, dataset_label, is_paper_dataset)


def write_claims_table(claims: pd.DataFrame, csv_path, md_path, datasets: Sequence[str]) -> None:
    write_claims(claims, csv_path, md_path, title=claims_title(datasets))
