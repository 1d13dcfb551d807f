"""The training-budget study (issue 18): does WSSET reach exact WMD's kNN accuracy with a longer
schedule or the paper's encoder?

Study points are override grids in ``studies.budget`` of the config, never parsed from paths::

    budget:
      datasets: [bbcsport, twitter]
      methods: [wsset, sset]
      splits: {bbcsport: 3, twitter: 2}  # a value, or one per dataset
      epochs: {bbcsport: [5, 25, 100], twitter: [5, 25]}   # the budgets; one run of the largest gives them all
      encoders:                        # a run directory is named by the key: results/wsset/<d>/budget/<key>/split<k>/<m>/
        small: {}                      # the config's `model` as it is
        paper: {model: {layers: 5, ff_dim: 1000, head_dims: [512, 256, 64]},
                datasets: [bbcsport], methods: [wsset], splits: 2, epochs: [5, 10]}   # per-encoder restrictions

**One run per budget grid.** Adam with a constant learning rate and no schedule, batches drawn
from (seed, epoch), evaluation in eval mode (no random draws): the first *e* epochs of a run of
*E* > *e* epochs are the run of *e* epochs (``tests/test_wsset_budget.py`` checks it on a tiny
corpus). So each (dataset, method, encoder, split) is trained once for the largest budget with
``train.monitor_test: true``, which records the test kNN accuracy of every evaluated epoch in
``history.csv`` (column ``test_accuracy_not_for_selection``). The result at budget *e* is the
test accuracy at the epoch ≤ *e* with the best **validation** kNN accuracy (the first on a tie,
as the trainer selects); the test column is never read to choose.

Outputs (:func:`write_budget_study`): the per-split table, the summary (mean ± std over splits),
the figure (kNN accuracy against epochs, one panel per dataset, a line per method × encoder, WMD
kNN on the same splits as a horizontal line with its ±1 std band) and the claims "WSSET reaches
WMD on <dataset> at <budget>" checked by :mod:`dmlrepro.reporting.claims`.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from dmlrepro import DmlReproError
from dmlrepro.io import atomic_path
from dmlrepro.papers.wsset.paper_values import dataset_label, paper_knn_accuracy
from dmlrepro.reporting.claims import ClaimSpec, Rows, evaluate_claims, write_claims
from dmlrepro.reporting.figures import new_figure, save_figure

__all__ = ["BudgetRun", "MONITOR_COLUMN", "budget_runs", "encoder_epochs", "encoder_model", "budget_train",
           "select_at_budgets", "budget_frame", "wmd_frame", "summarise_budget", "budget_claims",
           "plot_budget", "write_budget_study"]

MONITOR_COLUMN = "test_accuracy_not_for_selection"  # papers/wsset/trainer.py writes it
STUDY = "budget"
def _paper_table1(ds: str) -> str:
    return (f"{dataset_label(ds)} Ours {paper_knn_accuracy('wsset', ds, printed=True)} vs "
            f"WMD {paper_knn_accuracy('wmd_knn', ds, printed=True)}")


_PAPER_WMD = ("However, we perform better than the distribution distance method only on BBCSport (i.e., WMD). "
              f"[Table I: {_paper_table1('bbcsport')}; {_paper_table1('twitter')}]")


# ----------------------------------------------------------------------------- the study's grid
@dataclass(frozen=True)
class BudgetRun:
    """One training run of the study: the largest budget of its encoder."""

    dataset: str
    method: str
    encoder: str
    split: int

    @property
    def run_dir(self) -> str:
        return f"results/wsset/{self.dataset}/{STUDY}/{self.encoder}/split{self.split}/{self.method}"


def _encoder_cfg(study: dict[str, Any], encoder: str) -> dict[str, Any]:
    encoders = study.get("encoders") or {}
    if encoder not in encoders:
        raise DmlReproError(f"studies.budget.encoders: no encoder '{encoder}' (configured: {sorted(encoders)})")
    return encoders[encoder] or {}


def _setting(study: dict[str, Any], encoder: str, key: str, dataset: str, default: Any = None) -> Any:
    """The encoder's ``key``, else the study's; a mapping holds one value per dataset."""
    cfg = _encoder_cfg(study, encoder)
    value = cfg.get(key, study.get(key, default))
    if isinstance(value, dict):
        if dataset not in value:
            raise DmlReproError(f"studies.budget ({encoder}): '{key}' gives no value for dataset '{dataset}'")
        value = value[dataset]
    return value


def encoder_epochs(study: dict[str, Any], encoder: str, dataset: str) -> list[int]:
    """The budgets (epochs) of ``encoder`` on ``dataset``, ascending: its own ``epochs`` or the study's."""
    epochs = sorted({int(e) for e in _setting(study, encoder, "epochs", dataset, [])})
    if not epochs or epochs[0] < 1:
        raise DmlReproError(f"studies.budget: encoder '{encoder}' on {dataset} needs epochs >= 1 (got {epochs})")
    return epochs


