"""Catalog and fetch: mirror copies, checksums, atomic writes, trust on first use."""

from __future__ import annotations

import hashlib
import io
import json
import os
import logging
import shutil
from pathlib import Path

import pytest

from dmlrepro import DmlReproError
from dmlrepro.data import fetch
from dmlrepro.data.catalog import DATASETS, RAW_FILES, RawFile, get_dataset, raw_files_for
from dmlrepro.data.fetch import check_cached_raw_file, fetch_raw_file, recorded_sha256, sidecar_path, stamp_path

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
    assert sorted(_leftovers(dest_root)) == [path, stamp_path(path)]  # no temporary file left behind
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
    assert not sidecar_path(path).exists()  # the catalogue's md5 vouches for it: no first-use record
    assert json.loads(stamp_path(path).read_text())["sha256"] == hashlib.sha256(payload).hexdigest()
    assert fetch_raw_file(relpath, tmp_path, None, allow_download=False) == path  # accepted by upstream's md5
    monkeypatch.setattr(fetch.urllib.request, "urlopen", lambda r, timeout: _FakeResponse(b"other"))
    with pytest.raises(DmlReproError, match="md5 mismatch"):
        fetch_raw_file(relpath, tmp_path / "elsewhere", None)
    assert _leftovers(tmp_path / "elsewhere") == []


# ------------------------------------------------------------------------------ integrity
def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_sidecar_never_overrides_the_catalogue_checksum(mirror, tmp_path, caplog):
    """A modified file with a matching ``.sha256`` record must not pass where the catalogue has a sha256."""
    dest = tmp_path / "raw" / STOP
    dest.parent.mkdir(parents=True)
    tampered = b"a, modified, stop, list\n"
    dest.write_bytes(tampered)
    sidecar_path(dest).write_text(f"{_sha(tampered)}  {dest.name}\n")
    with caplog.at_level(logging.WARNING, logger="dmlrepro.data.fetch"), \
            pytest.raises(DmlReproError, match="stop_words_115.txt: missing at"):
        fetch_raw_file(STOP, tmp_path / "raw", None, allow_download=False)
    assert f"sha256 mismatch: expected {RAW_FILES[STOP].sha256} (the catalogue's sha256), got {_sha(tampered)}" \
        in caplog.text
    assert not dest.exists()  # the damaged copy is gone, not kept
    # with a mirror, the modified copy is replaced by the catalogue's file
    dest.write_bytes(tampered)
    assert fetch_raw_file(STOP, tmp_path / "raw", mirror).read_bytes() == (mirror / STOP).read_bytes()


def test_a_sidecar_still_guards_files_without_catalogue_checksum(tmp_path, monkeypatch):
    relpath = "kusner-mat/bbcsport-emd_tr_te_split.mat"
    dest = tmp_path / relpath
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"first")
    assert fetch_raw_file(relpath, tmp_path, None, allow_download=False) == dest  # recorded on first use
    assert recorded_sha256(dest) == _sha(b"first")
    mirror = tmp_path / "mirror"
    (mirror / relpath).parent.mkdir(parents=True)
    (mirror / relpath).write_bytes(b"second")
    dest.write_bytes(b"second")  # changed in place: the record refuses it, the mirror's copy too
    with pytest.raises(DmlReproError, match=rf"sha256 mismatch \(from .*mirror.*expected {_sha(b'first')}"):
        fetch_raw_file(relpath, tmp_path, mirror, allow_download=False)
    assert not dest.exists()


def test_md5_checked_on_mirror_copies_without_sha256(tmp_path, monkeypatch):
    """An archive with only upstream's md5 in the catalogue is checked against it when copied too."""
    relpath = "cub200/CUB_200_2011.tgz"
    good, bad = b"upstream archive bytes", b"re-packed archive"
    monkeypatch.setitem(RAW_FILES, relpath, RawFile(relpath, None, None, None, "test",
                                                    download_md5=hashlib.md5(good).hexdigest()))
    mirror = tmp_path / "mirror"
    (mirror / relpath).parent.mkdir(parents=True)
    (mirror / relpath).write_bytes(bad)
    with pytest.raises(DmlReproError, match=rf"CUB_200_2011.tgz: md5 mismatch \(from .*mirror.*expected "
                                            rf"{hashlib.md5(good).hexdigest()}.*got {hashlib.md5(bad).hexdigest()}"):
        fetch_raw_file(relpath, tmp_path / "raw", mirror, allow_download=False)
    assert _leftovers(tmp_path / "raw") == []
    (mirror / relpath).write_bytes(good)
    dest = fetch_raw_file(relpath, tmp_path / "raw", mirror, allow_download=False)
    assert dest.read_bytes() == good and not sidecar_path(dest).exists()
    # a file found in place is checked against the md5 too, whatever a sidecar says
    dest.write_bytes(bad)
    sidecar_path(dest).write_text(f"{_sha(bad)}  {dest.name}\n")
    with pytest.raises(DmlReproError, match="not available"):
        fetch_raw_file(relpath, tmp_path / "raw", None, allow_download=False)
    assert not dest.exists()  # refused and removed, not kept on the sidecar's word


