"""SSDML's paper package: Algorithm 1 on real MNIST rows (resumes to the same model, L on the Stiefel
manifold after every metric step), partitions and batches, Tables 1 and 4, claims, paper values."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from conftest import PAPERS_DIR
import torch

from dmlrepro import DmlReproError

TARGETS = PAPERS_DIR / "TARGETS.md"
METHOD = {"orthogonal": True, "alpha_deg": 40, "k": 4, "gamma": 0.99, "max_iter": 3, "metric_dim": 8}
TRAIN = {"labels_per_class": 3, "partition_size": 60, "epochs_per_partition": 1, "epochs": 2,
         "triplets_per_batch": 40, "metric_every": 1, "lr": 1e-3, "checkpoint_every": 2}


@pytest.fixture(scope="module")
def mnist_split(shared_data, tmp_path_factory):
    """A small same-class MNIST split: fit/val/test rows subsampled from the real split."""
    from dmlrepro.data.images import ImageSplit, load_image_dataset, make_image_split
    root = tmp_path_factory.mktemp("ssdml")
    index = load_image_dataset("mnist", shared_data)
    split = make_image_split(index, protocol="same_class", val_fraction=0.15, seed=0)
    ImageSplit(fit=split.fit[::200], val=split.val[::60], test=split.test[::40]).save(root / "split.json")
    return root


def _train(root, shared_data, out_dir, method=METHOD, **kw):
    from dmlrepro.papers.ssdml import run
    return run.train("mnist", shared_data, root / "split.json", "ours" if method["orthogonal"] else "ours_no_orth",
                     method, {"backbone": "lenet_ssdml"}, TRAIN, 0, out_dir, (1, 2, 4, 8), **kw)


class Killed(Exception):
    pass


class KillAt(list):
    """A metric log that kills the run at its n-th metric step (mid-epoch, after a checkpoint)."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def append(self, item):
        super().append(item)
        if len(self) == self.n:
            raise Killed


def test_algorithm1_resumes_to_the_same_model_and_keeps_L_on_the_stiefel_manifold(mnist_split, shared_data,
                                                                                   tmp_path):
    from dmlrepro.losses.stiefel_metric import orthonormality_error
    steps = []
    reference = _train(mnist_split, shared_data, tmp_path / "a", metric_log=steps)
    # every mini-batch had its metric step, and L stayed orthonormal after each one
    assert reference["metric_steps"] == len(steps) > 4
    assert max(orthonormality_error(L) for L in steps) <= 1e-6
    assert reference["max_orthonormality_error"] <= 1e-6
    assert not torch.allclose(steps[0], steps[-1])  # L moved
    # killed mid-epoch 1 (after a checkpoint), then after epoch 1: both resume to the same run
    with pytest.raises(Killed):
        _train(mnist_split, shared_data, tmp_path / "b", metric_log=KillAt(3))
    with pytest.raises(Killed):
        _train(mnist_split, shared_data, tmp_path / "b", after_epoch=lambda e: (_ for _ in ()).throw(Killed()))
    assert not (tmp_path / "b" / "metrics.json").exists()
    resumed = _train(mnist_split, shared_data, tmp_path / "b")
    assert resumed["test"] == pytest.approx(reference["test"])
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=False)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert torch.equal(a["L"], b["L"]) and a["L"].shape == (128, 8)
    assert resumed["metric_steps"] == reference["metric_steps"]
    saved = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert set(saved["test"]) == {"recall@1", "recall@2", "recall@4", "recall@8", "nmi", "f1"}  # no MAP@R (run.METRICS)
    assert saved["retrieval_space"] == "after_L"  # the paper's embedding Lᵀz; before L recorded beside
    assert set(saved["test_before_L"]) == {"recall@1", "recall@2", "recall@4", "recall@8", "nmi"}
    assert len(saved["labelled_rows"]) == 30 and saved["test_selected"]["recall@1"] >= saved["test"]["recall@1"] - 1e-12


