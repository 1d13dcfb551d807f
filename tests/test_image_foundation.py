"""The image foundation's stand-in on real MNIST / Fashion-MNIST: pretraining, a run that resumes
to the same model, the Initial row, the table with its validation-vs-test-selection column."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_stand_in
import torch

from dmlrepro import DmlReproError

METHOD = {"loss": {"name": "MultiSimilarityLoss", "alpha": 2, "beta": 50, "base": 0.5},
          "miner": {"name": "MultiSimilarityMiner", "epsilon": 0.1}}
MODEL = {"backbone": "lenet_ssdml", "embedding_dim": 16}
TRAIN = {"epochs": 2, "iterations": 3, "batch_size": 20, "m": 4, "lr": 1e-3}


@pytest.fixture(scope="module")
def stand_in(shared_data, tmp_path_factory):
    """A backbone pretrained for a few batches on MNIST, and a small zero-shot Fashion-MNIST split."""
    return make_stand_in(tmp_path_factory.mktemp("stand_in"), shared_data, val_fraction=0.15, every=(100, 40, 20))


def _train(stand_in, shared_data, out_dir, after_epoch=None):
    from dmlrepro.papers.image_foundation import run
    return run.train("fashion_mnist", shared_data, stand_in / "split.json", "multi_similarity", METHOD, MODEL, TRAIN,
                     stand_in / "pretrained.pt", 0, out_dir, (1, 2, 4, 8), after_epoch=after_epoch)


def test_an_image_run_resumes_to_the_same_model_and_metrics(stand_in, shared_data, tmp_path):
    reference = _train(stand_in, shared_data, tmp_path / "a")

    class Killed(Exception):
        pass

    def kill(epoch):
        raise Killed

    with pytest.raises(Killed):
        _train(stand_in, shared_data, tmp_path / "b", after_epoch=kill)
    assert not (tmp_path / "b" / "metrics.json").exists()  # nothing final before the run ends
    resumed = _train(stand_in, shared_data, tmp_path / "b")
    assert resumed["test"] == pytest.approx(reference["test"])
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=False)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert set(saved["test"]) == {"recall@1", "recall@2", "recall@4", "recall@8", "nmi", "f1", "map_at_r"}
    assert 1 <= saved["best_epoch"] <= 2 and saved["test_selected"]["epoch"] in (1, 2)
    # the test-selected R@1 is the best over epochs, so never below the validation-selected one
    assert saved["test_selected"]["recall@1"] >= saved["test"]["recall@1"] - 1e-12


def test_the_pretrained_backbone_is_what_a_run_starts_from(stand_in):
    from dmlrepro.models.images import build_image_embedder
    saved = torch.load(stand_in / "pretrained.pt", weights_only=True)
    model = build_image_embedder("lenet_ssdml", embedding_dim=16, pretrained=stand_in / "pretrained.pt")
    for k, v in saved["state_dict"].items():
        assert torch.equal(model.backbone.state_dict()[k], v), k
    assert saved["pretrained_on"] == "mnist"


def test_initial_row_and_table(stand_in, shared_data, tmp_path):
    from dmlrepro.papers.image_foundation import report, run
    run.initial("fashion_mnist", shared_data, stand_in / "split.json", MODEL, stand_in / "pretrained.pt", 0,
                tmp_path / "initial.json", (1, 2, 4, 8))
    _train(stand_in, shared_data, tmp_path / "run")
    df = report.stand_in_table([tmp_path / "initial.json", tmp_path / "run" / "metrics.json"], (1, 2, 4, 8), "stand-in")
    assert list(df["Method"]) == [report.METHOD_LABELS["initial"], report.METHOD_LABELS["multi_similarity"]]
    run_metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert df.loc[1, "R@1"] == f"{100 * run_metrics['test']['recall@1']:.2f}"  # one seed: no ± std
    assert df.loc[0, "R@1 if selected on test (inflated)"] == "–"  # the Initial row has no epochs
    report.write_table(df, tmp_path / "t.csv", tmp_path / "t.md", ["a note"])
    assert "| MAP@R" in (tmp_path / "t.md").read_text().replace("|   MAP@R", "| MAP@R") or "MAP@R" in (tmp_path / "t.md").read_text()
    report.curves_figure([tmp_path / "run" / "history.csv"], tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_a_class_smaller_than_m_is_an_error_naming_it(stand_in, shared_data, tmp_path):
    from dmlrepro.data.images import ImageSplit
    split = ImageSplit.load(stand_in / "split.json")
    from dmlrepro.data.images import load_image_dataset
    labels = load_image_dataset("fashion_mnist", shared_data).labels
    few = np.concatenate([split.fit[labels[split.fit] != 3], split.fit[labels[split.fit] == 3][:2]])
    ImageSplit(fit=few, val=split.val, test=split.test).save(tmp_path / "few.json")
    from dmlrepro.papers.image_foundation import run
    with pytest.raises(DmlReproError, match="class 3 has 2 images, fewer than m = 4"):
        run.train("fashion_mnist", shared_data, tmp_path / "few.json", "ms", METHOD, MODEL, TRAIN, None, 0,
                  tmp_path / "out", (1,))
