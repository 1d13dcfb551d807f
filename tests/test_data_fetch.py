"""Catalog and fetch: mirror copies, checksums, atomic writes, trust on first use."""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
from pathlib import Path

import pytest

from dmlrepro import DmlReproError
from dmlrepro.data import fetch
from dmlrepro.data.catalog import DATASETS, RAW_FILES, RawFile, get_dataset, raw_files_for
from dmlrepro.data.fetch import fetch_raw_file, recorded_sha256, sidecar_path

STOP = "wmd-text/stop_words_115.txt"


@pytest.fixture()
def mirror(shared_data, tmp_path) -> Path:
    """A temporary mirror holding a copy of one small real file."""
    root = tmp_path / "mirror"
    (root / STOP).parent.mkdir(parents=True)
    shutil.copyfile(shared_data / STOP, root / STOP)
    return root


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


# ------------------------------------------------------------------------------ catalog
def test_catalog_matches_the_shared_mirror(shared_data):
    readme_files = [r for r, f in RAW_FILES.items() if f.sha256 is not None]
    assert len(readme_files) == 23
    for relpath in readme_files:
        entry = RAW_FILES[relpath]
        path = shared_data / relpath
        assert path.is_file(), relpath
        assert path.stat().st_size == entry.size, relpath
    # one full checksum is enough here; fetch tests verify the mechanism
    assert hashlib.sha256((shared_data / STOP).read_bytes()).hexdigest() == RAW_FILES[STOP].sha256


def test_catalog_urls_and_datasets():
    kitchen = RAW_FILES["wmd-text/amazon/kitchen/positive.review"].url
    assert "/f35a75418ea0ecf75dd85237bfcf68c224533747/sorted_data_acl/kitchen_%26_housewares/positive.review" in kitchen
    assert RAW_FILES["wmd-text/bbcsport/bbcsport-fulltext.zip"].url.endswith(
        "/1516d2f248201581e1977d9e85d9422e81e0c871/bbcsport.zip")
    for name in ("bbcsport", "twitter", "recipe2", "amazon"):
        entry = RAW_FILES[f"kusner-mat/{name}-emd_tr_te_split.mat"]
        assert entry.sha256 is None and entry.url.startswith("https://www.dropbox.com/sh/nf532hddgdt68ix/")
    assert RAW_FILES["word2vec/GoogleNews-vectors-negative300.bin.gz"].sha256 is None
    assert RAW_FILES["glove-6B-50d-subset/glove_6B_50d_wmdtext_subset.npz"].url is None
    for spec in DATASETS.values():
        for rel in spec.text_files + tuple(x for x in (spec.mat_file, spec.default_stop_words) if x):
            assert rel in RAW_FILES, rel
    assert get_dataset("twitter").default_stop_words is None
    assert get_dataset("recipe").text_files == () and get_dataset("r8").mat_file is None
    with pytest.raises(DmlReproError, match="unknown dataset 'x'; known: amazon, amazon_consumer_reviews, bbcsport"):
        get_dataset("x")
    assert raw_files_for("twitter") == ["wmd-text/twitter/all_twitter_by_line.txt",
                                        "glove-6B-50d-subset/glove_6B_50d_wmdtext_subset.npz"]
    assert raw_files_for("recipe", source="kusner_mat") == ["kusner-mat/recipe2-emd_tr_te_split.mat"]


# ------------------------------------------------------------------------------ fetch
def test_fetch_copies_from_mirror_and_verifies(mirror, tmp_path, shared_data):
    dest_root = tmp_path / "raw"
    path = fetch_raw_file(STOP, dest_root, mirror, allow_download=False)
    assert path == dest_root / STOP
    assert path.read_bytes() == (shared_data / STOP).read_bytes()
    assert not sidecar_path(path).exists()
    assert _leftovers(dest_root) == [path]  # no temporary file left behind
    # a second call finds the verified file and keeps it, even with no mirror
    assert fetch_raw_file(STOP, dest_root, None, allow_download=False) == path


