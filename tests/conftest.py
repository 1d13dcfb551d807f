"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# the papers and TARGETS.md: ``$DMLREPRO_PAPERS`` or ``../shared/papers`` beside the checkout
PAPERS_DIR = Path(os.environ.get("DMLREPRO_PAPERS", REPO_ROOT.parent / "shared" / "papers"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The offline data mirror (``$DMLREPRO_DATA_MIRROR``, default ``<repo>/../shared/data``)."""
    root = Path(os.environ.get("DMLREPRO_DATA_MIRROR", REPO_ROOT.parent / "shared" / "data"))
    if not root.is_dir():
        pytest.skip(f"shared data mirror not found at {root} (set DMLREPRO_DATA_MIRROR)")
    return root


@pytest.fixture(scope="session")
def bbcsport_pointsets(shared_data):
    """Real BBCSport pointsets (737 documents, GloVe-50), built once per session."""
    from dmlrepro.data.build import build_pointsets
    ps, _ = build_pointsets("bbcsport", {"source": "text", "vectors": "glove50_subset", "stop_words": "default"},
                            shared_data)
    return ps


@pytest.fixture(scope="session")
def bbcsport_small(bbcsport_pointsets):
    """40 real BBCSport documents, 8 per class, for tests that compute EMDs or train."""
    labels = bbcsport_pointsets.labels
    pick = np.concatenate([np.flatnonzero(labels == c)[:8] for c in range(bbcsport_pointsets.n_classes)])
    return bbcsport_pointsets.subset(pick)


@pytest.fixture(scope="session")
def bbcsport_small_emd(bbcsport_small):
    from dmlrepro.ot.emd import wmd
    n = len(bbcsport_small)
    emd = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            emd[i, j] = emd[j, i] = wmd(*bbcsport_small.doc(i), *bbcsport_small.doc(j))
    return emd


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tests run tiny models: threads gain nothing, and on shared cores OpenMP's spin-waiting can
    make them many times slower. One thread keeps the suite fast and its timing stable."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def markdown_rows(block: str) -> dict[str, list[str]]:
    """The rows of a Markdown pipe table, by their first cell (header and rule lines skipped)."""
    rows = {}
    for line in block.splitlines():
        if line.startswith("| ") and not line.startswith("| Method") and "---" not in line:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def make_stand_in(root: Path, shared_data: Path, *, val_fraction: float, every: tuple[int, int, int]) -> Path:
    """A LeNet pretrained for 3 batches on MNIST (``root/pretrained.pt``) and a small zero-shot
    Fashion-MNIST split (``root/split.json``: every n-th fit, val and test row)."""
    from dmlrepro.data.images import ImageSplit, load_image_dataset, make_image_split
    from dmlrepro.papers.image_foundation import run
    run.pretrain("mnist", shared_data, {"backbone": "lenet_ssdml", "epochs": 1, "iterations": 3, "batch_size": 32},
                 root / "pretrained.pt")
    index = load_image_dataset("fashion_mnist", shared_data)
    split = make_image_split(index, protocol="zero_shot", train_classes=range(5), test_classes=range(5, 10),
                             val_fraction=val_fraction, val_by="images", seed=0)
    fit, val, test = every
    ImageSplit(fit=split.fit[::fit], val=split.val[::val], test=split.test[::test]).save(root / "split.json")
    return root


def dry_run_train_commands(output: str) -> dict[str, dict]:
    """Every WSSET ``dmlrepro train`` command of a ``snakemake -n -p`` run, by its --out-dir:
    ``{"argv": [...], "log": path}``, whether it is a job of its own or one command of a
    ``dmlrepro batch`` job (papers.wsset.batch_runs)."""
    import json
    import shlex
    commands = {}
    for line in output.splitlines():
        if " -m dmlrepro train " not in line and " -m dmlrepro batch " not in line:
            continue
        words = shlex.split(line.removeprefix("Shell command: "))
        words = words[words.index("dmlrepro") + 1:]
        argv, log = (words[:words.index(">")], words[words.index(">") + 1]) if ">" in words else (words, None)
        jobs = json.loads(argv[argv.index("--jobs") + 1]) if argv[0] == "batch" else [{"argv": argv, "log": log}]
        for job in jobs:
            if job["argv"][0] == "train":
                out_dir = job["argv"][job["argv"].index("--out-dir") + 1]
                assert out_dir not in commands, f"{out_dir} planned twice"
                commands[out_dir] = job
    return commands