def test_without_orth_the_same_run_leaves_the_manifold(mnist_split, shared_data, tmp_path):
    from dmlrepro.losses.stiefel_metric import orthonormality_error
    steps = []
    out = _train(mnist_split, shared_data, tmp_path / "w", method={**METHOD, "orthogonal": False}, metric_log=steps)
    assert out["max_orthonormality_error"] is None and out["method"] == "ours_no_orth"
    assert orthonormality_error(steps[-1]) > 1e-3
    # Figure 2's t-SNE inputs: the Initial model and the saved run, on a seeded subset of the test rows
    from dmlrepro.papers.ssdml import figure2, run
    model = tmp_path / "w" / "model.pt"
    emb, labels = figure2.test_embeddings("mnist", shared_data, mnist_split / "split.json",
                                          {"ours_no_orth": model}, {}, METHOD, 0, points=20)
    assert set(emb) == {"initial", "ours_no_orth"} and labels.shape == (20,)
    assert emb["initial"].shape == emb["ours_no_orth"].shape == (20, 8)
    assert not np.allclose(emb["initial"], emb["ours_no_orth"])
    # the run's network with its final L (L unconstrained here: not the Initial's orthonormal one)
    from dmlrepro.data.images import ImageSplit, load_image_dataset
    saved = torch.load(model, weights_only=False)
    net = run._build_model({})
    net.load_state_dict(saved["state_dict"])
    split = ImageSplit.load(mnist_split / "split.json")
    rows = np.sort(np.random.default_rng(np.random.SeedSequence([0, 2])).choice(split.test, 20, replace=False))
    direct = run._embed(net, load_image_dataset("mnist", shared_data), rows, "after_L", saved["L"], "cpu")
    assert np.allclose(direct, emb["ours_no_orth"], atol=1e-5)


def test_initial_row_is_the_seeds_untrained_network(mnist_split, shared_data, tmp_path):
    from dmlrepro.models.images import build_image_embedder
    from dmlrepro.papers.ssdml import run
    from dmlrepro.training.loop import seed_everything
    out = run.initial("mnist", shared_data, mnist_split / "split.json", {}, 0, tmp_path / "i.json", (1, 2))
    seed_everything(0)
    fresh = build_image_embedder("lenet_ssdml", embedding_dim=None)
    import hashlib
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in fresh.state_dict().values())).hexdigest()
    assert out["weights_sha256"] == digest and out["method"] == "initial"
    assert 0 < out["test"]["recall@1"] <= 1 and set(out["test"]) >= {"recall@1", "recall@2", "nmi"}
    # after the seed's initial L (the Stiefel point its runs start from), before L recorded beside
    from dmlrepro.losses.stiefel_metric import initial_stiefel_point
    assert out["retrieval_space"] == "after_L" and set(out["test_before_L"]) >= {"recall@1", "nmi"}
    L0 = run.initial_metric(fresh, {"metric_dim": 8}, 5)
    assert torch.equal(L0, initial_stiefel_point(128, 8, "random", 5))
    same = run.initial("mnist", shared_data, mnist_split / "split.json", {}, 0, tmp_path / "j.json", (1, 2),
                       space="before_L")
    assert same["test"]["recall@1"] == out["test_before_L"]["recall@1"]


