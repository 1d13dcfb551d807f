"""SSDML on a file-backed fine-grained dataset: a tiny CUB-200-2011 in its real archive layout, the
Caffe GoogLeNet with multi-scale R-MAC, one Algorithm-1 run and one supervised (Table 5) run end to end;
Tables 2, 3, 5 with the quoted rows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from test_data_images import _write_cub

from dmlrepro.data.images import load_image_dataset, make_image_split, prepare_image_dataset

TRAIN_CLASSES, TEST_CLASSES = (1, 2, 3), (101, 102)


def _write_tiny_cub(root: Path) -> None:
    """CUB_200_2011.tgz as the real archive lays it out: six RGB images per class."""
    _write_cub(root, {cls: 6 for cls in TRAIN_CLASSES + TEST_CLASSES}, value=lambda cls, k: (37 * cls + 11 * k) % 256,
               grey=())


@pytest.fixture(scope="module")
def tiny_cub(tmp_path_factory):
    root = tmp_path_factory.mktemp("cub")
    _write_tiny_cub(root)
    data = prepare_image_dataset("cub200", root / "raw", root / "data")
    index = load_image_dataset("cub200", data, expected=None)
    split = make_image_split(index, protocol="zero_shot", val_fraction=0.34, val_by="images", seed=0)
    split.save(root / "split.json")
    return data, root / "split.json", index, split


@pytest.fixture
def tiny_counts(monkeypatch):
    """The runs read the dataset without the real CUB's image counts (a tiny copy)."""
    from dmlrepro.data.images import ImageSplit
    import dmlrepro.papers.ssdml.run as run
    monkeypatch.setattr(run, "load_run_inputs", lambda dataset, raw_root, split_path: (
        load_image_dataset(dataset, raw_root, expected=None), ImageSplit.load(split_path)))


MODEL = {"backbone": "googlenet_caffe", "pooling": "rmac", "input_size": 64}  # R-MAC's 1/2 scale needs >= 64 px


def test_tiny_cub_split_is_zero_shot(tiny_cub):
    _, _, index, split = tiny_cub
    train = set(index.labels[split.fit]) | set(index.labels[split.val])
    assert len(train) == len(TRAIN_CLASSES) and len(set(index.labels[split.test])) == len(TEST_CLASSES)
    assert not train & set(index.labels[split.test])
    assert index.array is None      # file-backed: images decoded from the JPEGs


def test_ssdml_rmac_run_end_to_end_on_tiny_cub(tiny_cub, tiny_counts, tmp_path):
    from dmlrepro.papers.ssdml.run import train
    data, split_path, index, split = tiny_cub
    out = train("cub200", data, split_path, "ours",
                {"alpha_deg": 45, "k": 4, "gamma": 0.99, "max_iter": 2, "metric_dim": 16, "orthogonal": True},
                MODEL, {"labels_per_class": 2, "partition_size": 1000, "epochs_per_partition": 1, "epochs": 1,
                        "triplets_per_batch": 10, "lr": 1e-4}, 0, tmp_path / "ours", [1, 2])
    assert out["metric_steps"] > 0 and out["max_orthonormality_error"] < 1e-6
    assert set(out["test"]) >= {"recall@1", "recall@2", "nmi"} and out["best_epoch"] in (1, 2)
    # every training image is in the one partition (labelled rows first), as the paper's CUB setting
    saved = torch.load(tmp_path / "ours" / "model.pt", weights_only=False)
    assert saved["L"].shape == (1024, 16)
    assert json.loads((tmp_path / "ours" / "metrics.json").read_text())["dataset"] == "cub200"


def test_supervised_triplet_on_the_labelled_images_only(tiny_cub, tiny_counts, tmp_path, monkeypatch):
    from dmlrepro.papers.ssdml import run
    from dmlrepro.training import images
    data, split_path, index, split = tiny_cub
    seen: list[np.ndarray] = []
    original = images.m_per_class_plan

    def spy(rows, labels, **kw):
        batches = original(rows, labels, **kw)
        seen.extend(batches)
        return batches
    monkeypatch.setattr(images, "m_per_class_plan", spy)
    out = run.train("cub200", data, split_path, "triplet",
                    {"supervised_loss": {"name": "TripletMarginLoss"}, "metric_dim": 8}, MODEL,
                    {"labels_per_class": 2, "epochs": 1, "batch_size": 4, "lr": 1e-4}, 0, tmp_path / "t", [1])
    labelled = set(out["labelled_rows"])
    assert len(labelled) == 2 * len(TRAIN_CLASSES) and labelled <= set(split.fit.tolist())
    assert seen and all(set(b.tolist()) <= labelled for b in seen)     # no unlabelled image is ever loaded
    assert out["supervised_loss"] == {"name": "TripletMarginLoss"} and "recall@1" in out["test"]


def test_fine_grained_tables_show_quoted_rows_and_the_papers_values(tmp_path):
    from dmlrepro.papers.ssdml import report
    runs = [{"dataset": "cub200", "method": m, "seed": s, "test": {"nmi": 0.5, "recall@1": 0.4 + 0.01 * s,
             "recall@2": 0.5, "recall@4": 0.6, "recall@8": 0.7}, "test_selected": None}
            for m in ("ours", "triplet") for s in (0, 1)]
    t2 = report.table2(runs, ["mnist", "cub200", "cars196"])
    assert list(t2["Dataset"].unique()) == ["CUB-200-2011", "Cars-196"]
    row = t2[(t2["Dataset"] == "CUB-200-2011") & (t2["Method"] == "Ours")].iloc[0]
    assert row["R@1 ours"] == "40.50 ± 0.71" and row["R@1 paper"] == "44.8" and row["Δ R@1"] == "-4.30"
    t3 = report.table3(runs, ["cub200", "cars196"])
    quoted = t3[t3["Method"].str.endswith("(quoted)")]
    assert len(quoted) == 10 and (quoted["R@1 ours"] == "quoted").all()
    assert quoted[(quoted["Dataset"] == "Cars-196") & (quoted["Method"] == "Synthetic (quoted)")].iloc[0]["R@1 paper"] == "42.0"
    t5 = report.table5(runs, ["cub200", "cars196"])
    assert list(t5["Method"]) == ["Triplet", "Angular", "Ours"] and t5.iloc[1]["R@1 ours"] == "not run"
    assert t5.iloc[0]["NMI paper"] == "–" and t5.iloc[0]["R@1 paper"] == "42.6"
    # Table 1 leaves the fine-grained datasets to Table 2
    assert "CUB-200-2011" not in set(report.table1(runs, ["mnist", "cub200"])["Dataset"])
