"""Paper 003's runs on a tiny real stand-in (LeNet pretrained 3 batches on MNIST, a few hundred
zero-shot Fashion-MNIST images): labels never reach the objective, an interrupted run with a
momentum encoder and proxies resumes to the same model, and train -> Table 2 -> tables end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_stand_in

from dmlrepro.papers.pl_manifolds import run as plm_run
from dmlrepro.papers.pl_manifolds.methods import METHODS, run_method

TRAIN = {"epochs": 2, "batch_size": 20, "n_per_seed": 5, "views": 2, "crop_scale": [0.5, 1.0], "lr": 5e-4}
MODEL = {"backbone": "lenet_ssdml", "embedding_dim": 16}
SMALL = {"n_proxies": 8}


def _method(name: str, **extra) -> dict:
    cfg = {**METHODS[name], **extra}
    if cfg["objective"] == "pl_manifold":
        cfg.update(SMALL)
    else:
        cfg["aux_dim"] = 32
    return cfg


@pytest.fixture(scope="module")
def stand_in(shared_data, tmp_path_factory):
    return make_stand_in(tmp_path_factory.mktemp("plm_stand_in"), shared_data, val_fraction=0.05, every=(300, 15, 50))


def _train(stand_in, shared_data, out, name="ours", seed=0, train=TRAIN, **kw):
    return plm_run.train("fashion_mnist", shared_data, stand_in / "split.json", name, _method(name), MODEL, dict(train),
                         stand_in / "pretrained.pt", seed, out, [1, 2], **kw)


def _state(path: Path) -> dict:
    return torch.load(path, weights_only=False)


@pytest.mark.parametrize("name", ["ours", "stml"])
def test_labels_never_reach_the_objective(stand_in, shared_data, tmp_path, monkeypatch, name):
    """Every batch the objective sees has no labels; shuffling the training images' labels changes
    nothing in the trained model (validation labels, read for selection only, are kept)."""
    seen = []
    cls = plm_run.PLManifoldObjective if name == "ours" else plm_run.STMLObjective
    original = cls.forward

    def spy(self, model, batch):
        seen.append(batch.labels)
        assert set(batch.extras) == {"image_ids"}
        return original(self, model, batch)

    monkeypatch.setattr(cls, "forward", spy)
    train = {**TRAIN, "epochs": 1}
    _train(stand_in, shared_data, tmp_path / "a", name, train=train)
    assert seen and all(labels is None for labels in seen)

    from dmlrepro.papers.image_foundation import run as frun
    load = frun.load_run_inputs

    def shuffled(dataset, raw_root, split_path):
        index, split = load(dataset, raw_root, split_path)
        index.labels = index.labels.copy()
        index.labels[split.fit] = np.random.default_rng(7).permutation(index.labels[split.fit])
        return index, split

    monkeypatch.setattr(frun, "load_run_inputs", shuffled)
    _train(stand_in, shared_data, tmp_path / "b", name, train=train)
    a, b = _state(tmp_path / "a" / "model.pt"), _state(tmp_path / "b" / "model.pt")
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for key in a["objective"]:
        assert torch.equal(a["objective"][key], b["objective"][key]), key


def test_resume_with_momentum_encoder_and_proxies_gives_the_same_model(stand_in, shared_data, tmp_path):
    class Stop(Exception):
        pass

    def stop_after_first(epoch):
        if epoch == 1:
            raise Stop

    whole = _train(stand_in, shared_data, tmp_path / "whole")
    with pytest.raises(Stop):
        _train(stand_in, shared_data, tmp_path / "resumed", after_epoch=stop_after_first)
    assert (tmp_path / "resumed" / "checkpoint" / "last.pt").exists() and not (tmp_path / "resumed" / "model.pt").exists()
    resumed = _train(stand_in, shared_data, tmp_path / "resumed")
    a, b = _state(tmp_path / "whole" / "model.pt"), _state(tmp_path / "resumed" / "model.pt")
    for part in ("state_dict", "objective"):     # network, proxies and their frames
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    ca = torch.load(tmp_path / "whole" / "checkpoint" / "last.pt", weights_only=False)
    cb = torch.load(tmp_path / "resumed" / "checkpoint" / "last.pt", weights_only=False)
    teacher_a, teacher_b = ca["hooks"][0]["teacher"], cb["hooks"][0]["teacher"]
    assert all(torch.equal(teacher_a[k], teacher_b[k]) for k in teacher_a)
    assert np.array_equal(ca["hooks"][1]["table"], cb["hooks"][1]["table"])   # the neighbour table
    assert whole["test"] == resumed["test"]
    # the proxies moved, stayed orthonormal frames on the sphere, and the teacher lags the student
    proxies, frames = a["objective"]["loss.proxies"], a["objective"]["loss.proxy_bases"]
    assert torch.allclose(proxies.norm(dim=1), torch.ones(len(proxies)), atol=1e-5)
    eye = torch.eye(frames.shape[2]).expand(len(frames), -1, -1)
    assert torch.allclose(frames.transpose(1, 2) @ frames, eye, atol=1e-5)
    assert any(not torch.equal(teacher_a[k], ca["model"][k]) for k in teacher_a)


def test_tiny_end_to_end_runs_and_tables(stand_in, shared_data, tmp_path):
    from dmlrepro.papers.image_foundation.run import initial
    from dmlrepro.papers.pl_manifolds.report import write_all
    grid = {"m": [2]}
    train = {**TRAIN, "epochs": 1}
    metrics = []
    plan = [("ours", s) for s in (0, 1)] + [("stml", s) for s in (0, 1)] + \
           [(r, 0) for r in ("ours_no_sim", "fig3-m-2")]
    for name, seed in plan:
        cfg = run_method(name, METHODS, grid)
        cfg.update(SMALL if cfg["objective"] == "pl_manifold" else {"aux_dim": 32})
        out = tmp_path / f"seed{seed}" / name
        summary = plm_run.train("fashion_mnist", shared_data, stand_in / "split.json", name, cfg, MODEL, train,
                                stand_in / "pretrained.pt", seed, out, [1, 2])
        assert summary["embedding_dim"] == 16 and 0 <= summary["test"]["recall@1"] <= 1
        assert (out / "history.csv").exists()
        metrics.append(out / "metrics.json")
    init = tmp_path / "initial.json"
    initial("fashion_mnist", shared_data, stand_in / "split.json", MODEL, stand_in / "pretrained.pt", 0, init, [1, 2])
    sup = tmp_path / "table2.json"
    res = plm_run.supervision("fashion_mnist", shared_data, stand_in / "split.json", MODEL, {"subsample": 80},
                              stand_in / "pretrained.pt", 0, sup)
    assert res["images"] == 80 and res["rows"]["random_walk"]["purity"] is None
    assert 0 < res["rows"]["ours"]["purity"] <= 1 and -1 <= res["rows"]["kmeans"]["correlation"] <= 1
    out = {k: str(tmp_path / "out" / f"{k}.{'png' if k == 'figure3' else ('csv' if k.endswith('csv') else 'md')}")
           for k in ("table1", "table1_csv", "table2", "table2_csv", "table3", "table3_csv", "figure3", "figure3_csv",
                     "claims", "claims_csv")}
    write_all(metrics, [init], [sup], recall_ks={"fashion_mnist": [1, 2]}, data_notes={"fashion_mnist": "tiny"},
              grid=grid, out=out, notes=["a note"])
    t1 = Path(out["table1"]).read_text()
    assert "stand-in, a check of method" in t1 and "R@1, paper" not in t1     # no paper column beside a stand-in
    for label in ("Initial (pretrained, before training)", "STML* (re-run)", "| Ours "):
        assert label in t1
    t3 = Path(out["table3"]).read_text()
    assert "(1) Ours − PL manifold" in t3 and "(3) Ours − PL manifold − similarity" in t3 and "(4) Ours" in t3
    t2 = Path(out["table2"]).read_text()
    assert "K-Means [17]" in t2 and "Purity Fashion-MNIST (stand-in)" in t2
    assert Path(out["figure3"]).stat().st_size > 1000
    claims = Path(out["claims"]).read_text()
    assert "T1-ours>stml" in claims and "T3-ours>ours_no_sim" in claims and "T2-ours>kmeans-purity" in claims
    points = Path(out["figure3_csv"]).read_text()
    assert "fig3-m-2" in points and ",ours," in points