def test_network_step_gradient_is_the_batch_sum_over_the_triplet_count():
    """``batch_gradient: mean`` (MatConvNet's 1/batch-size) is the ``sum`` gradient divided by T_b."""
    from dmlrepro.losses.ssdml import ssdml_angular_loss
    from dmlrepro.papers.ssdml.algorithm import SSDMLObjective
    from dmlrepro.training.loop import Batch

    class Fixed:  # an algorithm stub: a fixed orthonormal L, no metric step due
        step = type("S", (), {"project": staticmethod(lambda z: z @ L)})()

        @staticmethod
        def metric_step_due():
            return False

    g = torch.Generator().manual_seed(0)
    L = torch.linalg.qr(torch.randn(6, 6, generator=g, dtype=torch.float64))[0][:, :3]
    net = torch.nn.Linear(5, 6).double()
    x = torch.randn(8, 5, generator=g, dtype=torch.float64)
    triplets = torch.tensor([[0, 1, 2], [3, 4, 5], [6, 7, 0], [1, 3, 5], [2, 4, 6]])
    batch = Batch(x, None, np.arange(8), {"triplets": triplets})
    grads = {}
    for mode in ("mean", "sum"):
        net.zero_grad()
        loss, n = SSDMLObjective(Fixed(), alpha_deg=40, batch_gradient=mode)(net, batch)
        loss.backward()
        grads[mode] = net.weight.grad.clone()
        assert n == 5
    naive = ssdml_angular_loss(net(x), triplets, L, 40.0, reduction="sum")
    assert float(SSDMLObjective(Fixed(), batch_gradient="sum")(net, batch)[0].detach()) == pytest.approx(float(naive.detach()))
    assert torch.allclose(grads["mean"] * 5, grads["sum"])
    with pytest.raises(DmlReproError, match="batch_gradient"):
        SSDMLObjective(Fixed(), batch_gradient="median")


def test_partitions_labelled_rows_and_triplet_batches():
    from dmlrepro.papers.ssdml.algorithm import SSDMLAlgorithm, TripletBatches, draw_labelled, draw_partition
    labels = np.repeat(np.arange(4), 30)
    rows = np.arange(120) + 1000
    lab = draw_labelled(rows, labels, 5, seed=3)
    assert len(lab) == 20 and all((labels[np.isin(rows, lab)] == c).sum() == 5 for c in range(4))
    assert np.array_equal(lab, draw_labelled(rows, labels, 5, seed=3))
    assert not np.array_equal(lab, draw_labelled(rows, labels, 5, seed=4))
    with pytest.raises(DmlReproError, match="class 0 has 30 fit images, fewer than labels_per_class = 31"):
        draw_labelled(rows, labels, 31, seed=0)
    pool = np.setdiff1d(rows, lab)
    p0, p1 = draw_partition(pool, lab, 50, 3, 0), draw_partition(pool, lab, 50, 3, 1)
    assert np.array_equal(p0[:20], lab) and np.array_equal(p1[:20], lab)   # labelled rows in every partition
    assert len(np.unique(p0)) == 70 and not np.isin(p0[20:], lab).any() and not np.array_equal(p0, p1)
    assert len(draw_partition(pool, lab, 10**6, 3, 0)) == 120               # a pool smaller than asked: all of it

    class Index:  # array-backed, like MNIST
        array = np.arange(120 * 28 * 28, dtype=np.uint8).reshape(120, 28, 28) % 251
        labels = np.zeros(120, np.int64)

    from dmlrepro.models.images import build_image_embedder
    spec = build_image_embedder("lenet_ssdml", embedding_dim=None).input_spec
    alg = SSDMLAlgorithm(Index(), spec, np.arange(120), labels, seed=0, labels_per_class=5, partition_size=30,
                         triplets_per_batch=7)
    # L as each epoch ends is kept (the selected epoch's network is reported with its L), in the state too
    alg.step.init(128, 4, seed=0)
    alg.on_epoch_end(None, 1)
    first = alg.L_at(1).clone()
    alg.step.metric.L = torch.linalg.qr(torch.randn(128, 4, dtype=torch.float64))[0]
    alg.on_epoch_end(None, 2)
    assert torch.equal(alg.L_at(1), first) and not torch.equal(alg.L_at(2), first)
    with pytest.raises(DmlReproError, match="no L recorded for epoch 3"):
        alg.L_at(3)
    alg.partition = np.arange(40, 75)
    alg.triplets = np.random.default_rng(0).integers(0, 35, size=(30, 3))
    restored = SSDMLAlgorithm(Index(), spec, np.arange(120), labels, seed=0, labels_per_class=5)
    restored.load_state_dict(alg.state_dict())
    assert torch.equal(restored.L_at(1), first) and torch.equal(restored.L_at(2), alg.L_at(2))
    plan = alg.plan(1)
    assert sorted(np.concatenate(plan).tolist()) == list(range(30)) and [len(b) for b in plan] == [7, 7, 7, 7, 2]
    assert all(np.array_equal(a, b) for a, b in zip(plan, alg.plan(1)))
    for ids, batch in zip(plan, TripletBatches(alg)(plan)):
        # each batch row once, and the local triplets point at the rows of the planned triplets
        assert len(np.unique(batch.index)) == len(batch.index) == batch.inputs.shape[0]
        assert np.array_equal(batch.index[batch.extras["triplets"].numpy()], alg.partition[alg.triplets[ids]])


