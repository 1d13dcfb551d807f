"""Bad input through the command line: one clear error naming the culprit, no output written."""

import json
import shutil
import subprocess
import sys

import pytest

CLI = [sys.executable, "-m", "dmlrepro"]


def run(*args, cwd=None):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, cwd=cwd, timeout=300)


def test_unknown_dataset_is_named(tmp_path):
    res = run("pointsets", "--dataset", "bbcsprot", "--params", "{}", "--raw-root", str(tmp_path),
              "--out-pointsets", str(tmp_path / "p.npz"), "--out-splits", str(tmp_path / "s.npz"))
    assert res.returncode == 2
    assert "unknown dataset 'bbcsprot'" in res.stderr
    assert not list(tmp_path.iterdir())


def test_missing_raw_file_is_named(tmp_path):
    res = run("pointsets", "--dataset", "bbcsport", "--params", "{}", "--raw-root", str(tmp_path),
              "--out-pointsets", str(tmp_path / "p.npz"), "--out-splits", str(tmp_path / "s.npz"))
    assert res.returncode == 2
    assert "bbcsport-fulltext.zip" in res.stderr
    assert not (tmp_path / "p.npz").exists()


def test_wrong_checksum_is_named_and_nothing_is_left(tmp_path, shared_data):
    mirror = tmp_path / "mirror" / "wmd-text"
    mirror.mkdir(parents=True)
    (mirror / "stop_words_115.txt").write_text("tampered\n")
    res = run("fetch", "--relpath", "wmd-text/stop_words_115.txt", "--dest", str(tmp_path / "raw"),
              "--mirror", str(tmp_path / "mirror"), "--no-download")
    assert res.returncode == 2
    assert "stop_words_115.txt" in res.stderr and "89b64d30" in res.stderr  # the expected sha256
    assert not (tmp_path / "raw" / "wmd-text" / "stop_words_115.txt").exists()


def test_document_without_known_words_is_named(tmp_path, shared_data):
    raw = tmp_path / "raw"
    for rel in ("wmd-text/twitter/all_twitter_by_line.txt", "glove-6B-50d-subset/glove_6B_50d_wmdtext_subset.npz"):
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shared_data / rel, raw / rel)
    params = json.dumps({"source": "text", "stop_words": None, "empty_documents": "error"})
    res = run("pointsets", "--dataset", "twitter", "--params", params, "--raw-root", str(raw),
              "--out-pointsets", str(tmp_path / "p.npz"), "--out-splits", str(tmp_path / "s.npz"))
    assert res.returncode == 2
    assert "line:79" in res.stderr and "all_twitter_by_line.txt" in res.stderr
    assert not (tmp_path / "p.npz").exists() and not (tmp_path / "s.npz").exists()


def test_corrupt_pointset_file_is_named(tmp_path):
    bad = tmp_path / "pointsets.npz"
    bad.write_bytes(b"not a zip")
    res = run("emd-shard", "--pointsets", str(bad), "--shard", "0", "--n-shards", "1", "--out", str(tmp_path / "o.npz"))
    assert res.returncode == 2 and "pointsets.npz" in res.stderr
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("bad", ["{not json", "[1, 2"])
def test_malformed_params_are_named(tmp_path, bad):
    res = run("pointsets", "--dataset", "bbcsport", "--params", bad, "--raw-root", str(tmp_path),
              "--out-pointsets", str(tmp_path / "p.npz"), "--out-splits", str(tmp_path / "s.npz"))
    assert res.returncode == 2 and "invalid JSON" in res.stderr
