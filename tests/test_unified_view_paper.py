"""Paper 004's package (papers/unified_view): the seven Table 1 rows as config specs resolve to the
paper's rows and train through the image foundation's trainer on real data; Table 1 and the claims
on hand-built metrics; the paper's numbers as TARGETS.md prints them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import PAPERS_DIR, make_stand_in, markdown_rows
import torch
import yaml

from dmlrepro import DmlReproError
from dmlrepro.losses.unified_view import build_table1_row
from dmlrepro.papers.unified_view import paper_values as pv
from dmlrepro.papers.unified_view import report
from dmlrepro.papers.unified_view.claims import CLAIMS, results_frame
from dmlrepro.papers.unified_view.methods import ROWS, TABLE1_METHODS, row_label
from dmlrepro.reporting.claims import DOES_NOT_HOLD, HOLDS, UNDECIDED
from dmlrepro.training import components

REPO = Path(__file__).resolve().parents[1]
TARGETS = PAPERS_DIR / "TARGETS.md"


# ----------------------------------------------------------------------------- the rows


def _batch(seed=0, n_classes=6, per_class=5, dim=8):
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    centres = torch.randn(n_classes, dim, generator=gen)
    emb = centres[labels] + 0.8 * torch.randn(len(labels), dim, generator=gen)
    return emb, labels


def _value(loss, miner, emb, labels):
    torch.manual_seed(3)  # distance-weighted sampling draws negatives
    emb = emb.clone().requires_grad_(True)
    tuples = None if miner is None else miner(emb, labels)
    value = loss(emb, labels, tuples)
    value.backward()
    return value.detach(), emb.grad


@pytest.mark.parametrize("row", ROWS)
def test_each_config_row_is_the_papers_row(row):
    """The declarative spec, resolved by name like a run resolves it, builds the same loss and
    miner as build_table1_row: same classes, same value and gradient on random batches."""
    spec = TABLE1_METHODS[row]
    loss = components.build("losses", spec["loss"], num_classes=6, embedding_size=8)
    miner = components.build("miners", spec.get("miner"))
    ref_loss, ref_miner = build_table1_row(row)
    assert type(loss) is type(ref_loss) and type(miner) is type(ref_miner)
    for seed in range(3):
        emb, labels = _batch(seed)
        value, grad = _value(loss, miner, emb, labels)
        ref_value, ref_grad = _value(ref_loss, ref_miner, emb, labels)
        assert torch.isfinite(value) and torch.allclose(value, ref_value, atol=1e-6), (row, seed)
        assert torch.allclose(grad, ref_grad, atol=1e-6), (row, seed)


def test_rows_differ_where_the_paper_says():
    """Mining changes RAW's value (VTHM drops pairs); VTHM's row is linear in S (equal weights)."""
    emb, labels = _batch(1)
    values = {row: _value(*build_table1_row(row), emb, labels)[0].item() for row in ("raw", "raw_vthm")}
    assert values["raw"] != pytest.approx(values["raw_vthm"])
    loss, miner = build_table1_row("vthm")
    emb_n = torch.nn.functional.normalize(emb, dim=1)
    tuples = miner(emb_n, labels)
    a1, p, a2, n = tuples
    naive = (emb_n[a2] * emb_n[n]).sum(1).sum() - (emb_n[a1] * emb_n[p]).sum(1).sum()
    assert loss(emb_n, labels, tuples).item() == pytest.approx(naive.item() / len(labels), abs=1e-5)


@pytest.mark.parametrize("config", ["config.yaml", "paper.yaml"])
def test_the_configs_list_the_papers_rows(config):
    cfg = yaml.safe_load((REPO / "config" / config).read_text())["papers"]["unified_view"]
    assert cfg["methods"] == TABLE1_METHODS
    assert list(cfg["methods"]) == list(ROWS) and cfg["seeds"] == [0, 1, 2]


def test_the_default_runs_both_stand_ins_alike():
    """Zero-shot Fashion-MNIST from the MNIST-pretrained LeNet (the image foundation's) and its mirror,
    zero-shot MNIST from a Fashion-MNIST-pretrained LeNet: one schedule, the paper's 512-d embedding."""
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["papers"]
    uv = cfg["unified_view"]["datasets"]
    assert set(uv) == {"fashion_mnist", "mnist"}
    assert uv["fashion_mnist"]["pretrain"] == cfg["image_foundation"]["datasets"]["fashion_mnist"]["pretrain"]
    assert uv["mnist"]["pretrain"] == {**uv["fashion_mnist"]["pretrain"], "dataset": "fashion_mnist"}
    for key in ("protocol", "model", "train", "recall_ks"):
        assert uv["mnist"][key] == uv["fashion_mnist"][key], key
    assert uv["mnist"]["model"]["embedding_dim"] == 512
    p = uv["mnist"]["protocol"]
    assert p["protocol"] == "zero_shot" and not set(p["train_classes"]) & set(p["test_classes"])


def test_the_paper_config_follows_section_6():
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())["papers"]["unified_view"]["datasets"]
    assert set(cfg) == set(pv.PAPER_DATASETS)
    for name, block in cfg.items():
        assert block["model"] == {"backbone": "bn_inception", "embedding_dim": 512, "pretrained": True,
                                  "freeze_bn": True}
        t = block["train"]
        assert (t["optimizer"] if "optimizer" in t else "adam", t["lr"], t["batch_size"], t["device"]) == \
            ("adam", 1e-5, 80, "cuda")
        assert t["m"] == (5 if name in ("cub200", "cars196") else 4), name
        assert t["augment"] is True and tuple(block["recall_ks"]) == pv.PAPER_RECALL_KS[name]
    assert cfg["cub200"]["train"]["epochs"] * cfg["cub200"]["train"]["iterations"] == 3000  # the official code


