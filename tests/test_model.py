"""The set encoder: permutation invariance, padding invariance, widths and parameter counts."""

import numpy as np
import pytest
import torch

from dmlrepro.data.pointsets import Pointsets, pad_batch
from dmlrepro.models.set_transformer import SetTransformerEmbedder, count_parameters, model_width


def small_model(input_dim=6, **kw):
    torch.manual_seed(0)
    cfg = dict(layers=2, heads=7, ff_dim=32, dropout=0.1, head_dims=(16, 8))
    cfg.update(kw)
    return SetTransformerEmbedder(input_dim, **cfg).eval()


def test_embedding_is_invariant_to_word_order():
    model = small_model()
    x = torch.randn(1, 9, 6)
    mask = torch.zeros(1, 9, dtype=torch.bool)
    perm = torch.randperm(9)
    torch.testing.assert_close(model(x, mask), model(x[:, perm], mask), atol=1e-5, rtol=1e-5)


def test_padding_does_not_change_an_embedding():
    rng = np.random.default_rng(0)
    docs = [(rng.normal(size=(u, 5)), rng.integers(1, 4, size=u).astype(float)) for u in (3, 11, 1)]
    ps = Pointsets.from_documents(docs, [0, 1, 0], ["a", "b"], ["x", "y", "z"])
    model = small_model()
    x, mask = pad_batch(ps, [0, 1, 2])
    together = model(torch.from_numpy(x), torch.from_numpy(mask))
    for i in range(3):
        xi, mi = pad_batch(ps, [i])
        alone = model(torch.from_numpy(xi), torch.from_numpy(mi))
        torch.testing.assert_close(together[i:i + 1], alone, atol=1e-5, rtol=1e-5)


def test_output_is_unit_norm():
    model = small_model()
    out = model(torch.randn(4, 5, 6), torch.zeros(4, 5, dtype=torch.bool))
    torch.testing.assert_close(out.norm(dim=1), torch.ones(4))


def test_width_is_rounded_up_to_a_multiple_of_the_heads():
    assert model_width(51, 7) == 56  # GloVe-50 + weight feature
    assert model_width(301, 7) == 301  # word2vec-300 + weight feature: no projection
    assert isinstance(SetTransformerEmbedder(301, layers=1, heads=7, ff_dim=8).project, torch.nn.Identity)
    with pytest.raises(ValueError, match="d_model=50"):
        model_width(51, 7, d_model=50)


def test_parameter_counts_match_the_papers_architecture():
    # TARGETS.md 000-§5.4: 5 encoders of 968,113 + input LayerNorm 602 + head.
    paper = SetTransformerEmbedder(301, layers=5, heads=7, ff_dim=1000, head_dims=(512, 256, 64))
    assert count_parameters(paper) == 5_143_567
    released_code_head = SetTransformerEmbedder(301, layers=5, heads=7, ff_dim=1000, head_dims=(256, 64))
    assert count_parameters(released_code_head) == 4_934_927  # the paper's "4.9M"