def test_fetch_checksum_mismatch_leaves_nothing(mirror, tmp_path, monkeypatch):
    wrong = "0" * 64
    monkeypatch.setitem(RAW_FILES, STOP, RawFile(STOP, None, wrong, None, "test"))
    dest_root = tmp_path / "raw"
    with pytest.raises(DmlReproError) as info:
        fetch_raw_file(STOP, dest_root, mirror, allow_download=False)
    message = str(info.value)
    assert "stop_words_115.txt" in message and wrong in message
    assert hashlib.sha256((mirror / STOP).read_bytes()).hexdigest() in message  # the actual checksum
    assert _leftovers(dest_root) == []


def test_fetch_replaces_a_corrupt_copy(mirror, tmp_path):
    dest = tmp_path / "raw" / STOP
    dest.parent.mkdir(parents=True)
    dest.write_text("damaged\n")
    assert fetch_raw_file(STOP, tmp_path / "raw", mirror).read_bytes() == (mirror / STOP).read_bytes()


def test_fetch_missing_without_download(tmp_path):
    with pytest.raises(DmlReproError, match=r"stop_words_115.txt: missing .*downloads are disabled"):
        fetch_raw_file(STOP, tmp_path / "raw", tmp_path / "empty-mirror", allow_download=False)
    with pytest.raises(DmlReproError, match="glove_6B_50d_wmdtext_subset.npz: not available.*no download URL"):
        fetch_raw_file("glove-6B-50d-subset/glove_6B_50d_wmdtext_subset.npz", tmp_path / "raw", None)


def test_fetch_unknown_relpath(tmp_path):
    with pytest.raises(DmlReproError, match="unknown raw file 'wmd-text/nope.txt'"):
        fetch_raw_file("wmd-text/nope.txt", tmp_path, None)


class _FakeResponse(io.BytesIO):
    headers: dict = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_download_trust_on_first_use(tmp_path, monkeypatch, caplog):
    relpath = "kusner-mat/bbcsport-emd_tr_te_split.mat"
    payload = b"pretend .mat bytes"
    calls = []

    def fake_urlopen(request, timeout):
        calls.append(request.full_url)
        return _FakeResponse(payload)

    monkeypatch.setattr(fetch.urllib.request, "urlopen", fake_urlopen)
    with caplog.at_level(logging.WARNING, logger="dmlrepro.data.fetch"):
        path = fetch_raw_file(relpath, tmp_path, None)
    digest = hashlib.sha256(payload).hexdigest()
    assert calls == [RAW_FILES[relpath].url]
    assert path.read_bytes() == payload
    assert recorded_sha256(path) == digest and digest in caplog.text
    # The record now guards later fetches: a different download is rejected.
    path.unlink()
    monkeypatch.setattr(fetch.urllib.request, "urlopen", lambda r, timeout: _FakeResponse(b"tampered"))
    with pytest.raises(DmlReproError, match=f"bbcsport-emd_tr_te_split.mat.*expected {digest}"):
        fetch_raw_file(relpath, tmp_path, None)
    assert not path.exists()


def test_download_checked_against_upstream_md5(tmp_path, monkeypatch):
    relpath = "mnist/t10k-labels-idx1-ubyte.gz"
    payload = b"upstream bytes"
    monkeypatch.setitem(RAW_FILES, relpath, RawFile(relpath, "https://example.invalid/x.gz", "1" * 64, None, "",
                                                    download_md5=hashlib.md5(payload).hexdigest()))
    monkeypatch.setattr(fetch.urllib.request, "urlopen", lambda r, timeout: _FakeResponse(payload))
    path = fetch_raw_file(relpath, tmp_path, None)
    assert recorded_sha256(path) == hashlib.sha256(payload).hexdigest()
    assert fetch_raw_file(relpath, tmp_path, None, allow_download=False) == path  # accepted from the record
    monkeypatch.setattr(fetch.urllib.request, "urlopen", lambda r, timeout: _FakeResponse(b"other"))
    with pytest.raises(DmlReproError, match="md5 mismatch"):
        fetch_raw_file(relpath, tmp_path / "elsewhere", None)
    assert _leftovers(tmp_path / "elsewhere") == []