# ----------------------------------------------------------------------------- runs on real data


@pytest.fixture(scope="module")
def stand_in(shared_data, tmp_path_factory):
    """A LeNet pretrained for 3 batches on MNIST and a small zero-shot Fashion-MNIST split."""
    return make_stand_in(tmp_path_factory.mktemp("uv_stand_in"), shared_data, val_fraction=0.05, every=(100, 20, 25))


def test_every_row_trains_through_the_trainer(stand_in, shared_data, tmp_path):
    """Each row, as the workflow passes it (JSON spec), trains two steps: finite losses, the
    embedding head moved away from its initialisation, metrics written."""
    from dmlrepro.models.images import build_image_embedder
    from dmlrepro.papers.image_foundation import run
    model_cfg = {"backbone": "lenet_ssdml", "embedding_dim": 16}
    train_cfg = {"epochs": 1, "iterations": 2, "batch_size": 20, "m": 4, "lr": 1e-3}

    def moved(out):
        torch.manual_seed(0)  # the run seeds everything with 0 before building its model
        fresh = build_image_embedder("lenet_ssdml", embedding_dim=16, pretrained=stand_in / "pretrained.pt")
        trained = torch.load(out / "model.pt", weights_only=False)["state_dict"]
        return [k for k, v in fresh.state_dict().items() if v.is_floating_point() and not torch.equal(v, trained[k])]

    # the control: no step, no change (so "moved" below is the training's doing)
    run.train("fashion_mnist", shared_data, stand_in / "split.json", "raw", TABLE1_METHODS["raw"], model_cfg,
              {**train_cfg, "epochs": 0}, stand_in / "pretrained.pt", 0, tmp_path / "control", (1,))
    assert moved(tmp_path / "control") == []
    for row in ROWS:
        spec = json.loads(json.dumps(TABLE1_METHODS[row]))  # as the rule hands it over
        out = tmp_path / row
        summary = run.train("fashion_mnist", shared_data, stand_in / "split.json", row, spec, model_cfg, train_cfg,
                            stand_in / "pretrained.pt", 0, out, (1, 2))
        assert summary["method"] == row and 0 <= summary["test"]["recall@1"] <= 1
        history = (out / "history.csv").read_text().splitlines()
        header = history[0].split(",")
        losses = [float(line.split(",")[header.index("loss")]) for line in history[1:]]
        assert losses and all(np.isfinite(losses)), row
        assert moved(out), f"{row}: no parameter changed after two steps"


# ----------------------------------------------------------------------------- table and claims


