"""Text readers and Kusner preprocessing on the real shared corpora."""

from __future__ import annotations

import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dmlrepro import DmlReproError
from dmlrepro.data.build import build_pointsets, build_text_pointsets, load_stop_words, tokenize
from dmlrepro.data.catalog import DATASETS
from dmlrepro.data.pointsets import Pointsets
from dmlrepro.data.text_corpora import RawDocument, read_amazon, read_bbcsport, read_r8, read_twitter
from dmlrepro.data.word_vectors import WordVectors, load_word_vectors


@pytest.fixture(scope="session")
def glove(shared_data: Path) -> WordVectors:
    return load_word_vectors("glove50_subset", shared_data)


def _path(root: Path, dataset: str, i: int = 0) -> Path:
    return root / DATASETS[dataset].text_files[i]


# ------------------------------------------------------------------------------ readers
def test_read_bbcsport(shared_data):
    docs = read_bbcsport(_path(shared_data, "bbcsport"))
    assert len(docs) == 737
    assert Counter(d.label for d in docs) == {"athletics": 101, "cricket": 124, "football": 265,
                                              "rugby": 147, "tennis": 100}
    assert docs[0].doc_id == "bbcsport/athletics/001.txt"
    assert len({d.doc_id for d in docs}) == 737


def test_read_twitter(shared_data):
    docs = read_twitter(_path(shared_data, "twitter"))
    assert len(docs) == 3115
    assert Counter(d.label for d in docs) == {"positive": 462, "negative": 509, "neutral": 2144}
    assert docs[0].doc_id == "line:1" and docs[-1].doc_id == "line:3115"


def test_read_amazon(shared_data):
    docs = read_amazon(shared_data / "wmd-text/amazon")
    assert len(docs) == 8000
    assert Counter(d.label for d in docs) == {c: 2000 for c in ("books", "dvd", "electronics", "kitchen")}
    assert all(d.text and "<" not in d.text[:1] for d in docs)
    by_sentiment = read_amazon([shared_data / p for p in DATASETS["amazon"].text_files], label="sentiment")
    assert Counter(d.label for d in by_sentiment) == {"positive": 4000, "negative": 4000}


def test_read_r8(shared_data):
    docs = read_r8(_path(shared_data, "r8", 0), _path(shared_data, "r8", 1))
    train = [d for d in docs if d.doc_id.startswith("train:")]
    test = [d for d in docs if d.doc_id.startswith("test:")]
    assert (len(train), len(test)) == (5485, 2189)
    assert len({d.label for d in docs}) == 8 and "Class" not in {d.label for d in docs}
    assert train[0].doc_id == "train:line:2"  # line 1 is the header


def test_reader_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(DmlReproError, match="nope.txt"):
        read_twitter(missing)
    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(b"not a zip")
    with pytest.raises(DmlReproError, match="bad.zip"):
        read_bbcsport(bad_zip)
    lines = tmp_path / "tw.txt"
    lines.write_text('"positive"\tgood\nno tab here\n', encoding="utf-8")
    with pytest.raises(DmlReproError, match=r"tw.txt:2: malformed"):
        read_twitter(lines)
    review = tmp_path / "books" / "positive.review"
    review.parent.mkdir()
    review.write_text("<review>\n<title>x</title>\n</review>\n", encoding="latin-1")
    with pytest.raises(DmlReproError, match=r"positive.review:1: review 1 has no <review_text>"):
        read_amazon(tmp_path)


def test_bbcsport_zip_layout_error(tmp_path):
    path = tmp_path / "flat.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("001.txt", "text")
    with pytest.raises(DmlReproError, match="flat.zip.*001.txt"):
        read_bbcsport(path)


# ------------------------------------------------------------------------------ preprocessing
def test_tokenize_and_stop_words(shared_data):
    assert tokenize("U.S. isn't well-known; A-B. 3.5%") == ["u.s", "isn't", "well-known", "a-b", "3.5"]
    stop = load_stop_words(shared_data / "wmd-text/stop_words_115.txt")
    assert len(stop) == 115 and {"the", "and", "i'm"} <= stop


