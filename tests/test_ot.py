"""Exact WMD against POT called directly, its bounds, and sharding/resume."""

import numpy as np
import ot
import pytest
from scipy.spatial.distance import cdist

from dmlrepro.data.pointsets import Pointsets
from dmlrepro.ot.emd import rwmd_from_cost, shard_row_bounds, wcd_matrix, wmd, ground_cost
from dmlrepro.ot.shards import compute_shard, merge_shards


def random_pointsets(n=12, dim=5, seed=0, max_words=9):
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        u = int(rng.integers(1, max_words + 1))  # includes 1-word documents
        docs.append((rng.normal(size=(u, dim)), rng.integers(1, 5, size=u).astype(float)))
    docs.append((docs[0][0].copy(), docs[0][1].copy()))  # an identical document
    v = rng.normal(size=(1, dim))
    docs.append((np.repeat(v, 3, axis=0), np.ones(3)))  # repeated vectors
    return Pointsets.from_documents(docs, labels=[i % 2 for i in range(len(docs))], label_names=["a", "b"],
                                    doc_ids=[f"d{i}" for i in range(len(docs))])


def pot_reference(xa, wa, xb, wb):
    """POT's ot.emd2 on exact Euclidean costs. (ot.dist(..., "euclidean") expands |a|^2+|b|^2-2ab,
    which leaves ~1e-4 on identical vectors and so ~4e-8 on identical documents: exact costs here.)"""
    cost = cdist(xa.astype(np.float64), xb.astype(np.float64))
    return ot.emd2(wa / wa.sum(), wb / wb.sum(), cost, numItermax=1_000_000)


def test_wmd_equals_pot_on_random_pairs():
    ps = random_pointsets()
    for i in range(len(ps)):
        for j in range(len(ps)):
            (xa, wa), (xb, wb) = ps.doc(i), ps.doc(j)
            assert abs(wmd(xa, wa, xb, wb) - pot_reference(xa, wa, xb, wb)) <= 1e-8


def test_wmd_is_symmetric_zero_on_identity_and_above_bounds():
    ps = random_pointsets(seed=1)
    wcd = wcd_matrix(ps)
    for i in range(len(ps)):
        assert wmd(*ps.doc(i), *ps.doc(i)) == pytest.approx(0.0, abs=1e-12)
        for j in range(i + 1, len(ps)):
            (xa, wa), (xb, wb) = ps.doc(i), ps.doc(j)
            d = wmd(xa, wa, xb, wb)
            assert d == pytest.approx(wmd(xb, wb, xa, wa), abs=1e-10)
            r = rwmd_from_cost(wa / wa.sum(), wb / wb.sum(), ground_cost(xa, xb))
            assert r <= d + 1e-10
            assert wcd[i, j] <= d + 1e-10
    # the duplicated document is at distance 0 from its original
    assert wmd(*ps.doc(0), *ps.doc(len(ps) - 2)) == pytest.approx(0.0, abs=1e-12)


def test_wmd_equals_pot_on_real_documents(bbcsport_small):
    ps = bbcsport_small
    for i, j in [(0, 1), (2, 7), (3, 11), (5, 5)]:
        (xa, wa), (xb, wb) = ps.doc(i), ps.doc(j)
        assert abs(wmd(xa, wa, xb, wb) - pot_reference(xa, wa, xb, wb)) <= 1e-8


@pytest.mark.parametrize("n,s", [(10, 1), (10, 3), (100, 7), (5, 5), (3, 4)])
def test_shard_bounds_cover_rows_once_and_balance_pairs(n, s):
    bounds = shard_row_bounds(n, s)
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    if n >= 50:
        pairs = [sum(n - 1 - i for i in range(r0, r1)) for r0, r1 in bounds]
        assert max(pairs) - min(pairs) <= n  # within one row of each other


def test_shards_merge_to_the_full_matrix(tmp_path):
    ps = random_pointsets(n=15, seed=2)
    paths = []
    for s in range(3):
        paths.append(tmp_path / f"shard_{s}.npz")
        compute_shard(ps, s, 3, paths[-1], progress=False)
    emd = merge_shards(paths, tmp_path / "emd.npy", tmp_path / "rwmd.npy")
    n = len(ps)
    expected = np.array([[pot_reference(*ps.doc(i), *ps.doc(j)) for j in range(n)] for i in range(n)])
    np.testing.assert_allclose(emd, expected, atol=1e-8)
    assert np.array_equal(emd, emd.T)
    assert (np.load(tmp_path / "rwmd.npy") <= emd + 1e-10).all()


def test_interrupted_shard_resumes_from_partial(tmp_path, monkeypatch):
    ps = random_pointsets(n=14, seed=3)
    out = tmp_path / "shard.npz"
    compute_shard(ps, 0, 1, tmp_path / "reference.npz", progress=False)

    import dmlrepro.ot.engine as engine
    real = engine.solve_row
    solved = []

    def dying(stack, i, shared_mass=True):
        if len(solved) >= 5:
            raise KeyboardInterrupt  # the job is killed mid-shard
        solved.append(i)
        return real(stack, i, shared_mass)

    monkeypatch.setattr(engine, "solve_row", dying)
    with pytest.raises(KeyboardInterrupt):
        compute_shard(ps, 0, 1, out, checkpoint_seconds=0.0, progress=False)
    assert not out.exists()  # no partial output at the final path
    partial = out.with_name(out.name + ".partial.npz")
    assert partial.exists()
    done_rows = np.flatnonzero(np.load(partial)["done"])
    assert len(done_rows) > 0

    resumed = []

    def counting(stack, i, shared_mass=True):
        resumed.append(i)
        return real(stack, i, shared_mass)

    monkeypatch.setattr(engine, "solve_row", counting)
    compute_shard(ps, 0, 1, out, progress=False)
    assert not set(resumed) & set(done_rows.tolist())  # finished rows were not solved again
    np.testing.assert_allclose(np.load(out)["emd"], np.load(tmp_path / "reference.npz")["emd"], atol=1e-12)
    assert not partial.exists()


def test_shard_with_two_processes_equals_one(tmp_path):
    ps = random_pointsets(n=16, seed=6)
    compute_shard(ps, 1, 2, tmp_path / "one.npz", progress=False, processes=1)
    compute_shard(ps, 1, 2, tmp_path / "two.npz", progress=False, processes=2)
    np.testing.assert_array_equal(np.load(tmp_path / "one.npz")["emd"], np.load(tmp_path / "two.npz")["emd"])


def test_merge_rejects_shards_of_other_pointsets(tmp_path):
    a, b = random_pointsets(n=10, seed=4), random_pointsets(n=10, seed=5)
    compute_shard(a, 0, 2, tmp_path / "s0.npz", progress=False)
    compute_shard(b, 1, 2, tmp_path / "s1.npz", progress=False)
    from dmlrepro import DmlReproError
    with pytest.raises(DmlReproError, match="s1.npz"):
        merge_shards([tmp_path / "s0.npz", tmp_path / "s1.npz"], tmp_path / "emd.npy")
    assert not (tmp_path / "emd.npy").exists()
