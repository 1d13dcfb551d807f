"""Image DML metrics (``dmlrepro.evaluation.image_retrieval``) against hand-computed cases, a dense
float64 brute force written from the definitions, and pytorch-metric-learning's AccuracyCalculator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import CustomKNN, FaissKMeans
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import pair_confusion_matrix

from dmlrepro import DmlReproError
from dmlrepro.evaluation.image_retrieval import (
    _problem,
    _ranking_metrics,
    evaluate_image_embeddings,
    knn_search,
    map_at_k,
    map_at_r,
    nmi_and_f1,
    normalized_mutual_info,
    pairwise_f1,
    recall_at_k,
)

# ----------------------------------------------------------------------------- hand-computed cases

# Six points on a line, all pairwise distances distinct. Neighbour orders (nearest first, self excluded):
#   q0: 1 2 3 4 5   q1: 0 2 3 4 5   q2: 1 0 3 4 5   q3: 2 1 0 4 5   q4: 3 2 1 0 5   q5: 4 3 2 1 0
# With labels 0 0 1 1 0 1 the relevance rows are
#   q0: 1 0 0 1 0   q1: 1 0 0 1 0   q2: 0 0 1 0 1   q3: 1 0 0 0 1   q4: 0 0 1 1 0   q5: 0 1 1 0 0
# and every query has n_rel = 2 same-class references.
LINE_X = np.array([0.0, 1.0, 3.0, 7.0, 15.0, 31.0])[:, None]
LINE_Y = np.array([0, 0, 1, 1, 0, 1])


def test_line_neighbours():
    dist, idx = knn_search(LINE_X, None, 5, exclude_self=True)
    expected = [[1, 2, 3, 4, 5], [0, 2, 3, 4, 5], [1, 0, 3, 4, 5], [2, 1, 0, 4, 5], [3, 2, 1, 0, 5], [4, 3, 2, 1, 0]]
    np.testing.assert_array_equal(idx, expected)
    np.testing.assert_allclose(dist[0], [1.0, 9.0, 49.0, 225.0, 961.0])  # squared L2


def test_line_recall():
    # R@1: q0 q1 q3 hit; R@2 adds q5; R@3: q2 and q4 hit at rank 3.
    assert recall_at_k(LINE_X, LINE_Y, ks=(1, 2, 3, 5)) == pytest.approx({1: 3 / 6, 2: 4 / 6, 3: 1.0, 5: 1.0})


def test_line_map_at_r():
    # R = 2: AP@2 = (1/2) sum_{i<=2} P_i rel_i -> q0 .5, q1 .5, q2 0, q3 .5, q4 0, q5 (1/2)(1/2).
    assert map_at_r(LINE_X, LINE_Y) == pytest.approx((0.5 + 0.5 + 0 + 0.5 + 0 + 0.25) / 6)


def test_line_map_at_k_roth_normaliser():
    # Roth: divide by the class size including the query, N = 3.
    # k=5 sums of P_i rel_i: 1+1/2, 1+1/2, 1/3+2/5, 1+2/5, 1/3+2/4, 1/2+2/3  (= 107/15 in total)
    assert map_at_k(LINE_X, LINE_Y, k=5) == pytest.approx(107 / 15 / 3 / 6)
    # k=2: 1, 1, 0, 1, 0, 1/2
    assert map_at_k(LINE_X, LINE_Y, k=2) == pytest.approx(3.5 / 3 / 6)


def test_lone_queries_are_skipped():
    # A 7th point with a class of its own: it has no relevant reference, so it is skipped (PML's rule),
    # and as a reference it is never relevant; it lies far away, so the other rankings keep their top 5.
    x, y = np.vstack([LINE_X, [[100.0]]]), np.r_[LINE_Y, 7]
    assert recall_at_k(x, y, ks=(1, 2)) == pytest.approx({1: 3 / 6, 2: 4 / 6})
    assert map_at_r(x, y) == pytest.approx(map_at_r(LINE_X, LINE_Y))
    assert map_at_k(x, y, k=5) == pytest.approx(map_at_k(LINE_X, LINE_Y, k=5))


def test_query_gallery_hand_case():
    # q0 (x=0, label 0): gallery order g0 g1 g2 g3 -> labels 1 0 1 0 -> rel 0 1 0 1
    # q1 (x=10, label 1): gallery order g2 g3 g1 g0 -> labels 1 0 0 1 -> rel 1 0 0 1
    q, yq = np.array([[0.0], [10.0]]), np.array([0, 1])
    g, yg = np.array([[1.0], [2.0], [9.0], [12.0]]), np.array([1, 0, 1, 0])
    assert recall_at_k(q, yq, g, yg, ks=(1, 2)) == pytest.approx({1: 0.5, 2: 1.0})
    assert map_at_r(q, yq, g, yg) == pytest.approx((0.5 * 0.5 + 0.5 * 1.0) / 2)
    # Query not in the pool: N = n_rel = 2.  q0: (1/2 + 2/4)/2, q1: (1 + 2/4)/2
    assert map_at_k(q, yq, g, yg, k=4) == pytest.approx((0.5 + 0.75) / 2)


def test_pairwise_f1_hand_case():
    # classes {0,1,4} {2,3,5}; clusters {0,1,2} {3,4,5}: 6 same-class pairs, 6 same-cluster pairs,
    # TP = (0,1) and (3,5) -> F1 = 2*2 / (6+6)
    assert pairwise_f1(LINE_Y, np.array([0, 0, 0, 1, 1, 1])) == pytest.approx(1 / 3)
    assert pairwise_f1(LINE_Y, np.array([5, 5, 7, 7, 5, 7])) == pytest.approx(1.0)  # same partition, other names
    assert pairwise_f1(np.arange(4), np.arange(4)) == 1.0  # no pairs at all


def test_nmi_and_f1_on_separated_groups():
    x = np.array([0.0, 0.1, 0.2, 10.0, 10.1, 10.2])[:, None]
    nmi, f1 = nmi_and_f1(x, np.array([0, 0, 0, 1, 1, 1]))
    assert (nmi, f1) == (pytest.approx(1.0), pytest.approx(1.0))
    nmi, f1 = nmi_and_f1(x, LINE_Y)  # k-means finds {0,1,2} {3,4,5} whatever the labels
    assert f1 == pytest.approx(1 / 3)
    assert nmi == pytest.approx(normalized_mutual_info_score(LINE_Y, [0, 0, 0, 1, 1, 1]))


@pytest.mark.parametrize("n_classes,n_clusters,n", [(1, 1, 5), (1, 3, 9), (3, 1, 9), (4, 6, 50), (10, 10, 300), (7, 50, 60)])
def test_nmi_and_pair_f1_equal_scikit_learn(n_classes, n_clusters, n):
    # ours avoids importing scikit-learn in every job; it must be the same function, limit cases included
    rng = np.random.default_rng(n_classes * 100 + n_clusters)
    for _ in range(5):
        y = rng.integers(0, n_classes, n) * 3 + 1  # arbitrary label values
        c = rng.integers(0, n_clusters, n)
        assert normalized_mutual_info(y, c) == pytest.approx(
            normalized_mutual_info_score(y, c, average_method="arithmetic"), abs=1e-12)
        pairs = pair_confusion_matrix(y, c)
        denom = 2 * pairs[1, 1] + pairs[0, 1] + pairs[1, 0]
        assert pairwise_f1(y, c) == pytest.approx(1.0 if denom == 0 else 2.0 * pairs[1, 1] / denom, abs=1e-12)
    assert normalized_mutual_info(np.arange(6), np.arange(6)) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- dense brute force


def _near_tie_free(q, g, leave_one_out, depth) -> bool:
    """Are the top ``depth + 1`` float64 distances of every query far apart compared to faiss's float32?"""
    if depth < 1:
        return True
    d = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    if leave_one_out:
        np.fill_diagonal(d, np.inf)
    ds = np.sort(d, axis=1)[:, : depth + 1]
    # float32 |x|^2 + |y|^2 - 2x.y is good to a few eps32 * (|x|^2 + |y|^2) ~ 5e-7 * scale
    scale = max((q**2).sum(1).max(), (g**2).sum(1).max())
    return bool(np.diff(ds, axis=1).min() > 1e-5 * scale)


