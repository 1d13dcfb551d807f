"""SSDML's validation grid: the table of every point's validation R@1 and the chosen point, and the
default config's methods and schedule (the budget's shape)."""

from __future__ import annotations

from pathlib import Path

import yaml

from dmlrepro.papers.ssdml import report

REPO = Path(__file__).resolve().parents[1]


def test_tuning_table_picks_the_best_validation_point_and_never_shows_test():
    grid = {"ours": [{"alpha_deg": 35}, {"alpha_deg": 40}],
            "deep_lrml": [{"params": {"gamma_s": 0.1, "gamma_d": 0.1}}, {"params": {"gamma_s": 1.0, "gamma_d": 1.0}},
                          {"params": {"gamma_s": 10.0, "gamma_d": 10.0}}]}
    runs = [{"method": "ours", "tuning_point": 0, "val_recall@1": 0.80, "test": {"recall@1": 0.99}},
            {"method": "ours", "tuning_point": 1, "val_recall@1": 0.85, "test": {"recall@1": 0.10}},
            {"method": "deep_lrml", "tuning_point": 0, "val_recall@1": 0.70, "test": {"recall@1": 0.5}},
            {"method": "deep_lrml", "tuning_point": 2, "val_recall@1": 0.70, "test": {"recall@1": 0.9}}]
    df = report.tuning_table(runs, grid)
    assert list(df.columns) == ["Method", "point", "val R@1", "chosen"]
    assert list(df["point"]) == ["alpha_deg=35", "alpha_deg=40", "gamma_s=0.1, gamma_d=0.1",
                                 "gamma_s=1, gamma_d=1", "gamma_s=10, gamma_d=10"]
    assert list(df["val R@1"]) == ["80.00", "85.00", "70.00", "not run", "70.00"]
    assert list(df["chosen"]) == ["", "yes", "yes", "", ""]        # a tie goes to the earlier point


def test_default_runs_every_table1_row_on_one_schedule_and_the_tuning_overlay_covers_them():
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["papers"]["ssdml"]
    assert set(cfg["methods"]) == {"ours", "ours_no_orth", "deep_lrml", "deep_seraph", "deep_isdml", "deep_apllr",
                                   "deep_apit"}
    assert len(cfg["seeds"]) >= 3 and set(cfg["datasets"]) == {"mnist", "fashion_mnist"}
    # one train block for every method: the same SGD budget (no method carries its own schedule)
    assert all(set(m) <= {"orthogonal", "metric_step", "params", "alpha_deg"} for m in cfg["methods"].values())
    assert cfg["methods"]["ours"]["alpha_deg"] == cfg["methods"]["ours_no_orth"]["alpha_deg"]  # Table 4: one alpha
    tuning = yaml.safe_load((REPO / "config" / "ssdml_tuning.yaml").read_text())["papers"]["ssdml"]["tuning"]
    assert set(tuning["grid"]) == set(cfg["methods"]) - {"ours_no_orth"}
    assert len({len(points) for points in tuning["grid"].values()}) == 1     # as many points for every method
