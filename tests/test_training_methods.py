"""Every Table I/II method through the one trainer: baselines, transfer chains, small-data subsets."""

import numpy as np
import pytest
import torch

from dmlrepro import DmlReproError
from dmlrepro.data.splits import subsample_train
from dmlrepro.papers.wsset.methods import METHOD_SPECS, method_spec, needs_external, transfer_chain
from dmlrepro.papers.wsset.trainer import document_centroids, embed, load_model, train_embedder

SELF_ATTENTION = dict(layers=1, heads=7, ff_dim=16, dropout=0.1, head_dims=[16, 8], d_model=14)
BASELINES = {
    "deepsets": dict(phi_dims=[16, 16], head_dims=[16, 8]),
    "repset": dict(hidden_sets=4, hidden_elements=3, head_dims=[16, 8]),
    "dspn": dict(phi_dims=[16, 16], pieces=5, head_dims=[16, 8]),
    "self_attention": SELF_ATTENTION,
}
TRAIN = dict(epochs=2, batch_size=16, lr=1e-3, eval_every=1, selection="val_knn", knn_k=3)
PARAMS = {"exemplar": {"augment": {"word_dropout": 0.2, "vector_noise": 0.1, "weight_jitter": 0.2}},
          "udml_ss": {"neighbours": 3, "rotations": 4}}


@pytest.fixture(scope="module")
def split(bbcsport_small):
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(bbcsport_small))
    return idx[:30], idx[30:40]


def _train(ps, emd, split, method, out, init=None, epochs=2, seed=1):
    cfg = BASELINES[method_spec(method).architecture]
    return train_embedder(ps, emd, *split, method, PARAMS.get(method, {}), cfg, {**TRAIN, "epochs": epochs}, out,
                          seed=seed, init_model=init)


@pytest.mark.parametrize("method", ["exemplar", "udml_ss", "deepsets_ce", "deepsets_tl", "selfattn_ce",
                                    "selfattn_tl", "repset", "dspn_ce", "dspn_tl"])
def test_each_baseline_trains_and_writes_unit_embeddings(tmp_path, bbcsport_small, split, method):
    res = _train(bbcsport_small, None, split, method, tmp_path)  # no EMD: these never read it
    assert len(res.history) == 2 and all(np.isfinite(r["loss"]) for r in res.history)
    assert all(r["n_triplets"] > 0 for r in res.history)
    saved = torch.load(tmp_path / "model.pt", weights_only=False)
    assert saved["architecture"] == method_spec(method).architecture and saved["method"] == method
    model = load_model(tmp_path / "model.pt")
    emb = embed(model, bbcsport_small, np.arange(len(bbcsport_small)))
    assert emb.shape == (len(bbcsport_small), 8)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_supervised_training_reads_only_fit_labels(tmp_path, bbcsport_small, split):
    """Scrambling the labels of documents outside the fit part must not change the model."""
    fit, val = split
    other = np.setdiff1d(np.arange(len(bbcsport_small)), fit)
    scrambled = bbcsport_small.subset(np.arange(len(bbcsport_small)))
    scrambled.labels[other] = (scrambled.labels[other] + 1) % bbcsport_small.n_classes
    # selection on val reads val labels, so train without it to isolate the training signal
    cfg = {**TRAIN, "selection": "last"}
    for ps, out in ((bbcsport_small, tmp_path / "a"), (scrambled, tmp_path / "b")):
        train_embedder(ps, None, fit, np.empty(0, np.int64), "deepsets_tl", {}, BASELINES["deepsets"], cfg, out, seed=3)
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=False)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_ours_int_starts_from_wsset_encoder_with_a_new_head(tmp_path, bbcsport_small, bbcsport_small_emd, split):
    assert transfer_chain("ours_int") == ["wsset", "ours_int"]
    _train(bbcsport_small, bbcsport_small_emd, split, "wsset", tmp_path / "wsset")
    with pytest.raises(DmlReproError, match="transfer stage"):
        _train(bbcsport_small, None, split, "ours_int", tmp_path / "no_init")
    # zero epochs: the saved model is the initial state, so the transfer itself is visible
    _train(bbcsport_small, None, split, "ours_int", tmp_path / "ft", init=tmp_path / "wsset" / "model.pt", epochs=0)
    base = torch.load(tmp_path / "wsset" / "model.pt", weights_only=False)["state_dict"]
    tuned = torch.load(tmp_path / "ft" / "model.pt", weights_only=False)["state_dict"]
    for key in base:
        same = torch.equal(base[key], tuned[key])
        assert same != key.startswith("head."), key  # encoder copied, head re-initialised


