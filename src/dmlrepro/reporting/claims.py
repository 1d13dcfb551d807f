"""A paper's qualitative claims as data, checked against the runs that exist.

A claim ("method X beats method Y on dataset D", about one of the paper's tables or figures) is a
:class:`ClaimSpec`: the paper's words, where they are, the metric it reads, and two row selections
A and B with A claimed better than B. :func:`evaluate_claims` reads a **per-split** results table
(one row per run and metric, see :data:`RESULT_COLUMNS`; a paper builds it from its runs) and
gives each comparison a verdict from the mean and the sample std (ddof = 1) over splits:

- ``holds``: A's mean is better than B's and the intervals mean ± 1 std do not overlap;
- ``does not hold``: B's mean is better than A's and the intervals do not overlap;
- ``undecided (±1 std overlap)``: the intervals overlap (touching counts as overlap; so do equal means);
- ``not run``: A or B has no run in the table.

Decisions (not in the papers):

- A side with a single run has no sample std; its interval is its value (std taken as 0 for the
  verdict, shown as "± n/a"). The "n runs" column says how many splits each verdict rests on.
- Study settings (Fig. 4's samples per class, Fig. 6's c): a selector's ``setting`` is a value, an
  inclusive ``(low, high)`` range, or None (every setting run). When A and B select settings the
  same way, settings are compared pairwise ("at every size": A at 30 vs B at 30); otherwise every
  A setting is compared with every B setting ("c = 7 to 13 beat higher c": 7 vs 30, 7 vs 100, ...).
- ``dataset=None`` means each dataset that both sides ran on (Fig. 6 is on Recipe in the paper;
  our configs may run the c study on another dataset), and metric ``"R@*"`` each Recall@K measured
  on both sides ("for all Recall@K").
- A claim whose selectors match no run at all is one "not run" row, not dropped.

A paper builds its results table and calls :func:`evaluate_claims` and :func:`write_claims`
(e.g. ``papers/wsset/report.py:check_claims``).
"""

from __future__ import annotations

import importlib
import itertools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from dmlrepro import DmlReproError
from dmlrepro.io import write_text
from dmlrepro.reporting.tables import format_mean_std, table_markdown

__all__ = [
    "runs_frame", "recall_metrics",
    "HOLDS", "DOES_NOT_HOLD", "UNDECIDED", "NOT_RUN", "VERDICTS", "RESULT_COLUMNS", "CLAIM_COLUMNS",
    "Rows", "ClaimSpec", "verdict", "evaluate_claims", "write_claims", "load_specs", "stand_in_claims_title",
]

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
UNDECIDED = "undecided (±1 std overlap)"
NOT_RUN = "not run"
VERDICTS = (HOLDS, DOES_NOT_HOLD, UNDECIDED, NOT_RUN)

# the per-split results table: study "" are the Tables I/II runs (setting NaN); "small_data" (Fig. 4,
# setting = samples per class) and "c_grid" (Fig. 6, setting = c) the figure studies
RESULT_COLUMNS = ("dataset", "method", "study", "setting", "split", "metric", "value")
CLAIM_COLUMNS = ["id", "claim", "source", "A", "B", "metric", "A mean ± std", "B mean ± std", "n runs", "verdict",
                 "a_mean", "a_std", "b_mean", "b_std"]

Setting = float | tuple[float, float] | None


@dataclass(frozen=True)
class Rows:
    """One side of a claim: the runs of ``method`` on ``dataset`` (None: each dataset run), in the
    Tables I/II runs (``study=""``) or a figure study at ``setting`` (value, (low, high), or None)."""

    method: str
    dataset: str | None
    study: str = ""
    setting: Setting = None

    def __post_init__(self):
        if self.study == "" and self.setting is not None:
            raise DmlReproError(f"claim rows {self.method}/{self.dataset}: a setting needs a study")
        if isinstance(self.setting, tuple) and (len(self.setting) != 2 or self.setting[0] > self.setting[1]):
            raise DmlReproError(f"claim rows {self.method}/{self.dataset}: setting range {self.setting} is not (low, high)")


