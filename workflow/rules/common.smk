# Helpers for all stages: which datasets, splits, shards and methods the config asks for.
import json
import sys
from pathlib import Path

SRC = Path(workflow.basedir).parent / "src"
if str(SRC) not in sys.path:  # the catalog below says which raw files each dataset needs
    sys.path.insert(0, str(SRC))

from dmlrepro.data.catalog import raw_files_for  # noqa: E402

# Every job runs the package from this checkout: with --use-conda in the rule's env, otherwise
# with the interpreter that runs Snakemake (the project's virtualenv), whatever PATH says.
_USES_CONDA = "conda" in {str(m).lower() for m in workflow.deployment_settings.deployment_method}
_PYTHON = "python" if _USES_CONDA else sys.executable
DMLREPRO = f'PYTHONPATH="{SRC}${{PYTHONPATH:+:$PYTHONPATH}}" {_PYTHON} -m dmlrepro'
LEARNED_METHODS = ("wsset", "sset", "approx_emd")
DATASETS = list(config["datasets"])



def dataset_cfg(dataset):
    return config["datasets"][dataset]


def n_splits(dataset):
    return int(dataset_cfg(dataset).get("splits", {}).get("n", 5))


def n_shards(dataset):
    return int(dataset_cfg(dataset).get("emd_shards", config.get("ot", {}).get("default_shards", 4)))


def raw_inputs(wildcards):
    cfg = dataset_cfg(wildcards.dataset)
    relpaths = raw_files_for(wildcards.dataset, cfg.get("source", "text"), cfg.get("vectors", "glove50_subset"),
                             cfg.get("stop_words", "default"))
    return [f"resources/raw/{p}" for p in relpaths]


def emd_shards(wildcards):
    n = n_shards(wildcards.dataset)
    return [f"results/{wildcards.dataset}/emd/shard_{s}_of_{n}.npz" for s in range(n)]


def train_params(wildcards):
    return json.dumps({"method_params": config.get("method_params", {}).get(wildcards.method, {}),
                       "model": config["model"], "train": config["train"]}, sort_keys=True)


def recall_ks(wildcards):
    return config["evaluation"].get("recall_ks", {}).get(wildcards.dataset, [1, 5, 10])


def run_dirs():
    return [f"results/{d}/split{s}/{m}" for d in DATASETS for s in range(n_splits(d)) for m in config["methods"]]


def all_metrics(wildcards=None):
    return [f"{r}/metrics.json" for r in run_dirs()]


def all_curves(wildcards=None):
    return [f"results/figures/curves/{d}_{m}_split{s}.png" for d in DATASETS for s in range(n_splits(d))
            for m in config["methods"] if m in LEARNED_METHODS]
