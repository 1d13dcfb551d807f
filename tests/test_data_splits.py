"""Seeded stratified train/val/test splits and their file."""

from __future__ import annotations

import numpy as np
import pytest

from dmlrepro import DmlReproError
from dmlrepro.data.splits import Splits, make_splits
from dmlrepro.io import save_npz

# uneven classes, like BBCSport (101, 124, 265, 147, 100)
LABELS = np.repeat(np.arange(5), [101, 124, 265, 147, 100])


def test_stratified_and_disjoint():
    splits = make_splits(LABELS, n_splits=5, test_size=0.3, val_size=0.2, seed=0)
    assert splits.n_splits == 5
    class_sizes = np.bincount(LABELS)
    for k in range(5):
        train, val, test = splits.train[k], splits.val[k], splits.test[k]
        assert len(train) + len(test) == len(LABELS)
        assert len(np.intersect1d(train, test)) == 0
        assert np.isin(val, train).all() and len(np.intersect1d(val, test)) == 0
        assert np.abs(np.bincount(LABELS[test], minlength=5) - 0.3 * class_sizes).max() <= 1
        train_sizes = np.bincount(LABELS[train], minlength=5)
        assert np.abs(np.bincount(LABELS[val], minlength=5) - 0.2 * train_sizes).max() <= 1
        assert len(splits.fit(k)) == len(train) - len(val)
        assert len(np.intersect1d(splits.fit(k), val)) == 0
    assert not np.array_equal(splits.test[0], splits.test[1])


def test_deterministic_by_seed():
    a = make_splits(LABELS, seed=7)
    b = make_splits(LABELS, seed=7)
    c = make_splits(LABELS, seed=8)
    for k in range(5):
        for part in ("train", "val", "test"):
            assert np.array_equal(getattr(a, part)[k], getattr(b, part)[k])
    assert not np.array_equal(a.test[0], c.test[0])


def test_save_load_roundtrip(tmp_path):
    splits = make_splits(LABELS, n_splits=3, seed=1)
    path = tmp_path / "splits.npz"
    splits.save(path)
    loaded = Splits.load(path, n_documents=len(LABELS))
    assert loaded.meta == splits.meta and loaded.meta["seed"] == 1
    for k in range(3):
        for part in ("train", "val", "test"):
            assert np.array_equal(getattr(loaded, part)[k], getattr(splits, part)[k])


def test_corrupted_split_files(tmp_path):
    splits = make_splits(LABELS, n_splits=2, seed=0)
    arrays = {f"{p}_{k}": getattr(splits, p)[k] for k in range(2) for p in ("train", "val", "test")}
    meta = np.asarray('{"n_documents": 737}')

    overlap = dict(arrays, test_1=np.append(arrays["test_1"], arrays["train_1"][0]))
    save_npz(tmp_path / "overlap.npz", meta=meta, **overlap)
    with pytest.raises(DmlReproError, match="overlap.npz: keys 'train_1' and 'test_1' share"):
        Splits.load(tmp_path / "overlap.npz")

    out_of_range = dict(arrays, val_0=np.append(arrays["val_0"], 737))
    save_npz(tmp_path / "range.npz", meta=meta, **out_of_range)
    with pytest.raises(DmlReproError, match="range.npz: key 'val_0' has indices outside"):
        Splits.load(tmp_path / "range.npz")

    val_outside = dict(arrays, val_0=np.append(arrays["val_0"], arrays["test_0"][0]))
    save_npz(tmp_path / "val.npz", meta=meta, **val_outside)
    with pytest.raises(DmlReproError, match="val.npz: key 'val_0' is not inside 'train_0'"):
        Splits.load(tmp_path / "val.npz")

    missing = {k: v for k, v in arrays.items() if k != "test_1"}
    save_npz(tmp_path / "missing.npz", meta=meta, **missing)
    with pytest.raises(DmlReproError, match="missing.npz: missing key 'test_1'"):
        Splits.load(tmp_path / "missing.npz")

    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DmlReproError, match="junk.npz: not a readable"):
        Splits.load(tmp_path / "junk.npz")
    splits.save(tmp_path / "ok.npz")
    with pytest.raises(DmlReproError, match="ok.npz: made for 737 documents, the dataset has 700"):
        Splits.load(tmp_path / "ok.npz", n_documents=700)


def test_from_fixed_carves_val():
    train = [np.arange(0, 600)]
    test = [np.arange(600, 737)]
    labels = np.random.default_rng(0).permutation(LABELS)
    fixed = Splits.from_fixed(train, test, labels, val_size=0.2, seed=3)
    assert fixed.meta["kind"] == "fixed"
    assert np.isin(fixed.val[0], train[0]).all() and len(fixed.val[0]) == 120
    with pytest.raises(DmlReproError, match="'train_0' and 'test_0' share"):
        Splits.from_fixed([np.arange(0, 10)], [np.arange(5, 20)], labels[:20], val_size=0.0)


def test_bad_parameters():
    with pytest.raises(DmlReproError, match="test_size"):
        make_splits(LABELS, test_size=1.5)
    with pytest.raises(DmlReproError, match="val_size"):
        make_splits(LABELS, val_size=1.0)
    with pytest.raises(DmlReproError, match="cannot make stratified splits"):
        make_splits([0, 0, 0, 1])