def encoder_model(base_model: dict[str, Any], study: dict[str, Any], encoder: str) -> dict[str, Any]:
    """The config's ``model`` with the encoder's ``model`` overrides (looked up by name)."""
    return {**base_model, **(_encoder_cfg(study, encoder).get("model") or {})}


def budget_train(base_train: dict[str, Any], study: dict[str, Any], encoder: str, dataset: str) -> dict[str, Any]:
    """The config's ``train`` for a study run: the largest budget, the test monitor on."""
    budgets = encoder_epochs(study, encoder, dataset)
    train = {**base_train, "epochs": budgets[-1], "monitor_test": True}
    if train.get("selection", "val_knn") != "val_knn":
        raise DmlReproError("studies.budget needs train.selection: val_knn (a budget's epoch is chosen on validation)")
    every = int(train.get("eval_every", 1))
    off = [e for e in budgets if e % every and e != train["epochs"]]
    if off:
        raise DmlReproError(f"studies.budget: budgets {off} of encoder '{encoder}' are not evaluated epochs "
                            f"(train.eval_every = {every})")
    return train


def budget_runs(study: dict[str, Any] | None, n_splits: dict[str, int] | None = None) -> list[BudgetRun]:
    """Every run of the study; an encoder's ``datasets``, ``methods``, ``splits`` and ``epochs``
    replace the study's (``splits``/``epochs`` may map dataset -> value). ``n_splits`` (dataset ->
    splits made) caps the split count."""
    if not study:
        return []
    runs = []
    for encoder, cfg in (study.get("encoders") or {}).items():
        cfg = cfg or {}
        for dataset in cfg.get("datasets", study["datasets"]):
            n = int(_setting(study, encoder, "splits", dataset, 1))
            if n_splits is not None:
                n = min(n, n_splits[dataset])
            runs.extend(BudgetRun(dataset, method, encoder, split)
                        for split in range(n) for method in cfg.get("methods", study["methods"]))
    return runs


# ----------------------------------------------------------------------------- selection
def select_at_budgets(history: pd.DataFrame, budgets: Sequence[int], source: str = "history") -> pd.DataFrame:
    """For each budget e: the epoch <= e with the best validation accuracy (the first of equals,
    as the trainer keeps it), its validation accuracy and the test accuracy recorded there."""
    for column in ("epoch", "val_accuracy", MONITOR_COLUMN):
        if column not in history.columns:
            raise DmlReproError(f"{source}: no column '{column}' (a budget run needs train.monitor_test: true)")
    evaluated = history[pd.to_numeric(history["val_accuracy"], errors="coerce").notna()].sort_values("epoch")
    val = pd.to_numeric(evaluated["val_accuracy"]).to_numpy(np.float64)
    test = pd.to_numeric(evaluated[MONITOR_COLUMN], errors="coerce").to_numpy(np.float64)
    epochs = evaluated["epoch"].to_numpy(np.int64)
    rows = []
    for budget in sorted(int(b) for b in budgets):
        if len(history) == 0 or int(history["epoch"].max()) < budget:
            raise DmlReproError(f"{source}: the run stopped before epoch {budget} (a budget of the study)")
        within = np.flatnonzero(epochs <= budget)
        if len(within) == 0:
            raise DmlReproError(f"{source}: no validation score at or before epoch {budget}")
        best = within[np.argmax(val[within])]  # argmax: the first of equal maxima
        if math.isnan(test[best]):
            raise DmlReproError(f"{source}: epoch {epochs[best]} has no recorded test accuracy")
        rows.append({"epochs": budget, "best_epoch": int(epochs[best]), "val_accuracy": float(val[best]),
                     "knn_accuracy": float(test[best])})
    return pd.DataFrame(rows)


