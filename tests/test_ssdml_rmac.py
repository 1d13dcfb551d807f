"""R-MAC pooling (models/images/_rmac.py) against a naive computation, and the grid's shape."""

import math

import numpy as np
import pytest
import torch

from dmlrepro import DmlReproError
from dmlrepro.models.images import build_image_embedder
from dmlrepro.models.images._rmac import multiscale_rmac, rmac, rmac_regions


def naive_rmac(fmap: np.ndarray, levels: int = 3) -> np.ndarray:
    """Tolias et al.'s grid written out loop by loop from the paper's description (one image, C x H x W)."""
    C, H, W = fmap.shape
    w = min(H, W)
    extra = 0
    if H != W:  # regions on the long side: the count in 1..6 whose overlap is closest to 40 %
        best = None
        for i, steps in enumerate(range(2, 8)):
            b = (max(H, W) - w) / (steps - 1)
            gap = abs((w * w - w * b) / (w * w) - 0.4)
            if best is None or gap < best[0]:
                best = (gap, i + 1)
        extra = best[1]
    total = np.zeros(C)
    for level in range(1, levels + 1):
        side = int(2 * w / (level + 1))
        half = math.floor(side / 2 - 1)
        n_h = level + (extra if H > W else 0)
        n_w = level + (extra if W > H else 0)
        for i in range(n_h):
            top = math.floor(half + i * ((H - side) / (n_h - 1) if n_h > 1 else 0)) - half
            for j in range(n_w):
                left = math.floor(half + j * ((W - side) / (n_w - 1) if n_w > 1 else 0)) - half
                v = np.array([fmap[c, top:top + side, left:left + side].max() for c in range(C)])
                total += v / (np.linalg.norm(v) + 1e-6)
    return total / np.linalg.norm(total)


@pytest.mark.parametrize("shape", [(7, 7), (5, 9), (10, 6), (3, 3)])
def test_rmac_matches_naive_loop(shape):
    g = torch.Generator().manual_seed(0)
    fmap = torch.rand(2, 4, *shape, generator=g)
    got = rmac(fmap).numpy()
    for b in range(2):
        np.testing.assert_allclose(got[b], naive_rmac(fmap[b].numpy()), rtol=1e-5, atol=1e-6)


def test_rmac_grid_covers_the_map_and_counts():
    # square 7x7: levels 1, 2, 3 -> 1 + 4 + 9 regions of sides 7, 4, 3, inside the map, first/last touching its edges
    regions = rmac_regions(7, 7, 3)
    assert [r[2] for r in regions] == [7] + [4] * 4 + [3] * 9
    for top, left, side in regions:
        assert 0 <= top and top + side <= 7 and 0 <= left and left + side <= 7
    assert (0, 0, 3) in regions and (4, 4, 3) in regions
    # a wide map gets extra regions along its width
    wide = rmac_regions(6, 12, 3)
    assert len([r for r in wide if r[2] == 6]) > 1
    with pytest.raises(DmlReproError):
        rmac_regions(0, 4)


def test_multiscale_rmac_sums_the_normalised_scales():
    g = torch.Generator().manual_seed(1)
    conv = torch.nn.Conv2d(3, 5, 3)
    x = torch.rand(2, 3, 16, 16, generator=g)
    with torch.no_grad():
        got = multiscale_rmac(conv, x, scales=(1.0, 0.5))
        half = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False)
        want = torch.nn.functional.normalize(rmac(conv(x)) + rmac(conv(half)), dim=1)
    torch.testing.assert_close(got, want)
    assert torch.allclose(got.norm(dim=1), torch.ones(2))


def test_embedder_rmac_pooling_on_the_caffe_googlenet():
    model = build_image_embedder("googlenet_caffe", embedding_dim=None, pooling="rmac", crop_size=64, resize=64)
    assert model.input_spec.size == 64 and model.input_spec.resize == 64
    model.eval()
    with torch.no_grad():
        x = torch.rand(2, 3, 64, 64)
        z = model(x)
        assert z.shape == (2, 1024)
        torch.testing.assert_close(model.features(x), multiscale_rmac(model.feature_map, x))
