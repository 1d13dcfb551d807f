"""WSSET's training-budget study (issue 18): selection at each budget, the prefix property it rests
on, the test monitor, the claims per budget, the command, and the config's DAG."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from dmlrepro import DmlReproError
from dmlrepro.papers.wsset.studies import (MONITOR_COLUMN, budget_claims, budget_frame, budget_runs, budget_train,
                                           claims_table, encoder_epochs, encoder_model, select_at_budgets,
                                           write_budget_study)
from dmlrepro.reporting.claims import DOES_NOT_HOLD, HOLDS, UNDECIDED, evaluate_claims

from test_workflow import REPO, job_counts, repo_like_workdir, snakemake


def _history(val, test, every=1):
    """A history.csv frame: epochs 1..len(val); val/test None where the epoch was not evaluated."""
    n = len(val)
    return pd.DataFrame({"epoch": np.arange(1, n + 1), "loss": np.linspace(0.1, 0.05, n),
                         "val_accuracy": [("" if v is None else v) for v in val], "n_triplets": 10,
                         "seconds": 1.0, MONITOR_COLUMN: [("" if t is None else t) for t in test]})


# ------------------------------------------------------------------------------ selection
def test_budget_takes_the_best_validation_epoch_within_it_and_reports_its_test_accuracy():
    #          epoch:  1     2     3     4     5     6
    val = [50.0, 60.0, 60.0, 55.0, 70.0, 65.0]
    test = [40.0, 45.0, 99.0, 98.0, 80.0, 97.0]  # test is never looked at to choose
    picked = select_at_budgets(_history(val, test), [6, 1, 3, 4]).set_index("epochs")
    assert list(picked.index) == [1, 3, 4, 6]
    assert picked.loc[1, "best_epoch"] == 1 and picked.loc[1, "knn_accuracy"] == 40.0
    # a tie keeps the first epoch (as the trainer's strict '>' does), not the one with the better test score
    assert picked.loc[3, "best_epoch"] == 2 and picked.loc[3, "knn_accuracy"] == 45.0
    assert picked.loc[4, "best_epoch"] == 2
    assert picked.loc[6, "best_epoch"] == 5 and picked.loc[6, "knn_accuracy"] == 80.0
    assert picked.loc[6, "val_accuracy"] == 70.0


def test_brute_force_agrees_on_random_histories():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(3, 30))
        val = rng.choice([50.0, 60.0, 70.0, 80.0], n)  # many ties
        test = rng.uniform(0, 100, n)
        budgets = sorted(set(rng.integers(1, n + 1, 4).tolist()))
        picked = select_at_budgets(_history(val.tolist(), test.tolist()), budgets)
        for budget, epoch, acc in zip(picked["epochs"], picked["best_epoch"], picked["knn_accuracy"]):
            best = None
            for e in range(1, budget + 1):  # naive loop: first strict improvement wins
                if best is None or val[e - 1] > val[best - 1]:
                    best = e
            assert epoch == best and acc == test[best - 1]


def test_unevaluated_epochs_are_skipped_and_bad_histories_are_errors():
    val = [None, 60.0, None, 70.0]
    test = [None, 61.0, None, 71.0]
    picked = select_at_budgets(_history(val, test), [3, 4])
    assert picked["best_epoch"].tolist() == [2, 4]
    with pytest.raises(DmlReproError, match="before epoch 10"):
        select_at_budgets(_history(val, test), [10])
    with pytest.raises(DmlReproError, match="no validation score"):
        select_at_budgets(_history(val, test), [1])
    with pytest.raises(DmlReproError, match="monitor_test"):
        select_at_budgets(_history(val, test).drop(columns=[MONITOR_COLUMN]), [2])


# ------------------------------------------------------------------------------ the grid in config
STUDY = {"datasets": ["bbcsport", "twitter"], "methods": ["wsset", "sset"], "splits": 3, "epochs": [25, 5, 100],
         "encoders": {"small": None,
                      "paper": {"model": {"layers": 5, "ff_dim": 1000}, "datasets": ["bbcsport"],
                                "methods": ["wsset"], "splits": {"bbcsport": 2}, "epochs": [5, 10]}}}


def test_grid_is_read_from_config_by_name():
    runs = budget_runs(STUDY, {"bbcsport": 5, "twitter": 2})
    small = [r for r in runs if r.encoder == "small"]
    assert len(small) == 3 * 2 + 2 * 2  # Twitter capped at its 2 splits
    paper = [r for r in runs if r.encoder == "paper"]
    assert {(r.dataset, r.method, r.split) for r in paper} == {("bbcsport", "wsset", 0), ("bbcsport", "wsset", 1)}
    assert paper[0].run_dir == "results/wsset/bbcsport/budget/paper/split0/wsset"
    assert encoder_epochs(STUDY, "small", "twitter") == [5, 25, 100]
    assert encoder_model({"layers": 1, "ff_dim": 128, "d_model": 56}, STUDY, "paper") == {
        "layers": 5, "ff_dim": 1000, "d_model": 56}
    train = budget_train({"epochs": 5, "lr": 1e-3, "eval_every": 1}, STUDY, "paper", "bbcsport")
    assert train == {"epochs": 10, "lr": 1e-3, "eval_every": 1, "monitor_test": True}
    with pytest.raises(DmlReproError, match="not evaluated epochs"):
        budget_train({"eval_every": 10}, STUDY, "small", "bbcsport")
    with pytest.raises(DmlReproError, match="no encoder 'large'"):
        encoder_epochs(STUDY, "large", "bbcsport")


# ------------------------------------------------------------------------------ the prefix property
TINY_MODEL = {"layers": 1, "heads": 7, "ff_dim": 16, "dropout": 0.1, "head_dims": [16, 8], "d_model": 14,
              "input_norm": True, "activation": "relu", "weight_feature": "count"}


def _train(tmp_path, name, ps, emd, epochs, monitor_test):
    from dmlrepro.papers.wsset.trainer import train_embedder
    idx = np.arange(len(ps))
    test, val, fit = idx[::4], idx[1::4], np.setdiff1d(idx, np.concatenate([idx[::4], idx[1::4]]))
    train_cfg = {"epochs": epochs, "batch_size": 12, "lr": 1e-3, "eval_every": 1, "selection": "val_knn",
                 "knn_k": 3, "seed": 0}
    if monitor_test:
        train_cfg["monitor_test"] = True
    out = tmp_path / name
    train_embedder(ps, emd, fit, val, "wsset", {"c": 7, "margin": 0.1}, TINY_MODEL, train_cfg, out, seed=0,
                   monitor=(np.union1d(fit, val), test))
    return out, np.union1d(fit, val), test


def test_a_short_run_is_the_prefix_of_a_long_one_and_the_monitor_changes_nothing(tmp_path, bbcsport_small,
                                                                                 bbcsport_small_emd):
    from dmlrepro.evaluation.retrieval import evaluate_embeddings
    from dmlrepro.papers.wsset.trainer import HISTORY_COLUMNS, embed, load_model
    ps, emd = bbcsport_small, bbcsport_small_emd
    long_dir, gallery, test = _train(tmp_path, "long", ps, emd, 6, True)
    short_dir, _, _ = _train(tmp_path, "short", ps, emd, 3, True)
    plain_dir, _, _ = _train(tmp_path, "plain", ps, emd, 3, False)
    long, short, plain = (pd.read_csv(d / "history.csv") for d in (long_dir, short_dir, plain_dir))
    same = ["epoch", "loss", "val_accuracy", "n_triplets", MONITOR_COLUMN]
    pd.testing.assert_frame_equal(long.loc[:2, same], short[same])
    # without the flag: the history's columns are the existing runs' ones, and the same values
    assert tuple(plain.columns) == HISTORY_COLUMNS
    pd.testing.assert_frame_equal(plain[same[:-1]], short[same[:-1]])
    # the short run's selected model is the one the long run's history selects at budget 3, and the
    # recorded test accuracy is the one metrics.json would get (evaluate_run's computation)
    picked = select_at_budgets(long, [3, 6]).set_index("epochs")
    assert torch_load(short_dir)["best_epoch"] == picked.loc[3, "best_epoch"]
    for run_dir, budget in ((short_dir, 3), (long_dir, 6)):
        emb = embed(load_model(run_dir / "model.pt"), ps, np.arange(len(ps)))
        metrics = evaluate_embeddings(emb[gallery], ps.labels[gallery], emb[test], ps.labels[test], [1], knn_k=3)
        assert math.isclose(metrics["knn_accuracy"], picked.loc[budget, "knn_accuracy"], abs_tol=1e-9)


def torch_load(run_dir):
    import torch
    return torch.load(run_dir / "model.pt", weights_only=False)


def test_monitor_needs_its_documents(tmp_path, bbcsport_small, bbcsport_small_emd):
    from dmlrepro.papers.wsset.trainer import train_embedder
    with pytest.raises(DmlReproError, match="monitor_test needs"):
        train_embedder(bbcsport_small, bbcsport_small_emd, np.arange(20), np.arange(20, 30), "wsset", {}, TINY_MODEL,
                       {"epochs": 1, "monitor_test": True}, tmp_path / "x")


# ------------------------------------------------------------------------------ claims and the command
def _fake_study(tmp_path):
    """Three splits; WSSET's test accuracy climbs with the epochs towards WMD's 95 ± 1."""
    runs, wmd = [], []
    curves = {0: [80, 85, 90, 93, 96], 1: [81, 86, 91, 94, 95], 2: [79, 84, 89, 92, 97]}
    for split, test in curves.items():
        history = _history([50.0 + e for e in range(5)], [float(t) for t in test])
        path = tmp_path / f"h{split}.csv"
        history.to_csv(path, index=False)
        runs.append({"dataset": "bbcsport", "method": "wsset", "encoder": "small", "split": split,
                     "budgets": [1, 3, 5], "history": str(path)})
        metrics = tmp_path / f"wmd{split}.json"
        metrics.write_text(json.dumps({"dataset": "bbcsport", "method": "wmd_knn", "split": split,
                                       "knn_accuracy": 95.0 + (split - 1)}))
        wmd.append(metrics)
    return runs, wmd


def test_claims_are_checked_at_every_budget(tmp_path):
    from dmlrepro.papers.wsset.studies import wmd_frame
    runs, wmd_paths = _fake_study(tmp_path)
    per_split, wmd = budget_frame(runs), wmd_frame(wmd_paths)
    specs = budget_claims(per_split)
    assert [s.id for s in specs] == ["budget-wsset-vs-wmd-bbcsport-small"]
    claims = evaluate_claims(specs, claims_table(per_split, wmd))
    verdicts = dict(zip(claims["A"], claims["verdict"]))
    # budget 1: 80 ± 1 vs 95 ± 1: below; 3: 90 ± 1: below; 5: 96 ± 1 vs 95 ± 1 overlap: undecided
    assert verdicts == {"wsset, bbcsport, budget:small 1": DOES_NOT_HOLD, "wsset, bbcsport, budget:small 3": DOES_NOT_HOLD,
                        "wsset, bbcsport, budget:small 5": UNDECIDED}
    # WSSET clearly above WMD: holds
    better = per_split.assign(knn_accuracy=per_split["knn_accuracy"] + 20)
    claims = evaluate_claims(budget_claims(better), claims_table(better, wmd))
    assert claims.loc[claims["A"].str.endswith(" 5"), "verdict"].item() == HOLDS


def test_wmd_line_uses_the_runs_splits_and_must_exist(tmp_path):
    from dmlrepro.papers.wsset.studies import summarise_budget, wmd_frame
    runs, wmd_paths = _fake_study(tmp_path)
    per_split = budget_frame(runs[:2])  # splits 0 and 1 only: WMD's line from those two
    summary = summarise_budget(per_split, wmd_frame(wmd_paths)).set_index(["method", "epochs"])
    assert summary.loc[("wmd_knn", 5), "mean"] == pytest.approx(94.5) and summary.loc[("wmd_knn", 5), "n_splits"] == 2
    assert summary.loc[("wsset", 5), "mean"] == pytest.approx(95.5)
    with pytest.raises(DmlReproError, match="no wmd_knn metrics for bbcsport split"):
        summarise_budget(budget_frame(runs), wmd_frame(wmd_paths[:1]))


def test_metrics_json_must_match_the_recorded_test_accuracy(tmp_path):
    runs, _ = _fake_study(tmp_path)
    (tmp_path / "m.json").write_text(json.dumps({"knn_accuracy": 96.0}))
    budget_frame([{**runs[0], "metrics": str(tmp_path / "m.json")}])  # 96 at the selected (last) epoch
    (tmp_path / "m.json").write_text(json.dumps({"knn_accuracy": 90.0}))
    with pytest.raises(DmlReproError, match="recorded at the selected epoch"):
        budget_frame([{**runs[0], "metrics": str(tmp_path / "m.json")}])


def test_budget_command_writes_table_figure_and_claims(tmp_path):
    from dmlrepro.cli import main
    runs, wmd = _fake_study(tmp_path)
    out = {k: tmp_path / f"{k}.{ext}" for k, ext in (("per_split", "csv"), ("summary", "csv"), ("figure", "png"),
                                                    ("claims_csv", "csv"), ("claims_md", "md"))}
    main(["budget", "--runs", json.dumps(runs), "--wmd", *map(str, wmd), "--per-split-out", str(out["per_split"]),
          "--summary-out", str(out["summary"]), "--figure-out", str(out["figure"]),
          "--claims-csv", str(out["claims_csv"]), "--claims-md", str(out["claims_md"])])
    summary = pd.read_csv(out["summary"])
    assert set(summary["method"]) == {"wsset", "wmd_knn"} and sorted(set(summary["epochs"])) == [1, 3, 5]
    assert out["figure"].stat().st_size > 1000
    assert "undecided" in out["claims_md"].read_text()


# ------------------------------------------------------------------------------ the workflow
def test_budget_config_plans_exactly_the_study(tmp_path):
    res = snakemake(repo_like_workdir(tmp_path), "-n", "--configfile", "config/wsset_budget.yaml")
    assert res.returncode == 0, res.stderr
    full = yaml.safe_load((REPO / "config" / "wsset_budget.yaml").read_text())
    assert list(full["papers"]) == ["wsset"]
    cfg = full["papers"]["wsset"]
    study = cfg["studies"]["budget"]
    runs = budget_runs(study, {d: c["splits"]["n"] for d, c in cfg["datasets"].items()})
    counts = job_counts(res.stdout)
    n_wmd = len({(r.dataset, r.split) for r in runs} | {(d, s) for d in cfg["datasets"]
                                                        for s in range(cfg["method_scope"]["wmd_knn"]["splits"])})
    assert counts == {"fetch_raw": counts["fetch_raw"], "build_pointsets": 2,
                      "emd_shard": sum(c["emd_shards"] for c in cfg["datasets"].values()), "merge_emd": 2,
                      "evaluate_wmd_knn": n_wmd, "train_budget_embedder": len(runs), "budget_figure": 1,
                      "tables": 1, "claims": 1, "comparison_figures": 1, "html_report": 1, "all": 1,
                      "total": counts["total"]}
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    planned = set(re.findall(r"results/wsset/(\w+)/budget/(\w+)/split(\d+)/(\w+)/metrics\.json", res.stdout))
    assert planned == {(r.dataset, r.encoder, str(r.split), r.method) for r in runs}
    # the encoder's settings come from config by its key; the run is the largest budget, monitored
    job = next(j for j in res.stdout.split("rule train_budget_embedder:")[1:]
               if "results/wsset/bbcsport/budget/paper/split0/wsset/model.pt" in j.split("\n\n", 1)[0])
    params = json.loads(re.search(r"--params '([^']+)'", job).group(1))
    paper = study["encoders"]["paper"]
    assert params["model"] == {**cfg["model"], **paper["model"]}
    assert params["train"]["epochs"] == max(paper["epochs"]) and params["train"]["monitor_test"] is True
    assert "results/wsset/figures/budget.png" in res.stdout and "results/wsset/tables/budget_claims.md" in res.stdout


def test_embedded_default_plans_no_budget_job_and_no_monitor(tmp_path):
    from conftest import dry_run_train_commands
    from test_workflow import DEFAULT_JOB_COUNTS, expected_training_runs, with_image_papers
    res = snakemake(repo_like_workdir(tmp_path), "-n", "-p")
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert counts == with_image_papers(DEFAULT_JOB_COUNTS, cfg)
    assert not re.search(r"results/wsset/\w+/budget/|rule budget_figure|results/wsset/figures/budget", res.stdout)
    runs, studies = expected_training_runs(cfg["papers"]["wsset"])
    wsset_train = dry_run_train_commands(res.stdout)  # batch_runs: the runs inside the batch jobs
    assert len(wsset_train) == len(runs | studies) + counts["train_external_base"]
    assert not any("monitor_test" in arg for job in wsset_train.values() for arg in job["argv"])
    assert "train_budget_embedder" not in counts