def test_build_small_documents():
    vectors = WordVectors(["apple", "banana", "the"], np.eye(3, dtype=np.float32), "toy")
    docs = [RawDocument("a", "fruit", "The apple, the APPLE and a banana!"),
            RawDocument("b", "other", "banana")]
    ps = build_text_pointsets(docs, vectors, {"the"}, "error", "toy.txt", dataset="toy")
    assert ps.doc_words(0) == ["apple", "banana"]
    assert ps.doc(0)[1].tolist() == [2.0, 1.0]
    np.testing.assert_array_equal(ps.doc(0)[0], np.eye(3, dtype=np.float32)[[0, 1]])
    assert ps.label_names.tolist() == ["fruit", "other"] and ps.labels.tolist() == [0, 1]
    assert ps.vocab.tolist() == ["apple", "banana"]
    assert ps.meta["stop_words"]["count"] == 1 and ps.meta["word_vectors"] == "toy"


def test_build_bbcsport(shared_data, glove, tmp_path):
    ps, splits = build_pointsets("bbcsport", {"source": "text", "vectors": "glove50_subset"}, shared_data,
                                 word_vectors=glove)
    assert splits is None
    assert len(ps) == 737 and ps.n_classes == 5 and ps.dim == 50
    assert ps.meta["dropped_empty"]["count"] == 0
    assert 130 < ps.lengths.mean() < 155  # README: 143 unique words per document
    assert ps.meta["stop_words"]["name"] == "wmd-text/stop_words_115.txt"
    assert "the" not in set(ps.vocab.tolist())  # stop words removed
    words = ps.doc_words(0)
    assert words == sorted(words) and len(set(words)) == len(words)
    np.testing.assert_array_equal(ps.doc(0)[0], glove.lookup(words))
    assert ps.meta["source_file"] == ["wmd-text/bbcsport/bbcsport-fulltext.zip"]
    ps.save(tmp_path / "bbc.npz")
    again = Pointsets.load(tmp_path / "bbc.npz")
    assert again.meta == ps.meta and np.array_equal(again.offsets, ps.offsets)
    rebuilt, _ = build_pointsets("bbcsport", {}, shared_data, word_vectors=glove)  # deterministic
    for key in ("vectors", "weights", "offsets", "word_ids", "vocab", "labels", "doc_ids"):
        assert np.array_equal(getattr(rebuilt, key), getattr(ps, key)), key


def test_build_twitter_empty_documents(shared_data, glove):
    ps, _ = build_pointsets("twitter", {"empty_documents": "drop"}, shared_data, word_vectors=glove)
    assert len(ps) == 3110 and ps.n_classes == 3
    assert ps.meta["dropped_empty"]["count"] == 5
    assert ps.meta["stop_words"] is None  # Kusner kept stop words for Twitter
    assert "the" in set(ps.vocab.tolist())
    first_dropped = ps.meta["dropped_empty"]["doc_ids"][0]
    with pytest.raises(DmlReproError, match=f"all_twitter_by_line.txt.*'{first_dropped}'.*5 such"):
        build_pointsets("twitter", {"empty_documents": "error"}, shared_data, word_vectors=glove)


def test_build_r8_official_split(shared_data, glove):
    ps, splits = build_pointsets("r8", {}, shared_data, word_vectors=glove)
    assert len(splits["train"]) == 1
    train, test = splits["train"][0], splits["test"][0]
    assert len(train) + len(test) == len(ps) and len(np.intersect1d(train, test)) == 0
    assert all(d.startswith("test:") for d in ps.doc_ids[test])
    assert ps.n_classes == 8


def test_build_pointsets_config_errors(shared_data, glove, tmp_path):
    with pytest.raises(DmlReproError, match="unknown dataset 'nope'"):
        build_pointsets("nope", {}, shared_data)
    with pytest.raises(DmlReproError, match="no raw text"):
        build_pointsets("recipe", {"source": "text"}, shared_data)
    with pytest.raises(DmlReproError, match="'source'.*'bogus'"):
        build_pointsets("bbcsport", {"source": "bogus"}, shared_data)
    with pytest.raises(DmlReproError, match="applies only to amazon"):
        build_pointsets("bbcsport", {"label": "sentiment"}, shared_data, word_vectors=glove)
    with pytest.raises(DmlReproError, match="raw file not found: .*bbcsport-fulltext.zip"):
        build_pointsets("bbcsport", {}, tmp_path, word_vectors=glove)
    with pytest.raises(DmlReproError, match="kusner-mat/bbcsport-emd_tr_te_split.mat"):
        build_pointsets("bbcsport", {"source": "kusner_mat"}, tmp_path)
    with pytest.raises(DmlReproError, match="stop-word file not found: .*missing.txt"):
        build_pointsets("bbcsport", {"stop_words": "missing.txt"}, shared_data, word_vectors=glove)
