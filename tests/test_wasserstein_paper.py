"""Paper 002's package (papers/wasserstein): the point-cloud embedder, the rows as config specs, one
run through the shared trainer (with WCRAIG, resumed), Table 1 and the claims on hand-built metrics,
the paper's numbers as TARGETS.md prints them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import PAPERS_DIR, make_stand_in, markdown_rows
from dmlrepro import DmlReproError
from dmlrepro.distances.sinkhorn_divergence import SinkhornDivergenceDistance
from dmlrepro.models.images import PooledView, build_cloud_embedder
from dmlrepro.papers.wasserstein import paper_values as pv
from dmlrepro.papers.wasserstein import report, run
from dmlrepro.papers.wasserstein.claims import CLAIMS, results_frame
from dmlrepro.papers.wasserstein.methods import HISTOGRAM_ROWS, ROWS, TABLE1_METHODS, TABLE1_ROWS, row_label
from dmlrepro.reporting.claims import DOES_NOT_HOLD, HOLDS
from dmlrepro.training.images import weighted_m_per_class_plan

REPO = Path(__file__).resolve().parents[1]
TARGETS = PAPERS_DIR / "TARGETS.md"


# ----------------------------------------------------------------------------- the embedder


def test_cloud_embedder_shapes_norms_and_pooling():
    torch.manual_seed(0)
    net = build_cloud_embedder("lenet_ssdml", embedding_dim=8, cloud_layer="pool2")
    x = torch.randn(3, 1, 28, 28)
    clouds = net.clouds(x)
    assert clouds.shape == (3, 16, 8) and net.feature_dim == 50    # pool2: 50 channels on 4 x 4 cells
    assert torch.allclose(clouds.norm(dim=-1), torch.ones(3, 16), atol=1e-6)
    assert torch.equal(net(x), clouds.reshape(3, -1))                 # point-major rows for PML
    mean = clouds.mean(1)
    assert torch.allclose(net.pooled(x), mean / mean.norm(dim=1, keepdim=True), atol=1e-6)
    view = PooledView(net)
    assert view(x).shape == (3, 8) and view.embedding_dim == 8
    # the last map of LeNet is 1 x 1: one point per image
    assert build_cloud_embedder("lenet_ssdml", embedding_dim=8).clouds(x).shape == (3, 1, 8)
    # a cell's point is the projection of that cell's features (the hook captured pool2 itself)
    b = net.backbone
    fmap = b.pool2(b.conv2(b.pool1(b.conv1(x))))
    manual = torch.einsum("dc,bchw->bhwd", net.head.weight[:, :, 0, 0], fmap) + net.head.bias
    assert torch.allclose(clouds, torch.nn.functional.normalize(manual.reshape(3, 16, 8), dim=-1), atol=1e-5)


def test_cloud_embedder_gradient_reaches_the_layers_it_uses_only():
    torch.manual_seed(0)
    net = build_cloud_embedder("lenet_ssdml", embedding_dim=8, cloud_layer="pool2")
    net.clouds(torch.randn(4, 1, 28, 28))[:, :, 0].sum().backward()
    assert net.head.weight.grad.abs().sum() > 0 and net.backbone.conv1.weight.grad.abs().sum() > 0
    assert net.backbone.conv3.weight.grad is None     # the backbone stops at the captured map


def test_cloud_embedder_gradient_matches_finite_differences():
    torch.manual_seed(0)
    net = build_cloud_embedder("lenet_ssdml", embedding_dim=4, cloud_layer="pool2").double()
    x = torch.randn(2, 1, 28, 28, dtype=torch.double)
    w = torch.randn(2, 16, 4, dtype=torch.double)
    f = lambda: (net.clouds(x) * w).sum()  # noqa: E731
    net.zero_grad()
    f().backward()
    analytic = net.head.weight.grad[1, 3, 0, 0].item()
    h = 1e-6
    with torch.no_grad():
        net.head.weight[1, 3, 0, 0] += h
        up = f().item()
        net.head.weight[1, 3, 0, 0] -= 2 * h
        down = f().item()
    assert analytic == pytest.approx((up - down) / (2 * h), rel=1e-5)


def test_unknown_cloud_layer_is_an_error_naming_it():
    with pytest.raises(DmlReproError, match="cloud_layer 'pool9'"):
        build_cloud_embedder("lenet_ssdml", embedding_dim=8, cloud_layer="pool9")


# ----------------------------------------------------------------------------- the rows


def test_the_configs_list_the_papers_rows():
    for name in ("config.yaml", "paper.yaml"):
        cfg = yaml.safe_load((REPO / "config" / name).read_text())["papers"]["wasserstein"]
        # the default leaves out the histogram reading's rows (their cost; docs/wasserstein.md)
        expected = {k: v for k, v in TABLE1_METHODS.items() if name == "paper.yaml" or k not in HISTOGRAM_ROWS}
        assert cfg["methods"] == expected, name
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())["papers"]["wasserstein"]
    assert set(paper["datasets"]) == {"cub200", "sop"} and paper["seeds"] == [0, 1, 2]
    for ds in paper["datasets"].values():   # Roth et al.'s defaults
        assert ds["model"] == {"backbone": "resnet50", "embedding_dim": 128, "pretrained": True, "freeze_bn": True}
        t = ds["train"]
        assert (t["batch_size"], t["m"], t["lr"], t["weight_decay"]) == (112, 2, 1e-5, 4e-4)
        assert {1, 4} <= set(ds["recall_ks"])
    assert paper["datasets"]["cub200"]["train"]["epochs"] == 150 and paper["datasets"]["sop"]["train"]["epochs"] == 100


@pytest.mark.parametrize("row", ROWS)
def test_every_row_builds_and_gives_a_finite_loss(row):
    torch.manual_seed(0)
    labels = torch.arange(3).repeat_interleave(4)
    clouds = torch.nn.functional.normalize(torch.randn(12, 5, 6), dim=-1).requires_grad_()
    objective = run.build_objective(TABLE1_METHODS[row], 6, 3, {"blur": 0.1, "scaling": 0.5})
    wasserstein = TABLE1_METHODS[row].get("distance") == "sinkhorn"
    distance = objective.loss.distance
    assert isinstance(distance, SinkhornDivergenceDistance) == wasserstein
    if objective.miner is not None and wasserstein:
        assert objective.miner.distance is distance
    emb = clouds.reshape(12, -1) if wasserstein else clouds.mean(1)
    tuples = objective.miner(emb, labels) if objective.miner is not None else None
    loss = objective.loss(emb, labels, tuples)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(clouds.grad).all()


def test_a_w_row_with_its_own_distance_is_refused():
    spec = {"loss": {"name": "TripletMarginLoss", "distance": "LpDistance"}, "distance": "sinkhorn"}
    with pytest.raises(DmlReproError, match="Sinkhorn distance"):
        run.build_objective(spec, 4, 2, {})
    with pytest.raises(DmlReproError, match="sinkhorn: unknown option"):
        run.sinkhorn_options({"eps": 1})


def test_weighted_plan_draws_m_per_class_from_the_coreset_by_weight():
    rows = np.array([10, 11, 12, 20, 21, 22, 30, 31, 32])
    labels = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3])
    weights = np.array([8.0, 1, 1, 1, 1, 1, 1, 1, 1])
    batches = weighted_m_per_class_plan(rows, labels, weights, m=2, batch_size=4, iterations=400, seed=0, epoch=1)
    assert len(batches) == 400
    again = weighted_m_per_class_plan(rows, labels, weights, m=2, batch_size=4, iterations=400, seed=0, epoch=1)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    counts = {r: 0 for r in rows}
    for b in batches:
        assert len(b) == 4 and set(b) <= set(rows)
        classes = b // 10
        assert all((classes == c).sum() == 2 for c in np.unique(classes)) and len(set(b)) == 4
        for r in b:
            counts[r] += 1
    assert counts[10] > 1.3 * counts[11]           # weight 8 vs 1, drawn without replacement
    with pytest.raises(DmlReproError, match="fewer than m = 4"):
        weighted_m_per_class_plan(rows, labels, weights, m=4, batch_size=8, iterations=1, seed=0, epoch=1)


# ----------------------------------------------------------------------------- one run, end to end


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory, shared_data):
    return make_stand_in(tmp_path_factory.mktemp("wass_stand_in"), shared_data, val_fraction=0.05,
                         every=(100, 20, 25))


_MODEL = {"backbone": "lenet_ssdml", "embedding_dim": 8, "cloud_layer": "pool2"}
_TRAIN = {"epochs": 2, "iterations": 3, "batch_size": 8, "m": 2, "lr": 1e-3, "fit_per_class": 12}
_SINKHORN = {"blur": 0.2, "scaling": 0.5}


def _train(stand_in, shared_data, out, method, **kw):
    return run.train("fashion_mnist", shared_data, stand_in / "split.json", method, TABLE1_METHODS[method], _MODEL,
                     _TRAIN, stand_in / "pretrained.pt", 0, out, [1, 2, 4], sinkhorn=_SINKHORN,
                     evaluation={"sd_rerank": {"queries": 20, "k": 3}}, **kw)


def test_rows_train_evaluate_and_tabulate(stand_in, shared_data, tmp_path):
    files = []
    for method in ("wtriplet", "triplet", "wtriplet_wcraig"):
        summary = _train(stand_in, shared_data, tmp_path / method, method)
        files.append(tmp_path / method / "metrics.json")
        assert json.loads(files[-1].read_text()) == json.loads(json.dumps(summary))
        assert set(summary["test"]) == {"recall@1", "recall@2", "recall@4", "nmi", "f1", "map_at_r", "map_at_1000"}
        assert summary["fit_images"] == 12 * 5 and summary["n_points"] == 16
        assert (tmp_path / method / "history.csv").is_file() and (tmp_path / method / "model.pt").is_file()
        if method.startswith("w"):
            rr = summary["test_sd_rerank"]
            assert rr["queries"] == 20 and rr["k"] == 3 and 0 <= rr["recall@1_sd"] <= rr["recall@3_pooled"]
        else:
            assert summary["test_sd_rerank"] is None
    core = summary["coreset"]
    # 30 % of 12 images per class = 4, recomputed each of the 2 epochs; one batch per epoch (30 % of 3)
    assert core["sizes"] == [20, 20] and summary["batches_per_epoch"] == 1
    runs = report.load_runs(files, "fashion_mnist")
    table = report.table1(runs, "fashion_mnist")
    assert list(table["Method"]) == ["Wtriplet", "Triplet"]          # the WCRAIG row is not a Table 1 row
    assert "R@1, paper CUB-200-2011 (Table 1)" in table.columns and "R@1, paper" not in table.columns
    coreset = report.coreset_table(runs, "fashion_mnist")
    assert list(coreset["Method"]) == ["Wtriplet", "Wtriplet + WCRAIG coreset"]
    assert list(coreset["images trained on per epoch"]) == ["60", "20 of 60"]
    assert all(summary["train_cpu_seconds"] > 0 for summary in map(lambda f: json.loads(f.read_text()), files))
    assert coreset["training CPU s"].str.contains("±").all()
    md, csv, ccsv = tmp_path / "t.md", tmp_path / "t.csv", tmp_path / "c.csv"
    report.write_tables(table, coreset, csv, md, ccsv, report.table1_title("fashion_mnist"), ["a note"])
    text = md.read_text()
    assert "stand-in, a check of method" in text and "WCRAIG" in text and "- a note" in text


def test_a_resumed_run_equals_an_uninterrupted_one(stand_in, shared_data, tmp_path):
    whole = _train(stand_in, shared_data, tmp_path / "whole", "wtriplet_wcraig")

    class Stop(Exception):
        pass

    def stop_after_first(epoch):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        _train(stand_in, shared_data, tmp_path / "resumed", "wtriplet_wcraig", after_epoch=stop_after_first)
    resumed = _train(stand_in, shared_data, tmp_path / "resumed", "wtriplet_wcraig")
    assert resumed["test"] == whole["test"] and resumed["val_recall@1"] == whole["val_recall@1"]
    assert resumed["coreset"]["sizes"] == whole["coreset"]["sizes"]


def test_histogram_reading_rows_train_on_the_pooled_embedding_and_are_tabulated_beside(stand_in, shared_data,
                                                                                      tmp_path):
    from dmlrepro.distances.histogram_sinkhorn import HistogramSinkhornDistance
    files = []
    for method in ("wtriplet", "wtriplet_hist", "wcontrastive_hist"):
        summary = _train(stand_in, shared_data, tmp_path / method, method)
        files.append(tmp_path / method / "metrics.json")
        hist = method.endswith("_hist")
        assert summary["wasserstein"] is not hist and (summary["test_sd_rerank"] is None) == hist
        assert 0 <= summary["test"]["recall@1"] <= 1
    objective = run.build_objective(TABLE1_METHODS["wtriplet_hist"], 8, 5, _SINKHORN)
    assert isinstance(objective.loss.distance, HistogramSinkhornDistance)
    runs = report.load_runs(files, "fashion_mnist")
    assert list(report.table1(runs, "fashion_mnist")["Method"]) == ["Wtriplet"]  # not Table 1 rows
    reading = report.reading_table(runs, "fashion_mnist")
    assert list(reading["measure"]) == ["point cloud", "histogram", "histogram"]
    md = tmp_path / "t.md"
    report.write_tables(report.table1(runs, "fashion_mnist"), None, tmp_path / "t.csv", md, tmp_path / "c.csv",
                        "title", reading=reading)
    assert "point clouds vs the embedding read as a histogram" in md.read_text()
    assert report.reading_table(runs[:1], "fashion_mnist") is None


# ----------------------------------------------------------------------------- tables and claims


def _fake_runs(tmp_path, dataset, values: dict[str, list[float]]) -> list[Path]:
    files = []
    for row, per_seed in values.items():
        for seed, v in enumerate(per_seed):
            test = {"recall@1": v, "recall@4": v + 0.1, "nmi": v / 2, "f1": v / 3, "map_at_r": v / 4,
                    "map_at_1000": v / 5}
            rec = {"dataset": dataset, "method": row, "seed": seed, "test": test, "train_seconds": 10.0 + seed,
                   "fit_images": 60, "batches_per_epoch": 10, "test_sd_rerank": None,
                   "coreset": ({"fraction": 0.3, "selection_seconds": 1.0, "sizes": [18]}
                               if row == "wtriplet_wcraig" else None)}
            path = tmp_path / dataset / row / f"{seed}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rec))
            files.append(path)
    return files


def test_paper_dataset_table_shows_the_papers_values_differences_and_copy_errors(tmp_path):
    files = _fake_runs(tmp_path, "cub200", {"wtriplet": [0.70, 0.72, 0.74], "triplet": [0.60, 0.61, 0.62],
                                            "proxynca": [0.5, 0.5, 0.5]})
    table = report.table1(report.load_runs(files, "cub200"), "cub200").set_index("Method")
    assert table.loc["Wtriplet", "R@1"] == "72.00 ± 2.00"
    assert table.loc["Wtriplet", "R@1, paper"] == "72.77"
    assert table.loc["Wtriplet", "Δ R@1"] == f"{72.0 - 72.77:+.2f}"
    assert table.loc["Wtriplet", "mAP, paper"] == "24.74" and table.loc["Wtriplet", "mAP"] == "14.40 ± 0.40"
    assert table.loc["Triplet", "NMI, paper"] == "80.23 †" and table.loc["Triplet", "Δ NMI"] == "–"
    assert table.loc["ProxyNCA", "R@1, paper"] == "62.80 †"
    assert table.loc["Triplet", "F1, paper"] == "29.68" and table.loc["Triplet", "Δ F1"] != "–"
    assert not any(c.startswith("R@1, paper CUB") for c in table.columns)
    stand_in = report.table1(report.load_runs(_fake_runs(tmp_path, "fashion_mnist", {"triplet": [0.5, 0.6]})),
                             "fashion_mnist").set_index("Method")
    assert stand_in.loc["Triplet", "R@1, paper SOP (Table 1)"] == "60.94 †"    # the SOP copy error, marked
    assert stand_in.loc["Triplet", "R@1, paper CUB-200-2011 (Table 1)"] == "59.49"
    assert report.coreset_table(report.load_runs(files), "cub200") is None


def test_table_refuses_a_run_of_another_dataset_or_row(tmp_path):
    files = _fake_runs(tmp_path, "sop", {"wtriplet": [0.5]})
    with pytest.raises(DmlReproError, match="a run on 'sop' in the table of 'cub200'"):
        report.load_runs(files, "cub200")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"dataset": "sop", "method": "arcface", "test": {}}))
    with pytest.raises(DmlReproError, match="'arcface' is not a row"):
        report.load_runs([bad])


def test_claims_on_hand_built_metrics(tmp_path):
    assert len({c.id for c in CLAIMS}) == len(CLAIMS) == 9 * 5 + 5 + 5
    files = _fake_runs(tmp_path, "fashion_mnist", {"wtriplet": [0.80, 0.81, 0.82], "triplet": [0.60, 0.61, 0.62],
                                                   "wcontrastive": [0.50, 0.51, 0.52],
                                                   "contrastive": [0.70, 0.71, 0.72]})
    frame = results_frame(files)
    assert set(frame["metric"]) == set(pv.METRICS) and frame["value"].max() == pytest.approx(92.0)
    claims = report.claims_table(files).set_index("id")
    assert claims.loc["T1-w_helps_triplet-R@1", "verdict"] == HOLDS
    assert claims.loc["T1-w_helps_contrastive-NMI", "verdict"] == DOES_NOT_HOLD
    assert claims.loc["T1-wtriplet>contrastive-mAP", "verdict"] == HOLDS
    assert claims.loc["T1-wtriplet>margin-R@1", "verdict"] == "not run"
    md, csv = tmp_path / "c.md", tmp_path / "c.csv"
    report.write_claims_table(report.claims_table(files), csv, md, ["fashion_mnist"])
    assert "not a test of the paper's numbers" in md.read_text()


# ----------------------------------------------------------------------------- the paper's numbers


def test_paper_values_as_percent_and_suspects():
    assert pv.paper_percent("cub200", "wtriplet", "R@1") == "72.77"
    assert pv.paper_percent("sop", "npair", "NMI") == "63.25"
    assert pv.paper_percent("fashion_mnist", "wtriplet", "R@1") is None
    assert pv.paper_percent("cub200", "wtriplet_wcraig", "R@1") is None
    for (ds, row, metric) in pv.SUSPECT:
        assert pv.paper_value(ds, row, metric) is not None
    # the copy errors TARGETS.md names are what the values show
    assert [pv.PAPER_TABLE1["sop"]["triplet"][m] for m in ("R@1", "R@4", "F1")] == \
        [pv.PAPER_TABLE1["cub200"]["wcontrastive"][m] for m in ("R@1", "R@4", "F1")]
    assert pv.PAPER_TABLE1["cub200"]["proxynca"]["R@1"] == pv.PAPER_TABLE1["cub200"]["multisimilarity"]["R@1"]
    nmis = [float(pv.PAPER_TABLE1["cub200"][r]["NMI"]) for r in TABLE1_ROWS if r != "triplet"]
    assert float(pv.PAPER_TABLE1["cub200"]["triplet"]["NMI"]) > max(nmis) + 0.1


@pytest.mark.skipif(not TARGETS.is_file(), reason="TARGETS.md not available")
def test_paper_values_equal_targets_md():
    """Every transcribed value equals the printed one in TARGETS.md (PAPER 002, §1)."""
    text = TARGETS.read_text(encoding="utf-8")
    sec = text.split("### 002-§1 Table", 1)[1].split("### 002-§2", 1)[0]
    cub, sop = sec.split("Stanford Online Products", 1)
    label_to_row = {row_label(r): r for r in TABLE1_ROWS}
    for ds, block in (("cub200", cub), ("sop", sop)):
        header = next(line for line in block.splitlines() if line.startswith("| Approach"))
        assert [c.strip() for c in header.strip("|").split("|")][1:] == list(pv.METRICS)
        rows = {k: v for k, v in markdown_rows(block).items() if k != "Approach"}
        assert set(rows) == set(label_to_row)
        for label, cells in rows.items():
            assert cells == [pv.PAPER_TABLE1[ds][label_to_row[label]][m] for m in pv.METRICS], (ds, label)
