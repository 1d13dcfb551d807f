"""BN-Inception (Ioffe & Szegedy 2015) as ported by Cadene's ``pretrainedmodels``
(``bn_inception-52deb4733.pth``), the backbone of the MS-loss code (paper 004's anchor).

Written here from the layer table of that port (``pretrainedmodels`` is not a dependency), with
the same flat parameter names — ``conv1_7x7_s2``, ``conv1_7x7_s2_bn``, ...,
``inception_5b_pool_proj_bn`` — so Cadene's state dict loads (less ``last_linear``). Every
convolution is conv (with bias) -> BatchNorm -> ReLU. Block structure, per Cadene's port:
branches 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 ("double") | pool (-> 1x1 projection); the
grid-reduction blocks 3c and 4e have no 1x1 branch, stride 2 in their second 3x3 of each
branch and a bare stride-2 max-pool branch. The pool branch is a 3x3 average pool (counting
padding) except 5b (max). Pools use ``ceil_mode``. At 224x224 and 227x227 the last map is
(b, 1024, 7, 7).

Decision: Cadene writes ``BatchNorm2d(momentum=0.9)`` — Caffe's moving-average factor copied
literally; in PyTorch that makes the running statistics follow the last batch almost entirely.
We use PyTorch's default momentum 0.1 (Caffe's 0.9 *retention*). The buffers and parameters
loaded are the same; it only matters when BN is trained unfrozen (the MS-loss code freezes it).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

# (block, in, 1x1, 3x3 reduce, 3x3, double reduce, double 3x3, pool kind, pool proj);
# 1x1 None = grid-reduction block (stride 2, bare max-pool branch)
_BN_INCEPTION_BLOCKS = (
    ("3a", 192, 64, 64, 64, 64, 96, "avg", 32),
    ("3b", 256, 64, 64, 96, 64, 96, "avg", 64),
    ("3c", 320, None, 128, 160, 64, 96, "max", None),
    ("4a", 576, 224, 64, 96, 96, 128, "avg", 128),
    ("4b", 576, 192, 96, 128, 96, 128, "avg", 128),
    ("4c", 576, 160, 128, 160, 128, 160, "avg", 128),
    ("4d", 608, 96, 128, 192, 160, 192, "avg", 128),
    ("4e", 608, None, 128, 192, 192, 256, "max", None),
    ("5a", 1056, 352, 192, 320, 160, 224, "avg", 128),
    ("5b", 1024, 352, 192, 320, 192, 224, "max", 128),
)


class BNInception(nn.Module):
    """BN-Inception up to ``inception_5b``; ``feature_map`` is (b, 1024, 7, 7) at 224/227."""

    feature_dim = 1024
    classifier_prefixes = ("last_linear.",)

    def __init__(self) -> None:
        super().__init__()
        self._blocks: list[tuple[str, bool]] = []
        self._unit("conv1_7x7_s2", 3, 64, 7, stride=2, padding=3)
        self.pool1_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self._unit("conv2_3x3_reduce", 64, 64, 1)
        self._unit("conv2_3x3", 64, 192, 3, padding=1)
        self.pool2_3x3_s2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        for block, in_ch, n1x1, n3_red, n3, nd_red, nd, pool_kind, n_proj in _BN_INCEPTION_BLOCKS:
            prefix = f"inception_{block}"
            reduce = n1x1 is None
            stride = 2 if reduce else 1
            if not reduce:
                self._unit(f"{prefix}_1x1", in_ch, n1x1, 1)
            self._unit(f"{prefix}_3x3_reduce", in_ch, n3_red, 1)
            self._unit(f"{prefix}_3x3", n3_red, n3, 3, stride=stride, padding=1)
            self._unit(f"{prefix}_double_3x3_reduce", in_ch, nd_red, 1)
            self._unit(f"{prefix}_double_3x3_1", nd_red, nd, 3, padding=1)
            self._unit(f"{prefix}_double_3x3_2", nd, nd, 3, stride=stride, padding=1)
            if reduce:
                pool: nn.Module = nn.MaxPool2d(3, stride=2, ceil_mode=True)
            elif pool_kind == "max":
                pool = nn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True)
            else:
                pool = nn.AvgPool2d(3, stride=1, padding=1, ceil_mode=True, count_include_pad=True)
            self.add_module(f"{prefix}_pool", pool)
            if n_proj is not None:
                self._unit(f"{prefix}_pool_proj", in_ch, n_proj, 1)
            self._blocks.append((prefix, reduce))
        self.relu = nn.ReLU(inplace=True)

    def _unit(self, name: str, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0) -> None:
        self.add_module(name, nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding))
        self.add_module(f"{name}_bn", nn.BatchNorm2d(out_ch))

    def _run(self, name: str, x: Tensor) -> Tensor:
        m = self._modules
        return self.relu(m[f"{name}_bn"](m[name](x)))

    def feature_map(self, x: Tensor) -> Tensor:
        x = self.pool1_3x3_s2(self._run("conv1_7x7_s2", x))
        x = self._run("conv2_3x3", self._run("conv2_3x3_reduce", x))
        x = self.pool2_3x3_s2(x)
        for prefix, reduce in self._blocks:
            branches = [] if reduce else [self._run(f"{prefix}_1x1", x)]
            branches.append(self._run(f"{prefix}_3x3", self._run(f"{prefix}_3x3_reduce", x)))
            double = self._run(f"{prefix}_double_3x3_1", self._run(f"{prefix}_double_3x3_reduce", x))
            branches.append(self._run(f"{prefix}_double_3x3_2", double))
            pooled = self._modules[f"{prefix}_pool"](x)
            branches.append(pooled if reduce else self._run(f"{prefix}_pool_proj", pooled))
            x = torch.cat(branches, dim=1)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.feature_map(x)

