"""BERT_BASE baseline (papers/wsset/bert.py) on a tiny BERT saved locally, with real BBCSport text."""

from __future__ import annotations

import csv
import logging
import re
import sys
from collections import Counter

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

from dmlrepro import DmlReproError  # noqa: E402
from dmlrepro.data.build import read_raw_documents  # noqa: E402
from dmlrepro.evaluation.knn import embedding_distances, weighted_knn_accuracy  # noqa: E402
from dmlrepro.papers.wsset import bert  # noqa: E402
from dmlrepro.papers.wsset.bert import HISTORY_COLUMNS, finetune_bert  # noqa: E402

HIDDEN = 32
MAX_LENGTH = 48
KNN_K = 3


@pytest.fixture(scope="module")
def corpus(shared_data):
    """40 real BBCSport documents (8 per class) plus an empty one; fit/val/test by class."""
    docs = read_raw_documents("bbcsport", shared_data)
    labels = np.array([d.label for d in docs])
    classes = np.unique(labels)
    picks = [np.flatnonzero(labels == c)[:8] for c in classes]
    texts = [docs[i].text for p in picks for i in p] + [""]
    y = np.array([int(np.searchsorted(classes, labels[i])) for p in picks for i in p] + [0])
    per_class = [np.arange(8 * c, 8 * c + 8) for c in range(len(classes))]
    fit = np.concatenate([p[:4] for p in per_class])
    val = np.concatenate([p[4:6] for p in per_class])
    fit = np.append(fit, len(texts) - 1)  # the empty document is trained on too
    return texts, y, fit, val


