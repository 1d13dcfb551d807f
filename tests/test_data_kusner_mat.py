"""Kusner's .mat layout: write small files with write_kusner_mat, read them back."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from dmlrepro import DmlReproError
from dmlrepro.data.build import build_pointsets
from dmlrepro.data.kusner_mat import load_kusner_mat, write_kusner_mat
from dmlrepro.data.splits import Splits

DIM = 4


def _toy(rng):
    vocab = ["alpha", "beta", "gamma", "delta", "eps"]
    table = rng.normal(size=(len(vocab), DIM))
    doc_words = [["alpha", "beta", "gamma"], ["delta"], ["beta", "eps"], ["alpha", "gamma", "delta", "eps"],
                 ["gamma", "eps"], ["beta"]]
    docs = [(table[[vocab.index(w) for w in ws]], rng.integers(1, 5, size=len(ws)).astype(float))
            for ws in doc_words]
    labels = [1, 2, 1, 2, 3, 3]
    train = [[0, 1, 4, 5], [2, 3, 4, 5]]
    test = [[2, 3], [0, 1]]
    return docs, labels, train, test, doc_words


def test_roundtrip(tmp_path):
    docs, labels, train, test, words = _toy(np.random.default_rng(0))
    path = tmp_path / "toy-emd_tr_te_split.mat"
    write_kusner_mat(path, docs, labels, train, test, words)
    ps, splits = load_kusner_mat(path, dataset="toy")

    assert len(ps) == 6 and ps.dim == DIM
    assert ps.label_names.tolist() == ["1", "2", "3"]
    assert ps.labels.tolist() == [0, 1, 0, 1, 2, 2]
    for i, (vec, cnt) in enumerate(docs):
        v, w = ps.doc(i)
        np.testing.assert_allclose(v, vec, rtol=1e-6)
        np.testing.assert_array_equal(w, cnt)
        assert ps.doc_words(i) == words[i]
    assert ps.lengths[1] == 1  # the 1-word document
    assert [s.tolist() for s in splits["train"]] == train  # back to 0-based
    assert [s.tolist() for s in splits["test"]] == test
    assert ps.doc_ids.tolist()[:2] == ["mat:1", "mat:2"]
    assert ps.meta["source"] == "kusner_mat"

    fixed = Splits.from_fixed(splits["train"], splits["test"], ps.labels, val_size=0.0)
    assert fixed.n_splits == 2 and fixed.fit(0).tolist() == train[0]


def test_matlab_quirks(tmp_path):
    """A 1-word document stored as a plain vector, an empty document, no 'words' key."""
    rng = np.random.default_rng(1)
    X = np.empty((1, 3), dtype=object)
    bow = np.empty((1, 3), dtype=object)
    X[0, 0], bow[0, 0] = rng.normal(size=(DIM, 2)), np.array([[1.0, 3.0]])
    X[0, 1], bow[0, 1] = rng.normal(size=DIM), np.array([[2.0]])  # savemat stores it as 1 x DIM
    X[0, 2], bow[0, 2] = np.zeros((0, 0)), np.zeros((0, 0))
    path = tmp_path / "quirks.mat"
    savemat(path, {"X": X, "BOW_X": bow, "Y": np.array([[4, 7, 4]]), "TR": np.array([[1, 3]]), "TE": np.array([[2]])})

    with pytest.raises(DmlReproError, match="quirks.mat: document 3 .*no words"):
        load_kusner_mat(path)
    ps, splits = load_kusner_mat(path, empty_documents="drop")
    assert len(ps) == 2 and ps.lengths.tolist() == [2, 1]
    np.testing.assert_allclose(ps.doc(1)[0][0], X[0, 1], rtol=1e-6)
    assert ps.label_names.tolist() == ["4", "7"]
    assert splits["train"][0].tolist() == [0] and splits["test"][0].tolist() == [1]  # doc 3 dropped
    assert ps.meta["dropped_empty"]["doc_ids"] == ["mat:3"]


def test_errors_name_file_and_key(tmp_path):
    docs, labels, train, test, words = _toy(np.random.default_rng(2))
    path = tmp_path / "no_te.mat"
    write_kusner_mat(path, docs, labels, train, test, words)
    from scipy.io import loadmat

    content = {k: v for k, v in loadmat(path).items() if not k.startswith("__") and k != "TE"}
    savemat(path, content)
    with pytest.raises(DmlReproError, match="no_te.mat: missing key 'TE'"):
        load_kusner_mat(path)

    content["TE"] = np.array([[0, 2]])  # 0 is not a MATLAB index
    savemat(path, content)
    with pytest.raises(DmlReproError, match="no_te.mat: key 'TE' indices must be 1-based"):
        load_kusner_mat(path)

    with pytest.raises(DmlReproError, match="missing.mat"):
        load_kusner_mat(tmp_path / "missing.mat")
    (tmp_path / "junk.mat").write_bytes(b"junk")
    with pytest.raises(DmlReproError, match="junk.mat"):
        load_kusner_mat(tmp_path / "junk.mat")


def test_build_pointsets_from_mat(tmp_path):
    docs, labels, train, test, words = _toy(np.random.default_rng(3))
    write_kusner_mat(tmp_path / "kusner-mat" / "recipe2-emd_tr_te_split.mat", docs, labels, train, test, words)
    ps, splits = build_pointsets("recipe", {"source": "kusner_mat"}, tmp_path)
    assert len(ps) == 6 and ps.meta["dataset"] == "recipe"
    assert ps.meta["source_file"] == "kusner-mat/recipe2-emd_tr_te_split.mat"
    assert len(splits["train"]) == 2
