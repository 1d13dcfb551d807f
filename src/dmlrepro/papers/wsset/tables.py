"""WSSET's Tables I and II and the DML-metrics table (ours vs the paper) from per-run metric JSON files.

A metric record (one JSON file per dataset × method × split) looks like::

    {"dataset": "bbcsport", "method": "wsset", "split": 0,
     "knn_accuracy": 95.1, "recall_at": {"5": 9.0, "15": 25.1, ...},
     "precision_at_1": 93.2, "map_at_r": 61.0, "data_source": "kusner-mat"}

All metrics are percentages. Over the splits of one (method, dataset) we report the mean and
the **sample** standard deviation (ddof = 1; "± n/a" with a single split). Published numbers
appear only in the column "Paper" (as printed, "[?]" marking OCR-uncertain values; "–" where
the paper has none, and on a dataset whose records carry a ``task_note``: relabelled, another
corpus, a subsample that lost classes, which is not the paper's task); "Δ" is ours − paper,
signed, 2 decimals. Rows follow the paper's row
order; methods that are not in the paper (e.g. ``sset``) come after, then unknown keys A→Z.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import pandas as pd

from dmlrepro import DmlReproError
from dmlrepro.papers.wsset.paper_values import (
    DATASETS,
    METHOD_ORDER,
    METHODS,
    PAPER_RECALL_KS,
    PAPER_TABLE1_PRINTED,
    PAPER_TABLE2_PRINTED,
    dataset_label,
    paper_row_label,
)
from dmlrepro.reporting.tables import (
    NA,
    format_delta,
    format_mean_std,
    load_records,
    mean_std,
    source_of,
    validate_record,
)

__all__ = ["build_table1", "build_table2", "build_dml_table", "paper_value_notes"]

TABLE1_COLUMNS = ["Method", "Sup", "Ext", "Dataset", "Ours", "ours_mean", "ours_std", "n_splits", "Paper", "Δ", "Data"]
TABLE2_COLUMNS = ["Method", "Sup", "Ext", "Dataset", "K", "Ours", "ours_mean", "ours_std", "n_splits", "Paper", "Δ", "Data"]
DML_COLUMNS = [
    "Method", "Sup", "Ext", "Dataset", "R@1", "r_at_1_mean", "r_at_1_std",
    "MAP@R", "map_at_r_mean", "map_at_r_std", "n_splits", "Data",
]


def _coerce_records(records: Sequence[Mapping | str | os.PathLike]) -> list[dict]:
    recs: list[dict] = []
    for i, r in enumerate(records):
        if isinstance(r, (str, os.PathLike)):
            recs.extend(load_records([r]))
        else:
            recs.append(validate_record(r, str(r.get("_source", f"<record {i}>")) if isinstance(r, Mapping) else f"<record {i}>"))
    if not recs:
        raise DmlReproError("no metric records given; nothing to tabulate")
    seen: dict[tuple, str] = {}
    for r in recs:
        key = (r["method"], r["dataset"], r["split"])
        if key in seen:
            raise DmlReproError(
                f"duplicate metric record for method={key[0]!r} dataset={key[1]!r} split={key[2]}: "
                f"{seen[key]} and {source_of(r)}"
            )
        seen[key] = source_of(r)
    return recs


def _method_sort_key(method: str) -> tuple:
    if method in METHODS:
        return (0, METHOD_ORDER.index(method), "")
    return (1, 0, method)


def _dataset_sort_key(dataset: str) -> tuple:
    if dataset in DATASETS:
        return (0, DATASETS.index(dataset), "")
    return (1, 0, dataset)


def _grouped(records: Sequence[Mapping | str | os.PathLike]) -> tuple[list[dict], dict[str, str], list]:
    """The validated records, the datasets that are not the paper's task, the (method, dataset) groups."""
    recs = _coerce_records(records)
    return recs, _task_notes(recs), _groups(recs)


def _groups(recs: list[dict]) -> list[tuple[str, str, list[dict]]]:
    by: dict[tuple[str, str], list[dict]] = {}
    for r in recs:
        by.setdefault((r["method"], r["dataset"]), []).append(r)
    keys = sorted(by, key=lambda md: (_method_sort_key(md[0]), _dataset_sort_key(md[1])))
    return [(m, d, sorted(by[(m, d)], key=lambda r: r["split"])) for m, d in keys]


