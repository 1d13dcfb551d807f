"""The set encoders of Table I behind one interface: invariances, shapes, gradients, head reset,
registry errors, and the exactness of RepSet's matching and FSPool's weighting."""

import itertools

import numpy as np
import pytest
import torch

from dmlrepro import DmlReproError
from dmlrepro.data.pointsets import Pointsets, pad_batch
from dmlrepro.models.dspn import FSPool
from dmlrepro.models.registry import ARCHITECTURES, build_encoder, count_parameters, default_config
from dmlrepro.models.repset import max_weight_matching
from dmlrepro.models.set_transformer import SetTransformerEmbedder

INPUT_DIM = 6  # 5-d word vectors + the weight column
HEAD = [16, 8]
SMALL = {  # name: (architecture, cfg); small sizes keep the suite fast
    "self_attention": ("self_attention", dict(layers=2, heads=7, ff_dim=32, head_dims=HEAD)),
    "deepsets": ("deepsets", dict(phi_dims=[16, 16], head_dims=HEAD)),
    "repset": ("repset", dict(hidden_sets=5, hidden_elements=3, head_dims=HEAD)),
    "repset_approx_bn_projected": ("repset", dict(hidden_sets=5, hidden_elements=3, matching="approx",
                                                  batch_norm=True, project_dim=4, head_dims=HEAD)),
    "dspn": ("dspn", dict(phi_dims=[16, 16], pieces=5, head_dims=HEAD)),
}
LENGTHS = (3, 11, 1, 6)  # includes a single word and sets smaller than a hidden set


def make_model(name, seed=0):
    torch.manual_seed(seed)
    architecture, cfg = SMALL[name]
    model = build_encoder(architecture, INPUT_DIM, cfg)
    with torch.no_grad():  # move LayerNorm biases etc. off their initial zeros, which hide unmasked padding
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def documents(lengths=LENGTHS, seed=0):
    rng = np.random.default_rng(seed)
    docs = [(rng.normal(size=(u, INPUT_DIM - 1)), rng.integers(1, 5, size=u).astype(float)) for u in lengths]
    return Pointsets.from_documents(docs, [0] * len(docs), ["a"], [f"d{i}" for i in range(len(docs))])


def padded(ps, index, extra=0):
    x, mask = pad_batch(ps, index)
    x = np.concatenate([x, np.zeros((len(x), extra, x.shape[2]), np.float32)], axis=1)
    mask = np.concatenate([mask, np.ones((len(mask), extra), bool)], axis=1)
    return torch.from_numpy(x), torch.from_numpy(mask)


def test_every_architecture_is_tested():
    assert {arch for arch, _ in SMALL.values()} == set(ARCHITECTURES)


