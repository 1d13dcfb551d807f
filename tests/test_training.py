"""The trainer on real documents: outputs, model selection on validation, resume after a crash."""

import csv

import numpy as np
import pytest
import torch

from dmlrepro import DmlReproError
from dmlrepro.papers.wsset.trainer import embed, load_model, train_embedder

MODEL = dict(layers=1, heads=7, ff_dim=16, dropout=0.1, head_dims=[16, 8], d_model=14)
TRAIN = dict(epochs=3, batch_size=16, lr=1e-3, eval_every=1, selection="val_knn", knn_k=3)


@pytest.fixture(scope="module")
def split(bbcsport_small):
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(bbcsport_small))
    return idx[:30], idx[30:40]


@pytest.mark.parametrize("method", ["wsset", "sset", "approx_emd"])
def test_training_writes_model_history_and_selects_on_validation(tmp_path, bbcsport_small, bbcsport_small_emd,
                                                                 split, method):
    fit, val = split
    res = train_embedder(bbcsport_small, bbcsport_small_emd, fit, val, method, {}, MODEL, TRAIN, tmp_path, seed=1)
    rows = list(csv.DictReader(open(tmp_path / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    accs = [float(r["val_accuracy"]) for r in rows]
    assert res.best_val_accuracy == max(accs)
    assert res.best_epoch == 1 + accs.index(max(accs))
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    model = load_model(tmp_path / "model.pt")
    emb = embed(model, bbcsport_small, np.arange(len(bbcsport_small)))
    assert emb.shape == (len(bbcsport_small), 8)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_interrupted_training_resumes_to_the_same_model(tmp_path, bbcsport_small, bbcsport_small_emd, split):
    fit, val = split
    train_embedder(bbcsport_small, bbcsport_small_emd, fit, val, "wsset", {}, MODEL, TRAIN, tmp_path / "once", seed=2)

    def crash_after_2(epoch):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_embedder(bbcsport_small, bbcsport_small_emd, fit, val, "wsset", {}, MODEL, TRAIN, tmp_path / "twice",
                       seed=2, on_epoch_end=crash_after_2)
    assert not (tmp_path / "twice" / "model.pt").exists()  # no final output from a crashed run
    assert (tmp_path / "twice" / "checkpoint" / "last.pt").exists()
    seen = []
    train_embedder(bbcsport_small, bbcsport_small_emd, fit, val, "wsset", {}, MODEL, TRAIN, tmp_path / "twice",
                   seed=2, on_epoch_end=seen.append)
    assert seen == [3]  # resumed after epoch 2
    a = torch.load(tmp_path / "once" / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "twice" / "model.pt", weights_only=False)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert (tmp_path / "once" / "history.csv").read_text().count("\n") == \
        (tmp_path / "twice" / "history.csv").read_text().count("\n")


def test_checkpoint_of_another_configuration_is_not_resumed(tmp_path, bbcsport_small, bbcsport_small_emd, split):
    fit, val = split
    with pytest.raises(KeyboardInterrupt):
        train_embedder(bbcsport_small, bbcsport_small_emd, fit, val, "wsset", {}, MODEL, TRAIN, tmp_path, seed=3,
                       on_epoch_end=lambda e: (_ for _ in ()).throw(KeyboardInterrupt))
    seen = []
    train_embedder(bbcsport_small, bbcsport_small_emd, fit, val, "wsset", {"c": 12.0}, MODEL, TRAIN, tmp_path,
                   seed=3, on_epoch_end=seen.append)
    assert seen == [1, 2, 3]


def test_bad_settings_are_named(tmp_path, bbcsport_small, bbcsport_small_emd, split):
    fit, val = split
    with pytest.raises(DmlReproError, match="selection 'best'"):
        train_embedder(bbcsport_small, bbcsport_small_emd, fit, val, "wsset", {}, MODEL,
                       dict(TRAIN, selection="best"), tmp_path)
    with pytest.raises(DmlReproError, match="'wset'"):
        train_embedder(bbcsport_small, bbcsport_small_emd, fit, val, "wset", {}, MODEL, TRAIN, tmp_path)
    # a self-attention config given to a DeepSets method names the settings it does not know
    with pytest.raises(DmlReproError, match="'layers'.*deepsets"):
        train_embedder(bbcsport_small, bbcsport_small_emd, fit, val, "exemplar", {}, MODEL, TRAIN, tmp_path)
