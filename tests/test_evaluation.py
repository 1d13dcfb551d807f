"""Metrics against hand-computed tiny cases and naive loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from dmlrepro import DmlReproError
from dmlrepro.evaluation import (
    dml_retrieval_metrics,
    embedding_distances,
    evaluate_distances,
    evaluate_embeddings,
    ir_recall_at_k,
    weighted_knn_accuracy,
)

# ----------------------------------------------------------------------------- kNN accuracy


def test_weighted_knn_hand_case():
    gallery = np.array([0, 0, 1, 1, 1])
    d = np.array(
        [
            # k=3 neighbours: idx2 (0.5, class 1, w=2), idx0 (1, class 0, w=1), idx1 (2, class 0, w=.5)
            # class 0: 1.5 < class 1: 2  -> predicts 1 (a uniform vote would say 0)
            [1.0, 2.0, 0.5, 4.0, 4.0],
            # zero distance to idx0 and idx1 (both class 0): only they vote -> 0
            [0.0, 0.0, 0.01, 0.01, 0.01],
            # neighbours idx2, idx3, idx4 all class 1 -> predicts 1
            [3.0, 3.0, 1.0, 1.0, 1.0],
        ]
    )
    query = np.array([1, 0, 0])  # third query is wrong -> 2/3
    assert weighted_knn_accuracy(d, gallery, query, k=3) == pytest.approx(200.0 / 3.0)


def test_weighted_knn_zero_distance_takes_only_those_votes():
    gallery = np.array([0, 1, 1, 1, 1])
    d = np.array([[0.0, 1e-9, 1e-9, 1e-9, 1e-9]])  # 1/d of the class-1 items is huge but finite
    assert weighted_knn_accuracy(d, gallery, np.array([0]), k=5) == 100.0


def _naive_weighted_knn(d, gallery, query, k):
    correct = 0
    for i in range(d.shape[0]):
        nn = sorted(range(d.shape[1]), key=lambda j: d[i, j])[:k]
        votes = {}
        zero = [j for j in nn if d[i, j] == 0]
        for j in zero or nn:
            votes[gallery[j]] = votes.get(gallery[j], 0.0) + (1.0 if zero else 1.0 / d[i, j])
        pred = max(sorted(votes), key=lambda c: votes[c])
        correct += pred == query[i]
    return 100.0 * correct / d.shape[0]


def test_weighted_knn_matches_naive_loop():
    rng = np.random.default_rng(0)
    gal = rng.normal(size=(60, 4))
    qry = rng.normal(size=(25, 4))
    gl = rng.integers(0, 3, 60)
    ql = rng.integers(0, 3, 25)
    d = cdist(qry, gal)
    for k in (1, 5, 10):
        assert weighted_knn_accuracy(d, gl, ql, k=k) == pytest.approx(_naive_weighted_knn(d, gl, ql, k))


def test_weighted_knn_validation_names_the_mismatch():
    d = np.ones((3, 4))
    with pytest.raises(DmlReproError, match="gallery_labels has 5 labels"):
        weighted_knn_accuracy(d, np.zeros(5), np.zeros(3))
    with pytest.raises(DmlReproError, match="query_labels has 2 labels"):
        weighted_knn_accuracy(d, np.zeros(4), np.zeros(2), k=2)
    with pytest.raises(DmlReproError, match="k=10 exceeds the gallery size 4"):
        weighted_knn_accuracy(d, np.zeros(4), np.zeros(3), k=10)
    bad = d.copy()
    bad[1, 2] = -1.0
    with pytest.raises(DmlReproError, match=r"negative distance .* \(1, 2\)"):
        weighted_knn_accuracy(bad, np.zeros(4), np.zeros(3), k=2)
    bad[1, 2] = np.nan
    with pytest.raises(DmlReproError, match="non-finite"):
        weighted_knn_accuracy(bad, np.zeros(4), np.zeros(3), k=2)


def test_embedding_distances():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(7, 5)).astype(np.float32)
    b = rng.normal(size=(4, 5))
    d = embedding_distances(a, b)
    assert d.dtype == np.float64 and d.shape == (7, 4)
    np.testing.assert_allclose(d, cdist(a.astype(np.float64), b), rtol=1e-12, atol=1e-12)
    self_d = embedding_distances(torch.tensor(a), torch.tensor(a))
    assert np.all(np.diag(self_d) == 0.0)
    with pytest.raises(DmlReproError, match=r"\(7, 5\).*\(4, 3\)"):
        embedding_distances(a, b[:, :3])


# ----------------------------------------------------------------------------- Recall@K (IR recall)

# Six documents on a line; doc 5 is the only one of class 2 (no peer -> not a query).
X = np.array([0.0, 1.0, 5.0, 2.0, 6.0, 10.0])
Y = np.array([0, 0, 0, 1, 1, 2])
D_LINE = np.abs(X[:, None] - X[None, :])


def test_ir_recall_hand_case():
    # Rankings (others by distance, ties by index):
    #   q0 (class 0, 2 peers): 1 3 2 4 5          -> R@1 1/2, R@2 1/2, R@3 1
    #   q1 (class 0, 2 peers): 0 3 (tie d=1) 2 4  -> R@1 1/2, R@2 1/2, R@3 1
    #   q2 (class 0, 2 peers): 4 3 1 0            -> R@1 0,   R@2 0,   R@3 1/2
    #   q3 (class 1, 1 peer):  1 0 2 4            -> R@1 0,   R@2 0,   R@3 0
    #   q4 (class 1, 1 peer):  2 3 5 (tie d=4) 1  -> R@1 0,   R@2 1,   R@3 1
    #   q5: no peer, skipped
    r = ir_recall_at_k(D_LINE, Y, [1, 2, 3, 10])
    assert r[1] == pytest.approx(100 * (0.5 + 0.5 + 0 + 0 + 0) / 5)  # 20
    assert r[2] == pytest.approx(100 * (0.5 + 0.5 + 0 + 0 + 1) / 5)  # 40
    assert r[3] == pytest.approx(100 * (1 + 1 + 0.5 + 0 + 1) / 5)  # 70
    assert r[10] == pytest.approx(100.0)  # K larger than n-1: everything retrieved
    assert list(r) == [1, 2, 3, 10]


def test_ir_recall_tie_broken_by_index():
    # q1 is tied between doc 0 (same class) and doc 3; the lower index wins. Reindexing the
    # documents so that the other-class doc comes first flips q1's R@1 from 1/2 to 0.
    perm = np.array([3, 1, 2, 0, 4, 5])  # swap docs 0 and 3
    r = ir_recall_at_k(D_LINE[np.ix_(perm, perm)], Y[perm], [1])
    # q0 (old doc 3, class 1): nearest is old doc 1 (class 0) -> 0; q1: old doc 3 ranked first -> 0;
    # q3 (old doc 0): nearest old doc 1 -> 1/2; others unchanged (q2 0, q4 0)
    assert r[1] == pytest.approx(100 * 0.5 / 5)


def _naive_ir_recall(d, y, k):
    vals = []
    n = len(y)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        peers = sum(1 for j in others if y[j] == y[i])
        if peers == 0:
            continue
        ranked = sorted(others, key=lambda j: (d[i, j], j))[:k]
        vals.append(sum(1 for j in ranked if y[j] == y[i]) / peers)
    return 100.0 * sum(vals) / len(vals)


def test_ir_recall_matches_naive_loop_with_ties():
    rng = np.random.default_rng(2)
    n = 40
    d = rng.integers(0, 6, size=(n, n)).astype(float)  # many ties; asymmetric on purpose
    np.fill_diagonal(d, 0.0)
    y = rng.integers(0, 4, n)
    got = ir_recall_at_k(d, y, [1, 3, 7, 20, 39, 50])
    for k, v in got.items():
        assert v == pytest.approx(_naive_ir_recall(d, y, k)), k


def test_ir_recall_errors():
    with pytest.raises(DmlReproError, match="square"):
        ir_recall_at_k(np.zeros((3, 4)), [0, 0, 1], [1])
    with pytest.raises(DmlReproError, match="labels has 2 labels"):
        ir_recall_at_k(np.zeros((3, 3)), [0, 0], [1])
    with pytest.raises(DmlReproError, match="same-class peer"):
        ir_recall_at_k(np.ones((3, 3)), [0, 1, 2], [1])
    with pytest.raises(DmlReproError, match="positive integers"):
        ir_recall_at_k(D_LINE, Y, [0])


# ----------------------------------------------------------------------------- P@1, MAP@R


def test_dml_metrics_hand_case():
    # Non-lone queries q0..q4 (doc 5's class has no other member). Nearest neighbours:
    # q0->1 (ok), q1->0 (ok, tie with 3 by index), q2->4, q3->1, q4->2  -> P@1 = 2/5.
    # MAP@R with R = peers: q0 [1 ok, 3] -> 1/2; q1 [0 ok, 3] -> 1/2; q2 [4, 3] -> 0;
    # q3 [1] -> 0; q4 [2] -> 0  -> MAP@R = 1/5.
    m = dml_retrieval_metrics(D_LINE, Y)
    assert m["precision_at_1"] == pytest.approx(40.0)
    assert m["mean_average_precision_at_r"] == pytest.approx(20.0)


def _naive_map_at_r(d, y):
    aps, p1 = [], []
    n = len(y)
    for i in range(n):
        others = sorted((j for j in range(n) if j != i), key=lambda j: (d[i, j], j))
        r = sum(1 for j in others if y[j] == y[i])
        if r == 0:
            continue
        hits, s = 0, 0.0
        for rank, j in enumerate(others[:r], start=1):
            if y[j] == y[i]:
                hits += 1
                s += hits / rank
        aps.append(s / r)
        p1.append(float(y[others[0]] == y[i]))
    return 100 * np.mean(p1), 100 * np.mean(aps)


def test_dml_metrics_match_naive_loop():
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(50, 3))
    y = rng.integers(0, 4, 50)
    d = embedding_distances(emb, emb)
    m = dml_retrieval_metrics(d, y)
    p1, mapr = _naive_map_at_r(d, y)
    assert m["precision_at_1"] == pytest.approx(p1)
    assert m["mean_average_precision_at_r"] == pytest.approx(mapr)


def test_dml_metrics_equal_accuracy_calculator_on_embeddings():
    from pytorch_metric_learning.distances import LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    rng = np.random.default_rng(4)
    emb = rng.normal(size=(120, 6)).astype(np.float32)
    y = rng.choice(np.array([3, 7, 11, 20]), size=120)  # non-contiguous labels
    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False, p=2, power=1)),
    )
    direct = calc.get_accuracy(torch.from_numpy(emb), torch.from_numpy(y))  # reference = query
    ours = dml_retrieval_metrics(embedding_distances(emb, emb), y)
    assert ours["precision_at_1"] == pytest.approx(100 * direct["precision_at_1"], abs=1e-9)
    assert ours["mean_average_precision_at_r"] == pytest.approx(100 * direct["mean_average_precision_at_r"], abs=1e-9)


# ----------------------------------------------------------------------------- evaluate_*


def test_evaluate_distances_and_embeddings():
    rng = np.random.default_rng(5)
    tr, te = rng.normal(size=(40, 5)), rng.normal(size=(30, 5))
    ytr, yte = rng.integers(0, 3, 40), rng.integers(0, 3, 30)
    res = evaluate_embeddings(tr, ytr, te, yte, recall_ks=[5, 10], knn_k=10)
    assert set(res) == {"knn_accuracy", "recall_at", "precision_at_1", "map_at_r"}
    assert list(res["recall_at"]) == ["5", "10"]
    d_tt, d_ss = cdist(te, tr), cdist(te, te)
    assert res["knn_accuracy"] == pytest.approx(weighted_knn_accuracy(d_tt, ytr, yte, k=10))
    assert res["recall_at"]["10"] == pytest.approx(_naive_ir_recall(d_ss, yte, 10))
    p1, mapr = _naive_map_at_r(d_ss, yte)
    assert res["precision_at_1"] == pytest.approx(p1)
    assert res["map_at_r"] == pytest.approx(mapr)
    res2 = evaluate_distances(d_tt, d_ss, ytr, yte, [5, 10])
    for key in ("knn_accuracy", "precision_at_1", "map_at_r"):
        assert res2[key] == pytest.approx(res[key])
    with pytest.raises(DmlReproError, match=r"d_test_train has shape \(30, 40\), expected 39"):
        evaluate_distances(d_tt, d_ss, ytr[:39], yte, [5])
    with pytest.raises(DmlReproError, match="train_emb has 40 rows but train_labels has 39"):
        evaluate_embeddings(tr, ytr[:39], te, yte, [5])
