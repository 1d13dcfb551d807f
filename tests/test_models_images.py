"""Image backbones, embedder, transforms and weights catalog (CPU, random init, no downloads)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from dmlrepro import DmlReproError
from dmlrepro.models.images import (IMAGE_BACKBONES, INPUT_SPECS, WEIGHTS, BNInception, CaffeGoogLeNet,
                                    ImageEmbedder, InputSpec, build_image_embedder, build_transforms,
                                    global_pool, pretrained_weights_path, read_h5_arrays)
from dmlrepro.models.images._weights import WeightsFile, verify_weights_file

torch.set_num_threads(1)

FEATURE_MAPS = {  # name -> (C, h, w) of the last map at the spec's input size
    "lenet_ssdml": (128, 1, 1), "cifar_ssdml": (64, 1, 1), "resnet50": (2048, 7, 7),
    "googlenet": (1024, 7, 7), "googlenet_caffe": (1024, 7, 7), "bn_inception": (1024, 7, 7),
}
_CACHE: dict[str, ImageEmbedder] = {}


def embedder(name: str) -> ImageEmbedder:
    """One random-init embedder per backbone for the read-only tests (building is the slow part)."""
    if name not in _CACHE:
        torch.manual_seed(0)
        _CACHE[name] = build_image_embedder(name, embedding_dim=16, pooling="avg").eval()
    return _CACHE[name]


def batch(spec: InputSpec, b: int = 2) -> torch.Tensor:
    return torch.randn(b, spec.channels, spec.size, spec.size, generator=torch.Generator().manual_seed(1))


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", sorted(IMAGE_BACKBONES))
def test_forward_shapes_unit_norm_and_pooling(name):
    model = embedder(name)
    x = batch(model.input_spec)
    captured = []  # the backbone's map from the same forward pass (one pass: the big nets are slow on CPU)
    hook = model.backbone.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        with torch.no_grad():
            z = model(x)
    finally:
        hook.remove()
    (fmap,) = captured
    assert tuple(fmap.shape) == (2, *FEATURE_MAPS[name])
    assert model.feature_dim == FEATURE_MAPS[name][0] and model.embedding_dim == 16
    assert z.shape == (2, 16)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(2))
    # pooling against explicit loops over the cells
    pooled = {p: global_pool(fmap, p) for p in ("avg", "max", "avg+max")}
    cells = fmap.flatten(2)
    torch.testing.assert_close(pooled["avg"], cells.sum(2) / cells.shape[2])
    torch.testing.assert_close(pooled["max"], torch.stack([cells[i].max(1).values for i in range(2)]))
    torch.testing.assert_close(pooled["avg+max"], pooled["avg"] + pooled["max"])
    with torch.no_grad():
        torch.testing.assert_close(z, nn.functional.normalize(model.head(pooled["avg"]), dim=1))


def test_pooling_option_no_head_and_no_normalisation():
    torch.manual_seed(0)
    model = build_image_embedder("cifar_ssdml", embedding_dim=None, pooling="avg+max", normalize=False).eval()
    x = batch(model.input_spec, 3)
    with torch.no_grad():
        fmap = model.feature_map(x)
        out = model(x)
    assert isinstance(model.head, nn.Identity) and model.embedding_dim == model.feature_dim == 64
    torch.testing.assert_close(out, fmap.mean((2, 3)) + fmap.amax((2, 3)))
    assert build_image_embedder("lenet_ssdml", freeze_bn=True).train().freeze_bn
    with pytest.raises(DmlReproError, match="pooling 'sum'"):
        build_image_embedder("lenet_ssdml", pooling="sum")
    with pytest.raises(DmlReproError, match="unknown image backbone 'vgg16'"):
        build_image_embedder("vgg16")


def test_lenet_ssdml_layers_are_the_papers():
    """Conv1(5x5,20) -> max-pool -> Conv2(5x5,50) -> max-pool -> Conv3(4x4,500) -> ReLU -> FC(500x128)."""
    net = IMAGE_BACKBONES["lenet_ssdml"]()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 20, (5, 5)), (20, 50, (5, 5)), (50, 500, (4, 4)), (500, 128, (1, 1))]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    # no ReLU before Conv3 (the paper lists none): negative inputs to conv2 survive pool1
    x = torch.randn(1, 1, 28, 28)
    first = net.pool1(net.conv1(x))
    assert (first < 0).any()
    net_c = IMAGE_BACKBONES["cifar_ssdml"]()
    convs = [m for m in net_c.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 32, (5, 5)), (32, 32, (5, 5)), (32, 64, (5, 5)), (64, 64, (4, 4))]


def test_crop_size_override():
    model = build_image_embedder("lenet_ssdml", embedding_dim=8, crop_size=36).eval()
    assert model.input_spec.size == 36 and model.input_spec.resize is None
    with torch.no_grad():
        torch.testing.assert_close(model.feature_map(torch.ones(1, 1, 36, 36)),
                                   model.backbone.feature_map(torch.ones(1, 1, 36, 36)))
        assert model.feature_map(torch.zeros(1, 1, 36, 36)).shape == (1, 128, 3, 3)
        assert model(torch.zeros(1, 1, 36, 36)).shape == (1, 8)


@pytest.mark.parametrize("name", ["resnet50", "bn_inception"])
def test_frozen_batch_norm_stays_in_eval_and_keeps_its_statistics(name):
    model = copy.deepcopy(embedder(name))
    model.freeze_batch_norm()
    model.train()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not bn.training for bn in bns)
    assert model.training and model.head.training
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert bns[0].weight.grad is not None  # affine parameters stay trainable (Roth, MS-loss)
    # without freezing, the same step changes the running statistics
    free = copy.deepcopy(embedder(name)).train()
    free(torch.randn(2, 3, 64, 64))
    assert any(not torch.equal(before[k], free.state_dict()[k]) for k in before)


def test_torchvision_parameter_counts_are_torchvisions_minus_classifier():
    resnet = torchvision.models.resnet50(weights=None)
    assert n_params(embedder("resnet50").backbone) == n_params(resnet) - n_params(resnet.fc)
    google = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)
    assert n_params(embedder("googlenet").backbone) == n_params(google) - n_params(google.fc)
    # and the state-dict keys are torchvision's own, less the classifier
    torchvision_keys = {k for k in resnet.state_dict() if not k.startswith("fc.")}
    assert set(embedder("resnet50").backbone.state_dict()) == torchvision_keys


def test_googlenet_normalisation_equals_torchvision_transform_input():
    """transform_input=False + mean=std=0.5 feeds the net exactly what torchvision's pretrained
    GoogLeNet sees with transform_input=True on ImageNet-normalised input."""
    ref = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=False)
    pixels = torch.rand(2, 3, 8, 8)
    imagenet_mean, imagenet_std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    spec = INPUT_SPECS["googlenet"]
    ours = (pixels - torch.tensor(spec.mean).view(3, 1, 1)) / torch.tensor(spec.std).view(3, 1, 1)
    theirs = ref._transform_input((pixels - imagenet_mean.view(3, 1, 1)) / imagenet_std.view(3, 1, 1))
    torch.testing.assert_close(ours, theirs)
    assert not embedder("googlenet").backbone.transform_input and embedder("googlenet").backbone.aux1 is None


def test_bn_inception_parameter_names_and_count():
    net = BNInception()
    keys = set(net.state_dict())
    for key in ("conv1_7x7_s2.weight", "conv1_7x7_s2_bn.running_var", "inception_3c_double_3x3_2_bn.bias",
                "inception_4e_3x3.weight", "inception_5b_pool_proj_bn.weight"):
        assert key in keys
    assert "inception_3c_1x1.weight" not in keys and "inception_4e_pool_proj.weight" not in keys
    # Cadene's bninception: 10,270,240 parameters before last_linear (1024*1000 + 1000), i.e.
    # 11,295,240 with it; here re-derived from the layer table conv-by-conv
    table = [(3, 64, 7), (64, 64, 1), (64, 192, 3)]
    blocks = [(192, 64, 64, 64, 64, 96, 32), (256, 64, 64, 96, 64, 96, 64), (320, 0, 128, 160, 64, 96, 0),
              (576, 224, 64, 96, 96, 128, 128), (576, 192, 96, 128, 96, 128, 128),
              (576, 160, 128, 160, 128, 160, 128), (608, 96, 128, 192, 160, 192, 128),
              (608, 0, 128, 192, 192, 256, 0), (1056, 352, 192, 320, 160, 224, 128),
              (1024, 352, 192, 320, 192, 224, 128)]
    for cin, n1, r3, n3, rd, nd, proj in blocks:
        table += [(cin, n1, 1), (cin, r3, 1), (r3, n3, 3), (cin, rd, 1), (rd, nd, 3), (nd, nd, 3), (cin, proj, 1)]
    expected = sum(k * k * cin * cout + cout + 2 * cout for cin, cout, k in table if cout)
    assert n_params(net) == expected == 10_270_240


def _fill(module: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """Random values for every entry, scaled so activations stay finite through the whole net."""
    g = torch.Generator().manual_seed(seed)

    def draw(key: str, v: torch.Tensor) -> torch.Tensor:
        if not v.is_floating_point():
            return v.clone()
        if "running_var" in key:
            return torch.rand(v.shape, generator=g) + 0.5
        scale = (v[0].numel() ** -0.5) if v.ndim > 1 else 0.1
        return torch.randn(v.shape, generator=g) * scale
    return {k: draw(k, v) for k, v in module.state_dict().items()}


def test_bn_inception_state_dict_round_trip_as_cadene_writes_it(tmp_path, monkeypatch):
    """Cadene's file: flat names, a last_linear, BN vectors stored (1, C), no num_batches_tracked;
    loaded through the catalog (`pretrained=True`), its checksum swapped for this file's."""
    src = BNInception()
    state = _fill(src, 3)
    src.load_state_dict(state)
    cadene = {k: (v.unsqueeze(0) if v.ndim == 1 else v) for k, v in state.items() if "num_batches" not in k}
    cadene["last_linear.weight"], cadene["last_linear.bias"] = torch.randn(1000, 1024), torch.randn(1000)
    path = tmp_path / WEIGHTS["bn_inception"].relpath
    path.parent.mkdir(parents=True)
    torch.save(cadene, path)
    monkeypatch.setitem(WEIGHTS, "bn_inception", dataclasses.replace(
        WEIGHTS["bn_inception"], sha256=hashlib.sha256(path.read_bytes()).hexdigest()))
    model = build_image_embedder("bn_inception", embedding_dim=8, pretrained=True, weights_root=tmp_path,
                                 crop_size=96).eval()
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(model.feature_map(x), src.eval().feature_map(x))


