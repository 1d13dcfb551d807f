"""WSSET's tuned schedules (issue 18, part 2): the per-method train override, the validation search
(selection on validation only, a short budget read off a long run), its workflow stage and config."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from dmlrepro import DmlReproError
from dmlrepro.data.splits import Splits
from dmlrepro.papers.wsset.methods import schedule_source
from dmlrepro.papers.wsset.tuning import budget_scores, merge_train, read_chosen, run_search, select, tuning_table

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile")]
DEEPSETS = dict(phi_dims=[16], head_dims=[16, 8], dropout=0.1)
TRAIN = dict(epochs=5, batch_size=16, lr=1e-3, eval_every=1, selection="val_knn", knn_k=3, seed=0)


# ------------------------------------------------------------------------------ selection
def test_budget_scores_take_the_first_best_epoch_within_each_budget():
    curve = [50.0, 70.0, 60.0, 70.0, 90.0, 80.0]
    assert budget_scores(curve, [1, 2, 4, 6]) == {1: (50.0, 1), 2: (70.0, 2), 4: (70.0, 2), 6: (90.0, 5)}
    with pytest.raises(DmlReproError, match="7 epochs"):
        budget_scores(curve, [7])


def test_selection_follows_validation_even_where_test_disagrees():
    # a fake grid in which test accuracy ranks the points the other way round: select must not care
    points = [{"lr": 1e-3, "epochs": 5, "val_accuracy": 80.0, "test_accuracy": 99.0},
              {"lr": 1e-2, "epochs": 5, "val_accuracy": 91.0, "test_accuracy": 60.0},
              {"lr": 1e-4, "epochs": 20, "val_accuracy": 85.0, "test_accuracy": 98.0}]
    assert select(points, default_lr=1e-3)["lr"] == 1e-2
    without_test = [{k: v for k, v in p.items() if k != "test_accuracy"} for p in points]
    assert select(without_test, 1e-3) == without_test[1]


def test_selection_ties_go_to_fewer_epochs_then_to_the_lr_nearest_the_default():
    tie = [{"lr": lr, "epochs": e, "val_accuracy": 90.0} for lr in (1e-4, 3e-3, 1e-3, 1e-2) for e in (20, 5)]
    assert (select(tie, 1e-3)["lr"], select(tie, 1e-3)["epochs"]) == (1e-3, 5)
    assert select(tie, 1e-2)["lr"] == 1e-2
    # equally far from the default in log scale (1e-4 and 1e-2 around 1e-3): the smaller lr
    assert select([{"lr": 1e-2, "epochs": 5, "val_accuracy": 1.0}, {"lr": 1e-4, "epochs": 5, "val_accuracy": 1.0}],
                  1e-3)["lr"] == 1e-4


def test_train_override_merges_lr_and_epochs_only():
    assert merge_train(TRAIN, {"lr": 0.01}) == {**TRAIN, "lr": 0.01}
    assert merge_train(TRAIN, None) == TRAIN
    with pytest.raises(DmlReproError, match="batch_size"):
        merge_train(TRAIN, {"batch_size": 8})


# ------------------------------------------------------------------------------ the search
def small_splits(ps, test_shift=0):
    """One split of the 40-document BBCSport sample: 24 fit, 8 validation, 8 test (per class
    stratified); ``test_shift`` rotates which documents are test among a disjoint extra pool."""
    rng = np.random.default_rng(0)
    train, val, test = [], [], []
    for c in range(ps.n_classes):
        idx = rng.permutation(np.flatnonzero(ps.labels == c))
        train += list(idx[:6])
        val += list(idx[4:6])
        test += list(idx[6:8]) if test_shift == 0 else list(idx[6:7])
    return Splits([train], [val], [test])


def test_a_short_run_selects_what_the_prefix_of_a_long_run_selects(tmp_path, bbcsport_small):
    from dmlrepro.papers.wsset.trainer import train_embedder
    splits = small_splits(bbcsport_small)
    fit, val, _ = splits.training_parts(bbcsport_small.labels, 0)
    short = train_embedder(bbcsport_small, None, fit, val, "deepsets_ce", {}, DEEPSETS, dict(TRAIN, epochs=2, lr=3e-3),
                           tmp_path / "short", seed=0)
    long = train_embedder(bbcsport_small, None, fit, val, "deepsets_ce", {}, DEEPSETS, dict(TRAIN, epochs=4, lr=3e-3),
                          tmp_path / "long", seed=0)
    assert [r["loss"] for r in long.history[:2]] == [r["loss"] for r in short.history]
    curve = [r["val_accuracy"] for r in long.history]
    assert budget_scores(curve, [2])[2] == (short.best_val_accuracy, short.best_epoch)


def test_search_scores_every_grid_point_on_validation_and_never_reads_test(tmp_path, bbcsport_small):
    grid = {"lr": [1e-3, 1e-2], "epochs": [1, 3]}
    res = run_search(bbcsport_small, small_splits(bbcsport_small), None, "deepsets_ce", {}, DEEPSETS, TRAIN, grid, [0],
                     tmp_path / "a", dataset="bbcsport")
    assert [(p["lr"], p["epochs"]) for p in res["points"]] == [(1e-3, 1), (1e-3, 3), (1e-2, 1), (1e-2, 3)]
    for p in res["points"]:
        run = next(r for r in res["runs"] if r["lr"] == p["lr"])
        assert len(run["val_accuracy"]) == 3  # one run per lr, for the largest budget
        assert p["val_accuracy"] == max(run["val_accuracy"][:p["epochs"]])
    best = max(p["val_accuracy"] for p in res["points"])
    chosen = next(p for p in res["points"] if (p["lr"], p["epochs"]) == (res["chosen"]["lr"], res["chosen"]["epochs"]))
    assert chosen["val_accuracy"] == best == res["chosen_val_accuracy"]
    # another test part (same train and validation parts): the same search, point for point
    other = run_search(bbcsport_small, small_splits(bbcsport_small, test_shift=1), None, "deepsets_ce", {}, DEEPSETS,
                       TRAIN, grid, [0], tmp_path / "b", dataset="bbcsport")
    assert other["points"] == res["points"] and other["chosen"] == res["chosen"]
    table = tuning_table([res])
    assert "DeepSets+CE" in table and table.count("**") == 2
    with pytest.raises(DmlReproError, match="transfer stage"):
        run_search(bbcsport_small, small_splits(bbcsport_small), None, "ours_int", {}, {}, TRAIN, grid, [0], tmp_path)


def test_tune_command_end_to_end_and_train_reads_the_choice(tmp_path, bbcsport_small):
    """The CLI path of the workflow: tune -> tuning JSON -> tuning-table, and train --tuned."""
    from dmlrepro.cli import main
    ps_path, splits_path = str(tmp_path / "pointsets.npz"), str(tmp_path / "splits.npz")
    bbcsport_small.save(ps_path)
    small_splits(bbcsport_small).save(splits_path)
    params = json.dumps({"method_params": {}, "model": DEEPSETS, "train": TRAIN})
    out = tmp_path / "tuning" / "deepsets_ce.json"
    assert main(["tune", "--dataset", "bbcsport", "--method", "deepsets_ce", "--pointsets", ps_path, "--splits",
                 splits_path, "--grid", '{"lr": [0.001, 0.01], "epochs": [1, 2]}', "--params", params,
                 "--work-dir", str(tmp_path / "tuning" / "deepsets_ce"), "--out", str(out)]) == 0
    chosen = read_chosen(out)
    assert len(json.loads(out.read_text())["points"]) == 4
    assert main(["tuning-table", "--results", str(out), "--out", str(tmp_path / "tuning.md")]) == 0
    assert "| BBCSport | DeepSets+CE |" in (tmp_path / "tuning.md").read_text()
    assert main(["train", "--dataset", "bbcsport", "--method", "deepsets_ce", "--split", "0", "--pointsets", ps_path,
                 "--splits", splits_path, "--params", params, "--tuned", str(out),
                 "--out-dir", str(tmp_path / "run")]) == 0
    history = (tmp_path / "run" / "history.csv").read_text().strip().splitlines()
    assert len(history) - 1 == chosen["epochs"]  # the chosen budget, not the params' 5 epochs


# ------------------------------------------------------------------------------ workflow
def dry_run_commands(tmp_path: Path, cfg: dict) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run(SNAKEMAKE + ["-d", str(tmp_path), "-n", "-p", "--forceall", "--configfile", str(path)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def train_schedules(output: str) -> dict[tuple[str, str], tuple[float, int, str | None]]:
    """(dataset/split, method) -> (lr, epochs, tuned file) of every `dmlrepro train` of a split in a
    dry run, a job of its own or one command of a batch (batch_runs)."""
    from conftest import dry_run_train_commands
    out = {}
    for out_dir, job in dry_run_train_commands(output).items():
        argv = job["argv"]
        if "--split" not in argv:  # an external base (--all-documents)
            continue
        where, method = out_dir.removeprefix("results/wsset/").rsplit("/", 1)
        train = json.loads(argv[argv.index("--params") + 1])
        assert "train" not in train["method_params"]  # the trainer never sees the override
        tuned = argv[argv.index("--tuned") + 1] if "--tuned" in argv else None
        out[(where, method)] = (train["train"]["lr"], train["train"]["epochs"], tuned)
    return out


def test_a_methods_train_override_reaches_its_runs_only(tmp_path):
    full = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    cfg = full["papers"]["wsset"]
    full["papers"] = {"wsset": cfg}  # WSSET only
    cfg.pop("studies")
    base = cfg["train"]
    for params in cfg["method_params"].values():
        params.pop("train", None)  # whatever the default holds: this test sets its own
    cfg["method_params"]["repset"] = {"train": {"lr": 0.01, "epochs": 7}}
    cfg["method_params"]["wsset"]["train"] = {"lr": 3e-4}
    cfg["method_params"]["approx_emd"]["train_per_dataset"] = {"twitter": {"epochs": 9}}  # one dataset only
    schedules = train_schedules(dry_run_commands(tmp_path, full))
    assert schedules[("bbcsport/split1", "repset")] == (0.01, 7, None)
    assert schedules[("twitter/split1", "wsset")] == (3e-4, base["epochs"], None)
    assert schedules[("twitter/split2", "approx_emd")] == (base["lr"], 9, None)
    assert schedules[("bbcsport/split2", "approx_emd")] == (base["lr"], base["epochs"], None)
    # the transfer rows train with WSSET's schedule; every other run keeps config['train']
    assert schedules[("bbcsport/split0", "ours_int")] == (3e-4, base["epochs"], None)
    assert schedules[("bbcsport/split1", "ours_ext")] == (3e-4, base["epochs"], None)
    assert schedules[("bbcsport/split1", "wsset_ext")] == (3e-4, base["epochs"], None)
    others = {k: v for k, v in schedules.items()
              if schedule_source(k[1]) not in ("repset", "wsset") and not (k[0].startswith("twitter") and k[1] == "approx_emd")}
    assert others and set(others.values()) == {(base["lr"], base["epochs"], None)}


def test_a_per_dataset_schedule_names_an_unknown_dataset_in_one_line(tmp_path):
    full = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    full["papers"] = {"wsset": full["papers"]["wsset"]}
    full["papers"]["wsset"]["method_params"]["approx_emd"]["train_per_dataset"] = {"recipe": {"lr": 0.01}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(full))
    res = subprocess.run(SNAKEMAKE + ["-d", str(tmp_path), "-n", "--configfile", str(path)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode != 0
    assert "papers.wsset.method_params.approx_emd.train_per_dataset: unknown dataset 'recipe'" in res.stdout + res.stderr


def test_tuning_config_dry_run_lists_exactly_its_jobs(tmp_path):
    full = yaml.safe_load((REPO / "config" / "wsset_tuning.yaml").read_text())
    cfg = full["papers"]["wsset"]
    out = dry_run_commands(tmp_path, full)
    tunes = {(m.group(1), m.group(2)) for m in re.finditer(r"dmlrepro tune --dataset (\w+) --method (\w+)", out)}
    tuning = cfg["tuning"]
    expected = set()
    for m in tuning["methods"]:
        scope = cfg.get("method_scope", {}).get(m, {}).get("datasets", list(cfg["datasets"]))
        expected |= {(d, m) for d in tuning["datasets"] if d in scope}
    assert tunes == expected
    assert ("bbcsport", "repset") in tunes and ("twitter", "wsset") in tunes and ("twitter", "repset") not in tunes
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", out, re.M)}
    assert counts["tune_method"] == len(expected) and counts["tuning_table"] == 1
    assert not any(k.startswith(("train_study", "image_", "ssdml", "unified", "query")) for k in counts)
    # apply: true -> every Table I run of a tuned method (and the transfer rows) reads its search
    schedules = train_schedules(out)
    for (where, method), (_, _, tuned) in schedules.items():
        assert tuned == f"results/wsset/{where.split('/')[0]}/tuning/{schedule_source(method)}.json"
    grid = re.search(r"--grid '(.*?)'", out).group(1)
    assert json.loads(grid) == tuning["grid"]


def test_tuning_config_does_not_drift_from_the_default():
    """config/wsset_tuning.yaml is a whole config: the default's data, encoders, base schedule and
    scope, with the method parameters but without their tuned `train` overrides (it searches them)."""
    tuning_all = yaml.safe_load((REPO / "config" / "wsset_tuning.yaml").read_text())
    default_all = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert tuning_all["data"] == default_all["data"] and list(tuning_all["papers"]) == ["wsset"]  # no image paper
    tuning, default = tuning_all["papers"]["wsset"], default_all["papers"]["wsset"]
    for key in ("datasets", "methods", "method_scope", "baseline_models", "model", "train", "evaluation", "ot"):
        assert tuning[key] == default[key], key
    untuned = {m: {k: v for k, v in p.items() if k not in ("train", "train_per_dataset")}
               for m, p in default["method_params"].items()}
    assert tuning["method_params"] == {m: p for m, p in untuned.items() if p}
    assert tuning["corpora"] == {k: v for k, v in default["corpora"].items() if k != "amazon_gallery"}
    assert "studies" not in tuning and tuning["tuning"]["apply"] is True