def _record(tmp_path, dataset, method, seed, nmi, r1):
    rec = {"dataset": dataset, "method": method, "seed": seed,
           "test": {"nmi": nmi, "recall@1": r1, "recall@2": r1 + 0.01, "recall@4": r1 + 0.02, "recall@8": r1 + 0.03},
           "test_selected": None if method == "initial" else {"epoch": 2, "recall@1": r1 + 0.005}}
    path = tmp_path / f"{dataset}_{method}_{seed}.json"
    path.write_text(json.dumps(rec))
    return path


@pytest.fixture
def hand_built(tmp_path):
    paths = []
    for seed, jitter in enumerate((0.0, 0.01, -0.01)):
        paths.append(_record(tmp_path, "mnist", "initial", seed, 0.40, 0.90 + jitter))
        paths.append(_record(tmp_path, "mnist", "ours", seed, 0.50 + jitter, 0.95 + jitter))
        paths.append(_record(tmp_path, "mnist", "ours_no_orth", seed, 0.30 + jitter, 0.80 + jitter))
    return paths


def test_tables_show_ours_mean_std_the_papers_value_and_delta(hand_built, tmp_path):
    from dmlrepro.papers.ssdml import report
    runs = report.load_runs(hand_built)
    t1 = report.table1(runs, ["mnist", "fashion_mnist"])
    ours = t1[(t1["Dataset"] == "MNIST") & (t1["Method"] == "Ours")].iloc[0]
    assert ours["R@1 ours"] == "95.00 ± 1.00" and ours["R@1 paper"] == "93.9" and ours["Δ R@1"] == "+1.10"
    assert ours["NMI ours"] == "50.00 ± 1.00" and ours["NMI paper"] == "47.5" and ours["seeds"] == 3
    assert ours["R@1 if selected on test (inflated)"] == "95.50 ± 1.00"
    lrml = t1[(t1["Dataset"] == "MNIST") & (t1["Method"] == "Deep-LRML")].iloc[0]
    assert lrml["R@1 ours"] == report.NOT_RUN and lrml["R@1 paper"] == "88.7" and lrml["Δ R@1"] == "–"
    fashion = t1[t1["Dataset"] == "Fashion-MNIST"]
    assert (fashion["R@1 ours"] == report.NOT_RUN).all() and len(fashion) == 7
    assert list(t1["Method"][:7]) == ["Initial", "Deep-LRML", "Deep-SERAPH", "Deep-ISDML", "Deep-APLLR",
                                      "Deep-APIT", "Ours"]
    t4 = report.table4(runs, ["mnist"])
    assert list(t4["Method"]) == ["w/o orth", "w/ orth"]
    assert t4.loc[0, "R@8 ours"] == "83.00 ± 1.00" and t4.loc[0, "R@8 paper"] == "98.6" and t4.loc[0, "Δ R@8"] == "-15.60"
    report.write_table(t4, tmp_path / "t4.csv", tmp_path / "t4.md", "Table 4", report.NOTES)
    md = (tmp_path / "t4.md").read_text()
    assert md.startswith("# Table 4") and "w/ orth" in md and "Initial: the network at its random" in md
    assert report.space_notes([{"retrieval_space": "after_L"}]) == [report.SPACE_NOTES["after_L"]]
    assert len(report.space_notes([{"retrieval_space": "after_L"}, {}])) == 2   # mixed spaces: both named
    assert report.baseline_notes(runs) == ["Baseline rows marked 'not run' are not in this config: paper values only."]
    some = report.baseline_notes(runs + [{"method": "deep_lrml"}])
    assert len(some) == 2 and "Deep-LRML" in some[0] and "validation grid" in some[0]