def test_mirror_copy_of_upstream_bytes_accepted_by_md5(tmp_path, monkeypatch):
    """MNIST-like entry (mirror sha256 + upstream md5): a mirror holding upstream's bytes passes."""
    relpath = "mnist/t10k-labels-idx1-ubyte.gz"
    upstream = b"upstream gz"
    monkeypatch.setitem(RAW_FILES, relpath, RawFile(relpath, None, "1" * 64, None, "",
                                                    download_md5=hashlib.md5(upstream).hexdigest()))
    mirror = tmp_path / "mirror"
    (mirror / relpath).parent.mkdir(parents=True)
    (mirror / relpath).write_bytes(upstream)
    assert fetch_raw_file(relpath, tmp_path / "raw", mirror, allow_download=False).read_bytes() == upstream
    (mirror / relpath).write_bytes(b"neither")
    with pytest.raises(DmlReproError, match=r"sha256 mismatch .*expected 1{64}.*nor upstream's md5"):
        fetch_raw_file(relpath, tmp_path / "other", mirror, allow_download=False)


def test_cached_raw_file_rechecked_before_use(mirror, tmp_path, shared_data):
    from dmlrepro.data.build import load_stop_words, read_raw_documents

    path = fetch_raw_file(STOP, tmp_path / "raw", mirror, allow_download=False)
    stamp = json.loads(stamp_path(path).read_text())
    assert stamp == {"sha256": RAW_FILES[STOP].sha256, "size": path.stat().st_size,
                     "mtime_ns": path.stat().st_mtime_ns}
    assert check_cached_raw_file(path) == path  # unchanged: passes on size and mtime
    # touched only: re-hashed, passes, stamp refreshed
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert check_cached_raw_file(path) == path
    assert json.loads(stamp_path(path).read_text())["mtime_ns"] == path.stat().st_mtime_ns
    # edited in place: refused, naming the file and both checksums
    path.write_text(path.read_text() + "extra\n")
    with pytest.raises(DmlReproError, match=rf"stop_words_115.txt: changed since fetch verified it "
                                            rf"\(sha256 {RAW_FILES[STOP].sha256}, now {_sha(path.read_bytes())}"):
        check_cached_raw_file(path)
    # same size, same mtime: not detected (documented); a size change with equal mtime is
    mtime = path.stat().st_mtime_ns
    path.write_text("x")
    os.utime(path, ns=(mtime, mtime))
    with pytest.raises(DmlReproError, match="changed since fetch verified it"):
        check_cached_raw_file(path)
    # a file with no stamp is not checked here (fetch never saw it)
    loose = tmp_path / "loose.txt"
    loose.write_text("a\n")
    assert check_cached_raw_file(loose) == loose
    assert load_stop_words(check_cached_raw_file(loose)) == {"a"}


def test_readers_recheck_fetched_files(shared_data, tmp_path):
    """The text reader refuses a raw file modified after fetch verified it."""
    from dmlrepro.data.build import read_raw_documents

    relpath = "wmd-text/twitter/all_twitter_by_line.txt"
    path = fetch_raw_file(relpath, tmp_path / "raw", shared_data, allow_download=False)
    assert len(read_raw_documents("twitter", tmp_path / "raw")) == 3115
    with open(path, "a", encoding="utf-8") as f:
        f.write('"positive"\tan extra tweet\n')
    with pytest.raises(DmlReproError, match="all_twitter_by_line.txt: changed since fetch verified it"):
        read_raw_documents("twitter", tmp_path / "raw")