def test_caffe_googlenet_h5_and_pth_round_trip(tmp_path):
    src = CaffeGoogLeNet()
    state = _fill(src, 4)
    src.load_state_dict(state)
    assert {"conv1.7x7_s2.weight", "conv2.3x3.bias", "inception_3a.5x5.weight",
            "inception_5b.pool_proj.bias"} <= set(state)
    assert state["inception_4a.5x5.weight"].shape == (48, 16, 5, 5)  # 5x5, not torchvision's 3x3
    assert not any(isinstance(m, nn.BatchNorm2d) for m in src.modules())
    assert any(isinstance(m, nn.LocalResponseNorm) for m in src.modules())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        want = src.eval().feature_map(x)
    flat, hickle_like, nested = tmp_path / "flat.h5", tmp_path / "googlenet.h5", tmp_path / "nested.h5"
    with h5py.File(hickle_like, "w") as f:  # hickle: a dict group, one quoted group per key
        root = f.create_group("data_0")
        for k, v in state.items():
            root.create_group(f"'{k}'").create_dataset("data_0", data=v.numpy())
    some = {k: state[k] for k in ("conv1.7x7_s2.weight", "conv2.3x3.bias", "inception_4a.5x5.weight")}
    with h5py.File(flat, "w") as f:  # flat keys with dots are legal HDF5 names
        for k, v in some.items():
            f.create_dataset(k, data=v.numpy())
    with h5py.File(nested, "w") as f:  # one group per dotted component
        for k, v in some.items():
            f.create_dataset(k.replace(".", "/"), data=v.numpy())
    for path, keys in ((hickle_like, set(state)), (flat, set(some)), (nested, set(some))):
        arrays = read_h5_arrays(path, expected=None if path == hickle_like else keys)
        assert set(arrays) == keys
        assert all(np.array_equal(arrays[k], state[k].numpy()) for k in keys)
    model = build_image_embedder("googlenet_caffe", embedding_dim=None, pretrained=hickle_like).eval()
    with torch.no_grad():
        torch.testing.assert_close(model.feature_map(x), want)
    pth = tmp_path / "inception.pth"
    torch.save(state, pth)
    model = build_image_embedder("googlenet_caffe", embedding_dim=None, pretrained=pth).eval()
    with torch.no_grad():
        torch.testing.assert_close(model.feature_map(x), want)
    broken = tmp_path / "broken.h5"
    with h5py.File(broken, "w") as f:
        f.create_dataset("layer0/param0", data=np.zeros(3))
    with pytest.raises(DmlReproError, match=r"broken\.h5: cannot map .* convert it first"):
        build_image_embedder("googlenet_caffe", pretrained=broken)