@dataclass(frozen=True)
class ClaimSpec:
    """A claim of the paper: ``a`` is better than ``b`` on ``metric`` (``"knn_accuracy"``,
    ``"R@<K>"``, or ``"R@*"`` for every K), where better means larger for ``direction="higher"``.

    ``text`` is the claim as the paper states it (a quote where possible), ``source`` the section,
    ``reads`` the table or figure the claim is about ("Table I", "Fig. 4", ...)."""

    id: str
    text: str
    source: str
    reads: str
    metric: str
    a: Rows
    b: Rows
    direction: str = "higher"

    def __post_init__(self):
        if self.direction not in ("higher", "lower"):
            raise DmlReproError(f"claim {self.id}: direction {self.direction!r} is not 'higher' or 'lower'")
        if (self.a.dataset is None) != (self.b.dataset is None):
            raise DmlReproError(f"claim {self.id}: dataset=None (each dataset run) must be on both sides")


# ----------------------------------------------------------------------------- verdicts

def verdict(a_mean: float, a_std: float, b_mean: float, b_std: float, higher_is_better: bool = True) -> str:
    """The verdict for A vs B from means and stds (NaN std: a single run, taken as 0)."""
    if math.isnan(a_mean) or math.isnan(b_mean):
        return NOT_RUN
    a_std = 0.0 if math.isnan(a_std) else a_std
    b_std = 0.0 if math.isnan(b_std) else b_std
    if abs(a_mean - b_mean) <= a_std + b_std:  # the ±1 std intervals overlap (or touch)
        return UNDECIDED
    a_better = a_mean > b_mean if higher_is_better else a_mean < b_mean
    return HOLDS if a_better else DOES_NOT_HOLD


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    if len(values) == 0:
        return float("nan"), float("nan")
    return float(values.mean()), (float(values.std(ddof=1)) if len(values) > 1 else float("nan"))


# ----------------------------------------------------------------------------- selection

def _check_table(table: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in RESULT_COLUMNS if c not in table.columns]
    if missing:
        raise DmlReproError(f"claims: the results table lacks column(s) {missing} (has {list(table.columns)})")
    return table


def _side(table: pd.DataFrame, rows: Rows, dataset: str | None) -> pd.DataFrame:
    part = table[(table["method"] == rows.method) & (table["study"] == rows.study)]
    return part if dataset is None else part[part["dataset"] == dataset]


def _settings(part: pd.DataFrame, selector: Setting) -> list[float]:
    present = sorted({float(s) for s in part["setting"].dropna()})
    if selector is None:
        return present
    if isinstance(selector, tuple):
        return [s for s in present if selector[0] <= s <= selector[1]]
    return [s for s in present if math.isclose(s, float(selector))]


def _setting_pairs(a_part: pd.DataFrame, b_part: pd.DataFrame, spec: ClaimSpec) -> list[tuple[float, float]]:
    """(A setting, B setting) pairs to compare; (nan, nan) for the Tables I/II runs."""
    a_settings = _settings(a_part, spec.a.setting) if spec.a.study else [math.nan]
    b_settings = _settings(b_part, spec.b.setting) if spec.b.study else [math.nan]
    if spec.a.study and spec.b.study and spec.a.setting == spec.b.setting:
        return [(s, s) for s in a_settings if s in b_settings]  # "at every setting": like with like
    return list(itertools.product(a_settings, b_settings))


def _at(part: pd.DataFrame, setting: float) -> pd.DataFrame:
    return part if math.isnan(setting) else part[np.isclose(part["setting"].astype(float), setting)]


def _metrics(a_part: pd.DataFrame, b_part: pd.DataFrame, metric: str) -> list[str]:
    if metric != "R@*":
        return [metric]
    common = set(a_part["metric"]) & set(b_part["metric"])
    return sorted((m for m in common if str(m).startswith("R@")), key=lambda m: int(m[2:]))


