"""Your own images: a folder per class, indexed into an :class:`ImageIndex` like the catalogued datasets.

Three layouts (``layout``), the ones torchvision's ``ImageFolder`` users already have:

* ``class_folders``: ``root/<class>/<image>``. The pipeline makes the zero-shot DML split (the
  CUB/Cars convention): the classes, sorted by name, are cut in two; the first
  ``1 - test_fraction`` of them are ``train``, the rest ``test``.
* ``split_folders``: ``root/<role>/<class>/<image>`` with role ``train`` and ``test`` (or ``train``,
  ``query`` and ``gallery``, In-shop style). The same class name under two roles is one class.
* ``split_file``: ``root/<class>/<image>`` plus a text file of ``<path relative to root><TAB><role>``
  lines; an image the file does not list is left out, a listed one that is missing is an error.

Labels are the class folders' positions in name order (0, 1, ...); the names are kept in the
manifest beside the index so that neighbours can be printed by name. Images are files with one of
``IMAGE_EXTENSIONS`` (case-insensitive); hidden files and folders are skipped.

:func:`write_image_folder_manifest` scans the folder once and writes ``<dest>/<name>/index.json``
(atomically); :func:`read_image_folder_manifest` reads it back. ``load_image_dataset(name, dest)``
uses the manifest for any name that is not a catalogued dataset, so every image paper runs on it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dmlrepro import DmlReproError
from dmlrepro.data.images._index import ROLES, ImageIndex
from dmlrepro.data.images.catalog import IMAGE_DATASETS
from dmlrepro.io import write_json

LAYOUTS = ("class_folders", "split_folders", "split_file")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MANIFEST = "index.json"


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _class_dirs(folder: Path) -> list[Path]:
    dirs = sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))
    if not dirs:
        raise DmlReproError(f"{folder}: no class folders (expected <class>/<image> below it)")
    return dirs


def _images(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.rglob("*")
                  if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_EXTENSIONS)


def _scan_classes(root: Path, folder: Path) -> list[tuple[str, str]]:
    """(source relative to root, class name) for every image below ``folder``'s class folders."""
    return [(img.relative_to(root).as_posix(), cls.name) for cls in _class_dirs(folder) for img in _images(cls)]


def _read_split_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise DmlReproError(f"{path}: missing (split_file of an image folder)")
    roles: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or parts[1].strip() not in ROLES:
            raise DmlReproError(f"{path}:{n}: expected '<path>\\t<role>' with role in {', '.join(ROLES)}, got {line!r}")
        roles[parts[0].strip()] = parts[1].strip()
    return roles


def scan_image_folder(root: str | Path, layout: str, *, split_file: str | Path | None = None,
                      test_fraction: float = 0.5) -> dict[str, Any]:
    """The manifest of an image folder: ``{"root", "layout", "classes", "sources", "labels", "roles"}``
    (see the module docstring for the layouts)."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise DmlReproError(f"{root}: not a folder (image folder root)")
    if layout not in LAYOUTS:
        raise DmlReproError(f"layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
    if layout == "split_folders":
        role_dirs = [p for p in sorted(root.iterdir()) if p.is_dir() and _visible(p)]
        unknown = [p.name for p in role_dirs if p.name not in ROLES]
        if unknown or not role_dirs:
            raise DmlReproError(f"{root}: split_folders wants role folders {', '.join(ROLES)}; found {unknown or 'none'}")
        rows = [(src, cls, d.name) for d in role_dirs for src, cls in _scan_classes(root, d)]
    else:
        found = _scan_classes(root, root)
        if layout == "split_file":
            listed = _read_split_file(Path(split_file) if split_file else root / "split.tsv")
            have = {src for src, _ in found}
            missing = sorted(set(listed) - have)
            if missing:
                raise DmlReproError(f"{split_file}: lists {len(missing)} image(s) not found below {root}, e.g. {missing[0]}")
            rows = [(src, cls, listed[src]) for src, cls in found if src in listed]
        else:
            if not 0.0 < test_fraction < 1.0:
                raise DmlReproError(f"test_fraction {test_fraction}: must be in (0, 1)")
            names = sorted({cls for _, cls in found})
            n_train = min(max(1, round(len(names) * (1.0 - test_fraction))), len(names) - 1)
            if len(names) < 2:
                raise DmlReproError(f"{root}: a class-disjoint split needs 2 classes at least, found {len(names)}")
            train_classes = set(names[:n_train])
            rows = [(src, cls, "train" if cls in train_classes else "test") for src, cls in found]
    if not rows:
        raise DmlReproError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) below its class folders")
    classes = sorted({cls for _, cls, _ in rows})
    ids = {c: i for i, c in enumerate(classes)}
    return {"root": str(root), "layout": layout, "classes": classes, "sources": [r[0] for r in rows],
            "labels": [ids[r[1]] for r in rows], "roles": [r[2] for r in rows]}


def index_images(path: str | Path, name: str = "images") -> tuple[ImageIndex, list[str]]:
    """Every image at ``path`` for embedding or search, whatever its layout: one image file, a flat
    folder of images, or class folders (``<class>/<image>``, any depth). Returns the index (role
    ``test``; label = class position in name order, -1 for images outside a class folder) and the
    class names."""
    path = Path(path).resolve()
    if path.is_file():
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DmlReproError(f"{path}: not an image file ({', '.join(IMAGE_EXTENSIONS)})")
        root, rows = path.parent, [(path.name, "")]
    elif path.is_dir():
        root = path
        loose = [(p.name, "") for p in sorted(path.iterdir())
                 if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_EXTENSIONS]
        classes = [p for p in sorted(path.iterdir()) if p.is_dir() and _visible(p)]
        rows = loose + ([r for r in _scan_classes(root, root)] if classes else [])
    else:
        raise DmlReproError(f"{path}: no such image file or folder")
    if not rows:
        raise DmlReproError(f"{path}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    names = sorted({cls for _, cls in rows if cls})
    ids = {c: i for i, c in enumerate(names)}
    index = ImageIndex(name=name, labels=np.asarray([ids.get(cls, -1) for _, cls in rows], dtype=np.int64),
                       roles=np.full(len(rows), "test"), sources=np.asarray([src for src, _ in rows]), root=root, array=None)
    return index, names


def manifest_path(dest_root: str | Path, name: str) -> Path:
    return Path(dest_root) / name / MANIFEST


def write_image_folder_manifest(name: str, dest_root: str | Path, root: str | Path, layout: str, **options) -> Path:
    """Scan ``root`` (:func:`scan_image_folder`) and write its manifest for dataset ``name``."""
    path = manifest_path(dest_root, name)
    write_json(path, {"dataset": name, **scan_image_folder(root, layout, **options)})
    return path


def read_image_folder_manifest(name: str, dest_root: str | Path) -> tuple[ImageIndex, dict[str, Any]]:
    """The :class:`ImageIndex` of a prepared image folder, and its manifest (class names, layout)."""
    path = manifest_path(dest_root, name)
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise DmlReproError(f"unknown image dataset '{name}': not catalogued ({', '.join(IMAGE_DATASETS)}) and no "
                            f"prepared image folder {path} (declare yours under image_folders)") from None
    except json.JSONDecodeError as exc:
        raise DmlReproError(f"{path}: not JSON ({exc})") from exc
    index = ImageIndex(name=name, labels=np.asarray(manifest["labels"], dtype=np.int64),
                       roles=np.asarray(manifest["roles"]), sources=np.asarray(manifest["sources"]),
                       root=Path(manifest["root"]), array=None)
    return index, manifest