def _separated_data(n_query, n_gallery, dim, n_classes, seed, depth=25):
    """Random blobs (query and gallery) with no near-ties among the top ``depth`` neighbours, in both the
    leave-one-out and the query -> gallery setting; deterministic (first passing seed of a fixed sequence)."""
    for attempt in range(200):
        rng = np.random.default_rng([seed, attempt])
        centres = rng.normal(scale=1.0, size=(n_classes, dim))
        yq = rng.integers(0, n_classes, n_query)
        yg = rng.integers(0, n_classes, n_gallery)
        q = centres[yq] + rng.normal(size=(n_query, dim))
        g = centres[yg] + rng.normal(size=(n_gallery, dim))
        loo_depth = min(depth, n_query - 2)
        if _near_tie_free(q, q, True, loo_depth) and _near_tie_free(q, g, False, min(depth, n_gallery - 1)):
            return q, yq, g, yg
    raise AssertionError("no near-tie-free data found")


def _dense_order(q, g, leave_one_out):
    """Dense float64 ranking of the references of every query, nearest first (self removed leave-one-out)."""
    d = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    if leave_one_out:
        np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1, kind="stable")
    if leave_one_out:
        order = order[:, :-1]
    return order, np.take_along_axis(d, order, axis=1)


def _brute_force(q, yq, g, yg, ks, map_k):
    """Every ranking metric by loops over queries, straight from the definitions."""
    leave_one_out = g is None
    if leave_one_out:
        g, yg = q, yq
    order, _ = _dense_order(q, g, leave_one_out)
    recall = {k: [] for k in ks}
    ap_r, ap_k = [], []
    for i in range(len(q)):
        rel = yg[order[i]] == yq[i]
        n_rel = int(rel.sum())
        if n_rel == 0:
            continue
        for k in ks:
            recall[k].append(float(rel[:k].any()))
        prec = [rel[: j + 1].sum() / (j + 1) for j in range(len(rel))]
        ap_r.append(sum(prec[j] for j in range(n_rel) if rel[j]) / n_rel)
        class_size_in_pool = n_rel + (1 if leave_one_out else 0)
        ap_k.append(sum(prec[j] for j in range(map_k) if rel[j]) / class_size_in_pool)
    return {k: np.mean(v) for k, v in recall.items()}, np.mean(ap_r), np.mean(ap_k)