def test_ours_ext_chain_and_mismatched_initial_model(tmp_path, bbcsport_small, bbcsport_small_emd, split):
    assert transfer_chain("ours_ext") == ["wsset_ext", "ours_ext"]
    assert needs_external("ours_ext") and not needs_external("ours_int")
    assert not METHOD_SPECS["wsset_ext"].in_tables
    _train(bbcsport_small, None, split, "deepsets_ce", tmp_path / "deepsets")
    with pytest.raises(DmlReproError, match="same encoder"):
        _train(bbcsport_small, bbcsport_small_emd, split, "wsset_ext", tmp_path / "x",
               init=tmp_path / "deepsets" / "model.pt")


def test_exemplar_resume_repeats_the_same_augmentations(tmp_path, bbcsport_small, split):
    _train(bbcsport_small, None, split, "exemplar", tmp_path / "once", epochs=3, seed=4)

    def crash(epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_embedder(bbcsport_small, None, *split, "exemplar", PARAMS["exemplar"], BASELINES["deepsets"],
                       {**TRAIN, "epochs": 3}, tmp_path / "twice", seed=4, on_epoch_end=crash)
    _train(bbcsport_small, None, split, "exemplar", tmp_path / "twice", epochs=3, seed=4)
    a = torch.load(tmp_path / "once" / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "twice" / "model.pt", weights_only=False)["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_emd_methods_need_the_emd_matrix(tmp_path, bbcsport_small, split):
    with pytest.raises(DmlReproError, match="EMD"):
        _train(bbcsport_small, None, split, "wsset", tmp_path)
    with pytest.raises(DmlReproError, match="unknown trained method 'wset'"):
        method_spec("wset")


def test_document_centroids_are_weighted_means(bbcsport_small):
    c = document_centroids(bbcsport_small)
    for i in (0, 5, len(bbcsport_small) - 1):
        v, w = bbcsport_small.doc(i)
        np.testing.assert_allclose(c[i], (v * (w / w.sum())[:, None]).sum(0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("per_class", [5, 10.5, 40])
def test_small_data_subsample_keeps_class_proportions(per_class):
    sizes = np.array([100, 300, 60, 40])
    labels = np.repeat(np.arange(4), sizes)
    fit, val = subsample_train(labels, np.arange(len(labels)), per_class, val_size=0.2, seed=0)
    chosen = np.concatenate([fit, val])
    assert len(np.intersect1d(fit, val)) == 0 and len(np.unique(chosen)) == len(chosen)
    assert len(chosen) == round(per_class * 4)
    counts = np.bincount(labels[chosen], minlength=4)
    proportional = sizes / sizes.sum() * len(chosen)
    assert np.all(np.abs(counts - np.maximum(proportional, 2)) < 1.0 + 1e-9), (counts, proportional)
    val_counts = np.bincount(labels[val], minlength=4)  # val is stratified too
    assert np.all(np.abs(val_counts - counts / len(chosen) * len(val)) < 1.0 + 1e-9)
    again, _ = subsample_train(labels, np.arange(len(labels)), per_class, 0.2, seed=0)
    np.testing.assert_array_equal(fit, again)


def test_small_data_subsample_rejects_impossible_sizes():
    labels = np.array([0] * 10 + [1] * 10)
    with pytest.raises(DmlReproError, match="samples_per_class=20"):
        subsample_train(labels, np.arange(20), 20, 0.2, 0)


def test_small_data_subsample_depends_on_the_split_only():
    from dmlrepro.data.splits import make_splits
    labels = np.repeat(np.arange(3), [50, 80, 30])
    splits = make_splits(labels, n_splits=2, test_size=0.3, val_size=0.2, seed=0)
    fit, val = splits.small_data(labels, 1, 10)
    again_fit, again_val = splits.small_data(labels, 1, 10)  # what BERT's run draws for the same split
    np.testing.assert_array_equal(fit, again_fit)
    np.testing.assert_array_equal(val, again_val)
    assert set(fit) | set(val) <= set(splits.train[1]) and len(fit) + len(val) == 30
    other, _ = splits.small_data(labels, 0, 10)
    assert not np.array_equal(other, fit)  # another split, another subsample