def test_pretrained_path_loads_our_own_embedder_checkpoint(tmp_path):
    torch.manual_seed(0)
    trained = build_image_embedder("cifar_ssdml", embedding_dim=12, pooling="max").eval()
    path = tmp_path / "model.pt"
    torch.save(trained.state_dict(), path)
    torch.manual_seed(1)
    loaded = build_image_embedder("cifar_ssdml", embedding_dim=12, pooling="max", pretrained=path).eval()
    x = batch(loaded.input_spec, 3)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), trained(x))
    torch.save({"state_dict": trained.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    wrapped = build_image_embedder("cifar_ssdml", embedding_dim=12, pooling="max", pretrained=tmp_path / "ckpt.pt")
    torch.testing.assert_close(wrapped.head.weight, trained.head.weight)
    with pytest.raises(DmlReproError, match=r"model\.pt: state dict does not fit ImageEmbedder: .*mis-shaped head"):
        build_image_embedder("cifar_ssdml", embedding_dim=32, pretrained=path)


def test_torchvision_style_file_loads_with_classifier_dropped(tmp_path):
    """torchvision's googlenet-1378be20.pth carries fc and both auxiliary classifiers."""
    torch.manual_seed(0)
    ref = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).eval()
    assert any(k.startswith("aux1.") for k in ref.state_dict())
    path = tmp_path / "googlenet-1378be20.pth"
    torch.save(ref.state_dict(), path)
    model = build_image_embedder("googlenet", embedding_dim=None, pretrained=path, normalize=False).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref.fc = nn.Identity()
        torch.testing.assert_close(model(x), ref(x))


def test_missing_weights_error_names_file_url_and_smoke_option(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: pytest.fail("download attempted"))
    with pytest.raises(DmlReproError) as err:
        build_image_embedder("bn_inception", pretrained=True, weights_root=tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert str(tmp_path / "imagenet" / "bn_inception-52deb4733.pth") in message
    assert WEIGHTS["bn_inception"].url in message and "pretrained: false" in message
    with pytest.raises(DmlReproError, match="has no pretrained weights"):
        build_image_embedder("lenet_ssdml", pretrained=True, weights_root=tmp_path)


def test_catalog_checksums_and_verification(tmp_path):
    for entry in WEIGHTS.values():
        assert entry.sha256 or entry.sha256_prefix or entry.md5
        if entry.sha256_prefix:  # torch.hub convention: the prefix is in the file name
            assert f"-{entry.sha256_prefix}." in entry.url and entry.relpath.endswith(entry.url.rsplit("/", 1)[1])
    assert WEIGHTS["bn_inception"].sha256.startswith("52deb4733")
    data = b"not really weights"
    path = tmp_path / "imagenet" / "w.bin"
    path.parent.mkdir()
    path.write_bytes(data)
    good = WeightsFile("w", "http://x/w.bin", "imagenet/w.bin", sha256_prefix=hashlib.sha256(data).hexdigest()[:8],
                       md5=hashlib.md5(data).hexdigest())
    verify_weights_file(path, good)
    with pytest.raises(DmlReproError, match="md5 .* does not match"):
        verify_weights_file(path, WeightsFile("w", "http://x/w.bin", "imagenet/w.bin", md5="0" * 32))
    # a file at the catalog location with the wrong content is refused, naming it
    fake = tmp_path / WEIGHTS["googlenet"].relpath
    fake.parent.mkdir(exist_ok=True)
    fake.write_bytes(data)
    with pytest.raises(DmlReproError, match="googlenet-1378be20.pth: sha256 .* does not match the catalog's 1378be20"):
        pretrained_weights_path("googlenet", tmp_path)
    assert pretrained_weights_path("googlenet", tmp_path, verify=False) == fake


def _image(colour: tuple[int, int, int], size: tuple[int, int] = (300, 260)) -> Image.Image:
    return Image.new("RGB", size, colour)


def test_bgr255_transform_on_a_red_image():
    spec = INPUT_SPECS["bn_inception"]
    for train in (False, True):
        out = build_transforms(spec, train=train)(_image((255, 0, 0)))
        assert out.shape == (3, 227, 227) and out.dtype == torch.float32
        torch.testing.assert_close(out[0], torch.full((227, 227), -104.0))   # B
        torch.testing.assert_close(out[1], torch.full((227, 227), -117.0))   # G
        torch.testing.assert_close(out[2], torch.full((227, 227), 127.0))    # R = 255 - 128


def test_rgb_transforms_shapes_ranges_and_randomness():
    spec = INPUT_SPECS["resnet50"]
    red = build_transforms(spec, train=False)(_image((255, 0, 0)))
    assert red.shape == (3, 224, 224)
    torch.testing.assert_close(red[:, 0, 0], torch.tensor([(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225]))
    grey_input = Image.new("L", (256, 300), 128)  # CUB has a few greyscale images
    assert build_transforms(spec, train=True)(grey_input).shape == (3, 224, 224)
    # test transform: Resize(256) then CenterCrop(224) of a left/right split image keeps the split at the centre
    img = np.zeros((256, 512, 3), np.uint8)
    img[:, 256:] = 255
    out = build_transforms(spec, train=False)(Image.fromarray(img))
    assert out[0, 0, 111] < 0 < out[0, 0, 112]
    # train transform flips sometimes
    torch.manual_seed(0)
    train = build_transforms(spec, train=True, scale=(1.0, 1.0))
    lefts = {bool(train(Image.fromarray(img))[0, 0, 0] < 0) for _ in range(20)}
    assert lefts == {True, False}


def test_small_net_transforms():
    mnist = build_transforms(INPUT_SPECS["lenet_ssdml"], train=True)
    digit = np.zeros((28, 28), np.uint8)
    digit[5:10, 3:7] = 255
    out = mnist(Image.fromarray(digit, mode="L"))
    assert out.shape == (1, 28, 28) and out.min() == -1.0 and out.max() == 1.0
    torch.testing.assert_close(out, torch.from_numpy(digit).float().div(255).sub(0.5).div(0.5)[None])  # no augmentation
    assert mnist(torch.from_numpy(digit)[None]).shape == (1, 28, 28)  # uint8 tensors too
    cifar_spec = INPUT_SPECS["cifar_ssdml"]
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    test_out = build_transforms(cifar_spec, train=False)(img)
    assert test_out.shape == (3, 32, 32)
    torch.testing.assert_close(test_out * torch.tensor(cifar_spec.std).view(3, 1, 1)
                               + torch.tensor(cifar_spec.mean).view(3, 1, 1),
                               torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255)
    torch.manual_seed(0)
    train = build_transforms(cifar_spec, train=True)
    outs = [train(img) for _ in range(5)]
    assert all(o.shape == (3, 32, 32) for o in outs) and any(not torch.equal(o, test_out) for o in outs)


def test_input_spec_validation():
    with pytest.raises(DmlReproError, match="colour 'bgr'"):
        InputSpec(224, 256, 3, "bgr", (0.0,) * 3, (1.0,) * 3)
    with pytest.raises(DmlReproError, match="needs 1 channel"):
        InputSpec(28, None, 3, "grey", (0.5,), (0.5,))


def test_small_net_jobs_do_not_import_torchvision():
    """torchvision costs ~3.6 CPU-s of import per job; the stand-ins' LeNet runs must not pay it."""
    import subprocess
    import sys
    code = ("import sys; import dmlrepro.papers.image_foundation.run; from dmlrepro.models.images import "
            "build_image_embedder; build_image_embedder('lenet_ssdml', embedding_dim=8); print('torchvision' in sys.modules)")
    src = Path(__file__).resolve().parents[1] / "src"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(src)})
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr[-500:]
    from dmlrepro.models.images import ResNet50Backbone  # still there, on first use
    assert ResNet50Backbone.__name__ == "ResNet50Backbone"