def _write_runs(tmp_path, dataset, r1_by_row, ks=(1, 2, 4, 8)):
    """metrics.json per row and seed as image_foundation.run.train writes it; R@K = R@1 + (K - 1)/1000."""
    paths = []
    for row, values in r1_by_row.items():
        for seed, r1 in enumerate(values):
            test = {f"recall@{k}": min(1.0, r1 + (k - 1) / 1000) for k in ks}
            test.update({"nmi": 0.5, "f1": 0.3, "map_at_r": 0.2})
            rec = {"dataset": dataset, "method": row, "seed": seed, "best_epoch": 2, "val_recall@1": 0.9,
                   "test": test, "test_selected": {"epoch": 3, "recall@1": r1 + 0.01}}
            path = tmp_path / dataset / f"seed{seed}" / row / "metrics.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rec))
            paths.append(path)
    return paths


# R@1 per seed: RAW+VTHM far ahead; RAW and Binomial overlapping; VTHM below Binomial+VTHM
R1 = {"binomial": [0.60, 0.62, 0.64], "raw": [0.61, 0.63, 0.65], "vthm": [0.50, 0.51, 0.52],
      "binomial_vthm": [0.70, 0.71, 0.72], "raw_dw": [0.55, 0.56, 0.57], "raw_semihard": [0.58, 0.59, 0.60],
      "raw_vthm": [0.80, 0.81, 0.82]}


def test_stand_in_table_has_no_paper_column(tmp_path):
    paths = _write_runs(tmp_path, "fashion_mnist", {r: R1[r] for r in reversed(ROWS)})  # order restored
    df = report.table1(paths, "fashion_mnist", (1, 2, 4, 8), "stand-in note")
    assert list(df["Method"]) == [row_label(r) for r in ROWS]
    assert report.PAPER_R1_COLUMN not in df.columns and not any("paper" in c.lower() for c in df.columns)
    # binomial: 60, 62, 64 -> mean 62.00, sample std 2.00
    assert df.loc[0, "R@1"] == "62.00 ± 2.00" and df.loc[6, "R@1"] == "81.00 ± 1.00"
    assert df.loc[6, "R@1 if selected on test (inflated)"] == "82.00 ± 1.00"
    assert df.loc[6, "Δ R@1 (test − val selection)"] == "+1.00" and df.loc[0, "seeds"] == 3
    assert report.raw_vthm_recall_table(paths, "fashion_mnist", (1, 2, 4, 8)) is None
    report.write_table1(df, None, tmp_path / "t.csv", tmp_path / "t.md", report.table1_title("fashion_mnist"), ["n"])
    md = (tmp_path / "t.md").read_text()
    assert md.startswith("# Table 1 (ablation) on Fashion-MNIST (stand-in): the offline stand-in, a check of method")
    assert "64.45" not in md and "RAW+VTHM (ours)" in md


def test_paper_dataset_table_shows_the_papers_column(tmp_path):
    ks = (1, 2, 4, 8, 16, 32)
    paths = _write_runs(tmp_path, "cub200", {"binomial": [0.6, 0.62], "raw_vthm": [0.66, 0.68]}, ks)
    df = report.table1(paths, "cub200", ks, "cub note")
    assert list(df["Method"]) == ["Binomial", "RAW+VTHM (ours)"]
    assert list(df[report.PAPER_R1_COLUMN]) == ["64.45", "66.85"]
    assert list(df.columns).index(report.PAPER_R1_COLUMN) == list(df.columns).index("R@1") + 1
    # ours − paper: Binomial 61.00 − 64.45, RAW+VTHM 67.00 − 66.85
    assert list(df[report.DELTA_R1_COLUMN]) == ["-3.45", "+0.15"]
    assert list(df.columns).index(report.DELTA_R1_COLUMN) == list(df.columns).index(report.PAPER_R1_COLUMN) + 1
    recall = report.raw_vthm_recall_table(paths, "cub200", ks)
    assert list(recall["K"]) == list(ks)
    assert list(recall["RAW+VTHM, paper (Tables 2-3)"]) == ["66.85", "77.84", "85.8", "91.29", "94.94", "97.42"]
    # R@2 = R@1 + 0.001: 66.1, 68.1 -> 67.10 ± 1.41
    assert recall.loc[1, "RAW+VTHM, ours"] == "67.10 ± 1.41"
    assert list(recall["Δ (ours − paper)"])[:2] == ["+0.15", "-10.74"]  # 67.00 − 66.85, 67.10 − 77.84
    report.write_table1(df, recall, tmp_path / "c.csv", tmp_path / "c.md", report.table1_title("cub200"))
    assert "beside the paper's Tables 2-3" in (tmp_path / "c.md").read_text()


