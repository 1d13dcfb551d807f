"""Engine-selectable EMD shards: ``compute_shard(..., engine="exact" | "sinkhorn")``.

* ``exact`` is unchanged: the same bits as the exact engine called directly.
* ``sinkhorn`` shards merge to :func:`sinkhorn_all_pairs` on the same documents (rtol 1e-9: a
  pair's value does not depend on its batch beyond float summation order, as asserted in
  ``test_ot_sinkhorn.py``), are upper bounds of the exact WMD, stay within a few % of it (at the
  default relative reg 0.02 the mean error is 1.4% on these documents; we assert mean <= 2% and
  max <= 3%, the bounds of ``test_ot_sinkhorn.py``), carry exactly the exact engine's RWMD, and
  resume bit-identically after an interruption.
* Shards of different engines or options do not merge; bad engines, options and devices fail early.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dmlrepro import DmlReproError
from dmlrepro.data.pointsets import Pointsets
from dmlrepro.ot import sinkhorn as sk
from dmlrepro.ot.engine import PreparedDocs, all_pairs_wmd, upper_rows
from dmlrepro.ot.shards import compute_shard, merge_shards
from dmlrepro.ot.sinkhorn import sinkhorn_all_pairs

N_DOCS = 24   # real BBCSport documents: 276 pairs, a few seconds of Sinkhorn on one thread


@pytest.fixture(scope="module")
def docs(bbcsport_small):
    return bbcsport_small.subset(np.arange(0, 40)[np.arange(40) % 5 != 4][:N_DOCS])


@pytest.fixture(scope="module")
def sinkhorn_shards(docs, tmp_path_factory):
    """Three sinkhorn shards and their merge."""
    d = tmp_path_factory.mktemp("sinkhorn")
    paths = [d / f"shard_{s}.npz" for s in range(3)]
    for s, path in enumerate(paths):
        compute_shard(docs, s, 3, path, progress=False, engine="sinkhorn", device="cpu")
    emd = merge_shards(paths, d / "emd.npy", d / "rwmd.npy")
    return paths, emd, np.load(d / "rwmd.npy")


@pytest.fixture(scope="module")
def exact_matrix(docs):
    return all_pairs_wmd(docs)


def upper(m):
    return m[np.triu_indices(len(m), 1)]


def random_pointsets(n=12, dim=5, seed=0, max_words=9):
    rng = np.random.default_rng(seed)
    docs = [(rng.normal(size=(u, dim)), rng.integers(1, 5, size=u).astype(float))
            for u in rng.integers(1, max_words + 1, size=n)]
    docs.append((docs[0][0].copy(), docs[0][1].copy()))      # an identical document
    docs.append((np.repeat(rng.normal(size=(1, dim)), 3, axis=0), np.ones(3)))   # repeated vectors
    return Pointsets.from_documents(docs, labels=[i % 2 for i in range(len(docs))], label_names=["a", "b"],
                                    doc_ids=[f"d{i}" for i in range(len(docs))])


# ------------------------------------------------------------------------------------ sinkhorn
def test_sinkhorn_shards_merge_to_sinkhorn_all_pairs(docs, sinkhorn_shards):
    _, emd, _ = sinkhorn_shards
    expected = sinkhorn_all_pairs(docs, device="cpu")
    np.testing.assert_allclose(emd, expected, rtol=1e-9, atol=0)
    assert np.array_equal(emd, emd.T) and np.all(np.diag(emd) == 0)


def test_sinkhorn_shards_are_close_upper_bounds(sinkhorn_shards, exact_matrix):
    _, emd, rwmd = sinkhorn_shards
    exact, approx = upper(exact_matrix), upper(emd)
    assert np.all(approx >= exact - 1e-9), f"below the exact WMD by {(exact - approx).max():.2e}"
    rel = (approx - exact) / exact
    assert rel.mean() <= 0.02 and rel.max() <= 0.03, f"relative error mean {rel.mean():.4f}, max {rel.max():.4f}"
    assert np.all(upper(rwmd) <= exact + 1e-10)


def test_sinkhorn_shards_keep_the_exact_rwmd(docs, sinkhorn_shards, tmp_path):
    paths, _, _ = sinkhorn_shards
    compute_shard(docs, 1, 3, tmp_path / "exact.npz", progress=False, engine="exact")
    with np.load(tmp_path / "exact.npz") as exact, np.load(paths[1]) as approx:
        np.testing.assert_array_equal(approx["rwmd"], exact["rwmd"])     # NaN below the diagonal in both
        assert np.array_equal(np.isnan(approx["emd"]), np.isnan(exact["emd"]))


def test_sinkhorn_shard_metadata(sinkhorn_shards):
    paths, _, _ = sinkhorn_shards
    with np.load(paths[0]) as z:
        assert str(z["engine"]) == "sinkhorn"
        options = json.loads(str(z["engine_options"]))
        assert options == sk.normalise_options({})          # defaults filled in
        assert options["reg"] == sk.DEFAULT_REG and options["dtype"] == "float64"
        info = json.loads(str(z["engine_info"]))
        assert info["device"] == "cpu" and info["eps"] > 0 and info["unconverged_pairs"] == 0


def test_interrupted_sinkhorn_shard_resumes_identically(docs, sinkhorn_shards, tmp_path, monkeypatch):
    paths, _, _ = sinkhorn_shards
    options = {"batch_pairs": 16}   # many batches, so the shard is interrupted in the middle
    compute_shard(docs, 0, 3, tmp_path / "reference.npz", progress=False, engine="sinkhorn",
                  sinkhorn_options=options, device="cpu")
    out = tmp_path / "shard.npz"
    real = sk.SinkhornEngine.solve
    solved = []

    def dying(self, i, j):
        if len(solved) >= 4:
            raise KeyboardInterrupt   # the job is killed mid-shard
        solved.append(set(zip(i.tolist(), j.tolist())))
        return real(self, i, j)

    monkeypatch.setattr(sk.SinkhornEngine, "solve", dying)
    with pytest.raises(KeyboardInterrupt):
        compute_shard(docs, 0, 3, out, checkpoint_seconds=0.0, progress=False, engine="sinkhorn",
                      sinkhorn_options=options, device="cpu")
    assert not out.exists()
    partial = out.with_name(out.name + ".partial.npz")
    with np.load(partial) as z:
        assert str(z["engine"]) == "sinkhorn"
        assert np.isfinite(z["rwmd"][np.triu_indices(z["rwmd"].shape[0], 1, z["rwmd"].shape[1])]).all()
        finished = int(np.isfinite(z["emd"]).sum())
    assert 0 < finished == sum(len(b) for b in solved)

    resumed = []

    def counting(self, i, j):
        resumed.append(set(zip(i.tolist(), j.tolist())))
        return real(self, i, j)

    monkeypatch.setattr(sk.SinkhornEngine, "solve", counting)
    compute_shard(docs, 0, 3, out, progress=False, engine="sinkhorn", sinkhorn_options=options, device="cpu")
    assert not partial.exists()
    assert not set().union(*solved) & set().union(*resumed)   # finished batches were not solved again
    with np.load(out) as got, np.load(tmp_path / "reference.npz") as ref:
        np.testing.assert_array_equal(got["emd"], ref["emd"])   # bit-identical
        np.testing.assert_array_equal(got["rwmd"], ref["rwmd"])
        # batch size changes the bits only within float summation order
        np.testing.assert_allclose(got["emd"], np.load(paths[0])["emd"], rtol=1e-9)


def test_exact_partial_is_not_resumed_by_sinkhorn(tmp_path, monkeypatch):
    ps = random_pointsets(n=10, seed=7)
    out = tmp_path / "shard.npz"
    import dmlrepro.ot.engine as engine
    real, calls = engine.solve_row, []

    def dying(stack, i, shared_mass=True):
        if len(calls) >= 3:
            raise KeyboardInterrupt
        calls.append(i)
        return real(stack, i, shared_mass)

    monkeypatch.setattr(engine, "solve_row", dying)
    with pytest.raises(KeyboardInterrupt):
        compute_shard(ps, 0, 1, out, checkpoint_seconds=0.0, progress=False)
    monkeypatch.setattr(engine, "solve_row", real)
    compute_shard(ps, 0, 1, out, progress=False, engine="sinkhorn", device="cpu")
    with np.load(out) as z:
        assert str(z["engine"]) == "sinkhorn"
        np.testing.assert_allclose(z["emd"], np.triu(sinkhorn_all_pairs(ps, device="cpu"), 1)
                                   + np.tril(np.full((len(ps),) * 2, np.nan)), rtol=1e-9)


def test_sinkhorn_processes_and_torch_threads(tmp_path, monkeypatch):
    """``processes`` is the thread budget (set during the shard, restored after it) and the
    number of RWMD worker processes; the values do not depend on it."""
    ps = random_pointsets(n=10, seed=8)
    before = torch.get_num_threads()
    seen = []
    real = sk.SinkhornEngine.solve

    def spy(self, i, j):
        seen.append(torch.get_num_threads())
        return real(self, i, j)

    monkeypatch.setattr(sk.SinkhornEngine, "solve", spy)
    for p in (1, 2):
        compute_shard(ps, 0, 2, tmp_path / f"p{p}.npz", progress=False, engine="sinkhorn", device="cpu", processes=p)
        assert set(seen) == {p} and torch.get_num_threads() == before
        seen.clear()
    with np.load(tmp_path / "p1.npz") as one, np.load(tmp_path / "p2.npz") as two:
        np.testing.assert_array_equal(one["rwmd"], two["rwmd"])
        np.testing.assert_allclose(one["emd"], two["emd"], rtol=1e-12)


# ------------------------------------------------------------------------------------ exact, merge, errors
def test_exact_engine_output_unchanged(tmp_path):
    ps = random_pointsets(n=15, seed=2)
    n = len(ps)
    emd_direct = np.full((n, n), np.nan)
    rwmd_direct = np.full((n, n), np.nan)

    def store(i, e, r):
        emd_direct[i, i + 1:] = e
        rwmd_direct[i, i + 1:] = r

    upper_rows(PreparedDocs.from_pointsets(ps), range(n), on_row=store)
    paths = [tmp_path / f"s{s}.npz" for s in range(3)]
    for s, path in enumerate(paths):
        compute_shard(ps, s, 3, path, progress=False, **({} if s == 0 else {"engine": "exact"}))
    for path in paths:
        with np.load(path) as z:
            r0, r1 = z["rows"]
            np.testing.assert_array_equal(z["emd"], emd_direct[r0:r1])
            np.testing.assert_array_equal(z["rwmd"], rwmd_direct[r0:r1])
            assert str(z["engine"]) == "exact" and str(z["engine_options"]) == "{}"
    emd = merge_shards(paths, tmp_path / "emd.npy")
    np.testing.assert_array_equal(emd, all_pairs_wmd(ps))


def test_merge_accepts_shards_written_before_engines(tmp_path):
    ps = random_pointsets(n=8, seed=3)
    paths = [tmp_path / f"s{s}.npz" for s in range(2)]
    for s, path in enumerate(paths):
        compute_shard(ps, s, 2, path, progress=False)
    with np.load(paths[1]) as z:   # an old shard: no engine keys
        old = {k: z[k] for k in ("emd", "rwmd", "rows", "n", "fingerprint")}
    np.savez_compressed(paths[1], **old)
    np.testing.assert_array_equal(merge_shards(paths, tmp_path / "emd.npy"), all_pairs_wmd(ps))


def test_merging_exact_with_sinkhorn_shards_is_an_error(tmp_path):
    ps = random_pointsets(n=10, seed=4)
    exact, approx = tmp_path / "exact_0.npz", tmp_path / "sinkhorn_1.npz"
    compute_shard(ps, 0, 2, exact, progress=False, engine="exact")
    compute_shard(ps, 1, 2, approx, progress=False, engine="sinkhorn", device="cpu")
    with pytest.raises(DmlReproError, match=r"sinkhorn_1\.npz.*exact_0\.npz"):
        merge_shards([exact, approx], tmp_path / "emd.npy")
    with pytest.raises(DmlReproError, match=r"exact_0\.npz.*sinkhorn_1\.npz"):
        merge_shards([approx, exact], tmp_path / "emd.npy")
    assert not (tmp_path / "emd.npy").exists()


def test_merging_sinkhorn_shards_with_other_options_is_an_error(tmp_path):
    ps = random_pointsets(n=10, seed=5)
    a, b, c = tmp_path / "a.npz", tmp_path / "b.npz", tmp_path / "c.npz"
    compute_shard(ps, 0, 2, a, progress=False, engine="sinkhorn", device="cpu")
    compute_shard(ps, 1, 2, b, progress=False, engine="sinkhorn", device="cpu", sinkhorn_options={"reg": 0.05})
    compute_shard(ps, 1, 2, c, progress=False, engine="sinkhorn", device="cpu",
                  sinkhorn_options={"reg": sk.DEFAULT_REG, "dtype": torch.float64})   # = the defaults
    with pytest.raises(DmlReproError, match=r"b\.npz.*a\.npz"):
        merge_shards([a, b], tmp_path / "emd.npy")
    merge_shards([a, c], tmp_path / "emd.npy")


def test_unknown_engine_options_and_device_are_errors(tmp_path):
    ps = random_pointsets(n=5, seed=6)
    with pytest.raises(DmlReproError, match=r"'nope'.*exact.*sinkhorn"):
        compute_shard(ps, 0, 1, tmp_path / "s.npz", progress=False, engine="nope")
    with pytest.raises(DmlReproError, match="regularisation"):
        compute_shard(ps, 0, 1, tmp_path / "s.npz", progress=False, engine="sinkhorn",
                      sinkhorn_options={"regularisation": 0.1})
    for bad in ({"reg": 0}, {"overrelaxation": 2.0}, {"dtype": "float16"}, {"shared_mass": "yes"},
                {"max_iter": 1.5}):
        with pytest.raises(DmlReproError):
            compute_shard(ps, 0, 1, tmp_path / "s.npz", progress=False, engine="sinkhorn",
                          sinkhorn_options=bad, device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(DmlReproError, match="CUDA"):
            compute_shard(ps, 0, 1, tmp_path / "s.npz", progress=False, engine="sinkhorn", device="cuda")
    assert not list(tmp_path.iterdir())   # nothing written


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_sinkhorn_shards(docs, sinkhorn_shards, tmp_path):
    _, cpu, _ = sinkhorn_shards
    paths = [tmp_path / f"shard_{s}.npz" for s in range(3)]
    for s, path in enumerate(paths):
        compute_shard(docs, s, 3, path, progress=False, engine="sinkhorn", device="cuda")
    with np.load(paths[0]) as z:
        assert json.loads(str(z["engine_info"]))["device"].startswith("cuda")
    np.testing.assert_allclose(merge_shards(paths, tmp_path / "emd.npy"), cpu, rtol=1e-6)
