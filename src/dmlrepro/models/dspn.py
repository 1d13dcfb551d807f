"""The DSPN set encoder (Zhang, Hare & Prügel-Bennett, NeurIPS 2019): the DSPN rows of Tables I, II.

Deep Set Prediction Networks predict sets by gradient descent on the output of a set *encoder*;
the WSSET paper uses that encoder as a baseline ("DSPN with a softmax layer", and with triplet
loss in Table II). The encoder is a per-element MLP (1x1 convolutions in the released code,
ReLU between layers, none after the last) followed by FSPool, featurewise sort pooling (Zhang,
Hare & Prügel-Bennett, ICLR 2020): every feature is sorted over the set's elements in
descending order and the sorted values are summed with weights given by a learned piecewise-
linear function of the relative position r = i / (size - 1) in [0, 1] (``pieces`` pieces, i.e.
pieces + 1 learned knots per feature, initialised N(0, 1)); r makes one weight function serve
every set size.

Decisions (where the papers are silent, or where we deviate):
* Padding is excluded from the sort (padded values are pushed to the end and zeroed after it,
  as FSPool does with its size mask); a set of one element has r = 0.
* The released encoder divides the MLP output by the *padded* set size, a constant in its
  fixed-size data; here the padded size depends on the batch, so we divide the pooled vector by
  the *true* set size instead (padding-invariant; keeps the scale independent of document
  length).
* The released encoder appends the mask as an input channel; on real elements it is the
  constant 1, which the first layer's bias already provides, so we leave it out.
* Sizes for a 2-core CPU: ``phi_dims`` 128-128 (DSPN: 256-wide layers), ``pieces`` 20 (as in
  DSPN's encoder). Then the shared MLP head (``head_dims``, default 128-64; DSPN+CE puts a
  softmax layer on top) and L2 normalisation. ``input_norm``: LayerNorm + dropout of the input
  elements as in the self-attention model; dropout also follows every hidden phi activation.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dmlrepro.models.deepsets import check_dims, element_mlp
from dmlrepro.models.set_transformer import SetEncoder, mlp_head


class FSPool(nn.Module):
    """Featurewise sort pooling of (b, L, channels) padded sets to (b, channels)."""

    def __init__(self, channels: int, pieces: int = 20):
        super().__init__()
        if pieces < 1:
            raise ValueError(f"model.pieces={pieces} must be at least 1")
        self.pieces = pieces
        self.weight = nn.Parameter(torch.empty(channels, pieces + 1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight)

    def position_weights(self, sizes: torch.Tensor, length: int) -> torch.Tensor:
        """Weight of sorted position i of a set of ``sizes`` elements, per channel (b, L, channels)."""
        position = torch.arange(length, device=sizes.device, dtype=self.weight.dtype)
        relative = (position.unsqueeze(0) / (sizes.unsqueeze(1) - 1).clamp(min=1)).clamp(max=1.0)
        scaled = relative * self.pieces
        left = scaled.floor().long().clamp(max=self.pieces)
        right = (left + 1).clamp(max=self.pieces)
        frac = (scaled - left).unsqueeze(-1)
        # weight[:, index] is (channels, b, L); interpolate between the two knots around r
        w_left, w_right = self.weight[:, left].permute(1, 2, 0), self.weight[:, right].permute(1, 2, 0)
        return (1 - frac) * w_left + frac * w_right

    def forward(self, h: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        sizes = (~padding_mask).sum(dim=1)
        # -inf sorts padding behind every real value; it is replaced by 0 before it is weighted
        ordered = h.masked_fill(padding_mask.unsqueeze(-1), float("-inf")).sort(dim=1, descending=True).values
        beyond_set = torch.arange(h.shape[1], device=h.device).unsqueeze(0) >= sizes.unsqueeze(1)
        ordered = ordered.masked_fill(beyond_set.unsqueeze(-1), 0.0)
        return (ordered * self.position_weights(sizes, h.shape[1])).sum(dim=1)


class DSPNEncoder(SetEncoder):
    def __init__(self, input_dim: int, phi_dims: Sequence[int] = (128, 128), pieces: int = 20,
                 head_dims: Sequence[int] = (128, 64), input_norm: bool = True, dropout: float = 0.1):
        super().__init__()
        phi_dims, head_dims = check_dims("phi_dims", phi_dims), check_dims("head_dims", head_dims)
        self._add_input_layers(input_dim, input_norm, dropout)
        self.phi = element_mlp(input_dim, phi_dims, dropout, final_activation=False)
        self.pool = FSPool(phi_dims[-1], pieces)
        self.head = mlp_head(phi_dims[-1], head_dims)
        self.embedding_dim = head_dims[-1]

    def set_features(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """FSPool of the element features, divided by the set size (b, phi_dims[-1])."""
        h = self.phi(self.input_dropout(self.input_norm(x)))
        sizes = (~padding_mask).sum(dim=1, keepdim=True).clamp(min=1)
        return self.pool(h, padding_mask) / sizes
