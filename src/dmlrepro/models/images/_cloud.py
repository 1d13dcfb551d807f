"""``PointCloudEmbedder``: an image as a point cloud (paper 002, Wasserstein DML).

The paper compares images by W₁ between measures it never defines (TARGETS.md 002-§5.1). The
reading built here: an image is the uniform measure over the ``h × w`` cells of a spatial feature
map of its backbone, each cell's ``C``-vector projected to ``D`` dimensions by one linear map
shared by all cells (a 1×1 convolution, the cloud analogue of the usual embedding head) and
L2-normalised. ResNet-50 at 224 gives its last map, 7 × 7 = 49 points.

``cloud_layer`` picks the map: ``None`` is the backbone's last map (``feature_map``); a name is
one of the backbone's submodules, whose output is captured by a forward hook while the backbone
runs only as far as needed (the hook raises a private signal after capturing, so later layers
cost nothing). The offline stand-in's LeNet has a 1 × 1 last map (a single point: the Sinkhorn
divergence would collapse to ½‖x − y‖²), so it uses ``pool2``, 50 channels on 4 × 4 = 16 cells.

Outputs:

* ``clouds(x)``: ``(b, P, D)``, unit-norm points;
* ``forward(x)``: the clouds flattened point-major, ``(b, P·D)``, the rows pytorch-metric-learning
  passes to :class:`~dmlrepro.distances.sinkhorn_divergence.SinkhornDivergenceDistance`;
* ``pooled(x)``: the L2-normalised mean of the points, ``(b, D)``: what the Euclidean losses and
  the retrieval metrics read (for ResNet-50 this is Roth et al.'s average pooling + linear head,
  except that each cell is normalised before the mean).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmlrepro import DmlReproError


class _Captured(Exception):
    """Raised by the capture hook once the wanted map exists: the rest of the backbone is skipped."""


class PointCloudEmbedder(nn.Module):
    """Images -> per-image point clouds of unit-norm points in ``R^embedding_dim`` (module docstring).

    ``base`` is an :class:`~dmlrepro.models.images.ImageEmbedder` (its backbone, input spec and
    batch-norm freezing are reused; its pooled head is not). ``cloud_channels`` is the channel
    count of the chosen map (found by a dry run when None)."""

    def __init__(self, base: nn.Module, *, embedding_dim: int, cloud_layer: str | None = None,
                 cloud_channels: int | None = None):
        super().__init__()
        if int(embedding_dim) < 1:
            raise DmlReproError(f"embedding_dim must be a positive integer, got {embedding_dim!r}")
        self.backbone = base.backbone
        self.input_spec = base.input_spec
        self.cloud_layer = cloud_layer
        self._target = None
        if cloud_layer is not None:
            modules = dict(self.backbone.named_modules())
            if cloud_layer not in modules or cloud_layer == "":
                raise DmlReproError(f"cloud_layer '{cloud_layer}' is not a submodule of the backbone "
                                    f"({', '.join(n for n in modules if n and '.' not in n)})")
            self._target = modules[cloud_layer]
        if cloud_channels is None:
            with torch.no_grad():
                was = self.backbone.training
                self.backbone.eval()
                s = self.input_spec
                cloud_channels = self._map(torch.zeros(1, s.channels, s.size, s.size)).shape[1]
                self.backbone.train(was)
        self.feature_dim = int(cloud_channels)
        self.point_dim = int(embedding_dim)
        self.head = nn.Conv2d(self.feature_dim, self.point_dim, kernel_size=1)
        self.freeze_bn = bool(getattr(base, "freeze_bn", False))
        self.train(base.training)

    @property
    def embedding_dim(self) -> int:
        """What ``pooled`` returns; ``forward`` returns ``n_points * embedding_dim`` columns."""
        return self.point_dim

    def _map(self, x: Tensor) -> Tensor:
        if self._target is None:
            return self.backbone(x)
        captured: list[Tensor] = []

        def hook(_module, _inputs, output):
            captured.append(output)
            raise _Captured

        handle = self._target.register_forward_hook(hook)
        try:
            self.backbone(x)
        except _Captured:
            pass
        finally:
            handle.remove()
        if not captured:
            raise DmlReproError(f"cloud_layer '{self.cloud_layer}' was never called by the backbone's forward")
        return captured[0]

    def feature_map(self, x: Tensor) -> Tensor:
        """The chosen map projected to ``embedding_dim`` channels: ``(b, D, h, w)``."""
        return self.head(self._map(x))

    def clouds(self, x: Tensor) -> Tensor:
        """``(b, h·w, D)``: one unit-norm point per cell, row-major over ``(h, w)``."""
        fmap = self.feature_map(x)
        return F.normalize(fmap.flatten(2).transpose(1, 2), dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        return self.clouds(x).flatten(1)

    @staticmethod
    def pool(clouds: Tensor) -> Tensor:
        """``(b, P, D)`` clouds -> the normalised mean point ``(b, D)``."""
        return F.normalize(clouds.mean(1), dim=-1)

    def pooled(self, x: Tensor) -> Tensor:
        return self.pool(self.clouds(x))

    def features(self, x: Tensor) -> Tensor:
        """The chosen map, average-pooled: ``(b, feature_dim)`` (before the projection)."""
        return self._map(x).mean(dim=(2, 3))

    def train(self, mode: bool = True) -> "PointCloudEmbedder":
        super().train(mode)
        if self.freeze_bn:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self


def build_cloud_embedder(name: str, *, embedding_dim: int, cloud_layer: str | None = None,
                         pretrained=False, weights_root=None, freeze_bn: bool = False) -> PointCloudEmbedder:
    """The ``name`` backbone (``build_image_embedder``'s names, weights and checkpoints) as a
    :class:`PointCloudEmbedder` on its ``cloud_layer`` map. A whole ``PointCloudEmbedder`` state
    dict (keys ``backbone.*`` and ``head.*`` of shape ``(D, C, 1, 1)``) loads through
    ``load_state_dict`` afterwards, not through ``pretrained``."""
    from dmlrepro.models.images._embedder import build_image_embedder
    base = build_image_embedder(name, embedding_dim=None, pretrained=pretrained, weights_root=weights_root,
                                freeze_bn=freeze_bn)
    return PointCloudEmbedder(base, embedding_dim=embedding_dim, cloud_layer=cloud_layer)


class PooledView(nn.Module):
    """``PointCloudEmbedder`` seen through ``pooled``: ``forward`` returns ``(b, D)`` (the embedding
    the Euclidean rows train and every row is evaluated on). Shares the parameters."""

    def __init__(self, clouds: PointCloudEmbedder):
        super().__init__()
        self.net = clouds
        self.input_spec = clouds.input_spec
        self.embedding_dim = clouds.point_dim
        self.feature_dim = clouds.feature_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net.pooled(x)

    def features(self, x: Tensor) -> Tensor:
        return self.net.features(x)
