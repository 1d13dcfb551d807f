"""WSSET's permutation-invariant embedding network (Sec. IV-C and V of the paper).

f(x) = rho( sum_{w in x} ENCODER(w) ): a stack of Transformer encoders (no positional encoding,
so the element embeddings are permutation-equivariant), a masked sum over the set, an MLP head
and L2 normalisation.

Decisions (see docs/wsset.md, "Decisions where the paper is ambiguous"):
* The model width is the input width (word vector + weight feature: 301 with word2vec). When it
  is not divisible by the number of heads (51 with GloVe-50 and 7 heads) a linear input
  projection maps it to the next multiple of the head count; ``d_model`` in the config forces a
  projection to that width.
* Padding is masked in attention and excluded from the sum (the released code sums padded rows).
* Post-LayerNorm encoder layers with ReLU feed-forward (keras-transformer, which the authors
  used); dropout on sub-layer outputs only, not on attention weights (also keras-transformer);
  an input LayerNorm + dropout as in the released code (``input_norm``).
* ``reset_head()`` re-initialises rho only: the released code re-initialises the dense head on
  top of the pooled encoder output before supervised fine-tuning (transfer learning).

``SetEncoder`` is the interface this model shares with the Table I baselines (``deepsets``,
``repset``, ``dspn``); ``registry.build_encoder`` builds any of them from a config.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def model_width(input_dim: int, heads: int, d_model: int | None = None) -> int:
    if d_model:
        if d_model % heads:
            raise ValueError(f"model.d_model={d_model} is not divisible by model.heads={heads}")
        return int(d_model)
    return int(math.ceil(input_dim / heads) * heads)


def mlp_head(in_dim: int, dims: Sequence[int]) -> nn.Sequential:
    """Fully connected layers with ReLU on all but the last (the paper's rho: 512-256-64)."""
    layers: list[nn.Module] = []
    for k, out_dim in enumerate(dims):
        layers.append(nn.Linear(in_dim, out_dim))
        if k < len(dims) - 1:
            layers.append(nn.ReLU())
        in_dim = out_dim
    return nn.Sequential(*layers)


def reinitialise(module: nn.Module) -> None:
    """Draw fresh initial values for every sub-module that knows how (Linear, LayerNorm, ...)."""
    for sub in module.modules():
        reset = getattr(sub, "reset_parameters", None)
        if callable(reset):
            reset()


class SetEncoder(nn.Module):
    """The interface every set encoder shares (see ``dmlrepro.models.registry``).

    ``forward(x, padding_mask)`` maps zero-padded sets ``x`` (b, L, input_dim) with ``padding_mask``
    (b, L, True on padding) to L2-normalised embeddings (b, ``embedding_dim``):
    ``normalize(head(set_features(x, padding_mask)))``. Subclasses define ``set_features`` (the
    permutation-invariant pooled vector) and ``head`` (the MLP rho); ``reset_head`` re-initialises
    rho, as the released WSSET code does before supervised fine-tuning.
    """

    head: nn.Module
    embedding_dim: int

    def set_features(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """``x``: (b, L, input_dim) zero-padded sets; ``padding_mask``: (b, L), True on padding."""
        return nn.functional.normalize(self.head(self.set_features(x, padding_mask)), dim=-1)

    def reset_head(self) -> None:
        reinitialise(self.head)

    def _add_input_layers(self, input_dim: int, input_norm: bool, dropout: float) -> None:
        """The input LayerNorm + dropout every encoder shares (as in the released WSSET code)."""
        self.input_dim = input_dim
        self.input_norm = nn.LayerNorm(input_dim) if input_norm else nn.Identity()
        self.input_dropout = nn.Dropout(dropout)


class SetTransformerEmbedder(SetEncoder):
    def __init__(self, input_dim: int, layers: int = 5, heads: int = 7, ff_dim: int = 1000,
                 dropout: float = 0.1, head_dims: Sequence[int] = (512, 256, 64),
                 d_model: int | None = None, input_norm: bool = True, activation: str = "relu"):
        super().__init__()
        width = model_width(input_dim, heads, d_model)
        self.width = width
        self._add_input_layers(input_dim, input_norm, dropout)
        self.project = nn.Linear(input_dim, width) if width != input_dim else nn.Identity()
        layer = nn.TransformerEncoderLayer(width, heads, ff_dim, dropout, activation=activation,
                                           batch_first=True, norm_first=False)
        # keras-transformer (the authors' code) drops sub-layer outputs, never attention weights;
        # attention-weight dropout would also force PyTorch's slow attention path (4x on CPU)
        layer.self_attn.dropout = 0.0
        # nested tensors would drop padded rows differently in train and eval; keep one code path
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers else None
        self.head = mlp_head(width, head_dims)
        self.embedding_dim = int(head_dims[-1])

    def element_features(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        h = self.project(self.input_dropout(self.input_norm(x)))
        if self.encoder is not None:
            h = self.encoder(h, src_key_padding_mask=padding_mask)
        return h

    def set_features(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """Masked sum of the encoded elements: the input of the head (b, width)."""
        h = self.element_features(x, padding_mask)
        return h.masked_fill(padding_mask.unsqueeze(-1), 0.0).sum(dim=1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
