"""Image backbones with embedding heads, their input specs and transforms, and pretrained weights.

Flat API (private modules per family behind it):

* ``build_image_embedder(name, ...) -> ImageEmbedder`` for ``name`` in ``IMAGE_BACKBONES``:
  ``lenet_ssdml`` and ``cifar_ssdml`` (SSDML's MatConvNet nets), ``resnet50`` and ``googlenet``
  (torchvision), ``googlenet_caffe`` (BVLC Inception-v1) and ``bn_inception`` (Cadene's port);
* ``build_cloud_embedder(name, ...) -> PointCloudEmbedder``: an image as a cloud of projected
  feature-map cells (paper 002), and ``PooledView`` (its normalised mean point);
* ``TwoHeadEmbedder``: an embedder with a second, auxiliary head (STML's f and g);
* ``InputSpec`` / ``INPUT_SPECS`` and ``build_transforms(spec, train)``;
* ``WEIGHTS`` (the catalog) and ``pretrained_weights_path(name, weights_root)``.
"""

from dmlrepro.models.images._bn_inception import BNInception
from dmlrepro.models.images._cloud import PointCloudEmbedder, PooledView, build_cloud_embedder
from dmlrepro.models.images._caffe_googlenet import CaffeGoogLeNet, read_h5_arrays
from dmlrepro.models.images._embedder import (DEFAULT_WEIGHTS, IMAGE_BACKBONES, POOLINGS, ImageEmbedder,
                                              build_image_embedder, global_pool)
from dmlrepro.models.images._small import CifarSSDML, LeNetSSDML
from dmlrepro.models.images._two_head import TwoHeadEmbedder
from dmlrepro.models.images._transforms import (CAFFE_MEAN_BGR, GUML_CAFFE_MEAN_BGR, INPUT_SPECS, InputSpec,
                                                ToCaffeBGR255, build_transforms)
from dmlrepro.models.images._weights import (WEIGHTS, WeightsFile, default_weights_root, fetch_weights,
                                             pretrained_weights_path,
                                             read_state_dict, verify_weights_file)

__all__ = [
    "BNInception", "CAFFE_MEAN_BGR", "CaffeGoogLeNet", "CifarSSDML", "DEFAULT_WEIGHTS", "GUML_CAFFE_MEAN_BGR",
    "GoogLeNetBackbone", "IMAGE_BACKBONES", "INPUT_SPECS", "ImageEmbedder", "InputSpec", "LeNetSSDML",
    "POOLINGS", "PointCloudEmbedder", "PooledView", "ResNet50Backbone", "ToCaffeBGR255", "TwoHeadEmbedder", "WEIGHTS",
    "WeightsFile", "build_cloud_embedder", "build_image_embedder",
    "build_transforms", "default_weights_root", "fetch_weights", "global_pool", "pretrained_weights_path", "read_h5_arrays",
    "read_state_dict", "verify_weights_file",
]


def __getattr__(name: str):
    # torchvision's backbones on first use only (importing torchvision costs seconds per job)
    if name in ("GoogLeNetBackbone", "ResNet50Backbone"):
        from dmlrepro.models.images import _torchvision
        return getattr(_torchvision, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
