"""What each backbone expects as input, and the torchvision transforms that produce it.

ImageNet backbones (IMAGE-ANCHORS §1): train = Resize(resize) -> RandomResizedCrop(size, scale)
-> RandomHorizontalFlip; test = Resize(resize) -> CenterCrop(size) (the MS-loss and STML
recipe; STML and GUML draw scale from (0.16, 1)). Then the colour convention:

* ``rgb``: [0, 1] RGB, normalised by ``mean``/``std``;
* ``bgr255``: Caffe-ported nets (BN-Inception, Caffe GoogLeNet): RGB -> BGR, x 255, subtract
  ``mean`` (given in BGR order, [104, 117, 128] as Cadene's BN-Inception settings) and divide by
  ``std`` (1);
* ``grey``: one channel, normalised by ``mean``/``std``.

Small nets (decisions; the SSDML paper states no preprocessing or augmentation):

* MNIST/Fashion-MNIST (``lenet_ssdml``): ToTensor and normalise to [-1, 1] (mean = std = 0.5),
  no augmentation. MatConvNet's example subtracts the training mean image at 0-255 scale; one
  dataset-free centring serves both datasets and keeps the inputs O(1).
* CIFAR-10 (``cifar_ssdml``): train = RandomCrop(32, padding=4) + RandomHorizontalFlip, the
  common CIFAR recipe (MatConvNet's example uses flips and whitening instead); normalised with
  the CIFAR-10 training-set channel mean/std.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from dmlrepro import DmlReproError

COLOURS = ("grey", "rgb", "bgr255")


@dataclass(frozen=True)
class InputSpec:
    """The input a backbone expects.

    ``size``: crop side fed to the net; ``resize``: shorter-side resize before the crop (None for
    the small nets, which take the image as it is); ``colour``: "grey" | "rgb" | "bgr255";
    ``mean``/``std``: per channel, in the channel order and range of ``colour``.
    """

    size: int
    resize: int | None
    channels: int
    colour: str
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.colour not in COLOURS:
            raise DmlReproError(f"InputSpec colour {self.colour!r} is not one of {COLOURS}")
        expected_channels = 1 if self.colour == "grey" else 3
        if self.channels != expected_channels or len(self.mean) != self.channels or len(self.std) != self.channels:
            raise DmlReproError(f"InputSpec for colour {self.colour!r} needs {expected_channels} channel(s), "
                                f"mean and std of that length; got channels={self.channels}, "
                                f"mean={self.mean}, std={self.std}")


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (104.0, 117.0, 128.0)  # Cadene BN-Inception settings; STML uses it for Caffe GoogLeNet too
# GUML (SSDML's authors) and metriclearningbench use this mean for Caffe GoogLeNet (RGB order
# [122.7717, 115.9465, 102.9801] there), here in BGR order; pass it with dataclasses.replace.
GUML_CAFFE_MEAN_BGR = (102.9801, 115.9465, 122.7717)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

INPUT_SPECS: dict[str, InputSpec] = {
    "lenet_ssdml": InputSpec(28, None, 1, "grey", (0.5,), (0.5,)),
    "cifar_ssdml": InputSpec(32, None, 3, "rgb", CIFAR10_MEAN, CIFAR10_STD),
    "resnet50": InputSpec(224, 256, 3, "rgb", IMAGENET_MEAN, IMAGENET_STD),
    # torchvision's transform_input=True, folded into the normalisation (see _torchvision.py)
    "googlenet": InputSpec(224, 256, 3, "rgb", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "googlenet_caffe": InputSpec(227, 256, 3, "bgr255", CAFFE_MEAN_BGR, (1.0, 1.0, 1.0)),
    "bn_inception": InputSpec(227, 256, 3, "bgr255", CAFFE_MEAN_BGR, (1.0, 1.0, 1.0)),
}


class ToCaffeBGR255(torch.nn.Module):
    """A [0, 1] RGB tensor (..., 3, H, W) -> BGR at 0-255 scale, minus ``mean``, over ``std``
    (both in BGR order)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flip(-3) * 255.0 - self.mean) / self.std


def build_transforms(spec: InputSpec, train: bool, *, scale: tuple[float, float] = (0.16, 1.0)) -> Callable:
    """The ``torchvision.transforms.v2`` pipeline from a PIL image (or uint8 CHW tensor) to the
    float tensor ``spec`` describes (module docstring: crops, flips and colour convention)."""
    from torchvision.transforms import v2  # here, not at import: see _embedder's IMAGE_BACKBONES
    steps: list[Callable] = [v2.RGB() if spec.channels == 3 else v2.Grayscale(num_output_channels=1)]
    if spec.resize is not None:  # ImageNet nets
        steps.append(v2.Resize(spec.resize))
        steps += ([v2.RandomResizedCrop(spec.size, scale=scale), v2.RandomHorizontalFlip()] if train
                  else [v2.CenterCrop(spec.size)])
    else:  # small nets: your own images come at any size (a no-op on MNIST's 28 and CIFAR's 32 pixels)
        steps.append(v2.Resize((spec.size, spec.size)))
        if train and spec.colour != "grey":  # CIFAR-style small colour net
            steps += [v2.RandomCrop(spec.size, padding=4), v2.RandomHorizontalFlip()]
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if spec.colour == "bgr255":
        steps.append(ToCaffeBGR255(spec.mean, spec.std))
    else:
        steps.append(v2.Normalize(list(spec.mean), list(spec.std)))
    return v2.Compose(steps)