def _flag(value: bool | None) -> str:
    if value is None:
        return "?"
    return "✓" if value else "✗"


def _method_cols(method: str) -> dict[str, str]:
    info = METHODS.get(method)
    return {
        "Method": paper_row_label(method),
        "Sup": _flag(info.sup if info else None),
        "Ext": _flag(info.ext if info else None),
    }


def _paper_cell(printed: str | None, uncertain: bool) -> tuple[str, float | None]:
    if printed is None:
        return NA, None
    return (f"{printed} [?]" if uncertain else printed), float(printed)


def _data_source(group: list[dict]) -> str:
    return "; ".join(sorted({r["data_source"] for r in group} - {""}))


def _task_notes(recs: list[dict]) -> dict[str, str]:
    """Dataset -> why its runs are not the paper's task (optional record key ``task_note``: a
    relabelled or otherwise different dataset). A paper value appears only where the task is the
    paper's, so these datasets get "–" in the Paper column."""
    notes: dict[str, set[str]] = {}
    for r in recs:
        if r.get("task_note"):
            notes.setdefault(r["dataset"], set()).add(str(r["task_note"]))
    return {d: "; ".join(sorted(n)) for d, n in notes.items()}


def paper_value_notes() -> list[str]:
    """Notes about the published values themselves (OCR uncertainty etc.), for ``write_table``."""
    return [f"{m.label}: {m.note}" for m in METHODS.values() if m.in_paper and m.note]


# ----------------------------------------------------------------------------- tables

