"""``TwoHeadEmbedder``: an :class:`ImageEmbedder` with a second, auxiliary embedding head.

STML (Kim et al., CVPR 2022; ``tjddus9597/STML-CVPR22:code/net/inception.py``) puts two linear
heads on the pooled features: the embedding ``f`` (d, what retrieval uses) and a wide auxiliary
``g`` (1024), both orthogonally initialised; its loss trains both and distils g's neighbourhoods
into f. ``forward`` returns f, so evaluation and every shared helper (``embed_rows``) treat this
model like any embedder; ``heads(x)`` returns (f, g) from one backbone pass.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dmlrepro import DmlReproError
from dmlrepro.models.images._embedder import ImageEmbedder


class TwoHeadEmbedder(nn.Module):
    def __init__(self, embedder: ImageEmbedder, aux_dim: int = 1024, *, orthogonal_init: bool = True) -> None:
        super().__init__()
        if isinstance(embedder.head, nn.Identity):
            raise DmlReproError("TwoHeadEmbedder: the embedder needs a linear head (embedding_dim is None)")
        if int(aux_dim) < 1:
            raise DmlReproError(f"TwoHeadEmbedder: aux_dim must be a positive integer, got {aux_dim!r}")
        self.embedder = embedder
        self.aux_head = nn.Linear(embedder.feature_dim, int(aux_dim))
        if orthogonal_init:  # STML's init of both heads
            for head in (embedder.head, self.aux_head):
                nn.init.orthogonal_(head.weight)
                nn.init.zeros_(head.bias)
        self.input_spec, self.feature_dim = embedder.input_spec, embedder.feature_dim
        self.embedding_dim, self.aux_dim = embedder.embedding_dim, int(aux_dim)

    def features(self, x: Tensor) -> Tensor:
        return self.embedder.features(x)

    def heads(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.features(x)
        f, g = self.embedder.head(h), self.aux_head(h)
        if self.embedder.normalize:
            f, g = F.normalize(f, dim=1), F.normalize(g, dim=1)
        return f, g

    def forward(self, x: Tensor) -> Tensor:
        return self.heads(x)[0]