@pytest.mark.parametrize("query_gallery", [False, True])
def test_against_dense_brute_force(query_gallery):
    q, yq, g, yg = _separated_data(60, 90, 5, 7, seed=3)
    if not query_gallery:
        g, yg = None, None
    ks, map_k = (1, 2, 4, 8, 16), 20
    recall_ref, map_r_ref, map_k_ref = _brute_force(q, yq, g, yg, ks, map_k)
    assert recall_at_k(q, yq, g, yg, ks=ks) == pytest.approx(recall_ref, abs=1e-12)
    assert map_at_r(q, yq, g, yg) == pytest.approx(map_r_ref, abs=1e-12)
    assert map_at_k(q, yq, g, yg, k=map_k) == pytest.approx(map_k_ref, abs=1e-12)
    # and the metrics are not trivially 0 or 1 on this data
    assert 0.2 < recall_ref[1] < 0.95 and 0.1 < map_r_ref < 0.9


@pytest.mark.parametrize("query_gallery", [False, True])
def test_knn_search_matches_dense(query_gallery):
    q, _, g, _ = _separated_data(50, 70, 4, 5, seed=11)
    k = 9
    order, ds = _dense_order(q, q if not query_gallery else g, leave_one_out=not query_gallery)
    dist, idx = knn_search(q, g if query_gallery else None, k, exclude_self=not query_gallery)
    assert dist.shape == idx.shape == (50, k)
    np.testing.assert_array_equal(idx, order[:, :k])
    np.testing.assert_allclose(dist, ds[:, :k], rtol=1e-4, atol=1e-4)


def test_knn_search_without_self_exclusion_finds_self_first():
    q, _, _, _ = _separated_data(30, 1, 4, 3, seed=5)
    _, idx = knn_search(q, None, 3, exclude_self=False)
    np.testing.assert_array_equal(idx[:, 0], np.arange(30))


def test_knn_search_exclude_self_with_explicit_gallery():
    q, _, g, _ = _separated_data(20, 30, 4, 3, seed=7)
    pool = np.concatenate([q, g])  # queries are the first pool rows (PML's ref_includes_query)
    _, idx = knn_search(q, pool, 6, exclude_self=True)
    _, loo = knn_search(pool, None, 6, exclude_self=True)
    np.testing.assert_array_equal(idx, loo[:20])


