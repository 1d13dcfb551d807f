"""The Snakemake workflow: config validation, the paper's full DAG, lint, and a tiny real run."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile")]


def snakemake(workdir, *args, timeout=900):
    return subprocess.run(SNAKEMAKE + ["-d", str(workdir), *args], capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", output, re.M)}


def test_paper_config_builds_the_full_dag(tmp_path):
    res = snakemake(tmp_path, "-n", "--configfile", str(REPO / "config" / "paper.yaml"))
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    datasets = list(cfg["datasets"])
    assert set(datasets) == {"bbcsport", "twitter", "recipe", "amazon"}
    counts = job_counts(res.stdout)
    learned = [m for m in cfg["methods"] if m != "wmd_knn"]
    assert counts["train_embedder"] == len(datasets) * 5 * len(learned)
    assert counts["evaluate_wmd_knn"] == len(datasets) * 5
    assert counts["emd_shard"] == sum(d["emd_shards"] for d in cfg["datasets"].values())
    for ds in datasets:  # every dataset x split x method appears
        for split in range(5):
            for method in learned:
                assert f"results/{ds}/split{split}/{method}/model.pt" in res.stdout
            assert f"results/{ds}/split{split}/wmd_knn/metrics.json" in res.stdout
        assert f"kusner-mat/{'recipe2' if ds == 'recipe' else ds}-emd_tr_te_split.mat" in res.stdout


def test_default_config_targets_table_rows(tmp_path):
    res = snakemake(tmp_path, "-n", "--configfile", str(REPO / "config" / "config.yaml"))
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    assert counts["train_embedder"] == 2 * 5 * 3 and counts["evaluate_wmd_knn"] == 2 * 5


def test_workflow_lint_is_clean():
    res = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert "Congratulations, your workflow is in a good condition!" in res.stdout + res.stderr, res.stdout


def write_config(path: Path, **override) -> Path:
    cfg = {"datasets": {"bbcsport": {"source": "text"}}, "methods": ["wsset"], "model": {}, "train": {},
           "evaluation": {}}
    cfg.update(override)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("override,named", [
    ({"train": {"epohcs": 3}}, "epohcs"),
    ({"datasets": {"bbcsprot": {}}}, "bbcsprot"),
    ({"methods": ["wsset", "magic"]}, "magic"),
    ({"datasets": {"bbcsport": {"source": "pdf"}}}, "pdf"),
])
def test_bad_config_is_an_error_naming_the_key_or_value(tmp_path, override, named):
    res = snakemake(tmp_path, "-n", "--configfile", str(write_config(tmp_path / "c.yaml", **override)))
    assert res.returncode != 0
    assert named in res.stdout + res.stderr


TINY = {
    "data": {"mirror": None, "allow_download": False},
    "datasets": {
        "bbcsport": {"source": "text", "max_documents": 40, "splits": {"n": 2, "seed": 0}, "emd_shards": 2},
        "twitter": {"source": "text", "stop_words": None, "empty_documents": "drop", "max_documents": 60,
                    "splits": {"n": 2, "seed": 0}, "emd_shards": 1},
    },
    "methods": ["wmd_knn", "wsset", "sset", "approx_emd"],
    "model": {"layers": 1, "heads": 7, "ff_dim": 16, "dropout": 0.1, "head_dims": [16, 8], "d_model": 14},
    "train": {"epochs": 2, "batch_size": 16, "lr": 1.0e-3, "knn_k": 3, "device": "cpu", "threads": 1},
    "evaluation": {"knn_k": 3, "recall_ks": {"bbcsport": [5, 15], "twitter": [3, 6]}},
}


@pytest.mark.slow
def test_tiny_end_to_end_run_produces_tables_figures_and_report(tmp_path, shared_data):
    cfg = json.loads(json.dumps(TINY))
    cfg["data"]["mirror"] = str(shared_data)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "--cores", "2", "--configfile", str(tmp_path / "c.yaml"))
    assert res.returncode == 0, res.stderr[-3000:]
    table1 = (tmp_path / "results/tables/table1.md").read_text()
    for label in ("WMD", "Ours (WSSET)", "SSET", "Approx.EMD"):
        for dataset in ("BBCSport", "Twitter"):
            assert re.search(rf"\| {re.escape(label)}\s.*\| {dataset} ", table1), (label, dataset)
    assert "| 95.0 " in table1 and "| 96.36 " in table1  # the paper's column
    for m in ("wmd_knn", "wsset", "sset", "approx_emd"):
        rec = json.loads((tmp_path / f"results/bbcsport/split1/{m}/metrics.json").read_text())
        assert 0 <= rec["knn_accuracy"] <= 100 and set(rec["recall_at"]) == {"5", "15"}
    assert (tmp_path / "results/figures/curves/twitter_wsset_split0.png").stat().st_size > 1000
    html = (tmp_path / "results/report.html").read_text()
    assert "Ours (WSSET)" in html and "data:image/png;base64" in html
    # the raw files came from the mirror and were verified
    assert (tmp_path / "resources/raw/wmd-text/bbcsport/bbcsport-fulltext.zip").exists()
