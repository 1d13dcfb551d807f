"""Exact WMD k-NN with pruning: always the exhaustive neighbours, ties and duplicates included."""

import numpy as np
import pytest

from dmlrepro import DmlReproError
from dmlrepro.data.pointsets import Pointsets
from dmlrepro.ot.engine import PreparedDocs, wmd_and_rwmd
from dmlrepro.ot.knn import (STRATEGIES, exact_wmd_knn, exhaustive_wmd_knn, pair_lower_bounds, rwmd_lower_bounds,
                             wcd_lower_bounds)

COUNTS = ("pairs_exact", "pruned_wcd", "pruned_rwmd", "pruned_neighbour", "pruned_ict", "pruned_dual")


def slack(d):
    return 1e-12 * np.maximum(1.0, d)


def check_stats(stats, n_queries, n_candidates, k):
    assert stats["queries"] == n_queries and stats["k"] == k
    assert stats["pairs_total"] == n_queries * n_candidates
    assert sum(stats[key] for key in COUNTS) == stats["pairs_total"]
    assert all(stats[key] >= 0 for key in COUNTS)
    assert stats["pairs_exact"] >= n_queries * k


def assert_same(got, ref):
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])  # the same solver on the same pairs: bit for bit


def ranked_by_distance_then_position(idx, dist):
    for row_i, row_d in zip(idx, dist):
        assert all((row_d[t], row_i[t]) < (row_d[t + 1], row_i[t + 1]) for t in range(len(row_d) - 1))


# ------------------------------------------------------------------------------------ real data
@pytest.fixture(scope="module")
def bbc(bbcsport_pointsets):
    """25 queries and a 60-document gallery of real BBCSport documents, and every query-gallery WMD."""
    rng = np.random.default_rng(0)
    pick = rng.choice(len(bbcsport_pointsets), 85, replace=False)
    docs = PreparedDocs.from_pointsets(bbcsport_pointsets.subset(pick))
    queries, gallery = np.arange(25), np.arange(25, 85)
    full = exhaustive_wmd_knn(docs, queries, gallery, len(gallery))  # every pair, ranked
    return docs, queries, gallery, full


@pytest.fixture(scope="module")
def tweets(shared_data):
    """Twitter-like short documents (no stop words removed): 30 queries, a 150-tweet gallery."""
    from dmlrepro.data.build import build_pointsets
    ps, _ = build_pointsets("twitter", {"stop_words": None, "empty_documents": "drop"}, shared_data)
    rng = np.random.default_rng(1)
    pick = rng.choice(len(ps), 180, replace=False)
    docs = PreparedDocs.from_pointsets(ps.subset(pick))
    queries, gallery = np.arange(30), np.arange(30, 180)
    full = exhaustive_wmd_knn(docs, queries, gallery, len(gallery))
    return docs, queries, gallery, full


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("k", [1, 5, 60])
def test_pruned_equals_exhaustive_on_bbcsport(bbc, strategy, k):
    docs, queries, gallery, full = bbc
    got = exact_wmd_knn(docs, queries, gallery, k, strategy=strategy)
    assert_same(got, (full[0][:, :k], full[1][:, :k]))
    check_stats(got[2], len(queries), len(gallery), k)
    if k == len(gallery):
        assert got[2]["pairs_exact"] == got[2]["pairs_total"]
    elif strategy == "best_first":  # long documents: the neighbour and dual bounds take part, and exactly
        assert got[2]["pruned_neighbour"] > 0
        assert got[2]["pruned_dual"] > 0


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("k", [1, 3, 10, 150])
def test_pruned_equals_exhaustive_on_tweets(tweets, strategy, k):
    docs, queries, gallery, full = tweets
    got = exact_wmd_knn(docs, queries, gallery, k, strategy=strategy)
    assert_same(got, (full[0][:, :k], full[1][:, :k]))
    check_stats(got[2], len(queries), len(gallery), k)


def test_pruning_prunes(tweets):
    docs, queries, gallery, _ = tweets
    stats = exact_wmd_knn(docs, queries, gallery, 3)[2]
    assert stats["pairs_exact"] < stats["pairs_total"] / 2


def test_exhaustive_is_the_brute_force_ranking(bbc):
    docs, queries, gallery, full = bbc
    for row, q in enumerate(queries[:3]):
        dist = np.array([wmd_and_rwmd(docs, int(q), int(g))[0] for g in gallery])
        order = np.lexsort((np.arange(len(gallery)), dist))
        np.testing.assert_array_equal(full[0][row], order)
        np.testing.assert_array_equal(full[1][row], dist[order])
    ranked_by_distance_then_position(*full[:2])


