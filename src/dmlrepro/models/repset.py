"""RepSet set encoder (Skianis et al., AISTATS 2020, "Rep the Set"): the RepSet row of Table I.

Original architecture: m learnable *hidden sets* H_1..H_m, each of n learnable vectors in the
element space. For an input set X and each hidden set H_s, build the complete bipartite graph
between X and H_s with edge weights ReLU(<x_i, h_j>) and solve the maximum-weight bipartite
matching (every element matched at most once); the m optimal values form the set's
representation, which a fully connected network maps to the output. Gradients flow through the
weights of the selected edges (the matching itself is piecewise constant). ApproxRepSet, the
paper's fast relaxation, drops the constraint that a hidden element is matched at most once:
each input element takes its best hidden element, value = sum_i max_j ReLU(<x_i, h_j>).

Decisions (where the paper is silent, or where we deviate):
* ``matching: exact`` solves each matching with scipy's ``linear_sum_assignment`` (maximize)
  on the detached weights, then sums the selected, differentiable weights. The released code
  uses ``lap.lapjv`` in a NumPy model with hand-written gradients; the optimum is the same.
  ``matching: approx`` is ApproxRepSet (vectorised, no solver).
* ``normalise`` (default true): divide each value by the input set's size, as the released
  exact RepSet does (``cost / x.shape[1]``); the released ApproxRepSet does not normalise, we
  apply the same flag to both so they are comparable.
* Padded rows get edge weight 0: with non-negative weights an unmatched element and an element
  matched with weight 0 are the same, so padding never changes a value.
* ``project_dim`` (default none: the paper's hidden sets live in the word-vector space): an
  optional linear projection (no activation) of the elements before matching.
* ``input_norm`` (default true, LayerNorm + dropout of each element, as in the self-attention
  model): the raw-count column otherwise dominates the dot products.
* Hidden vectors are initialised N(0, 1) as in the released exact RepSet (ApproxRepSet draws
  U(-1, 1)). ``batch_norm`` (default false) optionally normalises the m values before the head.
* The head is the shared MLP head (``head_dims``, default 128-64) and the output is
  L2-normalised like every encoder here; the released code uses a linear softmax classifier
  (RepSet) or one 32-unit hidden layer (ApproxRepSet). Defaults m = 20 hidden sets of n = 4
  elements keep the exact matching cheap on a 2-core CPU.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from dmlrepro.models.deepsets import check_dims
from dmlrepro.models.set_transformer import SetEncoder, mlp_head

MATCHINGS = ("exact", "approx")


def max_weight_matching(weights: torch.Tensor) -> torch.Tensor:
    """Value of the maximum-weight bipartite matching of every (L, n) matrix in ``weights``
    (..., L, n), differentiable through the selected entries. Weights must be non-negative, so
    a matching of min(L, n) pairs is optimal among all partial matchings."""
    *batch, rows, cols = weights.shape
    flat = weights.reshape(-1, rows, cols)
    pairs = min(rows, cols)
    dense = flat.detach().cpu().numpy()
    row_index = np.empty((len(dense), pairs), dtype=np.int64)
    col_index = np.empty((len(dense), pairs), dtype=np.int64)
    for k, matrix in enumerate(dense):
        row_index[k], col_index[k] = linear_sum_assignment(matrix, maximize=True)
    which = torch.arange(len(dense), device=weights.device).unsqueeze(1)
    selected = flat[which, torch.from_numpy(row_index).to(weights.device),
                    torch.from_numpy(col_index).to(weights.device)]
    return selected.sum(dim=-1).reshape(batch)


class RepSetEncoder(SetEncoder):
    def __init__(self, input_dim: int, hidden_sets: int = 20, hidden_elements: int = 4,
                 matching: str = "exact", project_dim: int | None = None, normalise: bool = True,
                 batch_norm: bool = False, head_dims: Sequence[int] = (128, 64), input_norm: bool = True,
                 dropout: float = 0.1):
        super().__init__()
        if matching not in MATCHINGS:
            raise ValueError(f"model.matching={matching!r} is not one of {list(MATCHINGS)}")
        if hidden_sets < 1 or hidden_elements < 1:
            raise ValueError(f"model.hidden_sets={hidden_sets} and model.hidden_elements={hidden_elements} "
                             f"must be positive")
        head_dims = check_dims("head_dims", head_dims)
        width = int(project_dim) if project_dim else input_dim
        self.matching, self.normalise = matching, normalise
        self._add_input_layers(input_dim, input_norm, dropout)
        self.project = nn.Linear(input_dim, width) if project_dim else nn.Identity()
        self.hidden = nn.Parameter(torch.empty(hidden_sets, hidden_elements, width))
        nn.init.normal_(self.hidden)
        self.batch_norm = nn.BatchNorm1d(hidden_sets) if batch_norm else nn.Identity()
        self.head = mlp_head(hidden_sets, head_dims)
        self.embedding_dim = head_dims[-1]

    def edge_weights(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """ReLU(<x_i, h_sj>) for every set, hidden set, element and hidden element (b, m, L, n);
        0 on padded elements."""
        elements = self.project(self.input_dropout(self.input_norm(x)))
        weights = torch.relu(torch.einsum("bld,snd->bsln", elements, self.hidden))
        return weights.masked_fill(padding_mask[:, None, :, None], 0.0)

    def matching_values(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """The (unnormalised) matching value of every set with every hidden set (b, m)."""
        weights = self.edge_weights(x, padding_mask)
        if self.matching == "approx":
            return weights.max(dim=3).values.sum(dim=2)
        return max_weight_matching(weights)

    def set_features(self, x: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        values = self.matching_values(x, padding_mask)
        if self.normalise:
            values = values / (~padding_mask).sum(dim=1, keepdim=True).clamp(min=1)
        return self.batch_norm(values)
