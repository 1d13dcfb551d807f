"""The second reading of "the measure of an image" (Paper 002, decision 1 of docs/wasserstein.md):
the image's L2-normalised embedding ``e`` read as a histogram over its ``D`` dimensions.

* **Histogram**: ``h = e ⊙ e`` (non-negative, sums to 1 because ``‖e‖ = 1``), floored at 1e-8
  and renormalised so that no bin has zero mass (geomloss works with log-weights).
* **Ground metric between dimensions**: each dimension ``d`` is a support point ``u_d ∈ R^k``, shared
  by all images and learned with the network (an ``nn.Parameter`` of the distance, so it sits in
  the objective's parameters and the optimiser's loss group). Initialised at the identity
  (``k = D``): every two dimensions start equally far apart, ``½‖u_c − u_d‖² = 1``, so the divergence
  starts as a smoothed total variation between the histograms and learns which dimensions are near.
  A fixed line ``u_d = d / D`` would make ``W_1`` a weighted L1 between cumulative histograms of an
  arbitrary dimension order, which is why the metric is learned here.
* **Divergence**: the same debiased Sinkhorn divergence (geomloss, ``p``, ``blur``, ``scaling``) as the
  cloud reading (:mod:`dmlrepro.distances.sinkhorn_divergence`), between two weighted measures on the
  shared support instead of two uniform clouds. The annealing starts at the support's diameter,
  fixed once per call.

:class:`HistogramSinkhornDistance` is a pytorch-metric-learning ``BaseDistance`` on ordinary
``(n, D)`` embeddings, so PML's losses and miners use it unchanged.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning.distances import BaseDistance

from dmlrepro import DmlReproError
from dmlrepro.distances.sinkhorn_divergence import (DEFAULT_BLUR, DEFAULT_MAX_PAIRS, DEFAULT_SCALING, _solver,
                                                    cloud_diameter)

HISTOGRAM_FLOOR = 1e-8


def embedding_histograms(emb: torch.Tensor) -> torch.Tensor:
    """``(n, D)`` embeddings -> ``(n, D)`` histograms ``e ⊙ e`` of the L2-normalised rows (floored)."""
    h = torch.nn.functional.normalize(emb, dim=1).pow(2) + HISTOGRAM_FLOOR
    return h / h.sum(dim=1, keepdim=True)


class HistogramSinkhornDistance(BaseDistance):
    """Sinkhorn divergence between embeddings read as histograms on a learned support (module docstring)."""

    def __init__(self, dim: int, *, support_dim: int | None = None, blur: float = DEFAULT_BLUR, p: int = 2,
                 scaling: float = DEFAULT_SCALING, debias: bool = True, backend: str = "tensorized",
                 max_pairs: int = DEFAULT_MAX_PAIRS, learn_support: bool = True, **kwargs):
        for key in ("normalize_embeddings", "is_inverted"):
            if kwargs.pop(key, False):
                raise DmlReproError(f"HistogramSinkhornDistance: {key}=True is not supported")
        if kwargs.get("power", 1) != 1:
            raise DmlReproError(f"HistogramSinkhornDistance: power must be 1, got {kwargs['power']}")
        dim, support_dim = int(dim), int(support_dim or dim)
        if dim < 2 or not 1 <= support_dim:
            raise DmlReproError(f"HistogramSinkhornDistance: needs dim >= 2 and support_dim >= 1, got {dim}, {support_dim}")
        _solver(blur, p, scaling, debias, backend, 1.0)   # validate the options now
        super().__init__(normalize_embeddings=False, p=p, is_inverted=False, **kwargs)
        support = torch.eye(dim, support_dim) if support_dim >= dim else torch.randn(
            dim, support_dim, generator=torch.Generator().manual_seed(0)) / support_dim ** 0.5
        self.support = torch.nn.Parameter(support, requires_grad=bool(learn_support))
        self.blur, self.scaling, self.debias, self.backend = float(blur), float(scaling), bool(debias), backend
        self.max_pairs = int(max_pairs)

    def _divergences(self, hx: torch.Tensor, hy: torch.Tensor) -> torch.Tensor:
        """``S_eps(hx[k], hy[k])`` for each ``k``, ``max_pairs`` problems per geomloss call."""
        if hx.shape[1] != self.support.shape[0]:
            raise DmlReproError(f"HistogramSinkhornDistance: embeddings have {hx.shape[1]} dimensions, "
                                f"the support {self.support.shape[0]}")
        solver = _solver(self.blur, self.p, self.scaling, self.debias, self.backend,
                         cloud_diameter(self.support[None].detach()))
        support = self.support.to(hx.dtype)
        out = []
        for s in range(0, len(hx), self.max_pairs):
            a, b = hx[s:s + self.max_pairs], hy[s:s + self.max_pairs]
            x = support.expand(len(a), *support.shape)
            out.append(solver(a, x, b, x))
        return torch.cat(out) if out else hx.new_zeros(0)

    def compute_mat(self, query_emb: torch.Tensor, ref_emb: torch.Tensor | None) -> torch.Tensor:
        hq = embedding_histograms(query_emb)
        n = len(hq)
        if ref_emb is None or ref_emb is query_emb:  # the pairs i < j, mirrored; an exact-zero diagonal
            rows, cols = torch.triu_indices(n, n, 1, device=hq.device)
            values = self._divergences(hq[rows], hq[cols])
            mat = values.new_zeros(n, n)
            mat[rows, cols] = values
            mat[cols, rows] = values
            return mat
        hr = embedding_histograms(ref_emb)
        rows = torch.arange(n, device=hq.device).repeat_interleave(len(hr))
        cols = torch.arange(len(hr), device=hq.device).repeat(n)
        return self._divergences(hq[rows], hr[cols]).reshape(n, len(hr))

    def pairwise_distance(self, query_emb: torch.Tensor, ref_emb: torch.Tensor) -> torch.Tensor:
        return self._divergences(embedding_histograms(query_emb), embedding_histograms(ref_emb))