@pytest.fixture(scope="module")
def tiny_model(corpus, tmp_path_factory):
    """A randomly initialised 2-layer BERT and a word-level tokenizer over the corpus's frequent words."""
    texts = corpus[0]
    counts = Counter(w for t in texts for w in re.findall(r"[a-z]{3,}", t.lower()))
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = specials + [w for w, _ in counts.most_common(250)]
    path = tmp_path_factory.mktemp("tiny-bert")
    vocab_file = path / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    # from_pretrained reads vocab.txt in transformers 4 and 5 (v5's constructor ignores vocab_file)
    tokenizer = transformers.BertTokenizerFast.from_pretrained(path, do_lower_case=True)
    assert len(tokenizer) == len(vocab)
    tokenizer.save_pretrained(path)
    config = transformers.BertConfig(vocab_size=len(vocab), hidden_size=HIDDEN, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    import torch
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(path)
    return str(path)


def run(corpus, tiny_model, out_dir, **kwargs):
    texts, labels, fit, val = corpus
    params = {"model_name": tiny_model, "max_length": MAX_LENGTH, "epochs": 3, "batch_size": 4, "lr": 2e-3,
              "knn_k": KNN_K, "seed": 0, **kwargs}
    labels = params.pop("labels", labels)
    return finetune_bert(texts, labels, fit, val, out_dir, **params)


def read_history(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_trains_selects_and_returns_unit_embeddings(corpus, tiny_model, tmp_path):
    texts, labels, fit, val = corpus
    emb = run(corpus, tiny_model, tmp_path, epochs=6, pooling="mean")
    assert emb.shape == (len(texts), HIDDEN) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)  # the empty document too

    history = read_history(tmp_path / "history.csv")
    assert list(history[0]) == list(HISTORY_COLUMNS)
    assert [int(r["epoch"]) for r in history] == [1, 2, 3, 4, 5, 6]
    assert all(np.isfinite(float(r["loss"])) and float(r["seconds"]) >= 0 for r in history)
    assert float(history[-1]["loss"]) < float(history[0]["loss"])
    assert max(float(r["val_accuracy"]) for r in history) >= 50.0  # it learns: 5 classes, chance is 20 %
    # the returned state is the best validation epoch: its val kNN accuracy is the history's maximum
    acc = weighted_knn_accuracy(embedding_distances(emb[val], emb[fit]), labels[fit], labels[val], KNN_K)
    assert acc == pytest.approx(max(float(r["val_accuracy"]) for r in history))
    assert (tmp_path / "checkpoint" / "last.pt").is_file()

    untrained = run(corpus, tiny_model, tmp_path / "zero", epochs=0, pooling="mean")
    assert not np.allclose(untrained, emb)  # fine-tuning moved the embeddings


def test_selection_keeps_the_best_validation_epoch(corpus, tiny_model, tmp_path, monkeypatch):
    scripted, seen = iter([40.0, 80.0, 60.0]), []

    def fake_accuracy(dist, gallery_labels, query_labels, k):
        seen.append(np.asarray(dist))
        return next(scripted)

    monkeypatch.setattr(bert, "weighted_knn_accuracy", fake_accuracy)
    texts, labels, fit, val = corpus
    emb = run(corpus, tiny_model, tmp_path)
    assert [float(r["val_accuracy"]) for r in read_history(tmp_path / "history.csv")] == [40.0, 80.0, 60.0]
    dist = embedding_distances(emb[val], emb[fit])
    np.testing.assert_allclose(dist, seen[1], atol=1e-5)  # epoch 2's state, not the last one
    assert not np.allclose(dist, seen[2], atol=1e-5)


def test_reads_only_fit_labels_for_training(corpus, tiny_model, tmp_path):
    texts, labels, fit, val = corpus
    base = run(corpus, tiny_model, tmp_path / "base", epochs=2)
    outside = np.setdiff1d(np.arange(len(texts)), np.concatenate([fit, val]))
    relabelled = labels.copy()
    relabelled[outside] = (labels[outside] + 1) % 5
    np.testing.assert_array_equal(run(corpus, tiny_model, tmp_path / "test", epochs=2, labels=relabelled), base)

    relabelled = labels.copy()  # validation labels steer selection, never the training loss
    relabelled[val] = (labels[val] + 2) % 5
    run(corpus, tiny_model, tmp_path / "val", epochs=2, labels=relabelled)
    losses = [[r["loss"] for r in read_history(tmp_path / d / "history.csv")] for d in ("base", "val")]
    assert losses[0] == losses[1]


def test_resume_after_interruption_gives_the_same_embeddings(corpus, tiny_model, tmp_path, caplog):
    uninterrupted = run(corpus, tiny_model, tmp_path / "a")

    class Interrupted(Exception):
        pass

    def stop_after_two(epoch):
        if epoch == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        run(corpus, tiny_model, tmp_path / "b", on_epoch_end=stop_after_two)
    assert not (tmp_path / "b" / "history.csv").exists()
    epochs_run = []
    resumed = run(corpus, tiny_model, tmp_path / "b", on_epoch_end=epochs_run.append)
    assert epochs_run == [3]
    np.testing.assert_allclose(resumed, uninterrupted, atol=1e-6)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(read_history(tmp_path / "b" / "history.csv")) == strip(read_history(tmp_path / "a" / "history.csv"))

    with caplog.at_level(logging.WARNING, logger="dmlrepro.training.loop"):  # another config starts afresh
        epochs_run.clear()
        run(corpus, tiny_model, tmp_path / "b", epochs=1, on_epoch_end=epochs_run.append)
    assert epochs_run == [1] and "another configuration" in caplog.text


def test_mean_pooling_and_no_validation(corpus, tiny_model, tmp_path):
    texts, labels, fit, _ = corpus
    emb = finetune_bert(texts, labels, fit, np.array([], np.int64), tmp_path, model_name=tiny_model,
                        max_length=MAX_LENGTH, epochs=1, batch_size=8, pooling="mean")
    assert emb.shape == (len(texts), HIDDEN)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert read_history(tmp_path / "history.csv")[0]["val_accuracy"] == ""


def test_missing_model_directory_is_a_clear_error(corpus, tmp_path):
    texts, labels, fit, val = corpus
    with pytest.raises(DmlReproError, match=r"(?s)not found.*GPU machine with internet"):
        finetune_bert(texts, labels, fit, val, tmp_path, model_name=str(tmp_path / "no-such-model"))


def test_offline_hub_model_is_a_clear_error(corpus, tmp_path, monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail at once, no retries
    texts, labels, fit, val = corpus
    name = "dmlrepro-tests/no-such-bert"  # a hub name no cache holds, as bert-base-uncased might be
    with pytest.raises(DmlReproError, match=r"(?s)'dmlrepro-tests/no-such-bert'.*GPU machine with internet"):
        finetune_bert(texts, labels, fit, val, tmp_path, model_name=name)


def test_without_transformers_is_a_clear_error(corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    texts, labels, fit, val = corpus
    with pytest.raises(DmlReproError, match="'transformers' package"):
        finetune_bert(texts, labels, fit, val, tmp_path)


@pytest.mark.parametrize("change, message", [({"pooling": "max"}, "pooling"),
                                             ({"val": "overlap"}, "share documents"),
                                             ({"knn_k": 100}, "knn_k")])
def test_bad_arguments(corpus, tiny_model, tmp_path, change, message):
    texts, labels, fit, val = corpus
    change = dict(change)
    if change.get("val") == "overlap":
        change["val"] = fit[:2]
    args = {"val": val, **change}
    with pytest.raises(DmlReproError, match=message):
        finetune_bert(texts, labels, fit, args.pop("val"), tmp_path, model_name=tiny_model, **args)


def test_cuda_device_without_a_gpu_is_a_clear_error(corpus, tiny_model, tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    texts, labels, fit, val = corpus
    with pytest.raises(DmlReproError, match="no CUDA GPU"):
        finetune_bert(texts, labels, fit, val, tmp_path, model_name=tiny_model, device="cuda")


def test_cli_bert_row_uses_the_pointsets_documents_and_splits(tiny_model, shared_data, tmp_path):
    """`dmlrepro bert` (rule bert_finetune): raw text aligned with a text-built dataset, its splits, its metrics."""
    import json

    from dmlrepro.cli import main
    from dmlrepro.data.splits import Splits
    cfg = {"source": "text", "max_documents": 30, "splits": {"n": 1, "seed": 0}}
    assert main(["pointsets", "--dataset", "bbcsport", "--params", json.dumps(cfg), "--raw-root", str(shared_data),
                 "--out-pointsets", str(tmp_path / "ps.npz"), "--out-splits", str(tmp_path / "splits.npz")]) == 0
    params = {"model_name": tiny_model, "max_length": MAX_LENGTH, "epochs": 1, "batch_size": 8, "device": "cpu"}
    assert main(["bert", "--dataset", "bbcsport", "--corpus", "bbcsport", "--split", "0", "--raw-root", str(shared_data),
                 "--pointsets", str(tmp_path / "ps.npz"), "--splits", str(tmp_path / "splits.npz"),
                 "--params", json.dumps(params), "--out-dir", str(tmp_path / "run"),
                 "--metrics-out", str(tmp_path / "run" / "metrics.json"), "--recall-ks", "2", "4", "--knn-k", "3"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    splits = Splits.load(tmp_path / "splits.npz")
    assert metrics["method"] == "bert_base" and metrics["n_test"] == len(splits.test[0])
    assert 0 <= metrics["knn_accuracy"] <= 100 and set(metrics["recall_at"]) == {"2", "4"}
    assert metrics["data_source"].startswith("GloVe-50 rebuilt from raw text")  # same rows as the other methods
    assert np.load(tmp_path / "run" / "embeddings.npy").shape == (30, HIDDEN)