def _label(rows: Rows, dataset: str | None, setting: float, row_label: Callable[[str], str],
           dataset_label: Callable[[str], str]) -> str:
    text = f"{row_label(rows.method)}, {dataset_label(dataset) if dataset else 'each dataset'}"
    if rows.study:
        if math.isnan(setting):  # not run: say what was asked for
            text += f", {rows.study} {_setting_text(rows.setting)}"
        else:
            text += f", {rows.study} {setting:g}"
    return text


def _setting_text(asked: Setting) -> str:
    if asked is None:
        return "every setting"
    if not isinstance(asked, tuple):
        return f"{float(asked):g}"
    low, high = asked
    if math.isinf(high):  # (nextafter(13, inf), inf) reads "> 13"
        return f"≥ {low:g}" if float(f"{low:g}") == low else f"> {low:g}"
    return f"{low:g}–{high:g}"


def evaluate_claims(specs: Sequence[ClaimSpec], table: pd.DataFrame,
                    row_label: Callable[[str], str] = str, dataset_label: Callable[[str], str] = str) -> pd.DataFrame:
    """One row per comparison a claim expands to (:data:`CLAIM_COLUMNS`): A and B as mean ± std over
    their splits, "n runs" as ``"n_A / n_B"``, and the verdict (module docstring)."""
    table = _check_table(table)
    seen: set[str] = set()
    out = []
    for spec in specs:
        if spec.id in seen:
            raise DmlReproError(f"claims: duplicate claim id {spec.id!r}")
        seen.add(spec.id)
        if spec.a.dataset is None:
            datasets = sorted(set(_side(table, spec.a, None)["dataset"]) & set(_side(table, spec.b, None)["dataset"]))
        else:
            datasets = [None]
        rows_of_spec = []
        for ds in datasets:
            a_part, b_part = _side(table, spec.a, ds or spec.a.dataset), _side(table, spec.b, ds or spec.b.dataset)
            for a_set, b_set in _setting_pairs(a_part, b_part, spec):
                a_at, b_at = _at(a_part, a_set), _at(b_part, b_set)
                for metric in _metrics(a_at, b_at, spec.metric):
                    a_vals = a_at.loc[a_at["metric"] == metric, "value"].to_numpy(dtype=np.float64)
                    b_vals = b_at.loc[b_at["metric"] == metric, "value"].to_numpy(dtype=np.float64)
                    rows_of_spec.append(_row(spec, metric, a_vals, b_vals,
                                             _label(spec.a, ds or spec.a.dataset, a_set, row_label, dataset_label),
                                             _label(spec.b, ds or spec.b.dataset, b_set, row_label, dataset_label)))
        if not rows_of_spec:  # nothing matched: the claim stays visible
            nan = np.array([])
            rows_of_spec.append(_row(spec, spec.metric, nan, nan,
                                     _label(spec.a, spec.a.dataset, math.nan, row_label, dataset_label),
                                     _label(spec.b, spec.b.dataset, math.nan, row_label, dataset_label)))
        out.extend(rows_of_spec)
    return pd.DataFrame(out, columns=CLAIM_COLUMNS)


def _row(spec: ClaimSpec, metric: str, a_vals: np.ndarray, b_vals: np.ndarray, a_label: str, b_label: str) -> dict:
    (a_mean, a_std), (b_mean, b_std) = _mean_std(a_vals), _mean_std(b_vals)
    run = len(a_vals) > 0 and len(b_vals) > 0
    return {"id": spec.id, "claim": spec.text, "source": spec.source, "A": a_label, "B": b_label, "metric": metric,
            "A mean ± std": format_mean_std(a_mean, a_std) if len(a_vals) else NOT_RUN,
            "B mean ± std": format_mean_std(b_mean, b_std) if len(b_vals) else NOT_RUN,
            "n runs": f"{len(a_vals)} / {len(b_vals)}",
            "verdict": verdict(a_mean, a_std, b_mean, b_std, spec.direction == "higher") if run else NOT_RUN,
            "a_mean": a_mean, "a_std": a_std, "b_mean": b_mean, "b_std": b_std}


