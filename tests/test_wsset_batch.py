"""papers.wsset.batch_runs: the runs of one split in one `dmlrepro batch` job give what their own
processes give, and the workflow plans each run as exactly the command and log of its own job."""

import json
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import REPO_ROOT as REPO, dry_run_train_commands
from test_workflow import expected_training_runs, job_counts, repo_like_workdir, snakemake, wsset_batch_counts
from test_wsset_tuning import small_splits

CLI = [sys.executable, "-m", "dmlrepro"]
MODEL = {"layers": 1, "heads": 7, "ff_dim": 16, "dropout": 0.1, "head_dims": [16, 8], "d_model": 14,
         "input_norm": True, "activation": "relu", "weight_feature": "count"}
TRAIN = {"epochs": 2, "batch_size": 16, "lr": 1e-3, "eval_every": 1, "selection": "val_knn", "knn_k": 3, "seed": 0}


def test_a_batched_wsset_run_and_its_transfer_equal_their_own_processes(tmp_path, bbcsport_small, bbcsport_small_emd):
    """WSSET, then Ours+Int. from its model: byte-identical metrics and embeddings, the same
    training history, whether each run is its own process or both run in one batch."""
    data = {"pointsets": tmp_path / "pointsets.npz", "splits": tmp_path / "splits.npz", "emd": tmp_path / "emd.npy"}
    bbcsport_small.save(data["pointsets"])
    small_splits(bbcsport_small).save(data["splits"])
    np.save(data["emd"], bbcsport_small_emd)
    method_params = {"wsset": {"c": 7, "margin": 0.1, "variant": "paper"}, "ours_int": {"margin": 0.1}}

    def argv(method, root):
        extra = ["--emd", str(data["emd"])] if method == "wsset" else ["--init-model", str(root / "wsset" / "model.pt")]
        params = {"method_params": method_params[method], "model": MODEL, "train": TRAIN}
        return ["train", "--dataset", "bbcsport", "--method", method, "--split", "0", "--pointsets", str(data["pointsets"]),
                "--splits", str(data["splits"]), *extra, "--params", json.dumps(params), "--out-dir", str(root / method),
                "--threads", "1", "--metrics-out", str(root / method / "metrics.json"), "--recall-ks", "1", "5",
                "--knn-k", "3", "--data-note=batch test"]

    for method in ("wsset", "ours_int"):
        res = subprocess.run(CLI + argv(method, tmp_path / "alone"), capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
    jobs = [{"argv": argv(m, tmp_path / "batch"), "log": str(tmp_path / "logs" / f"{m}.log")} for m in ("wsset", "ours_int")]
    res = subprocess.run(CLI + ["batch", "--jobs", json.dumps(jobs)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    for method in ("wsset", "ours_int"):
        alone, batch = tmp_path / "alone" / method, tmp_path / "batch" / method
        assert (batch / "metrics.json").read_bytes() == (alone / "metrics.json").read_bytes(), method
        assert (batch / "embeddings.npy").read_bytes() == (alone / "embeddings.npy").read_bytes(), method
        assert history_without_time(batch) == history_without_time(alone), method
        assert "test kNN accuracy" in (tmp_path / "logs" / f"{method}.log").read_text()  # each run its own log


def history_without_time(run_dir):
    lines = [line.split(",") for line in (run_dir / "history.csv").read_text().splitlines()]
    keep = [i for i, name in enumerate(lines[0]) if name != "seconds"]
    return [[row[i] for i in keep] for row in lines]


def planned_jobs(stdout: str) -> list[str]:
    return re.split(r"\n(?=(?:local)?rule \w+:)", stdout)


def test_default_batches_each_split_and_plans_each_run_as_its_own_job_would(tmp_path):
    """The embedded default (batch_runs: true) against the same config with batch_runs: false: the
    same runs, each with the same arguments and log; a transfer stage after its base in its batch;
    a batch's inputs are what its runs read but what it trains itself."""
    workdir = repo_like_workdir(tmp_path)
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    wsset = cfg["papers"]["wsset"]
    assert wsset["batch_runs"] is True
    wsset["batch_runs"] = False  # (a nested --config value reaches the schema as a string)
    (workdir / "unbatched.yaml").write_text(yaml.safe_dump(cfg))
    batched = snakemake(workdir, "-n", "-p")
    single = snakemake(workdir, "-n", "-p", "--configfile", str(workdir / "unbatched.yaml"))
    assert batched.returncode == 0 and single.returncode == 0, batched.stderr + single.stderr
    wsset["batch_runs"] = True
    runs, studies = expected_training_runs(wsset)
    counts, single_counts = job_counts(batched.stdout), job_counts(single.stdout)
    assert single_counts["train_embedder"] == len(runs) and single_counts["train_study_embedder"] == len(studies)
    batch_counts = {rule: n for rule, n in counts.items() if re.fullmatch(r"train_\w+_batch(_\d+)?", rule)}
    assert batch_counts == wsset_batch_counts(wsset) and "train_embedder" not in counts
    assert counts["total"] == single_counts["total"] - len(runs) - len(studies) + sum(batch_counts.values())
    commands = dry_run_train_commands(batched.stdout)
    assert commands == dry_run_train_commands(single.stdout)  # every run: the same argv and log
    in_batches = []
    for job in planned_jobs(batched.stdout):
        if not re.match(r"rule train_\w+_batch(_\d+)?:", job):
            continue
        inputs = set(re.search(r"^    input: (.*)$", job, re.M).group(1).split(", "))
        words = shlex.split(next(line for line in job.splitlines() if " -m dmlrepro batch " in line))
        argvs = [j["argv"] for j in json.loads(words[words.index("--jobs") + 1])]
        out_dirs = [a[a.index("--out-dir") + 1] for a in argvs]
        assert len({(d.split("/")[2], re.search(r"/split(\d+)/", d).group(1)) for d in out_dirs}) == 1  # one split
        for number, a in enumerate(argvs):  # a base trained in the batch comes before its transfer stage
            if "--init-model" in a:
                base = a[a.index("--init-model") + 1]
                assert base.removesuffix("/model.pt") in out_dirs[:number] or base in inputs, base
        assert not inputs & {f"{d}/model.pt" for d in out_dirs}  # nothing it trains itself
        in_batches += out_dirs
    assert sorted(in_batches) == sorted(runs | studies)  # every run in exactly one batch
    assert "results/wsset/bbcsport/split0/ours_int" in in_batches and "results/wsset/twitter/c7/split1/wsset" in in_batches


@pytest.mark.slow
def test_a_batch_job_runs_through_snakemake_and_writes_every_runs_files(tmp_path, shared_data):
    """A real run of one batch job (tiny BBCSport, WSSET then Ours+Int.): Snakemake finds every
    declared output, each run has its own log, the transfer stage read its base's model."""
    from test_workflow import TINY_WSSET
    wsset = json.loads(json.dumps(TINY_WSSET))
    wsset |= {"datasets": {"bbcsport": {**wsset["datasets"]["bbcsport"], "splits": {"n": 1, "seed": 0}}},
              "methods": ["wsset", "ours_int"], "method_scope": {}, "studies": {}, "batch_runs": True}
    wsset["datasets"]["bbcsport"].pop("external")
    cfg = {"data": {"mirror": str(shared_data), "allow_download": False}, "papers": {"wsset": wsset}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "results/wsset/bbcsport/split0/ours_int/metrics.json", "--cores", "1",
                    "--configfile", str(tmp_path / "c.yaml"))
    assert res.returncode == 0, res.stderr[-3000:]
    assert "train_split_batch" in res.stderr and "train_embedder" not in res.stderr
    for method in ("wsset", "ours_int"):
        for name in ("model.pt", "history.csv", "embeddings.npy", "metrics.json"):
            assert (tmp_path / "results/wsset/bbcsport/split0" / method / name).exists(), (method, name)
        assert "test kNN accuracy" in (tmp_path / "logs/bbcsport/split0" / method / "train.log").read_text()
    # the batch logs each command in its run's log: Ours+Int. started from the model WSSET wrote before it
    assert "--init-model results/wsset/bbcsport/split0/wsset/model.pt" in (
        tmp_path / "logs/bbcsport/split0/ours_int/train.log").read_text()