def _read_history(path: str | os.PathLike) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DmlReproError(f"{path}: cannot read the run's history ({exc})") from exc


def budget_frame(runs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per-split results: one row per run and budget. ``runs``: dicts with dataset, method,
    encoder, split, budgets (epochs), history (path), and optionally metrics (the run's
    metrics.json: its test accuracy must be the one the largest budget selects, a check of the
    recorded column)."""
    rows = []
    for run in runs:
        history = _read_history(run["history"])
        picked = select_at_budgets(history, run["budgets"], str(run["history"]))
        if run.get("metrics"):
            final = json.loads(Path(run["metrics"]).read_text())["knn_accuracy"]
            if not math.isclose(final, picked["knn_accuracy"].iloc[-1], abs_tol=1e-6):
                raise DmlReproError(f"{run['history']}: test accuracy {picked['knn_accuracy'].iloc[-1]:.4f} recorded at "
                                    f"the selected epoch, {final:.4f} in {run['metrics']}")
        evaluated = history[pd.to_numeric(history["val_accuracy"], errors="coerce").notna()]
        for rec in picked.to_dict("records"):
            seconds = float(history.loc[history["epoch"] <= rec["epochs"], "seconds"].sum())
            rows.append({"dataset": run["dataset"], "method": run["method"], "encoder": run["encoder"],
                         "split": int(run["split"]), **rec,
                         "loss_at_best": float(evaluated.loc[evaluated["epoch"] == rec["best_epoch"], "loss"].iloc[0]),
                         "train_seconds": seconds})
    if not rows:
        raise DmlReproError("budget study: no runs given")
    return pd.DataFrame(rows)


def wmd_frame(metric_paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """WMD kNN's per-split test accuracy (dataset, split, knn_accuracy) from its metrics.json."""
    rows = []
    for path in metric_paths:
        rec = json.loads(Path(path).read_text())
        if rec.get("method") != "wmd_knn":
            raise DmlReproError(f"{path}: method '{rec.get('method')}', the budget study's line is wmd_knn")
        rows.append({"dataset": rec["dataset"], "split": int(rec["split"]), "knn_accuracy": float(rec["knn_accuracy"])})
    return pd.DataFrame(rows, columns=["dataset", "split", "knn_accuracy"])


def _with_wmd(per_split: pd.DataFrame, wmd: pd.DataFrame) -> pd.DataFrame:
    """WMD kNN as a method of each encoder's grid at each budget, on the splits run there."""
    lines = []
    for (ds, enc, budget), part in per_split.groupby(["dataset", "encoder", "epochs"], sort=True):
        on = wmd[(wmd["dataset"] == ds) & wmd["split"].isin(part["split"].unique())]
        missing = sorted(set(part["split"]) - set(on["split"]))
        if missing:
            raise DmlReproError(f"budget study: no wmd_knn metrics for {ds} split(s) {missing}")
        lines.append(on.assign(method="wmd_knn", encoder=enc, epochs=budget))
    return pd.concat([per_split, *lines], ignore_index=True) if lines else per_split


def summarise_budget(per_split: pd.DataFrame, wmd: pd.DataFrame) -> pd.DataFrame:
    """Mean, std (ddof 1) and splits per dataset × method × encoder × budget, WMD kNN included."""
    full = _with_wmd(per_split, wmd)
    g = full.groupby(["dataset", "encoder", "method", "epochs"], sort=True)
    out = g["knn_accuracy"].agg(mean="mean", std="std", n_splits="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    out["mean_best_epoch"] = g["best_epoch"].mean().to_numpy() if "best_epoch" in full else np.nan
    return out


# ----------------------------------------------------------------------------- claims
def budget_claims(per_split: pd.DataFrame) -> list[ClaimSpec]:
    """"WSSET reaches WMD on <dataset>" for each dataset and encoder run, one verdict per budget
    (A = WSSET, B = WMD kNN on the same splits, compared at every budget)."""
    specs = []
    ran = per_split[per_split["method"] == "wsset"]
    for ds, enc in sorted(set(zip(ran["dataset"], ran["encoder"]))):
        study = f"{STUDY}:{enc}"
        specs.append(ClaimSpec(f"budget-wsset-vs-wmd-{ds}-{enc}", _PAPER_WMD, "§VI-B, Table I (budget study, issue 18)",
                               "Budget study", "knn_accuracy", Rows("wsset", ds, study), Rows("wmd_knn", ds, study)))
    return specs


def claims_table(per_split: pd.DataFrame, wmd: pd.DataFrame) -> pd.DataFrame:
    """The per-split results table of :mod:`dmlrepro.reporting.claims`: study ``budget:<encoder>``,
    setting = epochs."""
    full = _with_wmd(per_split, wmd)
    return pd.DataFrame({"dataset": full["dataset"], "method": full["method"],
                         "study": STUDY + ":" + full["encoder"].astype(str), "setting": full["epochs"].astype(float),
                         "split": full["split"], "metric": "knn_accuracy", "value": full["knn_accuracy"]})


# ----------------------------------------------------------------------------- figure
_METHOD_COLOURS = {"wsset": "tab:blue", "sset": "tab:orange"}
_ENCODER_STYLES = ("-", "--", ":", "-.")


def plot_budget(summary: pd.DataFrame, out_png: str | os.PathLike) -> dict[str, Path]:
    """kNN accuracy against epochs: a panel per dataset, a line per method × encoder (mean ± std
    over splits), WMD kNN as a horizontal line with its ±1 std band."""
    from matplotlib.ticker import NullLocator

    from dmlrepro.papers.wsset.paper_values import paper_row_label
    datasets = sorted(summary["dataset"].unique())
    encoders = sorted(summary["encoder"].unique())
    fig = new_figure(5.2 * len(datasets), 4.0)
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    for ax, ds in zip(axes, datasets):
        part = summary[summary["dataset"] == ds]
        learned = part[part["method"] != "wmd_knn"]
        for (method, enc), line in learned.groupby(["method", "encoder"], sort=True):
            line = line.sort_values("epochs")
            ax.errorbar(line["epochs"], line["mean"], yerr=line["std"], capsize=3, marker="o",
                        color=_METHOD_COLOURS.get(method), linestyle=_ENCODER_STYLES[encoders.index(enc) % 4],
                        label=f"{paper_row_label(method)}, {enc} encoder (n={int(line['n_splits'].min())})")
        wmd = part[part["method"] == "wmd_knn"]
        if not wmd.empty:  # the widest split set of any encoder on this dataset
            row = wmd.sort_values("n_splits").iloc[-1]
            ax.axhline(row["mean"], color="black", linewidth=1.2, label=f"WMD kNN (n={int(row['n_splits'])})")
            ax.axhspan(row["mean"] - row["std"], row["mean"] + row["std"], color="0.8", alpha=0.5, zorder=0)
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(sorted(learned["epochs"].unique()))
        ax.set_xticklabels([f"{int(e)}" for e in sorted(learned["epochs"].unique())])
        ax.set_title(dataset_label(ds))
        ax.set_xlabel("training budget (epochs; best validation epoch within it)")
        ax.set_ylabel("10-NN test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Does WSSET reach exact WMD? Mean ± std over splits", fontsize=10)
    return save_figure(fig, out_png)


# ----------------------------------------------------------------------------- the command
def write_budget_study(runs: Sequence[dict[str, Any]], wmd_metrics: Sequence[str | os.PathLike], per_split_out, summary_out, figure_out,
                       claims_csv, claims_md) -> pd.DataFrame:
    """Everything the study reports, from the runs' history.csv and WMD kNN's metrics.json."""
    from dmlrepro.papers.wsset.paper_values import paper_row_label
    per_split = budget_frame(runs)
    wmd = wmd_frame(wmd_metrics)
    summary = summarise_budget(per_split, wmd)
    for frame, path in ((per_split, per_split_out), (summary, summary_out)):
        with atomic_path(path, suffix=".csv") as tmp:
            frame.to_csv(tmp, index=False, float_format="%.4f")
    plot_budget(summary, figure_out)
    claims = evaluate_claims(budget_claims(per_split), claims_table(per_split, wmd), paper_row_label, dataset_label)
    write_claims(claims, Path(claims_csv), Path(claims_md),
                 title="Training-budget study: WSSET against WMD kNN at each budget "
                       "(holds: WSSET above; undecided: within ±1 std, i.e. reached; does not hold: below)")
    return summary