def test_self_exclusion_is_robust_to_duplicates():
    rng = np.random.default_rng(0)
    x = np.concatenate([np.repeat(rng.normal(size=(1, 3)), 6, axis=0), 10 + rng.normal(size=(10, 3))])
    dist, idx = knn_search(x, None, 3, exclude_self=True)  # 6 copies: self may sort anywhere among them
    for i in range(len(x)):
        assert i not in idx[i]
        assert len(set(idx[i])) == 3
    assert np.all(idx[:6] < 6)  # the duplicates find each other
    np.testing.assert_allclose(dist[:6], 0.0, atol=1e-5)
    # and the metrics see 5 perfect neighbours for each copy
    y = np.r_[np.zeros(6, int), np.ones(10, int)]
    assert recall_at_k(x, y, ks=(1,))[1] == 1.0


def test_chunking_gives_identical_results():
    q, yq, g, yg = _separated_data(97, 130, 6, 6, seed=2)
    for gallery, glabels in [(None, None), (g, yg)]:
        full = knn_search(q, gallery, 12, exclude_self=gallery is None)
        chunked = knn_search(q, gallery, 12, exclude_self=gallery is None, chunk_size=10)
        np.testing.assert_array_equal(full[1], chunked[1])
        np.testing.assert_allclose(full[0], chunked[0], rtol=1e-5, atol=1e-5)
        problem = _problem(q, yq, gallery, glabels)
        args = dict(recall_ks=(1, 4, 8), with_map_at_r=True, map_ks=(10,))
        assert _ranking_metrics(problem, chunk_size=7, **args) == _ranking_metrics(problem, chunk_size=4096, **args)


# ----------------------------------------------------------------------------- pytorch-metric-learning


def _pml(q, yq, g=None, yg=None, seed=0):
    calc = AccuracyCalculator(
        include=("mean_average_precision_at_r", "precision_at_1", "NMI"),
        k="max_bin_count",
        device=torch.device("cpu"),
        knn_func=CustomKNN(LpDistance(normalize_embeddings=False)),  # dense brute force
        kmeans_func=FaissKMeans(niter=20, seed=seed),
    )
    t = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))  # noqa: E731
    if g is None:
        return calc.get_accuracy(t(q), torch.as_tensor(yq))
    return calc.get_accuracy(t(q), torch.as_tensor(yq), t(g), torch.as_tensor(yg), ref_includes_query=False)


