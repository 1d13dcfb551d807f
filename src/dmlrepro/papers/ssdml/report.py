"""SSDML's Tables 1 and 4: our mean ± std over seeds, the paper's value beside it, and Δ.

A row the config did not run (a baseline, a dataset) is kept with "not run" in our cells, so the
paper's rows stay visible. Values in %. Δ = our mean − the paper's value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from dmlrepro.io import atomic_path, write_text
from dmlrepro.papers.ssdml.paper_values import (BASELINES, DATASET_LABELS, FINE_GRAINED, METHOD_LABELS, METRICS,
                                               QUOTED, SUPERVISED, paper_value)

NOT_RUN = "not run"
NOT_MONITORED = "not monitored"
TABLE1_METHODS = ("initial",) + BASELINES + ("ours",)
TABLE4_METHODS = ("ours_no_orth", "ours")
TABLE4_LABELS = {"ours_no_orth": "w/o orth", "ours": "w/ orth"}
NOTES = (
    "Ours: mean ± sample std over seeds (each seed its own labelled subset, validation split and initialisation); "
    "paper: one number, runs unstated. Δ = ours − paper.",
    "Selection by validation R@1 (15 % of each training class, held out of training); the test split is never "
    "read for it. 'R@1 if selected on test' shows what picking the best epoch on test would report.",
    "NMI of k-means with as many clusters as classes (the paper does not name its clustering).",
    "Initial: the network at its random initialisation with the initial L (what each seed's runs start from).",
)


SPACE_NOTES = {
    "after_L": "Retrieval and NMI on the embedding Lᵀz (L is the paper's last layer); the metrics before L are "
               "in each run's metrics.json (test_before_L).",
    "before_L": "Retrieval and NMI on the l2-normalised features before L (the authors' related GUML code); the "
                "metrics after L are in each run's metrics.json (test_after_L).",
}


def baseline_notes(runs: list[dict[str, Any]]) -> list[str]:
    """What the baseline rows are: trained through Algorithm 1 (untuned defaults) where run, else paper only."""
    ran = sorted({r["method"] for r in runs if r["method"] in BASELINES})
    notes = []
    if ran:
        notes.append("Baselines (" + ", ".join(METHOD_LABELS[m] for m in ran) + "): Algorithm 1 with their own metric "
                     "step once per partition and their own pair objective as the network loss, the same SGD budget as "
                     "Ours; hyperparameters as the config sets them (the default's: chosen on a validation grid, "
                     "config/ssdml_tuning.yaml; docs/ssdml.md).")
    if len(ran) < len(BASELINES):
        notes.append("Baseline rows marked 'not run' are not in this config: paper values only.")
    return notes


def space_notes(runs: list[dict[str, Any]]) -> list[str]:
    """One note per retrieval space the runs used (a mixed set names each)."""
    return [SPACE_NOTES[s] for s in sorted({r.get("retrieval_space", "before_L") for r in runs})]


def load_runs(metric_files: Sequence[str | Path]) -> list[dict[str, Any]]:
    return [json.loads(Path(p).read_text()) for p in metric_files]


def _values(runs: list[dict[str, Any]], metric: str) -> np.ndarray:
    key = "nmi" if metric == "NMI" else f"recall@{metric[2:]}"
    return 100.0 * np.asarray([r["test"][key] for r in runs if key in r["test"]], float)


def _cell(v: np.ndarray) -> str:
    if len(v) == 0:
        return NOT_RUN
    return f"{v.mean():.2f} ± {v.std(ddof=1):.2f}" if len(v) > 1 else f"{v.mean():.2f}"


QUOTED_CELL = "quoted"


def _rows(runs, table: int, methods, labels, datasets) -> pd.DataFrame:
    out = []
    for ds in datasets:
        for method in methods:
            mine = [r for r in runs if r["dataset"] == ds and r["method"] == method]
            quoted = method in QUOTED        # Table 3's literature rows: the paper's column only
            row: dict[str, Any] = {"Dataset": DATASET_LABELS.get(ds, ds),
                                   "Method": labels.get(method, method) + (" (quoted)" if quoted else "")}
            for metric in METRICS:
                v = _values(mine, metric)
                paper = paper_value(table, method, ds, metric)
                row[f"{metric} ours"] = QUOTED_CELL if quoted else _cell(v)
                row[f"{metric} paper"] = "–" if paper is None else f"{paper:.1f}"
                row[f"Δ {metric}"] = f"{v.mean() - paper:+.2f}" if len(v) and paper is not None else "–"
            chosen = [r["test_selected"]["recall@1"] for r in mine if r.get("test_selected")]
            # runs without per-epoch test monitoring (train.monitor_test: false) have nothing to show here
            row["R@1 if selected on test (inflated)"] = (_cell(100.0 * np.asarray(chosen, float))
                                                         if chosen or not mine else
                                                         "–" if method == "initial" else NOT_MONITORED)
            row["seeds"] = len(mine)
            out.append(row)
    return pd.DataFrame(out)


def table1(runs: list[dict[str, Any]], datasets: Sequence[str]) -> pd.DataFrame:
    """Table 1: Initial, the five baselines, Ours (w/ orth), per dataset."""
    return _rows(runs, 1, TABLE1_METHODS, METHOD_LABELS, [d for d in datasets if d not in FINE_GRAINED])


def table2(runs: list[dict[str, Any]], datasets: Sequence[str]) -> pd.DataFrame:
    """Table 2: Table 1's rows on the fine-grained datasets (CUB-200-2011, Cars-196)."""
    return _rows(runs, 2, TABLE1_METHODS, METHOD_LABELS, [d for d in datasets if d in FINE_GRAINED])