# ----------------------------------------------------------------------------- output

def write_claims(claims: pd.DataFrame, csv_path, md_path, title: str = "Claims") -> None:
    """CSV with every row; Markdown with a verdict count, the checked comparisons, then the claims
    with no run (id, A vs B) as a list, so that the table stays readable."""
    write_text(csv_path, claims.to_csv(index=False))
    counts = claims["verdict"].value_counts()
    summary = ", ".join(f"{int(counts.get(v, 0))} {v}" for v in VERDICTS)
    ran = claims[claims["verdict"] != NOT_RUN]
    parts = [f"# {title}", "",
             f"The paper's claims, each comparison checked on our per-split results: {summary}. "
             "A verdict needs A and B apart by more than their ±1 std intervals (module dmlrepro.reporting.claims).",
             ""]
    if len(ran):
        parts += [table_markdown(ran.drop(columns=["source"])), ""]
    not_run = claims[claims["verdict"] == NOT_RUN]
    if len(not_run):
        parts += ["## Not run", ""] + [f"- {r.id}: {r.A} vs {r.B} ({r.metric})" for r in not_run.itertuples()] + [""]
    write_text(md_path, "\n".join(parts))


def stand_in_claims_title(subject: str, datasets: Sequence[str], dataset_label: Callable[[str], str],
                          is_paper_dataset: Callable[[str], bool]) -> str:
    """"Claims of <subject>, checked on <datasets>", saying so when any of them is a stand-in."""
    names = ", ".join(dataset_label(d) for d in sorted(set(datasets))) or "no dataset"
    title = f"Claims of {subject}, checked on {names}"
    if any(not is_paper_dataset(d) for d in datasets):
        title += ": a check on the stand-in, not a test of the paper's numbers"
    return title


def load_specs(target: str) -> list[ClaimSpec]:
    module, _, attr = target.partition(":")
    try:
        specs = getattr(importlib.import_module(module), attr or "CLAIMS")
    except (ImportError, AttributeError) as exc:
        raise DmlReproError(f"--claims {target!r}: cannot load ({exc})") from exc
    if not all(isinstance(s, ClaimSpec) for s in specs):
        raise DmlReproError(f"--claims {target!r}: not a list of ClaimSpec")
    return list(specs)


def recall_metrics(test: dict) -> dict[str, float]:
    """``{"R@k": value}`` of a run's ``test`` block (``recall@k`` keys), in the block's order."""
    return {f"R@{k.split('@')[1]}": v for k, v in test.items() if k.startswith("recall@")}


def runs_frame(metric_files: Iterable[str | os.PathLike], metrics: Callable[[dict], dict[str, float]] = recall_metrics,
               dataset: Callable[[dict], str] = lambda rec: rec["dataset"]) -> pd.DataFrame:
    """The per-seed results table (:data:`RESULT_COLUMNS`) of image runs from their
    ``metrics.json`` (``{dataset, method, seed, test: {...}}``): one row per run and metric,
    ``metrics(test)`` naming the metrics (fractions, reported in percent), ``split`` = the seed."""
    rows = []
    for path in metric_files:
        try:
            rec = json.loads(Path(path).read_text())
            base = {"dataset": dataset(rec), "method": rec["method"], "study": "", "setting": math.nan,
                    "split": int(rec["seed"])}
            values = {name: 100.0 * float(v) for name, v in metrics(rec["test"]).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DmlReproError(f"{path}: not a run's metrics.json ({exc!r})") from exc
        rows.extend({**base, "metric": name, "value": value} for name, value in values.items())
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