def _write_initial(tmp_path, dataset, r1s):
    """initial.json per seed as image_foundation.run.initial writes it."""
    paths = []
    for seed, r1 in enumerate(r1s):
        path = tmp_path / dataset / f"seed{seed}" / "initial.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"dataset": dataset, "method": "initial", "seed": seed, "best_epoch": 0,
                                    "val_recall@1": None, "test_selected": None,
                                    "test": {"recall@1": r1, "recall@2": r1, "nmi": 0.4, "f1": 0.2, "map_at_r": 0.1}}))
        paths.append(path)
    return paths


def test_initial_row_heads_the_table(tmp_path):
    """The Initial row (the pretrained backbone before metric learning) comes first, whatever the
    input order, with no 'selected on test' value; on a paper dataset it has no paper value either."""
    for dataset, ks in (("fashion_mnist", (1, 2)), ("cub200", (1, 2))):
        runs = _write_runs(tmp_path, dataset, {"raw": [0.5, 0.52], "raw_vthm": [0.6, 0.62]}, ks)
        initial = _write_initial(tmp_path, dataset, [0.4, 0.4])
        df = report.table1(runs + initial, dataset, ks, "note")
        assert list(df["Method"]) == ["Initial (no metric learning)", "RAW", "RAW+VTHM (ours)"]
        assert df.loc[0, "R@1"] == "40.00 ± 0.00" and df.loc[0, "R@1 if selected on test (inflated)"] == "–"
        if dataset == "cub200":
            assert df.loc[0, report.PAPER_R1_COLUMN] == "–" and df.loc[0, report.DELTA_R1_COLUMN] == "–"
            assert df.loc[1, report.DELTA_R1_COLUMN] == "-14.06"  # 51.00 − 65.06
    # the claims read the runs only: an Initial file among them changes nothing
    runs = _write_runs(tmp_path / "c", "fashion_mnist", R1)
    assert len(results_frame(runs)) == 7 * 3 * 4


def test_table_refuses_a_run_of_another_dataset_naming_it(tmp_path):
    paths = _write_runs(tmp_path, "mnist", {"raw": [0.5]})
    with pytest.raises(DmlReproError, match=r"mnist/seed0/raw/metrics\.json.*'mnist'.*'fashion_mnist'"):
        report.table1(paths, "fashion_mnist", (1,), "x")


def test_claims_on_hand_built_metrics(tmp_path):
    paths = _write_runs(tmp_path, "fashion_mnist", R1)
    frame = results_frame(paths)
    assert len(frame) == 7 * 3 * 4 and set(frame["split"]) == {0, 1, 2}
    claims = report.claims_table(paths).set_index("id")
    assert len(claims) == len(CLAIMS) == 10
    for other in ROWS[:-1]:
        assert claims.loc[f"T1-raw_vthm>{other}", "verdict"] == HOLDS, other
    assert claims.loc["T1-vthm_helps_binomial", "verdict"] == HOLDS
    assert claims.loc["T1-raw>binomial", "verdict"] == UNDECIDED  # 63 ± 2 vs 62 ± 2
    assert claims.loc["T1-binomial_vthm>vthm", "A mean ± std"] == "71.00 ± 1.00"
    assert claims.loc["T1-raw>binomial", "A"] == "RAW, Fashion-MNIST (stand-in)"
    # a claim that fails: VTHM above Binomial+VTHM
    flipped = _write_runs(tmp_path / "flip", "fashion_mnist", {"vthm": [0.9, 0.91], "binomial_vthm": [0.5, 0.51]})
    assert report.claims_table(flipped).set_index("id").loc["T1-binomial_vthm>vthm", "verdict"] == DOES_NOT_HOLD
    report.write_claims_table(report.claims_table(paths), tmp_path / "c.csv", tmp_path / "c.md", ["fashion_mnist"])
    md = (tmp_path / "c.md").read_text()
    assert md.startswith("# Claims of the unified view (Table 1), checked on Fashion-MNIST (stand-in): a check on "
                         "the stand-in")
    assert "9 holds, 0 does not hold, 1 undecided" in md
    assert "stand-in" not in report.claims_title(["cub200", "sop"])