@pytest.mark.parametrize("fixture", ["bbc", "tweets"])
def test_bounds_never_exceed_wmd(fixture, request):
    docs, queries, gallery, full = request.getfixturevalue(fixture)
    for row, q in enumerate(queries[:8]):
        wmd = np.empty(len(gallery))
        wmd[full[0][row]] = full[1][row]
        wcd = wcd_lower_bounds(docs, int(q), gallery)
        rwmd = rwmd_lower_bounds(docs, int(q), gallery)
        assert np.all(wcd <= wmd + slack(wmd))
        assert np.all(rwmd <= wmd + slack(wmd))
        for pos in range(0, len(gallery), 7):
            bounds = pair_lower_bounds(docs, int(q), int(gallery[pos]))
            for name, value in bounds.items():
                assert value <= wmd[pos] + slack(wmd[pos]), (name, value, wmd[pos])
            # each tighter bound is at least the looser one it refines
            # (the batch passes use float32 costs rounded down: up to ~1e-6 below, never above)
            assert bounds["batch_reduced_rwmd"] >= bounds["rwmd"] * (1 - 1e-6) - 1e-12
            assert bounds["ict"] >= bounds["reduced_rwmd"] - 1e-12
            if fixture == "bbc" and wmd[pos] > 0:  # long documents: the dual bound is close to the WMD
                assert bounds["dual"] >= 0.95 * wmd[pos], (bounds["dual"], wmd[pos])
            # the pair's own optimal potential gives back its WMD; any other document's, a lower bound
            assert bounds["neighbour"] >= wmd[pos] * (1 - 1e-5) - 1e-9, (bounds["neighbour"], wmd[pos])
            for other in (gallery[(pos + 1) % len(gallery)], queries[(row + 1) % len(queries)], q):
                lent = pair_lower_bounds(docs, int(q), int(gallery[pos]), neighbour=int(other))["neighbour"]
                assert lent <= wmd[pos] + slack(wmd[pos]), (lent, wmd[pos])
            # Kusner's RWMD matches the engine's (exact ground costs) up to the cost lowering
            assert abs(bounds["rwmd"] - wmd_and_rwmd(docs, int(q), int(gallery[pos]))[1]) < 1e-9


def test_processes_give_the_same_neighbours(tweets):
    docs, queries, gallery, full = tweets
    one = exact_wmd_knn(docs, queries, gallery, 4, processes=1)
    two = exact_wmd_knn(docs, queries, gallery, 4, processes=2)
    assert_same(two, one)
    assert_same(one, (full[0][:, :4], full[1][:, :4]))
    assert {k: two[2][k] for k in COUNTS} == {k: one[2][k] for k in COUNTS}
    assert_same(exhaustive_wmd_knn(docs, queries[:6], gallery, 4, processes=2), (full[0][:6, :4], full[1][:6, :4]))


# ------------------------------------------------------------------------------------ ties
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_duplicated_documents_tie_by_position(bbcsport_small, strategy):
    """Copies of documents (same content, other ids) and repeated ids in the gallery: equal distances."""
    base = np.arange(12)
    pick = np.concatenate([base, base[:6], base[2:4], base[2:4]])  # 22 documents, many identical
    docs = PreparedDocs.from_pointsets(bbcsport_small.subset(pick))
    queries = np.arange(8)
    gallery = np.concatenate([np.arange(4, 22), [5, 5, 13]])  # copies, and ids given twice
    ref = exhaustive_wmd_knn(docs, queries, gallery, len(gallery))
    for k in (1, 2, 3, 4, 7, len(gallery)):
        got = exact_wmd_knn(docs, queries, gallery, k, strategy=strategy)
        assert_same(got, (ref[0][:, :k], ref[1][:, :k]))
        check_stats(got[2], len(queries), len(gallery), k)
    # the tie rule is visible: a query whose copies sit in the gallery has them first, by position
    for row, q in enumerate(queries):
        zeros = ref[0][row][ref[1][row] == 0.0]
        assert np.array_equal(zeros, np.sort(zeros)) and len(zeros) >= 1
    assert list(ref[0][5][:4]) == [1, 13, 18, 19] and np.all(ref[1][5][:4] == 0) and ref[1][5][4] > 0  # id 5 thrice, its copy 17
    ranked_by_distance_then_position(*ref[:2])