def table3(runs: list[dict[str, Any]], datasets: Sequence[str]) -> pd.DataFrame:
    """Table 3: Ours against the unsupervised methods, whose values are quoted from the literature."""
    return _rows(runs, 3, QUOTED + ("ours",), METHOD_LABELS, [d for d in datasets if d in FINE_GRAINED])


def table5(runs: list[dict[str, Any]], datasets: Sequence[str]) -> pd.DataFrame:
    """Table 5: supervised Triplet and Angular on the labelled images only, against Ours (CUB)."""
    return _rows(runs, 5, SUPERVISED + ("ours",), METHOD_LABELS, [d for d in datasets if d == "cub200"])


FINE_GRAINED_NOTES = (
    "Table 3's Exemplar, Rotation, NCE, DeepCluster and Synthetic rows are literature values the paper quotes "
    "(possibly other backbones and embedding sizes): labelled 'quoted', never runs of ours.",
    "Table 5's Triplet and Angular: PML's TripletMarginLoss / AngularLoss on the seed's labelled images only "
    "(5 per class), a linear 128-d layer in L's place (papers/ssdml/run.py, train_supervised).",
)


def table4(runs: list[dict[str, Any]], datasets: Sequence[str]) -> pd.DataFrame:
    """Table 4: Ours without and with orthogonality, per dataset."""
    return _rows(runs, 4, TABLE4_METHODS, TABLE4_LABELS, [d for d in datasets if d not in FINE_GRAINED])


def write_table(df: pd.DataFrame, csv_path: str | Path, md_path: str | Path, title: str,
                notes: Sequence[str]) -> None:
    with atomic_path(csv_path) as tmp:
        df.to_csv(tmp, index=False)
    text = (f"# {title}\n\n" + df.to_markdown(index=False, disable_numparse=True) + "\n\n"
            + "\n".join(f"- {n}" for n in notes) + "\n")
    write_text(md_path, text)


def tuning_point_label(point: dict[str, Any]) -> str:
    """``alpha_deg=35`` / ``gamma_s=0.1, gamma_d=0.1``: a grid point's overrides, ``params`` flattened."""
    flat = {**{k: v for k, v in point.items() if k != "params"}, **point.get("params", {})}
    return ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in flat.items())


def tuning_table(runs: list[dict[str, Any]], grid: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """The validation grid: one row per (method, point) with its validation R@1 (the selection score of
    the run's selected epoch) and the chosen point per method (the highest; ties to the earlier point).

    ``runs`` carry ``tuning_point`` (their index into ``grid[method]``); test metrics are not shown:
    the choice reads validation only."""
    by_key = {(r["method"], int(r["tuning_point"])): r for r in runs}
    out = []
    for method, points in grid.items():
        scores = [by_key[(method, i)]["val_recall@1"] if (method, i) in by_key else None for i in range(len(points))]
        known = [s for s in scores if s is not None]
        best = scores.index(max(known)) if known else None
        for i, (point, score) in enumerate(zip(points, scores)):
            out.append({"Method": METHOD_LABELS.get(method, method), "point": tuning_point_label(point),
                        "val R@1": NOT_RUN if score is None else f"{100.0 * score:.2f}",
                        "chosen": "yes" if i == best else ""})
    return pd.DataFrame(out)
