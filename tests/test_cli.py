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


def test_batch_runs_equal_separate_processes_and_a_failure_is_named(shared_data, tmp_path):
    """`dmlrepro batch` (a seed's rows in one interpreter) gives each run exactly what its own
    process gives; a failing command gets its own log and the batch names it, after the rest ran."""
    from conftest import make_stand_in
    root = make_stand_in(tmp_path / "stand_in", shared_data, val_fraction=0.05, every=(100, 20, 50))
    params = {"model": {"backbone": "lenet_ssdml", "embedding_dim": 16},
              "train": {"epochs": 1, "iterations": 2, "batch_size": 20, "m": 4, "lr": 1e-3, "monitor_test": False}}

    def argv(row, loss, out):
        return ["image-train", "--dataset", "fashion_mnist", "--raw-root", str(shared_data), "--split",
                str(root / "split.json"), "--seed", "0", "--method", row,
                "--params", json.dumps({**params, "method": {"loss": {"name": loss}}}),
                "--init", str(root / "pretrained.pt"), "--recall-ks", "1", "2", "--out-dir", str(out)]

    rows = {"raw": "RAWLoss", "binomial": "BinomialDevianceLoss"}
    assert run(*argv("binomial", rows["binomial"], tmp_path / "alone" / "binomial")).returncode == 0
    jobs = [{"argv": argv(row, loss, tmp_path / "batch" / row), "log": str(tmp_path / "logs" / f"{row}.log")}
            for row, loss in {**rows, "broken": "NoSuchLoss"}.items()]  # raw first: binomial runs after it
    jobs.insert(1, jobs.pop())  # the broken command in the middle: the one after it still runs
    res = run("batch", "--jobs", json.dumps(jobs))
    assert res.returncode == 2 and "1 of 3 batched commands failed" in res.stderr and "broken.log" in res.stderr
    assert "NoSuchLoss" in (tmp_path / "logs" / "broken.log").read_text()
    alone = json.loads((tmp_path / "alone" / "binomial" / "metrics.json").read_text())
    assert json.loads((tmp_path / "batch" / "binomial" / "metrics.json").read_text()) == alone
    for row in rows:
        assert "epoch 1/1" in (tmp_path / "logs" / f"{row}.log").read_text()


def _ssdml_rows(shared_data, root):
    """Two SSDML rows (a baseline, then Ours) on a tiny same-class MNIST split."""
    from dmlrepro.data.images import ImageSplit, load_image_dataset, make_image_split
    split = make_image_split(load_image_dataset("mnist", shared_data), protocol="same_class", val_fraction=0.15, seed=0)
    ImageSplit(fit=split.fit[::200], val=split.val[::60], test=split.test[::40]).save(root / "split.json")
    method = {"k": 4, "gamma": 0.99, "max_iter": 3, "metric_dim": 8, "alpha_deg": 40}
    train = {"labels_per_class": 3, "partition_size": 60, "epochs_per_partition": 1, "epochs": 1,
             "triplets_per_batch": 40, "metric_every": 1, "lr": 1e-3}

    def argv(row, own, out):
        params = {"method": {**method, **own}, "model": {"backbone": "lenet_ssdml"}, "train": train}
        return ["ssdml-train", "--dataset", "mnist", "--raw-root", str(shared_data), "--split", str(root / "split.json"),
                "--seed", "0", "--method", row, "--params", json.dumps(params), "--recall-ks", "1", "2",
                "--out-dir", str(out)]
    return [("deep_lrml", lambda out: argv("deep_lrml", {"metric_step": "lrml"}, out)),
            ("ours", lambda out: argv("ours", {"orthogonal": True}, out))]


def _pl_rows(shared_data, root):
    """Two PL-manifold runs (STML*, then Ours) on the tiny zero-shot Fashion-MNIST stand-in."""
    from conftest import make_stand_in
    from dmlrepro.papers.pl_manifolds.methods import METHODS
    make_stand_in(root, shared_data, val_fraction=0.05, every=(300, 15, 50))
    train = {"epochs": 1, "batch_size": 20, "n_per_seed": 5, "views": 2, "crop_scale": [0.5, 1.0], "lr": 5e-4}

    def argv(run_name, method, out):
        params = {"method": method, "model": {"backbone": "lenet_ssdml", "embedding_dim": 16}, "train": train}
        return ["pl-train", "--dataset", "fashion_mnist", "--raw-root", str(shared_data), "--split",
                str(root / "split.json"), "--seed", "0", "--run", run_name, "--params", json.dumps(params),
                "--init", str(root / "pretrained.pt"), "--recall-ks", "1", "2", "--out-dir", str(out)]
    return [("stml", lambda out: argv("stml", {**METHODS["stml"], "aux_dim": 32}, out)),
            ("ours", lambda out: argv("ours", {**METHODS["ours"], "n_proxies": 8}, out))]


@pytest.mark.parametrize("rows", [_ssdml_rows, _pl_rows], ids=["ssdml", "pl_manifolds"])
def test_a_batched_ssdml_or_pl_run_equals_its_own_process(rows, shared_data, tmp_path):
    """batch_rows of SSDML and the PL manifolds: a run after another in one interpreter (the dataset's
    decoded files reused, torch's state left by the first) writes byte-identical metrics and the same
    model as in its own process."""
    import torch
    (first, first_argv), (last, last_argv) = rows(shared_data, tmp_path)
    assert run(*last_argv(tmp_path / "alone" / last)).returncode == 0
    jobs = [{"argv": first_argv(tmp_path / "batch" / first), "log": str(tmp_path / "logs" / f"{first}.log")},
            {"argv": last_argv(tmp_path / "batch" / last), "log": str(tmp_path / "logs" / f"{last}.log")}]
    res = run("batch", "--jobs", json.dumps(jobs))
    assert res.returncode == 0, res.stderr
    alone, batched = tmp_path / "alone" / last, tmp_path / "batch" / last
    assert (batched / "metrics.json").read_bytes() == (alone / "metrics.json").read_bytes()
    a, b = (torch.load(d / "model.pt", weights_only=False)["state_dict"] for d in (alone, batched))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "batch" / first / "metrics.json").is_file() and "epoch 1/1" in (tmp_path / "logs" / f"{last}.log").read_text()