def test_claims_on_hand_built_metrics(hand_built):
    from dmlrepro.papers.ssdml import claims
    from dmlrepro.reporting.claims import HOLDS, NOT_RUN, evaluate_claims
    table = claims.results_table(hand_built)
    assert set(table["metric"]) == {"NMI", "R@1", "R@2", "R@4", "R@8"} and table["value"].max() <= 100
    out = evaluate_claims(claims.CLAIMS, table, row_label=claims.row_label).set_index(["id", "metric"])
    assert out.loc[("orth_mnist", "NMI"), "verdict"] == HOLDS           # 50 ± 1 vs 30 ± 1
    assert all(out.loc[("orth_recall_mnist", f"R@{k}"), "verdict"] == HOLDS for k in (1, 2, 4, 8))
    assert out.loc[("ours_vs_initial_mnist", "R@1"), "verdict"] == HOLDS
    assert out.loc[("ours_vs_deep_lrml_mnist", "R@*"), "verdict"] == NOT_RUN   # no baseline runs
    assert out.loc[("lrml_nmi_mnist", "NMI"), "verdict"] == NOT_RUN
    assert out.loc[("orth_cifar10", "NMI"), "verdict"] == NOT_RUN
    # a claim that fails on the runs says so: make w/o orth the better one
    swapped = table.assign(method=table["method"].replace({"ours": "ours_no_orth", "ours_no_orth": "ours"}))
    again = evaluate_claims(claims.CLAIMS, swapped).set_index(["id", "metric"])
    assert again.loc[("orth_mnist", "NMI"), "verdict"] == "does not hold"


def _md_rows(block: str) -> list[list[str]]:
    rows = []
    for line in block.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows[1:]  # drop the header


@pytest.mark.skipif(not TARGETS.is_file(), reason="TARGETS.md not available")
def test_paper_values_equal_targets_md():
    """Tables 1 and 4 as transcribed in TARGETS.md 001-§1 equal paper_values, value by value."""
    from dmlrepro.papers.ssdml.paper_values import DATASETS, METHOD_LABELS, METRICS, PAPER_TABLE1, PAPER_TABLE4
    text = TARGETS.read_text(encoding="utf-8")
    sec = text.split("### 001-§1 Tables", 1)[1].split("### 001-§1b", 1)[0]
    t1 = sec.split("**Table 1:", 1)[1].split("**Table 2:", 1)[0]
    key = {v: k for k, v in METHOD_LABELS.items()}
    rows = _md_rows(t1)
    assert len(rows) == 7
    for cells in rows:
        values = [float(c) for c in cells[1:]]
        assert len(values) == 15
        for i, ds in enumerate(DATASETS):
            assert [PAPER_TABLE1[key[cells[0]]][ds][m] for m in METRICS] == values[5 * i:5 * i + 5], (cells[0], ds)
    t4 = sec.split("**Table 4:", 1)[1].split("**Table 5:", 1)[0]
    names = {"MNIST": "mnist", "Fashion-MNIST": "fashion_mnist", "CIFAR-10": "cifar10"}
    rows4 = _md_rows(t4)
    assert len(rows4) == 6
    for ds_label, method, *vals in rows4:
        m = "ours_no_orth" if method == "w/o orth" else "ours"
        assert [PAPER_TABLE4[m][names[ds_label]][k] for k in METRICS] == [float(v) for v in vals]
    # Table 4's w/ orth rows are Table 1's Ours
    assert PAPER_TABLE4["ours"] == PAPER_TABLE1["ours"]
    assert re.search(r"Deep-LRML \| 48\.3", t1)


