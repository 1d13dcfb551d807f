"""The original Inception-v1 (BVLC Caffe GoogLeNet, Szegedy et al. 2015): LRN, no batch norm,
5x5 convolutions in the inception blocks. This is the GoogLeNet of STML (paper 003's anchor)
and GUML (SSDML's authors); torchvision's GoogLeNet is a different network (BN, 3x3).

Parameter names follow the flat layout of the public converted weights — metriclearningbench's
``googlenet.h5`` and STML's ``inception.pth`` share it: ``conv1.7x7_s2``, ``conv2.3x3_reduce``,
``conv2.3x3``, ``inception_3a.{1x1,3x3_reduce,3x3,5x5_reduce,5x5,pool_proj}`` ... so either
file loads without renaming. Caffe semantics kept: max-pools use ``ceil_mode`` (Caffe rounds
up), LRN(5, alpha=1e-4, beta=0.75, k=1) with alpha divided by the window size as in Caffe,
the pool branch is a 3x3 stride-1 max-pool. The classifier (pool5/drop5/loss3) is left out.
At 227x227 (and 224x224) the last map, ``inception_5b``, is (b, 1024, 7, 7).

``googlenet.h5`` is a hickle dump of a ``{name: array}`` dict; hickle's group layout changed
across versions, so :func:`read_h5_arrays` does not assume one: it walks every dataset and
matches its path to a parameter name (a path component equal to a name, quotes stripped, or
the dotted join of the trailing components). A file where that fails gets a "convert first"
error naming it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from dmlrepro import DmlReproError

# (name, in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj): Szegedy et al. 2015, Table 1
_INCEPTION_V1_BLOCKS = (
    ("inception_3a", 192, 64, 96, 128, 16, 32, 32),
    ("inception_3b", 256, 128, 128, 192, 32, 96, 64),
    ("inception_4a", 480, 192, 96, 208, 16, 48, 64),
    ("inception_4b", 512, 160, 112, 224, 24, 64, 64),
    ("inception_4c", 512, 128, 128, 256, 24, 64, 64),
    ("inception_4d", 512, 112, 144, 288, 32, 64, 64),
    ("inception_4e", 528, 256, 160, 320, 32, 128, 128),
    ("inception_5a", 832, 256, 160, 320, 32, 128, 128),
    ("inception_5b", 832, 384, 192, 384, 48, 128, 128),
)


def _caffe_lrn() -> nn.LocalResponseNorm:
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


class InceptionV1Block(nn.Module):
    """Four branches concatenated: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max-pool -> 1x1,
    each convolution followed by ReLU."""

    def __init__(self, in_ch: int, ch1x1: int, ch3x3_reduce: int, ch3x3: int,
                 ch5x5_reduce: int, ch5x5: int, pool_proj: int) -> None:
        super().__init__()
        convs = {
            "1x1": nn.Conv2d(in_ch, ch1x1, 1),
            "3x3_reduce": nn.Conv2d(in_ch, ch3x3_reduce, 1),
            "3x3": nn.Conv2d(ch3x3_reduce, ch3x3, 3, padding=1),
            "5x5_reduce": nn.Conv2d(in_ch, ch5x5_reduce, 1),
            "5x5": nn.Conv2d(ch5x5_reduce, ch5x5, 5, padding=2),
            "pool_proj": nn.Conv2d(in_ch, pool_proj, 1),
        }
        for name, conv in convs.items():  # names start with digits: register them explicitly
            self.add_module(name, conv)
        self.pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x: Tensor) -> Tensor:
        conv, relu = self._modules, torch.relu
        return torch.cat([
            relu(conv["1x1"](x)),
            relu(conv["3x3"](relu(conv["3x3_reduce"](x)))),
            relu(conv["5x5"](relu(conv["5x5_reduce"](x)))),
            relu(conv["pool_proj"](self.pool(x))),
        ], dim=1)


class CaffeGoogLeNet(nn.Module):
    """BVLC GoogLeNet up to ``inception_5b``; ``feature_map`` is (b, 1024, 7, 7) at 227x227."""

    feature_dim = 1024
    classifier_prefixes = ("loss3.", "classifier.", "fc.")

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(OrderedDict([
            ("7x7_s2", nn.Conv2d(3, 64, 7, stride=2, padding=3)),
            ("relu1", nn.ReLU(inplace=True)),
            ("pool1", nn.MaxPool2d(3, stride=2, ceil_mode=True)),
            ("lrn1", _caffe_lrn()),
        ]))
        self.conv2 = nn.Sequential(OrderedDict([
            ("3x3_reduce", nn.Conv2d(64, 64, 1)),
            ("relu1", nn.ReLU(inplace=True)),
            ("3x3", nn.Conv2d(64, 192, 3, padding=1)),
            ("relu2", nn.ReLU(inplace=True)),
            ("lrn2", _caffe_lrn()),
            ("pool2", nn.MaxPool2d(3, stride=2, ceil_mode=True)),
        ]))
        for name, *channels in _INCEPTION_V1_BLOCKS:
            self.add_module(name, InceptionV1Block(*channels))
        self.pool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.pool4 = nn.MaxPool2d(3, stride=2, ceil_mode=True)

    def feature_map(self, x: Tensor) -> Tensor:
        m = self._modules
        x = self.conv2(self.conv1(x))
        x = self.pool3(m["inception_3b"](m["inception_3a"](x)))
        for name in ("inception_4a", "inception_4b", "inception_4c", "inception_4d", "inception_4e"):
            x = m[name](x)
        x = self.pool4(x)
        return m["inception_5b"](m["inception_5a"](x))

    def forward(self, x: Tensor) -> Tensor:
        return self.feature_map(x)


def _clean(component: str) -> str:
    """A path component with hickle's quoting removed: ``"'conv1.7x7_s2.weight'"`` -> the name."""
    if component[:2] in ("b'", 'b"'):
        component = component[1:]
    return component.strip("'\"")


