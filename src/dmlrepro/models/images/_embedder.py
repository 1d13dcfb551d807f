"""``ImageEmbedder``: backbone -> global pooling -> optional linear head -> L2 normalisation.

Every backbone exposes ``feature_map(x) -> (b, C, h, w)`` (its last convolutional map; the
Wasserstein-DML paper uses its cells as point clouds), ``feature_dim`` (= C) and
``classifier_prefixes`` (the ImageNet classifier keys a pretrained file carries and we drop).

Decisions:

* pooling ``"avg+max"`` is the *sum* of global average and global max pooling (STML's
  ``gap + gmp``);
* pooling ``"rmac"`` is multi-scale R-MAC (:mod:`dmlrepro.models.images._rmac`, Tolias et al. 2016):
  the network runs on the input at each of ``rmac_scales`` (default 1, 1/√2, 1/2: SSDML's 512,
  362, 256 for a 512 input), R-MAC per scale, summed, L2-normalised. ``feature_map`` stays the
  full-scale map;
* the head is one ``nn.Linear(feature_dim, embedding_dim)`` with PyTorch's default init;
  ``embedding_dim=None`` means no head (SSDML: the metric L lives in the loss, and the paper's
  "l2" before L is this module's normalisation);
* ``freeze_bn=True`` (Roth's ``resnet50_frozen_normalize``, the MS-loss code) keeps every
  BatchNorm in eval mode so its running statistics never change; its affine parameters stay
  trainable, as in both sources.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from dmlrepro import DmlReproError
from dmlrepro.models.images._bn_inception import BNInception
from dmlrepro.models.images._caffe_googlenet import CaffeGoogLeNet
from dmlrepro.models.images._rmac import RMAC_SCALES, multiscale_rmac
from dmlrepro.models.images._small import CifarSSDML, LeNetSSDML
from dmlrepro.models.images._transforms import INPUT_SPECS, InputSpec
from dmlrepro.models.images._weights import (load_matching_state_dict, pretrained_weights_path,
                                             read_state_dict)

POOLINGS = ("avg", "max", "avg+max", "rmac")



# torchvision's backbones are imported only when built: `import torchvision` costs ~3.6 CPU-s on top
# of torch (it loads its ops and model zoo), which every small-net job of the default would pay
def _resnet50() -> nn.Module:
    from dmlrepro.models.images._torchvision import ResNet50Backbone
    return ResNet50Backbone()


def _googlenet() -> nn.Module:
    from dmlrepro.models.images._torchvision import GoogLeNetBackbone
    return GoogLeNetBackbone()


# name -> constructor of the backbone module (random init, nothing downloaded)
IMAGE_BACKBONES: dict[str, Callable[[], nn.Module]] = {
    "lenet_ssdml": LeNetSSDML,
    "cifar_ssdml": CifarSSDML,
    "resnet50": _resnet50,
    "googlenet": _googlenet,
    "googlenet_caffe": CaffeGoogLeNet,
    "bn_inception": BNInception,
}
# which catalog weights `pretrained=True` means (the small nets have none)
DEFAULT_WEIGHTS = {"resnet50": "resnet50", "googlenet": "googlenet",
                   "googlenet_caffe": "googlenet_caffe", "bn_inception": "bn_inception"}


def global_pool(feature_map: Tensor, pooling: str) -> Tensor:
    """(b, C, h, w) -> (b, C) by global average, global max, or their sum ("avg+max"); R-MAC needs the
    input, not one map (:meth:`ImageEmbedder.features`)."""
    if pooling == "avg":
        return feature_map.mean(dim=(2, 3))
    if pooling == "max":
        return feature_map.amax(dim=(2, 3))
    if pooling == "avg+max":
        return feature_map.mean(dim=(2, 3)) + feature_map.amax(dim=(2, 3))
    raise DmlReproError(f"unknown pooling {pooling!r}; choose one of {list(POOLINGS)}")


class ImageEmbedder(nn.Module):
    """Images -> (b, embedding_dim) embeddings, L2-normalised unless ``normalize=False``."""

    def __init__(self, backbone: nn.Module, input_spec: InputSpec, *, embedding_dim: int | None = 128,
                 pooling: str = "avg", freeze_bn: bool = False, normalize: bool = True,
                 rmac_scales: tuple[float, ...] = RMAC_SCALES, rmac_levels: int = 3) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise DmlReproError(f"unknown pooling {pooling!r}; choose one of {list(POOLINGS)}")
        if embedding_dim is not None and int(embedding_dim) < 1:
            raise DmlReproError(f"embedding_dim must be a positive integer or None, got {embedding_dim!r}")
        self.backbone = backbone
        self.input_spec = input_spec
        self.pooling = pooling
        self.rmac_scales, self.rmac_levels = tuple(float(s) for s in rmac_scales), int(rmac_levels)
        self.normalize = normalize
        self.feature_dim = int(backbone.feature_dim)
        self.head: nn.Module = (nn.Identity() if embedding_dim is None
                                else nn.Linear(self.feature_dim, int(embedding_dim)))
        self.embedding_dim = self.feature_dim if embedding_dim is None else int(embedding_dim)
        self.freeze_bn = False
        if freeze_bn:
            self.freeze_batch_norm()

    def feature_map(self, x: Tensor) -> Tensor:
        """The backbone's last convolutional map, (b, C, h, w). Goes through ``backbone.__call__``
        (whose ``forward`` is ``feature_map``), so forward hooks on the backbone see the map."""
        return self.backbone(x)

    def features(self, x: Tensor) -> Tensor:
        """The globally pooled map, (b, feature_dim): the representation before the head."""
        if self.pooling == "rmac":
            return multiscale_rmac(self.feature_map, x, self.rmac_scales, self.rmac_levels)
        return global_pool(self.feature_map(x), self.pooling)

    def forward(self, x: Tensor) -> Tensor:
        z = self.head(self.features(x))
        return F.normalize(z, p=2, dim=1) if self.normalize else z

    def freeze_batch_norm(self) -> None:
        """Put every BatchNorm in eval mode now and after every later ``train()`` call."""
        self.freeze_bn = True
        self._set_batch_norm_eval()

    def _set_batch_norm_eval(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()

    def train(self, mode: bool = True) -> "ImageEmbedder":
        super().train(mode)
        if self.freeze_bn:
            self._set_batch_norm_eval()
        return self


def build_image_embedder(name: str, *, embedding_dim: int | None = 128, pretrained: bool | str | os.PathLike = False,
                         weights_root: str | os.PathLike | None = None, pooling: str = "avg",
                         freeze_bn: bool = False, normalize: bool = True,
                         crop_size: int | None = None, resize: int | None = None) -> ImageEmbedder:
    """The ``name`` backbone (a key of ``IMAGE_BACKBONES``) with its pooling, head and input spec.

    ``pretrained``: False = random init; True = the catalog's ImageNet weights for ``name``,
    read from ``weights_root`` (a missing file is a :class:`DmlReproError` naming it and its URL);
    a path = either an ImageNet state dict for the backbone, or a whole ``ImageEmbedder`` state
    dict our pipeline wrote (keys ``backbone.*``/``head.*``), loaded strictly. ``crop_size``
    overrides the spec's crop (e.g. 224 instead of 227), ``resize`` its resize (SSDML's R-MAC
    input: 512, resized and cropped to 512). Nothing is ever downloaded.
    """
    if name not in IMAGE_BACKBONES:
        raise DmlReproError(f"unknown image backbone {name!r}; choose one of {sorted(IMAGE_BACKBONES)}")
    spec = INPUT_SPECS[name]
    if crop_size is not None:
        if int(crop_size) < 1:
            raise DmlReproError(f"crop_size must be a positive integer, got {crop_size!r}")
        spec = InputSpec(int(crop_size), spec.resize, spec.channels, spec.colour, spec.mean, spec.std)
    if resize is not None:
        if int(resize) < 1:
            raise DmlReproError(f"resize must be a positive integer, got {resize!r}")
        spec = InputSpec(spec.size, int(resize), spec.channels, spec.colour, spec.mean, spec.std)
    backbone = IMAGE_BACKBONES[name]()
    if pretrained is True:
        if name not in DEFAULT_WEIGHTS:
            raise DmlReproError(f"image backbone {name!r} has no pretrained weights; pass `pretrained: false`")
        path = pretrained_weights_path(DEFAULT_WEIGHTS[name], weights_root)
        load_matching_state_dict(backbone, read_state_dict(path), path, drop_prefixes=backbone.classifier_prefixes)
    embedder = ImageEmbedder(backbone, spec, embedding_dim=embedding_dim, pooling=pooling,
                             freeze_bn=freeze_bn, normalize=normalize)
    if pretrained is not False and pretrained is not True:
        path = Path(pretrained)
        state = read_state_dict(path)
        if any(k.startswith("backbone.") for k in state):  # a checkpoint of this class
            load_matching_state_dict(embedder, state, path)
        else:
            load_matching_state_dict(backbone, state, path,
                                     drop_prefixes=getattr(backbone, "classifier_prefixes", ()))
    return embedder
