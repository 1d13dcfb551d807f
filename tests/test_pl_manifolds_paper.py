"""Paper 003's package (papers/pl_manifolds): the Table 2 metrics on hand-computed cases, Table 3's
ablation switches, the declared methods as the configs list them, the paper's numbers as TARGETS.md
prints them, and, on a tiny real stand-in, labels never reaching the objective, an interrupted run
with a momentum encoder and proxies resuming to the same model, and train -> tables end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import PAPERS_DIR, make_stand_in

from dmlrepro import DmlReproError
from dmlrepro.evaluation.supervision_quality import (cluster_purity, pair_correlation, random_walk_similarity,
                                                     set_purity, supervision_quality)
from dmlrepro.losses.pl_manifold import PLManifoldLoss, binary_point_similarity, binary_proxy_similarity
from dmlrepro.miners.pl_manifold import piecewise_linear_manifold
from dmlrepro.papers.pl_manifolds import paper_values as pv
from dmlrepro.papers.pl_manifolds.methods import METHODS, OURS, figure3_runs, run_method

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- Table 2's metrics
def test_purity_by_hand():
    labels = np.array([0, 0, 1, 1, 1])
    members = np.array([[1, 1, 0, 0, 0],      # {0, 0}: 1
                        [1, 1, 1, 0, 0],      # {0, 0, 1}: 2/3
                        [0, 1, 1, 1, 0],      # {0, 1, 1}: 2/3
                        [0, 0, 1, 1, 1],      # 1
                        [1, 0, 0, 1, 1]], bool)  # {0, 1, 1}: 2/3
    assert set_purity(members, labels) == pytest.approx((1 + 2 / 3 + 2 / 3 + 1 + 2 / 3) / 5)
    # a partition {0, 1, 2}, {3, 4}: (2 + 2) / 5; equal to the same-cluster sets' mean purity
    assignment = np.array([0, 0, 0, 1, 1])
    assert cluster_purity(assignment, labels) == pytest.approx(4 / 5)
    assert set_purity(assignment[:, None] == assignment[None, :], labels) == pytest.approx(4 / 5)
    with pytest.raises(DmlReproError, match="empty"):
        set_purity(np.zeros((5, 5), bool), labels)


def test_correlation_by_hand():
    labels = np.array([0, 0, 1])
    # pairs (0,1) same, (0,2) diff, (1,2) diff; similarities 0.9, 0.2, 0.4
    s = np.array([[1, .9, .2], [.9, 1, .4], [.2, .4, 1]])
    x, y = np.array([.9, .2, .4]), np.array([1.0, 0.0, 0.0])
    r = ((x - x.mean()) * (y - y.mean())).sum() / np.sqrt(((x - x.mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum())
    assert pair_correlation(s, labels) == pytest.approx(r)
    assert pair_correlation(labels[:, None] == labels[None, :], labels) == pytest.approx(1.0)  # the GT itself
    assert np.isnan(pair_correlation(np.ones((3, 3)), labels))                                 # constant: undefined


def test_random_walk_is_a_symmetric_diffusion():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal([5, 0, 0], 0.1, (10, 3)), rng.normal([0, 5, 0], 0.1, (10, 3))])
    r = random_walk_similarity(x, knn=3)
    assert np.allclose(r, r.T) and (r >= -1e-12).all()
    # no edge between the two clusters: no diffusion across
    assert np.abs(r[:10, 10:]).max() < 1e-9 < r[:10, :10].min()


def test_supervision_quality_on_separated_planes():
    """Three classes, each on its own 2-d plane through the origin: every method separates them;
    ours' neighbourhoods stay within one class (purity 1) and its similarity correlates positively."""
    rng = np.random.default_rng(1)
    d, per = 12, 25
    emb, labels = [], []
    for c in range(3):
        basis = np.linalg.qr(rng.normal(size=(d, 2)))[0]
        coef = rng.normal(size=(per, 2)) * 0.2 + np.array([1.0, 0.0])
        emb.append(coef @ basis.T)
        labels += [c] * per
    out = supervision_quality(np.concatenate(emb), np.array(labels), m=2, n_neighbours=6, knn=5)
    assert set(out) == {"kmeans", "hierarchical", "random_walk", "ours"}
    assert out["ours"]["purity"] == pytest.approx(1.0)
    assert out["kmeans"]["purity"] == pytest.approx(1.0) and out["hierarchical"]["purity"] == pytest.approx(1.0)
    assert out["random_walk"]["purity"] is None and out["random_walk"]["correlation"] > 0.2
    assert out["ours"]["correlation"] > 0.2 and 3 <= out["ours"]["mean_set_size"] <= 7


# ----------------------------------------------------------------------------- Table 3's switches
def test_without_subset_selection_every_neighbour_is_a_member():
    gen = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(20, 6, generator=gen), dim=1)
    full = piecewise_linear_manifold(x, m=2, threshold=0.99, n_neighbours=5, select=False)
    sel = piecewise_linear_manifold(x, m=2, threshold=0.99, n_neighbours=5)
    assert (full.members.sum(1) == 6).all()                      # itself and all 5 neighbours
    assert (sel.members.sum(1) < 6).any()                         # T = 99 % rejects some of random points
    # the basis is then the plain PCA of the 6 points: the top-2 right singular vectors
    rows = torch.cat([torch.tensor([0]), full.neighbours[0]])
    vh = torch.linalg.svd(x[rows].double())[2][:2].T
    proj = full.bases[0].double() @ full.bases[0].double().T
    assert torch.allclose(proj, vh @ vh.T, atol=1e-6)


