"""The catalog of pretrained ImageNet weight files, where they live, and how a file is read.

Nothing here downloads: a missing file is a :class:`DmlReproError` that names the file and its
URL (fetching is the data room's job, or the user's). Checksums follow the source that states
them (IMAGE-ANCHORS §4):

* torchvision/torch.hub files carry the first 8 hex digits of their sha256 in the file name
  (``resnet50-19c8e357.pth``); that prefix is what we verify (``sha256_prefix``);
* BN-Inception ``bn_inception-52deb4733.pth``: one public file states its full sha256;
* BVLC GoogLeNet ``googlenet.h5`` (metriclearningbench's release): md5.

The weights root is ``weights_root`` if given, else ``$DMLREPRO_WEIGHTS_ROOT``, else ``./weights``;
a file lives at ``<root>/<relpath>``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dmlrepro import DmlReproError

WEIGHTS_ROOT_ENV = "DMLREPRO_WEIGHTS_ROOT"


@dataclass(frozen=True)
class WeightsFile:
    """One pretrained weight file: where it comes from and how to check it."""

    name: str
    url: str
    relpath: str
    sha256: str | None = None          # full sha256 (64 hex digits) where a source states it
    sha256_prefix: str | None = None   # torch.hub convention: the hash part of the file name
    md5: str | None = None
    source: str = ""


WEIGHTS: dict[str, WeightsFile] = {w.name: w for w in (
    # Cadene's pretrainedmodels (used by Roth et al. 2020 and the MS-loss code) loads this older
    # torchvision file; torchvision >= 0.13 serves the same architecture as resnet50-0676ba61.
    WeightsFile("resnet50", "https://download.pytorch.org/models/resnet50-19c8e357.pth",
                "imagenet/resnet50-19c8e357.pth", sha256_prefix="19c8e357",
                source="Cadene/pretrained-models.pytorch@8aae3d8:pretrainedmodels/models/torchvision_models.py"),
    WeightsFile("resnet50_tv_v1", "https://download.pytorch.org/models/resnet50-0676ba61.pth",
                "imagenet/resnet50-0676ba61.pth", sha256_prefix="0676ba61",
                source="torchvision 0.29 ResNet50_Weights.IMAGENET1K_V1"),
    WeightsFile("googlenet", "https://download.pytorch.org/models/googlenet-1378be20.pth",
                "imagenet/googlenet-1378be20.pth", sha256_prefix="1378be20",
                source="torchvision 0.29 GoogLeNet_Weights.IMAGENET1K_V1"),
    WeightsFile("googlenet_caffe",
                "https://github.com/vadimkantorov/metriclearningbench/releases/download/data/googlenet.h5",
                "imagenet/googlenet.h5", md5="c7d7856bd1ab5cb02618b3f7f564e3c6",
                source="vadimkantorov/metriclearningbench README (BVLC GoogLeNet, hickle-dumped state dict)"),
    WeightsFile("bn_inception", "http://data.lip6.fr/cadene/pretrainedmodels/bn_inception-52deb4733.pth",
                "imagenet/bn_inception-52deb4733.pth",
                sha256="52deb473314542a5c2f87e9e6f26f4ca42fe863d15f986414dbae8c2dfdd2353",
                source="Cadene/pretrained-models.pytorch bninception (2018-10-27 file, replaces -239d2248)"),
)}


def default_weights_root(weights_root: str | os.PathLike | None = None) -> Path:
    """``weights_root``, else ``$DMLREPRO_WEIGHTS_ROOT``, else ``./weights``."""
    if weights_root is not None:
        return Path(weights_root)
    return Path(os.environ.get(WEIGHTS_ROOT_ENV, "weights"))


def get_weights_file(name: str) -> WeightsFile:
    if name not in WEIGHTS:
        raise DmlReproError(f"no pretrained weights catalogued for {name!r}; catalogued: {sorted(WEIGHTS)}")
    return WEIGHTS[name]


def pretrained_weights_path(name: str, weights_root: str | os.PathLike | None = None, *,
                            verify: bool = True) -> Path:
    """The verified local path of the catalog weights ``name`` under ``weights_root``.

    Raises a one-line :class:`DmlReproError` naming the file and its URL when the file is absent
    (nothing is downloaded), and one naming both checksums when ``verify`` finds a mismatch.
    """
    entry = get_weights_file(name)
    path = default_weights_root(weights_root) / entry.relpath
    if not path.is_file():
        raise DmlReproError(
            f"pretrained weights {name!r} not found at {path}: download {entry.url} to that path "
            f"(or set {WEIGHTS_ROOT_ENV}), or pass `pretrained: false` for smoke runs")
    if verify:
        verify_weights_file(path, entry)
    return path


def verify_weights_file(path: Path, entry: WeightsFile) -> None:
    """Check ``path`` against every checksum the catalog gives for ``entry``."""
    if entry.sha256 is None and entry.sha256_prefix is None and entry.md5 is None:
        return
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
            md5.update(block)
    actual_sha, actual_md5 = sha.hexdigest(), md5.hexdigest()
    expected_sha = entry.sha256 or entry.sha256_prefix
    if expected_sha is not None and not actual_sha.startswith(expected_sha.lower()):
        raise DmlReproError(f"{path}: sha256 {actual_sha} does not match the catalog's {expected_sha} "
                            f"for {entry.name!r} ({entry.url})")
    if entry.md5 is not None and actual_md5 != entry.md5.lower():
        raise DmlReproError(f"{path}: md5 {actual_md5} does not match the catalog's {entry.md5} "
                            f"for {entry.name!r} ({entry.url})")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` dict from a ``.pth``/``.pt`` file (a state dict, or a dict holding
    one under ``state_dict``/``model``; ``module.`` prefixes of DataParallel are dropped) or an
    ``.h5`` file (see :func:`dmlrepro.models.images._caffe_googlenet.read_h5_arrays`)."""
    path = Path(path)
    if not path.is_file():
        raise DmlReproError(f"weights file not found: {path}")
    if path.suffix in (".h5", ".hdf5", ".hkl"):
        from dmlrepro.models.images._caffe_googlenet import read_h5_arrays
        return {k: torch.as_tensor(v) for k, v in read_h5_arrays(path).items()}
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a pickle of something other than tensors, or not a torch file
        raise DmlReproError(f"{path}: not a readable torch state dict ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise DmlReproError(f"{path}: expected a dict of tensors (a state dict), got {type(obj).__name__}")
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def load_matching_state_dict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: Path | str, *,
                             drop_prefixes: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``module`` strictly, after dropping keys under ``drop_prefixes`` (the
    ImageNet classifier) and reshaping tensors that differ from the target only by singleton
    dimensions (the Cadene BN-Inception file stores BatchNorm vectors as ``(1, C)``).
    A missing, unexpected or mis-shaped key is a :class:`DmlReproError` naming ``source``."""
    target = module.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(drop_prefixes)}
    for key, value in list(state.items()):
        want = target.get(key)
        if want is not None and value.shape != want.shape and value.numel() == want.numel() \
                and [d for d in value.shape if d != 1] == [d for d in want.shape if d != 1]:
            state[key] = value.reshape(want.shape)
    # old files predate BatchNorm's num_batches_tracked buffer; BatchNorm fills it in itself
    missing = sorted(k for k in set(target) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(target))
    misshaped = sorted(k for k in set(state) & set(target) if state[k].shape != target[k].shape)
    if missing or unexpected or misshaped:
        def first(keys: list[str]) -> str:
            return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")
        problems = [f"{label} {first(keys)}" for label, keys in
                    (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)) if keys]
        raise DmlReproError(f"{source}: state dict does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(state, strict=False)


def fetch_weights(name: str, weights_root: str | os.PathLike | None = None, *, mirror: str | os.PathLike | None = None,
                  allow_download: bool = True) -> Path:
    """Put the catalog weights ``name`` at ``<weights_root>/<relpath>``, verified: an existing
    verified file is kept; else ``<mirror>/<relpath>`` is copied; else the URL is downloaded.
    The file appears only once its checksums match (a failed fetch leaves nothing)."""
    import shutil
    import urllib.error
    import urllib.request

    from dmlrepro.io import atomic_path
    entry = get_weights_file(name)
    dest = default_weights_root(weights_root) / entry.relpath
    if dest.is_file():
        verify_weights_file(dest, entry)
        return dest
    source = Path(mirror) / entry.relpath if mirror else None
    if source is None or not source.is_file():
        if not allow_download:
            raise DmlReproError(f"pretrained weights {name!r} missing at {dest} and downloads are disabled "
                                f"(URL {entry.url}); or pass `pretrained: false` for smoke runs")
    with atomic_path(dest) as tmp:
        try:
            if source is not None and source.is_file():
                shutil.copyfile(source, tmp)
            else:
                request = urllib.request.Request(entry.url, headers={"User-Agent": "dmlrepro-fetch/0.1"})
                with urllib.request.urlopen(request, timeout=60) as response, open(tmp, "wb") as out:
                    shutil.copyfileobj(response, out, 1 << 20)
        except (urllib.error.URLError, OSError) as exc:
            raise DmlReproError(f"pretrained weights {name!r}: download from {entry.url} failed: {exc}") from exc
        verify_weights_file(tmp, entry)
    return dest