def test_against_pml_leave_one_out():
    q, yq, _, _ = _separated_data(80, 1, 8, 6, seed=4, depth=30)
    yq[0] = 99  # a lone query: both PML and we skip it
    pml = _pml(q, yq, seed=17)
    ours = evaluate_image_embeddings(q, yq, recall_ks=(1,), metrics=("recall", "nmi", "map_at_r"), seed=17)
    assert ours["recall@1"] == pytest.approx(pml["precision_at_1"], abs=1e-7)
    assert ours["map_at_r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-7)
    # same faiss k-means (same seed, no subsampling at this size) -> same NMI; PML clusters with k = #query classes
    assert ours["nmi"] == pytest.approx(pml["NMI"], abs=1e-12)


def test_against_pml_query_gallery():
    q, yq, g, yg = _separated_data(60, 80, 8, 5, seed=8, depth=30)
    pml = _pml(q, yq, g, yg)
    ours = evaluate_image_embeddings(q, yq, g, yg, recall_ks=(1,), metrics=("recall", "map_at_r"))
    assert ours["recall@1"] == pytest.approx(pml["precision_at_1"], abs=1e-7)
    assert ours["map_at_r"] == pytest.approx(pml["mean_average_precision_at_r"], abs=1e-7)


# ----------------------------------------------------------------------------- evaluate_image_embeddings


def test_evaluate_keys_and_consistency():
    q, yq, g, yg = _separated_data(70, 100, 6, 5, seed=9)
    res = evaluate_image_embeddings(q, yq, metrics=("recall", "nmi", "f1", "map_at_r", "map_at_30"), seed=3)
    assert list(res) == ["recall@1", "recall@2", "recall@4", "recall@8", "nmi", "f1", "map_at_r", "map_at_30"]
    assert all(0.0 <= v <= 1.0 for v in res.values())
    assert [res[f"recall@{k}"] for k in (1, 2, 4, 8)] == list(recall_at_k(q, yq).values())
    assert res["map_at_r"] == map_at_r(q, yq) and res["map_at_30"] == map_at_k(q, yq, k=30)
    assert (res["nmi"], res["f1"]) == nmi_and_f1(q, yq, seed=3)
    assert list(evaluate_image_embeddings(q, yq, metrics=("f1",))) == ["f1"]


def test_evaluate_query_gallery_clusters_the_union():
    q, yq, g, yg = _separated_data(40, 60, 6, 4, seed=12)
    res = evaluate_image_embeddings(q, yq, g, yg, recall_ks=(1, 10), metrics=("recall", "nmi", "f1"), seed=1)
    assert list(res) == ["recall@1", "recall@10", "nmi", "f1"]
    assert (res["nmi"], res["f1"]) == nmi_and_f1(np.concatenate([q, g]), np.concatenate([yq, yg]), seed=1)


def test_inputs_as_torch_float64_and_string_labels():
    q, yq, _, _ = _separated_data(40, 1, 4, 3, seed=6)
    names = np.array(["a", "b", "c"])[yq]
    ref = recall_at_k(q.astype(np.float32), yq)
    assert recall_at_k(torch.from_numpy(q), torch.from_numpy(yq)) == ref
    assert recall_at_k(q, names) == ref


def test_runs_on_a_few_thousand_points():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 50, 3000)
    x = rng.normal(size=(50, 64))[y] + rng.normal(size=(3000, 64))
    res = evaluate_image_embeddings(x, y, metrics=("recall", "nmi", "f1", "map_at_r", "map_at_100"))
    assert res["recall@1"] > 0.9 and res["nmi"] > 0.8


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x, y: recall_at_k(x[:, 0], y), r"query_emb must be a 2-D array"),
        (lambda x, y: recall_at_k(np.where(np.arange(20)[:, None] == 3, np.nan, x), y), r"NaN/inf in row 3"),
        (lambda x, y: recall_at_k(np.where(np.arange(20)[:, None] == 5, np.inf, x), y), r"NaN/inf in row 5"),
        (
            lambda x, y: recall_at_k(np.where(np.arange(20)[:, None] == 2, 1e300, x), y),
            r"too large for float32 in row 2",
        ),
        (lambda x, y: recall_at_k(x, y[:-1]), r"query_labels has 19 labels but query_emb has 20 rows"),
        (lambda x, y: recall_at_k(x, y, x, y[:3]), r"gallery_labels has 3 labels but gallery_emb has 20 rows"),
        (lambda x, y: recall_at_k(x, y, x[:, :2], y), r"embedding dimensions differ"),
        (lambda x, y: recall_at_k(x, y, x), r"given together"),
        (lambda x, y: recall_at_k(x, y, ks=(1, 20)), r"recall K=20 exceeds the 19 references"),
        (lambda x, y: recall_at_k(x, y, x[:5], y[:5], ks=(6,)), r"recall K=6 exceeds the 5 references"),
        (lambda x, y: recall_at_k(x, y, ks=(0,)), r"ks must be a positive integer, got 0"),
        (lambda x, y: map_at_k(x, y, k=1000), r"mAP k=1000 exceeds the 19 references"),
        (lambda x, y: recall_at_k(x, np.arange(20)), r"no query has a same-class reference"),
        (lambda x, y: recall_at_k(x, y, x, y.astype(str)), r"different kinds"),
        (lambda x, y: knn_search(x, None, 20, exclude_self=True), r"k=20 exceeds the 19 references"),
        (lambda x, y: knn_search(x, x[:5], 2, exclude_self=True), r"gallery has 5 rows for 20 queries"),
        (lambda x, y: knn_search(x, None, 2, exclude_self=True, chunk_size=0), r"chunk_size must be"),
        (lambda x, y: nmi_and_f1(x, y, n_clusters=21), r"n_clusters=21 exceeds the 20 points"),
        (lambda x, y: nmi_and_f1(x, y[:4]), r"labels has 4 labels but emb has 20 rows"),
        (lambda x, y: evaluate_image_embeddings(x, y, metrics=("recal",)), r"unknown metric 'recal'"),
        (lambda x, y: evaluate_image_embeddings(x, y, metrics=("map_at_25",)), r"mAP k=25 exceeds"),
        (lambda x, y: evaluate_image_embeddings(x, y, metrics=()), r"metrics is empty"),
    ],
)
def test_bad_input_raises(call, match):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 3)), np.repeat(np.arange(4), 5)
    with pytest.raises(DmlReproError, match=match):
        call(x, y)