def test_binary_similarity_by_hand():
    members = torch.tensor([[1, 1, 0], [0, 1, 0], [1, 1, 1]], dtype=torch.bool)
    s = binary_point_similarity(members)
    # s(0,1) = (1[0 ∈ X_1] + 1[1 ∈ X_0]) / 2 = (0 + 1) / 2
    assert s[0, 1] == 0.5 and s[0, 2] == 0.5 and s[1, 2] == 0.5 and torch.equal(s, s.T)
    teacher = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    proxies = torch.tensor([[0.9, 0.1]])
    assert binary_proxy_similarity(teacher, proxies, 2).flatten().tolist() == [1.0, 1.0, 0.0]


def test_binary_loss_uses_no_manifold_similarity():
    """With the binary similarity the loss equals Eqs. 6-8 with s from memberships (naive loops)."""
    gen = torch.Generator().manual_seed(2)
    teacher = torch.nn.functional.normalize(torch.randn(10, 5, generator=gen), dim=1)
    student = torch.nn.functional.normalize(torch.randn(10, 5, generator=gen), dim=1)
    loss = PLManifoldLoss(5, n_proxies=3, m=2, n_neighbours=4, similarity="binary", seed=0)
    out = loss(student, teacher)
    pieces = piecewise_linear_manifold(teacher, 2, 0.9, 4)
    point = sum((2 * (1 - (float(pieces.members[j, i]) + float(pieces.members[i, j])) / 2)
                 - (student[i] - student[j]).norm()) ** 2 for i in range(10) for j in range(10) if i != j)
    assert out["point"].item() == pytest.approx(float(point), rel=1e-5)
    with pytest.raises(DmlReproError, match="binary"):
        PLManifoldLoss(5, similarity="bin")


# ----------------------------------------------------------------------------- methods and configs
def test_configs_list_the_papers_methods():
    for name in ("config.yaml", "paper.yaml"):
        block = yaml.safe_load((REPO / "config" / name).read_text())["papers"]["pl_manifolds"]
        for method, spec in block["methods"].items():
            expected = dict(METHODS[method])
            if method == "stml" and name == "config.yaml":
                expected["aux_dim"] = 128      # STML's g head sized to LeNet's 128 features
            assert spec == expected, (name, method)
    paper = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())["papers"]["pl_manifolds"]
    assert set(paper["datasets"]) == {"cub200", "cars196", "sop"} and len(paper["seeds"]) == 5
    assert all(d["dims"] == [128, 512] and d["model"]["backbone"] == "googlenet_caffe" for d in paper["datasets"].values())
    assert paper["datasets"]["cub200"]["table3_dim"] == 512 and paper["datasets"]["cub200"]["figure3_dim"] == 128


def test_figure3_runs_change_one_parameter_of_ours():
    grid = {"n_proxies": [0, 100], "m": [5], "nab": [[4, 0], [4, 0.5]], "delta": [0.5]}
    runs = figure3_runs(grid)
    assert set(runs) == {"fig3-n_proxies-0", "fig3-m-5", "fig3-nab-4-0", "fig3-delta-0.5"}  # Ours' values skipped
    cfg = run_method("fig3-nab-4-0", METHODS, grid)
    assert cfg == {**OURS, "n_alpha": 4.0, "n_beta": 0.0}
    with pytest.raises(DmlReproError, match="unknown run"):
        run_method("fig3-m-9", METHODS, grid)


# ----------------------------------------------------------------------------- paper values
def _targets_003() -> str:
    text = (PAPERS_DIR / "TARGETS.md").read_text()
    return text.split("## PAPER 003", 1)[1].split("## PAPER 004", 1)[0]


def test_paper_values_are_targets_md():
    text = _targets_003()
    t128, t512 = text.split("GoogLeNet (128 dim):", 1)[1].split("GoogLeNet (512 dim):", 1)

    def cells(block, label):
        line = next(l for l in block.splitlines() if l.startswith(f"| {label} "))
        return [c.strip().replace("*", "") for c in line.strip("|").split("|")[1:]]

    columns = [(d, k) for d in pv.PAPER_DATASETS for k in pv.PAPER_RECALL_KS[d]]
    for dim, block in ((128, t128), (512, t512.split("Text checks", 1)[0])):
        for row, label in (("ours", "**Ours**"), ("stml", "STML* [19]")):
            printed = cells(block, label)
            assert [pv.TABLE1[dim][row][d][k] for d, k in columns] == printed, (dim, row)
    t2 = text.split("**Table 2", 1)[1]
    for method, label in (("kmeans", "K-Means [17]"), ("hierarchical", "Hierarchical Clustering [15]"),
                          ("random_walk", "Random Walk [24]"), ("ours", "Ours")):
        printed = [None if c == "–" else c for c in cells(t2, label)]
        ours = [pv.TABLE2[method]["purity"][d] for d in pv.PAPER_DATASETS] + \
               [pv.TABLE2[method]["correlation"][d] for d in pv.PAPER_DATASETS]
        assert ours == printed, method
    t3 = text.split("**Table 3", 1)[1]
    for row, label in (("ours_no_pl", "(1) Ours − PL manifold (Sec 3.2)"), ("ours_no_sim", "(2) Ours − similarity (Sec 3.3, 3.5)"),
                       ("ours_no_pl_no_sim", "(3) Ours − PL manifold − similarity"), ("ours", "(4) Ours")):
        assert [pv.TABLE3[row][1], pv.TABLE3[row][2]] == cells(t3, label), row
    assert pv.paper_value(1, "ours", "cub200", 1, 512) == "61.7 ± 0.3"
    assert pv.paper_value(1, "ours", "fashion_mnist", 1, 64) is None      # never beside a stand-in
    assert pv.paper_value(3, "ours", "cub200", 1, 128) is None            # Table 3 is 512-d
    assert pv.paper_mean("60.6 ± 0.3") == 60.6