def build_table1(records: Sequence[Mapping | str | os.PathLike], include_missing_paper_rows: bool = False,
                 pending: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Table I (kNN accuracy %) in long form: one row per (method, dataset) with our runs.

    With ``include_missing_paper_rows`` the paper's rows we have no run for are listed too
    (Ours "not run", n_splits 0), for the four paper datasets. ``pending`` maps a method that
    could not run here to the reason shown in its Ours cell (e.g. BERT: "needs download"), on
    every evaluated dataset the paper reports it for.
    """
    recs, differs, groups = _grouped(records)
    rows = []
    have = set()
    for method, dataset, group in groups:
        have.add((method, dataset))
        info = METHODS.get(method)
        printed = None if dataset in differs else PAPER_TABLE1_PRINTED.get(method, {}).get(dataset)
        paper = _paper_cell(printed, bool(info and dataset in info.uncertain_table1))
        rows.append(_measured_row(method, dataset, [r["knn_accuracy"] for r in group], paper, group))
    if include_missing_paper_rows:
        for method in METHOD_ORDER:
            for dataset in DATASETS:
                printed = PAPER_TABLE1_PRINTED[method][dataset]
                if printed is None or (method, dataset) in have or dataset in differs:
                    continue
                paper_text = _paper_cell(printed, dataset in METHODS[method].uncertain_table1)[0]
                rows.append(_not_run_row(method, dataset, paper_text))
    for method, reason in (pending or {}).items():
        for dataset in sorted({d for _, d in have}, key=_dataset_sort_key):
            printed = PAPER_TABLE1_PRINTED.get(method, {}).get(dataset)
            if printed is not None and (method, dataset) not in have:
                rows.append(_not_run_row(method, dataset, NA if dataset in differs else printed, reason=reason))
    if include_missing_paper_rows or pending:
        rows = _resort(rows)
    return pd.DataFrame(rows, columns=TABLE1_COLUMNS)


def _resort(rows: list[dict]) -> list[dict]:
    label_to_key = {METHODS[k].label: k for k in METHOD_ORDER}
    label_of_ds = {dataset_label(d): d for d in DATASETS}

    def key(r):
        m = label_to_key.get(r["Method"], r["Method"])
        d = label_of_ds.get(r["Dataset"], r["Dataset"])
        return (_method_sort_key(m), _dataset_sort_key(d), r.get("K", 0))

    return sorted(rows, key=key)


def _measured_row(method: str, dataset: str, values: list[float], paper: tuple[str, float | None],
                  group: list[dict], **extra) -> dict:
    """One table row: our mean ± std over splits beside the paper's value (``paper`` = (text, number))."""
    mean, std = mean_std(values) if values else (float("nan"), float("nan"))
    paper_text, paper_value = paper
    return {**_method_cols(method), "Dataset": dataset_label(dataset), **extra,
            "Ours": format_mean_std(mean, std), "ours_mean": mean, "ours_std": std, "n_splits": len(group),
            "Paper": paper_text, "Δ": format_delta(mean, paper_value), "Data": _data_source(group)}


def _not_run_row(method: str, dataset: str, paper_text: str, reason: str = "not run", **extra) -> dict:
    return {**_method_cols(method), "Dataset": dataset_label(dataset), **extra, "Ours": reason,
            "ours_mean": float("nan"), "ours_std": float("nan"), "n_splits": 0,
            "Paper": paper_text, "Δ": NA, "Data": NA}


def _ks_for(dataset: str, group: list[dict]) -> list[int]:
    """The paper's K values for the dataset and every K our runs measured (a config may add others)."""
    ours = {int(k) for r in group for k in r["recall_at"]}
    return sorted(ours | set(PAPER_RECALL_KS.get(dataset, [])))


def _has_k(rec: dict, k: int) -> bool:
    return any(int(key) == k for key in rec["recall_at"])


def _recall_value(rec: dict, k: int) -> float:
    for key, val in rec["recall_at"].items():
        if int(key) == k:
            return float(val)
    raise DmlReproError(
        f"{source_of(rec)}: key 'recall_at' lacks K={k} (has {sorted(rec['recall_at'], key=int)}); "
        f"the paper reports Recall@{k} for dataset {rec['dataset']!r}"
    )


def build_table2(records: Sequence[Mapping | str | os.PathLike], include_missing_paper_rows: bool = False,
                 pending: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Table II (Recall@K %) in long form: one row per (method, dataset, K), K = the paper's K list
    for that dataset (for a dataset not in the paper: every K found in the records)."""
    recs, differs, groups = _grouped(records)
    rows = []
    have = set()
    for method, dataset, group in groups:
        have.add((method, dataset))
        paper_block = {} if dataset in differs else PAPER_TABLE2_PRINTED.get(method, {}).get(dataset, {})
        for k in _ks_for(dataset, group):
            measured = [r for r in group if _has_k(r, k)]
            missing = [r for r in group if not _has_k(r, k)]
            if measured and missing:  # splits of one run measured different Ks: refuse to average
                raise DmlReproError(f"{source_of(missing[0])}: key 'recall_at' lacks K={k}, "
                                    f"which other splits of {method}/{dataset} have")
            values = [_recall_value(r, k) for r in measured]
            paper = _paper_cell(paper_block.get(k), False)
            rows.append(_measured_row(method, dataset, values, paper, group, K=k))
    if include_missing_paper_rows:
        for method in METHOD_ORDER:
            for dataset, block in PAPER_TABLE2_PRINTED[method].items():
                if (method, dataset) in have or dataset in differs:
                    continue
                for k, printed in block.items():
                    rows.append(_not_run_row(method, dataset, printed, K=k))
    for method, reason in (pending or {}).items():
        for dataset in sorted({d for _, d in have}, key=_dataset_sort_key):
            if (method, dataset) not in have:
                for k, printed in PAPER_TABLE2_PRINTED.get(method, {}).get(dataset, {}).items():
                    rows.append(_not_run_row(method, dataset, NA if dataset in differs else printed,
                                             reason=reason, K=k))
    if include_missing_paper_rows or pending:
        rows = _resort(rows)
    return pd.DataFrame(rows, columns=TABLE2_COLUMNS)


def build_dml_table(records: Sequence[Mapping | str | os.PathLike]) -> pd.DataFrame:
    """Our DML metrics per (method, dataset): R@1 (= precision_at_1) and MAP@R, mean ± std over
    splits. The paper reports neither, so there is no Paper column."""
    recs = _coerce_records(records)
    rows = []
    for method, dataset, group in _groups(recs):
        r1_mean, r1_std = mean_std([r["precision_at_1"] for r in group])
        mp_mean, mp_std = mean_std([r["map_at_r"] for r in group])
        rows.append({
            **_method_cols(method),
            "Dataset": dataset_label(dataset),
            "R@1": format_mean_std(r1_mean, r1_std),
            "r_at_1_mean": r1_mean,
            "r_at_1_std": r1_std,
            "MAP@R": format_mean_std(mp_mean, mp_std),
            "map_at_r_mean": mp_mean,
            "map_at_r_std": mp_std,
            "n_splits": len(group),
            "Data": _data_source(group),
        })
    return pd.DataFrame(rows, columns=DML_COLUMNS)