def test_a_broken_metrics_file_is_an_error_naming_it(tmp_path):
    bad = tmp_path / "metrics.json"
    bad.write_text('{"dataset": "fashion_mnist"}')
    with pytest.raises(DmlReproError, match=r"metrics\.json: not a run's metrics\.json"):
        results_frame([bad])


def test_figure1_is_drawn(tmp_path):
    out = report.figure1(tmp_path / "fig" / "figure1.png")
    assert out["png"].stat().st_size > 10_000 and out["pdf"].stat().st_size > 1000


# ----------------------------------------------------------------------------- the paper's numbers


def test_paper_values_are_consistent():
    assert set(pv.PAPER_TABLE1) == set(ROWS)
    for ds in pv.PAPER_DATASETS:  # Table 1's RAW+VTHM row is Tables 2-3's R@1
        assert pv.PAPER_TABLE1["raw_vthm"][ds] == pv.PAPER_RAW_VTHM_RECALL[ds][1]
        assert max(pv.PAPER_TABLE1, key=lambda r: float(pv.PAPER_TABLE1[r][ds])) == "raw_vthm"  # bold row
    assert pv.paper_r1("raw", "fashion_mnist") is None and pv.paper_r1("raw", "sop") == "77.0"
    assert pv.paper_recall("inshop", 50) == "99.20" and pv.paper_recall("fashion_mnist", 1) is None



@pytest.mark.skipif(not TARGETS.is_file(), reason="TARGETS.md not available")
def test_paper_values_equal_targets_md():
    """Every transcribed value equals the printed one in TARGETS.md (PAPER 004, §1)."""
    text = TARGETS.read_text(encoding="utf-8")
    sec = text.split("### 004-§1 Tables", 1)[1].split("### 004-§1b", 1)[0]
    t1 = sec.split("**Table 1:", 1)[1].split("Row definitions", 1)[0]
    t2 = sec.split("**Table 2:", 1)[1].split("**Table 3:", 1)[0]
    t3 = sec.split("**Table 3:", 1)[1]
    label_to_row = {row_label(r): r for r in ROWS}
    rows1 = markdown_rows(t1)
    assert set(rows1) == set(label_to_row)
    for label, cells in rows1.items():
        assert cells == [pv.PAPER_TABLE1[label_to_row[label]][ds] for ds in ("cub200", "cars196", "sop", "inshop")]
    header2 = next(line for line in t2.splitlines() if line.startswith("| Method"))
    assert re.findall(r"R@(\d+)", header2) == ["1", "2", "4", "8", "16", "32"] * 2
    cells = markdown_rows(t2)["RAW+VTHM"]
    assert cells == [pv.PAPER_RAW_VTHM_RECALL["cub200"][k] for k in pv.PAPER_RECALL_KS["cub200"]] + \
        [pv.PAPER_RAW_VTHM_RECALL["cars196"][k] for k in pv.PAPER_RECALL_KS["cars196"]]
    header3 = next(line for line in t3.splitlines() if line.startswith("| Method"))
    assert [int(k) for k in re.findall(r"R@(\d+)", header3)] == \
        list(pv.PAPER_RECALL_KS["sop"]) + list(pv.PAPER_RECALL_KS["inshop"])
    cells = markdown_rows(t3)["RAW+VTHM"]
    assert cells == [pv.PAPER_RAW_VTHM_RECALL["sop"][k] for k in pv.PAPER_RECALL_KS["sop"]] + \
        [pv.PAPER_RAW_VTHM_RECALL["inshop"][k] for k in pv.PAPER_RECALL_KS["inshop"]]
