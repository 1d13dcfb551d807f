"""Tables 1–3, Fig. 3 and the claims of paper 003 from the runs' JSON files.

* Table 1 (:func:`table1`): per dataset and embedding dimension, the Initial row (the pretrained
  backbone's pooled features, before training), Ours and STML*: test metrics of the
  validation-selected epoch, mean ± std (ddof 1) over seeds, by the image foundation's
  :func:`~dmlrepro.papers.image_foundation.report.stand_in_table`; on the paper's datasets the
  printed R@K of the same row beside ours, in columns labelled "paper".
* Table 2 (:func:`table2`): purity and correlation of the four methods on the pretrained
  embeddings, one column pair per dataset, the paper's beside them on its datasets.
* Table 3 (:func:`table3`): the ablations' R@1 and R@2, Ours last; the paper's on CUB 512-d.
* Fig. 3 (:func:`figure3`): R@1 against N_ρ, m, N_α (a curve per N_β) and δ, each point the mean
  ± std over its seeds; the paper's setting is the Ours runs of the same seeds.
* Claims (:func:`claims_tables`): :func:`~.claims.claims_for` on R@1, and Table 2's comparisons.

A stand-in table says in its title that it is a check of method.
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
from dmlrepro.papers.image_foundation.report import stand_in_table
from dmlrepro.reporting.claims import evaluate_claims, write_claims
from dmlrepro.reporting.tables import format_mean_std, markdown_document

from .claims import claims_for, results_frame, table2_claims
from .methods import FIGURE3_PARAMETERS, OURS, TABLE1_ROWS, TABLE3_ROWS, figure3_runs, row_label
from .paper_values import dataset_label, is_paper_dataset, paper_value

__all__ = ["load", "table1", "table2", "table3", "figure3", "claims_tables", "write_markdown"]

TABLE2_LABELS = {"kmeans": "K-Means [17]", "hierarchical": "Hierarchical clustering [15]",
                 "random_walk": "Random walk [24]", "ours": "Ours (PL neighbourhoods, Eq. 5)"}


def load(paths: Sequence[str | os.PathLike]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in paths:
        try:
            out.append((str(path), json.loads(Path(path).read_text())))
        except (OSError, ValueError) as exc:
            raise DmlReproError(f"{path}: cannot read a run's JSON ({exc})") from exc
    return out


def _title(table: str, datasets: Sequence[str]) -> str:
    names = ", ".join(dataset_label(d) for d in dict.fromkeys(datasets))
    title = f"{table} on {names}"
    if any(not is_paper_dataset(d) for d in datasets):
        title += ": the offline stand-in, a check of method (no paper number exists for it)"
    return title


def table1(runs: list[tuple[str, dict]], initial: list[tuple[str, dict]], recall_ks: dict[str, Sequence[int]],
           notes: dict[str, str]) -> dict[tuple[str, int], pd.DataFrame]:
    """{(dataset, dim): table} for every dataset and dimension Ours or STML ran at."""
    out = {}
    keys = sorted({(r["dataset"], int(r["embedding_dim"])) for _, r in runs if r["method"] in TABLE1_ROWS})
    for dataset, dim in keys:
        files = [p for p, r in initial if r["dataset"] == dataset]
        for row in TABLE1_ROWS:
            files += [p for p, r in runs if r["dataset"] == dataset and r["embedding_dim"] == dim and r["method"] == row]
        ks = recall_ks.get(dataset, (1, 2, 4, 8))
        df = stand_in_table(files, ks, notes.get(dataset, dataset), labels={m: row_label(m) for m in ("initial", *TABLE1_ROWS)})
        if is_paper_dataset(dataset):
            rows = {row_label(m): m for m in TABLE1_ROWS}
            for k in ks:
                cells = [paper_value(1, rows[label], dataset, k, dim) if label in rows else None for label in df["Method"]]
                if any(cells):
                    df.insert(list(df.columns).index(f"R@{k}") + 1, f"R@{k}, paper", [c or "–" for c in cells])
        out[(dataset, dim)] = df
    return out


def table2(results: list[tuple[str, dict]]) -> pd.DataFrame:
    """Rows: the four methods; columns: purity and correlation per dataset (and the paper's)."""
    rows = []
    for method, label in TABLE2_LABELS.items():
        row: dict[str, Any] = {"Method": label}
        for _, rec in results:
            d = rec["dataset"]
            for metric in ("purity", "correlation"):
                value = rec["rows"][method][metric]
                row[f"{metric.capitalize()} {dataset_label(d)}"] = "–" if value is None else f"{value:.2f}"
                if is_paper_dataset(d):
                    row[f"{metric.capitalize()} {dataset_label(d)}, paper"] = paper_value(2, method, d, metric) or "–"
        size = [rec["rows"][method]["mean_set_size"] for _, rec in results]
        row["mean set size"] = " / ".join("–" if s is None else f"{s:.1f}" for s in size)
        rows.append(row)
    return pd.DataFrame(rows)


def _values(runs, dataset, dim, method, k=1, seeds=None) -> np.ndarray:
    return 100.0 * np.array([r["test"][f"recall@{k}"] for _, r in runs
                             if r["dataset"] == dataset and r["embedding_dim"] == dim and r["method"] == method
                             and (seeds is None or r["seed"] in seeds)], float)


def _cell(v: np.ndarray) -> str:
    if not len(v):
        return "–"
    return format_mean_std(float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan"))


def table3(runs: list[tuple[str, dict]]) -> dict[tuple[str, int], pd.DataFrame]:
    """{(dataset, dim): ablation table} wherever an ablation ran."""
    out = {}
    keys = sorted({(r["dataset"], int(r["embedding_dim"])) for _, r in runs if r["method"] in TABLE3_ROWS[:-1]})
    for dataset, dim in keys:
        rows = []
        for method in TABLE3_ROWS:
            row = {"Variant": row_label(method) if method != "ours" else "(4) Ours"}
            for k in (1, 2):
                row[f"R@{k}"] = _cell(_values(runs, dataset, dim, method, k))
                if is_paper_dataset(dataset):
                    row[f"R@{k}, paper"] = paper_value(3, method, dataset, k, dim) or "–"
            row["seeds"] = len(_values(runs, dataset, dim, method))
            rows.append(row)
        out[(dataset, dim)] = pd.DataFrame(rows)
    return out


def figure3_points(runs: list[tuple[str, dict]], grid: dict[str, list] | None) -> pd.DataFrame:
    """One row per Fig. 3 point and dataset/dimension: panel, parameters, R@1 mean and std, seeds."""
    points = figure3_runs(grid)
    rows = []
    keys = sorted({(r["dataset"], int(r["embedding_dim"])) for _, r in runs if r["method"] in points})
    for dataset, dim in keys:
        # Ours' point from the seeds the grid ran, so that every point averages the same seeds
        seeds = {r["seed"] for _, r in runs if r["method"] in points and r["dataset"] == dataset
                 and r["embedding_dim"] == dim}
        for key in (grid or {}):
            names = FIGURE3_PARAMETERS[key][0]
            members = {n: p for n, p in points.items() if set(p) == set(names) and n.startswith(f"fig3-{key}-")}
            members["ours"] = {n: OURS[n] for n in names}
            for name, params in members.items():
                v = _values(runs, dataset, dim, name, seeds=seeds)
                if len(v):
                    rows.append({"dataset": dataset, "dim": dim, "panel": key, "run": name, **params,
                                 "R@1 mean": float(v.mean()), "R@1 std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                                 "seeds": len(v)})
    return pd.DataFrame(rows)


def figure3(points: pd.DataFrame, out_png: str | os.PathLike) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = list(FIGURE3_PARAMETERS)
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, key in zip(axes, panels):
        ax.set_xlabel(FIGURE3_PARAMETERS[key][1])
        ax.set_ylabel("R@1 (%)")
        part = points[points["panel"] == key] if len(points) else points
        if not len(part):
            ax.set_title(f"{FIGURE3_PARAMETERS[key][1]}: not run")
            continue
        for (dataset, dim), sub in part.groupby(["dataset", "dim"]):
            if key == "nab":
                for nb, curve in sub.groupby("n_beta"):
                    curve = curve.sort_values("n_alpha")
                    ax.errorbar(curve["n_alpha"], curve["R@1 mean"], yerr=curve["R@1 std"], marker="o", capsize=3,
                                label=f"{dataset_label(dataset)} {dim}-d, N_β={nb:g}")
            else:
                name = FIGURE3_PARAMETERS[key][0][0]
                curve = sub.sort_values(name)
                ax.errorbar(curve[name], curve["R@1 mean"], yerr=curve["R@1 std"], marker="o", capsize=3,
                            label=f"{dataset_label(dataset)} {dim}-d")
        ax.set_title(f"R@1 vs {FIGURE3_PARAMETERS[key][1]}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    Path(out_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)


def claims_tables(metric_files: Sequence[str | os.PathLike], supervision: list[tuple[str, dict]],
                  grid: dict[str, list] | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    def label(key: str) -> str:
        dataset, _, dim = key.partition("@")
        return f"{dataset_label(dataset)} {dim}-d"
    verdicts = evaluate_claims(claims_for(grid), results_frame(metric_files), row_label, label)
    return verdicts, table2_claims([r for _, r in supervision])


def write_markdown(path, title: str, sections: list[tuple[str, pd.DataFrame]], notes: Sequence[str] = ()) -> None:
    write_text(path, markdown_document(title, sections, notes))


def write_all(metric_files, initial_files, supervision_files, *, recall_ks: dict[str, Sequence[int]],
              data_notes: dict[str, str], grid: dict[str, list] | None, out: dict[str, str], notes: Sequence[str] = ()):
    """Every output of the tables step: out keys table1/table2/table3/figure3/claims (+ _csv)."""
    runs, initial, sup = load(metric_files), load(initial_files), load(supervision_files)
    datasets = [r["dataset"] for _, r in runs] + [r["dataset"] for _, r in sup]
    t1 = table1(runs, initial, recall_ks, data_notes)
    write_text(out["table1_csv"], pd.concat([df.assign(dataset=d, dim=dim) for (d, dim), df in t1.items()]).to_csv(index=False)
               if t1 else "")
    write_markdown(out["table1"], _title("Table 1 (R@K; Initial, STML*, Ours)", [d for d, _ in t1] or datasets),
                   [(f"{dataset_label(d)}, {dim}-d", df) for (d, dim), df in t1.items()], notes)
    t2 = table2(sup)
    write_text(out["table2_csv"], t2.to_csv(index=False))
    write_markdown(out["table2"], _title("Table 2 (quality of supervision, pretrained embeddings)",
                                         [r["dataset"] for _, r in sup] or datasets),
                   [("", t2)], [f"{dataset_label(r['dataset'])}: {r['images']} test images of {r['classes']} unseen "
                                f"classes, settings {json.dumps(r['settings'], sort_keys=True)}" for _, r in sup]
                   + ["Purity: mean over points of the majority-class share of the point's set (its cluster, or its "
                      "linear neighbourhood X_i); correlation: Pearson's r of the similarity with the same-class "
                      "indicator over pairs (docs/pl-manifolds.md). Smaller sets are purer by construction: see the "
                      "mean set sizes."])
    t3 = table3(runs)
    write_text(out["table3_csv"], pd.concat([df.assign(dataset=d, dim=dim) for (d, dim), df in t3.items()]).to_csv(index=False)
               if t3 else "")
    write_markdown(out["table3"], _title("Table 3 (ablations)", [d for d, _ in t3] or datasets),
                   [(f"{dataset_label(d)}, {dim}-d", df) for (d, dim), df in t3.items()], notes)
    points = figure3_points(runs, grid)
    write_text(out["figure3_csv"], points.to_csv(index=False))
    figure3(points, out["figure3"])
    verdicts, t2_claims = claims_tables(metric_files, sup, grid)
    write_claims(verdicts, out["claims_csv"], out["claims"],
                 title=_title("Claims of the PL-manifold paper", datasets))
    if len(t2_claims):
        text = Path(out["claims"]).read_text()
        write_text(out["claims"], text + "\n## Table 2 (one evaluation, no seeds: a plain comparison)\n\n"
                   + t2_claims.to_markdown(index=False, disable_numparse=True) + "\n")