def test_figure2_reads_histories_and_alpha_runs_and_draws(tmp_path):
    import pandas as pd

    from dmlrepro.papers.ssdml import figure2
    paths = []
    for seed, (l1, v1) in enumerate(((0.6, 0.90), (0.4, 0.92))):
        p = tmp_path / f"h{seed}.csv"
        pd.DataFrame({"epoch": [1, 2], "loss": [l1, l1 / 2], "n_terms": [5, 5], "val_recall@1": [v1, v1 + 0.01],
                      "seconds": [1.0, 1.0]}).to_csv(p, index=False)
        paths.append(p)
    conv = figure2.read_histories(paths)
    assert conv["loss_mean"].tolist() == pytest.approx([0.5, 0.25])
    assert conv["val_recall@1_mean"].tolist() == pytest.approx([0.91, 0.92])
    assert conv["loss_std"].iloc[0] == pytest.approx(np.std([0.6, 0.4], ddof=1)) and conv["loss_count"].iloc[0] == 2
    (tmp_path / "bad.csv").write_text("epoch,loss\n1,0.5\n")
    with pytest.raises(DmlReproError, match="val_recall@1"):
        figure2.read_histories([tmp_path / "bad.csv"])
    alphas = []
    for a, r1 in ((45, 0.91), (30, 0.88)):
        p = tmp_path / f"a{a}.json"
        p.write_text(json.dumps({"alpha_deg": a, "test": {"recall@1": r1, "nmi": 0.4}}))
        alphas.append(p)
    table = figure2.read_alpha_runs(alphas)
    assert table["alpha"].tolist() == [30.0, 45.0] and table["R@1"].tolist() == pytest.approx([88.0, 91.0])
    (tmp_path / "x.json").write_text(json.dumps({"test": {}}))
    with pytest.raises(DmlReproError, match="alpha_deg"):
        figure2.read_alpha_runs([tmp_path / "x.json"])
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 10)
    emb = {k: rng.normal(size=(30, 4)) + labels[:, None] for k, _ in figure2.PANELS}
    out = figure2.plot_figure2(tmp_path / "fig2.png", {"ours": conv, "ours_no_orth": conv}, table, emb, labels,
                               seed=0, dataset_label="MNIST", paper_alpha=40)
    assert out["png"].stat().st_size > 1000 and out["pdf"].is_file()
    with pytest.raises(DmlReproError, match="t-SNE: no embeddings for 'initial'"):
        figure2.plot_figure2(tmp_path / "f.png", {"ours": conv}, table, {"ours": emb["ours"]}, labels, 0, "MNIST")


@pytest.mark.parametrize("kind", ["lrml", "seraph", "apllr"])
def test_baselines_train_through_algorithm1_and_resume(kind, mnist_split, shared_data, tmp_path):
    """A baseline's run: its metric step once per partition (M PSD, moved from the start), SGD on its pair
    objective in neighbourhood batches; killed after epoch 1 it resumes to the same network."""
    from dmlrepro.papers.ssdml import run
    method = {"metric_step": kind, "k": 4, "gamma": 0.99, "metric_dim": 8,
              "params": {"max_unlabelled": 30} if kind == "seraph" else {}}

    def go(out, **kw):
        return run.train("mnist", shared_data, mnist_split / "split.json", f"deep_{kind}", method,
                         {"backbone": "lenet_ssdml"}, TRAIN, 0, out, (1, 2), **kw)

    ref = go(tmp_path / "a")
    assert ref["metric_steps"] == 2 and ref["method"] == f"deep_{kind}"   # one per partition, 2 epochs
    history = (tmp_path / "a" / "history.csv").read_text().splitlines()
    assert len(history) == 3 and all(float(r.split(",")[2]) > 0 for r in history[1:])   # pairs every epoch
    with pytest.raises(Killed):
        go(tmp_path / "b", after_epoch=lambda e: (_ for _ in ()).throw(Killed()))
    again = go(tmp_path / "b")
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=False)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert torch.allclose(a["L"], b["L"]) and a["L"].shape == (128, 8) and again["test"] == pytest.approx(ref["test"])