def grid_pointsets():
    """One- and two-word documents on an integer grid: many WMDs tie exactly, and WCD = RWMD = WMD
    for one-word pairs, so bounds equal the k-th distance and only the position rule may decide."""
    words = np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1], [2, 0], [0, 2], [1, 1]], dtype=float)
    docs = [(words[[i]], np.array([1.0])) for i in range(len(words))]
    docs += [(words[[1]], np.array([3.0])), (words[[0]], np.array([2.0]))]  # same as documents 1 and 0
    docs += [(words[[1, 3]], np.array([1.0, 1.0])), (words[[2, 4]], np.array([2.0, 2.0]))]  # centroid at 0
    return Pointsets.from_documents(docs, [0] * len(docs), ["a"], [f"d{i}" for i in range(len(docs))])


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_exact_ties_on_a_grid(strategy):
    docs = PreparedDocs.from_pointsets(grid_pointsets())
    n = len(docs)
    gallery = np.arange(n)[::-1]  # positions run against ids, so the tie rule cannot follow ids by chance
    for k in range(1, n + 1):
        ref = exhaustive_wmd_knn(docs, np.arange(n), gallery, k)
        got = exact_wmd_knn(docs, np.arange(n), gallery, k, strategy=strategy)
        assert_same(got, ref)
        check_stats(got[2], n, n, k)
    # query 0 (the origin): itself and its copy at distance 0, then the four unit words by position
    ref = exhaustive_wmd_knn(docs, [0], gallery, 6)
    assert list(ref[1][0]) == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert list(gallery[ref[0][0]]) == [9, 0, 11, 10, 8, 4]


@pytest.fixture(scope="module")
def leave_one_out_reference(bbc):
    docs = bbc[0]
    ids = np.arange(20)
    return docs, ids, exhaustive_wmd_knn(docs, ids, ids, len(ids) - 1, exclude_self=True)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_leave_one_out(leave_one_out_reference, strategy):
    docs, ids, ref = leave_one_out_reference
    n_left = len(ids) - 1
    assert not np.any(ref[0] == np.arange(len(ids))[:, None])  # nobody is their own neighbour
    for k in (1, 4, n_left):
        got = exact_wmd_knn(docs, ids, ids, k, exclude_self=True, strategy=strategy)
        assert_same(got, (ref[0][:, :k], ref[1][:, :k]))
        check_stats(got[2], len(ids), n_left, k)
    # without exclude_self each document is its own nearest neighbour at distance 0
    own = exact_wmd_knn(docs, ids, ids, 1, strategy=strategy)
    assert np.array_equal(own[0][:, 0], np.arange(len(ids))) and np.all(own[1] == 0)


def test_exclude_self_drops_every_copy_of_the_id(tweets):
    docs, queries, _, _ = tweets
    gallery = np.concatenate([queries[:10], queries[:10], np.arange(30, 60)])
    idx, _, stats = exact_wmd_knn(docs, queries[:10], gallery, 5, exclude_self=True)
    assert not np.any(gallery[idx] == queries[:10, None])
    assert stats["pairs_total"] == 10 * (len(gallery) - 2)


# ------------------------------------------------------------------------------------ errors
def test_bad_arguments(bbc):
    docs, queries, gallery, _ = bbc
    with pytest.raises(DmlReproError, match="positive integer"):
        exact_wmd_knn(docs, queries, gallery, 0)
    with pytest.raises(DmlReproError, match="exceeds"):
        exact_wmd_knn(docs, queries, gallery, len(gallery) + 1)
    with pytest.raises(DmlReproError, match="exceeds"):
        exact_wmd_knn(docs, gallery, gallery, len(gallery), exclude_self=True)
    with pytest.raises(DmlReproError, match="empty"):
        exact_wmd_knn(docs, queries, [], 1)
    with pytest.raises(DmlReproError, match="outside"):
        exact_wmd_knn(docs, [len(docs)], gallery, 1)
    with pytest.raises(DmlReproError, match="strategy"):
        exact_wmd_knn(docs, queries, gallery, 1, strategy="fast")


# ------------------------------------------------------------------------------------ new queries
def test_search_index_answers_new_documents_like_the_collection_search(bbcsport_pointsets):
    from dmlrepro.ot.knn import WmdSearchIndex
    pick = np.random.default_rng(3).choice(len(bbcsport_pointsets), 70, replace=False)
    ps = bbcsport_pointsets.subset(pick)
    queries, gallery = np.arange(6), np.arange(6, 70)
    index = WmdSearchIndex(ps.subset(gallery), 4)
    ref = exhaustive_wmd_knn(PreparedDocs.from_pointsets(ps), queries, gallery, 4)
    for row, q in enumerate(queries):
        idx, dist, stats = index.query(*ps.doc(int(q)))
        np.testing.assert_array_equal(idx, ref[0][row])
        np.testing.assert_allclose(dist, ref[1][row], rtol=0, atol=1e-12)  # word order may differ: rounding only
        assert sum(stats[key] for key in COUNTS) == stats["pairs_total"] == len(gallery)
    assert len(index.docs) == len(gallery)  # the query was taken out again
    # a gallery document asked as a new one finds itself at distance 0
    idx, dist, _ = index.query(*ps.doc(10))
    assert idx[0] == 4 and dist[0] == 0.0
    with pytest.raises(DmlReproError, match="k must be"):
        WmdSearchIndex(ps.subset(gallery), 0)
    with pytest.raises(DmlReproError, match="does not match"):
        index.query(np.zeros((3, 7)), np.ones(3))
