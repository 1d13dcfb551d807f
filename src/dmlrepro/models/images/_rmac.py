"""R-MAC pooling (Tolias, Sicre & Jégou, "Particular object retrieval with integral max-pooling of
CNN activations", ICLR 2016), over several input scales: SSDML's CUB-200-2011 / Cars-196 features
("GoogLeNet … R-MAC features over 3 scales (512, 512/√2, 256)", TARGETS 001-§2).

R-MAC of one (C, H, W) map: square regions at L scales (the "standard R-MAC grid"), each region
max-pooled to a C-vector (its MAC), each region vector L2-normalised, the region vectors summed,
the sum L2-normalised. The grid is Tolias et al.'s ``rmac_regions`` (their MATLAB code, ported by
Radenović et al.'s ``cirtorch.layers.functional.rmac``): at level l = 1..L the region side is
``w_l = floor(2·min(H, W)/(l + 1))``; l regions along the shorter side, ``l + extra`` along the
longer one, ``extra`` chosen so that neighbouring regions overlap by about 40 %, with the region
corners spread evenly from the start to the end of each side.

ASSUMED (the SSDML paper names R-MAC and the three scales, nothing more):

* L = 3 levels; no PCA-whitening of the region vectors (Tolias et al. learn one on a separate
  dataset; SSDML mentions none, and its L follows the features); no extra global MAC region
  (cirtorch adds one; Tolias et al.'s grid does not);
* scales: the network sees the input image at its size (512 × 512 in config/paper.yaml), at
  1/√2 of it (362) and at 1/2 (256), resized bilinearly from the input tensor (one image load
  per example; a batch keeps one shape); the per-scale R-MAC vectors (each L2-normalised) are
  summed over the scales and the sum L2-normalised — R-MAC's own aggregation, one level up.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dmlrepro import DmlReproError

RMAC_OVERLAP = 0.4                    # Tolias et al.'s desired overlap of neighbouring regions
RMAC_SCALES = (1.0, 2 ** -0.5, 0.5)   # 512, 512/√2, 256 for a 512 input: SSDML's three scales


def rmac_regions(height: int, width: int, levels: int = 3) -> list[tuple[int, int, int]]:
    """The R-MAC grid of an ``height`` × ``width`` map: ``(top, left, side)`` of each square region,
    level by level (Tolias et al.'s ``rmac_regions``; module docstring)."""
    if height < 1 or width < 1 or levels < 1:
        raise DmlReproError(f"R-MAC needs a non-empty map and levels >= 1, got {height}x{width}, L = {levels}")
    w = min(height, width)
    # regions along the longer side beyond l: the count in 1..6 whose overlap is closest to 40 %
    extra = 0
    if height != width:
        steps = torch.arange(2, 8, dtype=torch.float64)
        b = (max(height, width) - w) / (steps - 1)
        extra = int(torch.argmin(torch.abs((w * w - w * b) / (w * w) - RMAC_OVERLAP))) + 1
    extra_w, extra_h = (extra, 0) if width > height else (0, extra) if height > width else (0, 0)
    regions = []
    for level in range(1, levels + 1):
        side = math.floor(2 * w / (level + 1))
        if side == 0:
            continue
        half = math.floor(side / 2 - 1)

        def starts(length: int, count: int) -> list[int]:
            step = 0.0 if count == 1 else (length - side) / (count - 1)
            return [int(math.floor(half + i * step) - half) for i in range(count)]

        for top in starts(height, level + extra_h):
            for left in starts(width, level + extra_w):
                regions.append((top, left, side))
    return regions


def rmac(feature_map: Tensor, levels: int = 3, eps: float = 1e-6) -> Tensor:
    """(b, C, H, W) -> (b, C): each region's max, L2-normalised, summed over the grid, L2-normalised."""
    if feature_map.ndim != 4:
        raise DmlReproError(f"R-MAC needs a (b, C, H, W) map, got shape {tuple(feature_map.shape)}")
    total = None
    for top, left, side in rmac_regions(feature_map.shape[2], feature_map.shape[3], levels):
        v = feature_map[:, :, top:top + side, left:left + side].amax(dim=(2, 3))
        v = v / (v.norm(dim=1, keepdim=True) + eps)
        total = v if total is None else total + v
    return F.normalize(total, p=2, dim=1, eps=eps)


def multiscale_rmac(feature_map: Callable[[Tensor], Tensor], x: Tensor, scales: Sequence[float] = RMAC_SCALES,
                    levels: int = 3, eps: float = 1e-6) -> Tensor:
    """R-MAC of ``feature_map(x_s)`` for ``x`` resized by each of ``scales`` (bilinear; 1.0 is ``x``
    itself), summed over the scales and L2-normalised: (b, C)."""
    if not scales:
        raise DmlReproError("multiscale R-MAC needs at least one scale")
    total = None
    for s in scales:
        if not 0 < float(s) <= 1:
            raise DmlReproError(f"R-MAC scales are fractions of the input size in (0, 1], got {s}")
        xs = x if float(s) == 1.0 else F.interpolate(
            x, size=(max(1, round(x.shape[2] * s)), max(1, round(x.shape[3] * s))), mode="bilinear",
            align_corners=False)
        v = rmac(feature_map(xs), levels, eps)
        total = v if total is None else total + v
    return F.normalize(total, p=2, dim=1, eps=eps)