@pytest.mark.parametrize("name", SMALL)
def test_embedding_is_invariant_to_word_order(name):
    model = make_model(name).eval()
    x, mask = padded(documents(), range(len(LENGTHS)), extra=2)
    shuffled = x.clone()
    generator = torch.Generator().manual_seed(1)
    for row, u in enumerate(LENGTHS):
        shuffled[row, :u] = x[row, torch.randperm(u, generator=generator)]
    with torch.no_grad():
        torch.testing.assert_close(model(x, mask), model(shuffled, mask), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", SMALL)
def test_padding_does_not_change_an_embedding(name):
    model = make_model(name).eval()
    ps = documents()
    with torch.no_grad():
        together = model(*padded(ps, range(len(LENGTHS))))
        for i in range(len(LENGTHS)):
            for extra in (0, 7):
                alone = model(*padded(ps, [i], extra=extra))
                torch.testing.assert_close(together[i:i + 1], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", SMALL)
def test_output_shape_and_unit_norm(name):
    model = make_model(name).eval()
    x, mask = padded(documents(), range(len(LENGTHS)))
    with torch.no_grad():
        out = model(x, mask)
    assert model.embedding_dim == HEAD[-1]
    assert out.shape == (len(LENGTHS), HEAD[-1]) and out.dtype == torch.float32
    torch.testing.assert_close(out.norm(dim=1), torch.ones(len(LENGTHS)))


@pytest.mark.parametrize("name", SMALL)
def test_gradients_reach_every_parameter(name):
    model = make_model(name).train()
    x, mask = padded(documents(seed=2), range(len(LENGTHS)), extra=1)
    out = model(x, mask)
    (out * torch.randn_like(out)).sum().backward()
    for key, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, key
        assert torch.isfinite(p.grad).all(), key


@pytest.mark.parametrize("name", SMALL)
def test_reset_head_redraws_the_head_only(name):
    model = make_model(name)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.reset_head()
    after = model.state_dict()
    head_weights = [k for k in before if k.startswith("head.") and k.endswith("weight")]
    assert head_weights
    for key in before:
        if key in head_weights:
            assert not torch.equal(before[key], after[key]), key
        elif not key.startswith("head."):
            assert torch.equal(before[key], after[key]), key


def test_registry_names_an_unknown_architecture_or_setting():
    with pytest.raises(DmlReproError, match="'deepset'"):
        build_encoder("deepset", INPUT_DIM, {})
    with pytest.raises(DmlReproError, match="phi_dim"):
        build_encoder("deepsets", INPUT_DIM, {"phi_dim": [8]})
    with pytest.raises(DmlReproError, match="layers"):  # a self-attention key is not a DeepSets key
        build_encoder("deepsets", INPUT_DIM, {"layers": 2})
    with pytest.raises(DmlReproError, match="matching"):
        build_encoder("repset", INPUT_DIM, {"matching": "hungarian"})
    with pytest.raises(DmlReproError, match="head_dims"):
        build_encoder("dspn", INPUT_DIM, {"head_dims": []})


def test_registry_defaults_are_the_self_attention_models_defaults():
    assert default_config("self_attention") == dict(layers=5, heads=7, ff_dim=1000, dropout=0.1,
                                                    head_dims=(512, 256, 64), d_model=None, input_norm=True,
                                                    activation="relu")
    torch.manual_seed(0)
    built = build_encoder("self_attention", 301, {})
    assert isinstance(built, SetTransformerEmbedder)
    assert count_parameters(built) == count_parameters(SetTransformerEmbedder(301))


def brute_force_matching(weights):
    """Max over every assignment of the smaller side into the larger one."""
    rows, cols = weights.shape
    if rows >= cols:
        return max(sum(weights[r, c] for c, r in enumerate(pick)) for pick in itertools.permutations(range(rows), cols))
    return max(sum(weights[r, c] for r, c in enumerate(pick)) for pick in itertools.permutations(range(cols), rows))


@pytest.mark.parametrize("shape", [(5, 3), (2, 4), (4, 4)])
def test_exact_matching_equals_brute_force(shape):
    weights = torch.rand(6, *shape, generator=torch.Generator().manual_seed(3)) - 0.3
    weights = weights.clamp(min=0)
    expected = torch.tensor([brute_force_matching(w.numpy()) for w in weights])
    torch.testing.assert_close(max_weight_matching(weights), expected)


def test_repset_values_are_optimal_matchings_and_approx_bounds_them():
    model = make_model("repset").eval()
    x, mask = padded(documents(), range(len(LENGTHS)))
    with torch.no_grad():
        weights = model.edge_weights(x, mask)
        exact = model.matching_values(x, mask)
        model.matching = "approx"
        relaxed = model.matching_values(x, mask)
    for row, u in enumerate(LENGTHS):
        for s in range(weights.shape[1]):
            assert exact[row, s].item() == pytest.approx(brute_force_matching(weights[row, s, :u].numpy()), abs=1e-5)
    assert (relaxed >= exact - 1e-6).all()  # the relaxation of a maximisation is an upper bound


def test_fspool_weights_sorted_values_by_relative_position():
    pool = FSPool(channels=1, pieces=1)
    with torch.no_grad():
        pool.weight.copy_(torch.tensor([[1.0, -1.0]]))  # weight 1 at the top, -1 at the bottom
    h = torch.tensor([[[2.0], [3.0], [1.0], [0.0]], [[5.0], [0.0], [0.0], [0.0]]])
    mask = torch.tensor([[False, False, False, True], [False, True, True, True]])
    # sorted [3, 2, 1] at r = 0, 0.5, 1 -> 3*1 + 2*0 + 1*(-1); a single element sits at r = 0
    torch.testing.assert_close(pool(h, mask), torch.tensor([[2.0], [5.0]]))
