"""The all-pairs engine gives POT's values: shared-mass reduction, symmetry, processes."""

import numpy as np
import ot
import pytest
from scipy.spatial.distance import cdist

from dmlrepro.data.pointsets import Pointsets
from dmlrepro.ot.engine import PreparedDocs, all_pairs_wmd, wmd_and_rwmd


def pot_matrix(ps):
    n = len(ps)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            (xa, wa), (xb, wb) = ps.doc(i), ps.doc(j)
            cost = cdist(xa.astype(np.float64), xb.astype(np.float64))
            out[i, j] = ot.emd2(wa / wa.sum(), wb / wb.sum(), cost, numItermax=1_000_000)
    return out


def overlapping_pointsets(seed=0, n=14, vocab=25, dim=6):
    """Documents drawn from one small vocabulary, so they share words (and mass) often."""
    rng = np.random.default_rng(seed)
    words = rng.normal(size=(vocab, dim))
    docs = []
    for _ in range(n):
        u = int(rng.integers(1, 9))
        ids = rng.choice(vocab, u, replace=False)
        docs.append((words[ids], rng.integers(1, 5, size=u).astype(float)))
    docs.append((words[[3]], np.array([2.0])))  # 1-word documents, one of them
    docs.append((words[[3]], np.array([5.0])))  # identical up to weight scale
    docs.append((words[[4, 4, 5]], np.array([1.0, 2.0, 1.0])))  # a repeated vector inside a document
    return Pointsets.from_documents(docs, [i % 3 for i in range(len(docs))], ["a", "b", "c"],
                                    [f"d{i}" for i in range(len(docs))])


@pytest.mark.parametrize("shared_mass", [True, False])
def test_engine_equals_pot_with_shared_words(shared_mass):
    ps = overlapping_pointsets()
    docs = PreparedDocs.from_pointsets(ps)
    expected = pot_matrix(ps)
    got = np.array([[wmd_and_rwmd(docs, i, j, shared_mass)[0] for j in range(len(ps))] for i in range(len(ps))])
    np.testing.assert_allclose(got, expected, atol=1e-8, rtol=0)


def test_engine_equals_pot_on_real_documents(bbcsport_small):
    ps = bbcsport_small.subset(np.arange(12))
    np.testing.assert_allclose(all_pairs_wmd(ps), pot_matrix(ps), atol=1e-8, rtol=0)


def test_processes_give_the_same_matrix():
    ps = overlapping_pointsets(seed=1, n=20)
    one = all_pairs_wmd(ps, processes=1)
    two = all_pairs_wmd(ps, processes=2)
    np.testing.assert_array_equal(one, two)
    assert np.array_equal(one, one.T) and np.all(np.diag(one) == 0)


def test_rwmd_is_a_lower_bound():
    ps = overlapping_pointsets(seed=2)
    docs = PreparedDocs.from_pointsets(ps)
    for i in range(len(ps)):
        for j in range(len(ps)):
            emd, rwmd = wmd_and_rwmd(docs, i, j)
            assert rwmd <= emd + 1e-10


@pytest.mark.parametrize("block_words", [1, 7, 10_000])
def test_row_blocks_of_any_size_give_pot_values(monkeypatch, block_words):
    import dmlrepro.ot.engine as engine
    monkeypatch.setattr(engine, "ROW_BLOCK_WORDS", block_words)
    monkeypatch.setattr(engine, "SHARED_MASS_MIN_WORDS", 2)  # exercise the reduction on short documents too
    ps = overlapping_pointsets(seed=3, n=12)
    np.testing.assert_allclose(all_pairs_wmd(ps), pot_matrix(ps), atol=1e-8, rtol=0)
    # and RWMD from the vectorised reductions equals the per-pair one
    docs = PreparedDocs.from_pointsets(ps)
    stack = engine.StackedDocs(docs)
    for i in range(len(ps) - 1):
        _, rwmd = engine.solve_row(stack, i)
        expected = [wmd_and_rwmd(docs, i, j)[1] for j in range(i + 1, len(ps))]
        np.testing.assert_allclose(rwmd, expected, atol=1e-12)


def test_shared_mass_reduced_problem_keeps_the_emd(bbcsport_small):
    from dmlrepro.ot.emd import emd_from_cost, ground_cost
    from dmlrepro.ot.engine import shared_mass_reduced
    docs = PreparedDocs.from_pointsets(bbcsport_small.subset(np.arange(8)))
    reduced_some = 0
    for i in range(len(docs)):
        for j in range(len(docs)):
            cost = ground_cost(docs.vectors[i], docs.vectors[j])
            full = emd_from_cost(docs.weights[i], docs.weights[j], cost)
            problem = shared_mass_reduced(docs.weights[i], docs.vector_ids[i], docs.weights[j],
                                          docs.vector_ids[j], cost)
            if problem is None:  # nothing left to move: only a document against itself here
                assert i == j and full == pytest.approx(0.0, abs=1e-12)
                continue
            moved, a, b, c = problem
            reduced_some += c.shape != cost.shape
            assert a.sum() == pytest.approx(1.0) and b.sum() == pytest.approx(1.0)
            assert moved * emd_from_cost(a, b, c) == pytest.approx(full, abs=1e-10)
    assert reduced_some > 0  # the reduction took words out somewhere


def test_warm_started_solver_gives_the_cold_value(bbcsport_small):
    """POT's warm start only changes the first basis: any potentials, good or poor, give the same EMD."""
    from dmlrepro.ot.emd import emd_from_cost, emd_potentials_from_cost, ground_cost
    from dmlrepro.ot.knn import dual_potentials
    docs = PreparedDocs.from_pointsets(bbcsport_small.subset(np.arange(6)))
    rng = np.random.default_rng(0)
    for i, j in [(0, 1), (2, 3), (4, 5), (1, 4)]:
        a, b = docs.weights[i], docs.weights[j]
        cost = ground_cost(docs.vectors[i], docs.vectors[j])
        value = emd_from_cost(a, b, cost)
        sinkhorn = dual_potentials(a, b, cost)
        assert a @ sinkhorn[0] + b @ sinkhorn[1] <= value + 1e-12  # feasible: a lower bound
        for start in (sinkhorn, emd_potentials_from_cost(a, b, cost),
                      (rng.normal(size=len(a)), rng.normal(size=len(b)))):
            assert emd_from_cost(a, b, cost, start) == pytest.approx(value, abs=1e-12)
