"""DeepSets set encoder (Zaheer et al., NeurIPS 2017): the DeepSets+CE / +TL rows of Table I.

Original architecture: f(X) = rho( sum_{x in X} phi(x) ), phi a per-element network, sum
pooling, rho a network on the pooled vector. The WSSET paper gives no sizes for its DeepSets
baselines (TARGETS.md 000, open question 9); it also uses this architecture for Exemplar and
UDML-SS.

Decisions (where Zaheer et al. and the WSSET paper are silent, or where we deviate):
* phi is an MLP with ReLU after every layer, so the pooled features are non-negative sums of
  element activations (``phi_dims``, default 128-128, sized for a 2-core CPU).
* Sum pooling over the real elements only; padded rows are masked out of the sum.
* rho is the same MLP head as the self-attention model (``mlp_head``: ReLU on all but the last
  layer; ``head_dims``, default 128-64), followed by L2 normalisation as for every encoder here.
* ``input_norm``: LayerNorm of each input element (word vector + raw count column) followed by
  dropout, as in the self-attention model, so that the baselines differ from it only in how
  elements interact and are pooled. Dropout is also applied after every phi activation.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dmlrepro.models.set_transformer import SetEncoder, mlp_head


def check_dims(name: str, dims: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(int(d) for d in dims)
    if not dims or min(dims) < 1:
        raise ValueError(f"model.{name} must be a non-empty list of positive sizes, got {list(dims)}")
    return dims


def element_mlp(in_dim: int, dims: Sequence[int], dropout: float, final_activation: bool) -> nn.Sequential:
    """A per-element MLP: Linear, ReLU, Dropout per layer (the last layer linear unless
    ``final_activation``)."""
    layers: list[nn.Module] = []
    for k, out_dim in enumerate(dims):
        layers.append(nn.Linear(in_dim, out_dim))
        if final_activation or k < len(dims) - 1:
            layers += [nn.ReLU(), nn.Dropout(dropout)]
        in_dim = out_dim
    return nn.Sequential(*layers)


class DeepSetsEncoder(SetEncoder):
    def __init__(self, input_dim: int, phi_dims: Sequence[int] = (128, 128),
                 head_dims: Sequence[int] = (128, 64), input_norm: bool = True, dropout: float = 0.1):
        super().__init__()
        phi_dims, head_dims = check_dims("phi_dims", phi_dims), check_dims("head_dims", head_dims)
        self._add_input_layers(input_dim, input_norm, dropout)
        self.phi = element_mlp(input_dim, phi_dims, dropout, final_activation=True)
        self.head = mlp_head(phi_dims[-1], head_dims)
        self.embedding_dim = head_dims[-1]

    def set_features(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """sum_{x in X} phi(x) over the real elements (b, phi_dims[-1])."""
        h = self.phi(self.input_dropout(self.input_norm(x)))
        return h.masked_fill(padding_mask.unsqueeze(-1), 0.0).sum(dim=1)