def read_h5_arrays(path: str | os.PathLike, expected: set[str] | None = None) -> dict[str, np.ndarray]:
    """Every parameter array in the HDF5 file ``path``, keyed by parameter name.

    ``expected`` defaults to the state-dict keys of :class:`CaffeGoogLeNet`. A dataset maps to a
    name when one of its path components (quotes stripped) is that name, or when the dotted
    join of its trailing components is (``/conv1/7x7_s2/weight``). Raises a "convert first"
    :class:`DmlReproError` naming the file when a name is unmatched or matched twice.
    """
    import h5py  # only this loader needs it

    path = Path(path)
    if expected is None:
        with torch.device("meta"):  # the names only: no memory, no init cost
            expected = set(CaffeGoogLeNet().state_dict())
    found: dict[str, np.ndarray] = {}
    twice: list[str] = []

    def visit(name: str, obj: object) -> None:
        if not isinstance(obj, h5py.Dataset) or obj.ndim == 0:
            return
        parts = [_clean(p) for p in name.split("/") if p]
        key = next((".".join(parts[i:]) for i in range(len(parts)) if ".".join(parts[i:]) in expected), None)
        key = key or next((p for p in parts if p in expected), None)
        if key is None:
            return
        if key in found:
            twice.append(key)
        found[key] = np.asarray(obj[()])

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as exc:
        raise DmlReproError(f"{path}: not a readable HDF5 file ({exc})") from exc
    missing = sorted(expected - set(found))
    if missing or twice:
        what = f"no array for {missing[0]} (+{len(missing) - 1} more)" if missing else f"two arrays for {twice[0]}"
        raise DmlReproError(f"{path}: cannot map its HDF5 layout to CaffeGoogLeNet parameters ({what}); "
                            f"convert it first to a torch state dict with keys like 'conv1.7x7_s2.weight' "
                            f"and pass that file as `pretrained`")
    return found