def test_neighbourhood_batches_hold_anchors_and_their_neighbours():
    from dmlrepro.losses.ssml_baselines import LRMLStep
    from dmlrepro.models.images import build_image_embedder
    from dmlrepro.papers.ssdml.algorithm import BaselineAlgorithm, NeighbourhoodBatches

    class Index:
        array = np.arange(120 * 28 * 28, dtype=np.uint8).reshape(120, 28, 28) % 251
        labels = np.repeat(np.arange(4), 30)

    spec = build_image_embedder("lenet_ssdml", embedding_dim=None).input_spec
    alg = BaselineAlgorithm(Index(), spec, np.arange(120), Index.labels, seed=0, labels_per_class=5,
                            partition_size=30, triplets_per_batch=10, k=4, metric_step=LRMLStep())
    assert alg.anchors_per_batch == 5 and not alg.metric_step_due()
    alg.partition = np.arange(40, 90)
    alg.neighbours = np.random.default_rng(0).integers(0, 50, size=(50, 4))
    plan = alg.plan(1)
    assert sorted(np.concatenate(plan).tolist()) == list(range(50)) and len(plan) == 10   # each point once
    for anchors, batch in zip(plan, NeighbourhoodBatches(alg)(plan)):
        pos = batch.extras["positions"]
        assert set(pos) == set(anchors) | set(alg.neighbours[anchors].ravel()) and len(pos) == len(set(pos))
        assert np.array_equal(batch.index, alg.partition[pos])
    assert alg.partition_labels(np.array([0, 4, 20, 49])).tolist() == [*Index.labels[alg.labelled[[0, 4]]], -1, -1]
    with pytest.raises(DmlReproError, match="baseline's metric step"):
        BaselineAlgorithm(Index(), spec, np.arange(120), Index.labels, seed=0, labels_per_class=5)


def test_softmax_pretraining_on_the_labelled_images_starts_runs_and_the_initial_row(mnist_split, shared_data,
                                                                                     tmp_path):
    """CIFAR-10's start: softmax on the seed's labelled images (L's place), used by the runs and by Initial."""
    import hashlib

    from dmlrepro.data.images import ImageSplit, load_image_dataset
    from dmlrepro.papers.ssdml import run
    from dmlrepro.papers.ssdml.algorithm import draw_labelled
    from dmlrepro.training.loop import seed_everything
    pre = {"epochs": 3, "batch_size": 10, "lr": 0.05}
    train = {**TRAIN, "epochs": 1, "pretrain": pre}
    out = run.train("mnist", shared_data, mnist_split / "split.json", "ours", METHOD, {"backbone": "lenet_ssdml"},
                    train, 0, tmp_path / "r", (1, 2))
    assert len(out["pretrain_loss"]) == 3 and out["pretrain_loss"][-1] < out["pretrain_loss"][0]
    init = run.initial("mnist", shared_data, mnist_split / "split.json", {}, 0, tmp_path / "i.json", (1, 2),
                       method_cfg=METHOD, train_cfg=train)
    # the same pretraining by hand: the seed's labelled rows, the seed's initial weights
    index, split = load_image_dataset("mnist", shared_data), ImageSplit.load(mnist_split / "split.json")
    seed_everything(0)
    model = run._build_model({})
    plain = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values())).hexdigest()
    labelled = draw_labelled(split.fit, index.labels[split.fit], TRAIN["labels_per_class"], 0)
    assert np.array_equal(labelled, out["labelled_rows"])
    run.pretrain_on_labelled(model, index, labelled, pre, 0, tmp_path / "by_hand")
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values())).hexdigest()
    assert init["weights_sha256"] == digest != plain
