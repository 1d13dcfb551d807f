"""Shared table helpers: per-run metric records, mean ± std formatting, CSV + Markdown output.

A metric record (one JSON file per dataset × method × split) looks like::

    {"dataset": "bbcsport", "method": "wsset", "split": 0,
     "knn_accuracy": 95.1, "recall_at": {"5": 9.0, "15": 25.1, ...},
     "precision_at_1": 93.2, "map_at_r": 61.0, "data_source": "kusner-mat"}

All metrics are percentages. Over the splits of one (method, dataset) a table reports the mean
and the **sample** standard deviation (ddof = 1; "± n/a" with a single split). A paper's own
tables (e.g. ``papers/wsset/tables.py``) build their rows from these helpers.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from dmlrepro import DmlReproError
from dmlrepro.io import write_text

__all__ = [
    "REQUIRED_KEYS",
    "load_records",
    "validate_record",
    "source_of",
    "mean_std",
    "write_table",
    "format_mean_std",
    "format_delta",
    "markdown_columns",
    "table_markdown",
]

NA = "–"  # en dash, as in the paper
REQUIRED_KEYS: dict[str, type | tuple[type, ...]] = {
    "dataset": str,
    "method": str,
    "split": int,
    "knn_accuracy": (int, float),
    "recall_at": dict,
    "precision_at_1": (int, float),
    "map_at_r": (int, float),
    "data_source": str,
}

# ----------------------------------------------------------------------------- records

def source_of(rec: Mapping[str, Any]) -> str:
    return str(rec.get("_source", "<record>"))


def validate_record(rec: Any, source: str = "<record>") -> dict:
    """Check a metric record's keys and types; return a copy with ``_source`` set."""
    if not isinstance(rec, Mapping):
        raise DmlReproError(f"{source}: a metric record must be a JSON object, got {type(rec).__name__}")
    out = dict(rec)
    out.setdefault("_source", source)
    src = out["_source"]
    for key, typ in REQUIRED_KEYS.items():
        if key not in out:
            raise DmlReproError(f"{src}: metric record lacks key {key!r}")
        val = out[key]
        if isinstance(val, bool) or not isinstance(val, typ):
            raise DmlReproError(f"{src}: key {key!r} has value {val!r}, expected {_type_name(typ)}")
        if typ == (int, float) and not math.isfinite(val):
            raise DmlReproError(f"{src}: key {key!r} has non-finite value {val!r}")
    for k, v in out["recall_at"].items():
        try:
            int(k)
        except (TypeError, ValueError):
            raise DmlReproError(f"{src}: key 'recall_at' has a non-integer K {k!r}") from None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DmlReproError(f"{src}: key 'recall_at.{k}' has value {v!r}, expected a finite number")
    return out


def _type_name(typ) -> str:
    if isinstance(typ, tuple):
        return " or ".join(t.__name__ for t in typ)
    return typ.__name__


def load_records(paths: Iterable[str | os.PathLike]) -> list[dict]:
    """Read and validate metric JSON files; each record remembers its file in ``_source``."""
    out = []
    for p in paths:
        p = Path(p)
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DmlReproError(f"metric file not found: {p}") from None
        except json.JSONDecodeError as e:
            raise DmlReproError(f"{p}: not valid JSON ({e})") from None
        out.append(validate_record(rec, str(p)))
    return out


# ----------------------------------------------------------------------------- formatting

def mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if len(arr) > 1 else float("nan")
    return mean, std


def format_mean_std(mean: float, std: float) -> str:
    """``"94.12 ± 1.03"``; ``"94.12 ± n/a"`` when the std is undefined (one split); ``"–"`` unmeasured."""
    if math.isnan(mean):
        return NA
    if math.isnan(std):
        return f"{mean:.2f} ± n/a"
    return f"{mean:.2f} ± {std:.2f}"


def format_delta(ours: float, paper: float | None) -> str:
    """Signed difference ours − paper with 2 decimals (``"+1.23"``, ``"-0.40"``), ``"–"`` without a paper value."""
    if paper is None or math.isnan(ours):
        return NA
    text = f"{ours - paper:+.2f}"
    return "+0.00" if text == "-0.00" else text


def markdown_columns(df: pd.DataFrame) -> list[str]:
    """Columns shown in Markdown/HTML: the numeric helpers ``*_mean`` / ``*_std`` are CSV-only."""
    return [c for c in df.columns if not (str(c).endswith("_mean") or str(c).endswith("_std"))]


def table_markdown(df: pd.DataFrame) -> str:
    return df[markdown_columns(df)].to_markdown(index=False, disable_numparse=True)


def markdown_document(title: str, sections: Sequence[tuple[str | None, pd.DataFrame | str]],
                      notes: Sequence[str] = ()) -> str:
    """A table file's Markdown: ``# title``, then each section (an optional ``## heading`` and a
    table, or a paragraph given as text; an empty table reads "(no runs)"), then a "Notes" list."""
    parts = [f"# {title}", ""]
    for heading, body in sections:
        if heading:
            parts += [f"## {heading}", ""]
        if isinstance(body, pd.DataFrame):
            body = body.to_markdown(index=False, disable_numparse=True) if len(body) else "(no runs)"
        parts += [body, ""]
    if notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(parts)


def write_table(df: pd.DataFrame, csv_path, md_path, title: str, notes: Sequence[str] = ()) -> None:
    """Write ``df`` as CSV (all columns, UTF-8) and as Markdown (title, table without the
    ``*_mean``/``*_std`` helper columns, then a "Notes" list), both atomically."""
    write_text(csv_path, df.to_csv(index=False))
    write_text(md_path, markdown_document(title, [(None, table_markdown(df))], notes))
