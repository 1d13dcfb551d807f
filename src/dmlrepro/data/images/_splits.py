"""Fit / validation / test splits of an image dataset (row indices into its :class:`ImageIndex`).

Decisions:

* **Test part** = the dataset's own test images: role "test", or for In-shop the union of
  "query" and "gallery" (kept apart in ``query`` / ``gallery`` for query -> gallery retrieval).
* **Train part** = role "train". ``val`` is carved from it and never touches the test part;
  ``fit`` = train part minus val is what a model is fitted on during model selection
  (:attr:`ImageSplit.train` gives the whole train part back for the final fit).
* **How val is carved** (``val_by``), seeded by ``seed``:

  - "classes" (default for ``zero_shot``): ``round(val_fraction * #train classes)`` classes (at
    least one when ``val_fraction > 0``) drawn with ``numpy.random.default_rng(seed)``; all their
    images go to val, so validation is zero-shot like the test;
  - "images" (default for ``same_class``): a class-stratified ``val_fraction`` of the train
    images (scikit-learn ``StratifiedShuffleSplit``, ``random_state=seed``). Also allowed for
    ``zero_shot`` (the MNIST stand-in below has only 5 training classes to spare).
  - ``val_fraction=0`` gives an empty val.
* **Zero-shot stand-in on a same-class dataset** (MNIST, Fashion-MNIST, CIFAR-10):
  ``protocol="zero_shot", train_classes=range(5), test_classes=range(5, 10)`` takes fit/val
  from the *train* images of classes 0-4 and the test part from the *test* images of classes
  5-9, so no image and no class is shared and the official train/test images stay apart. In
  general ``train_classes`` filters the train-role rows and ``test_classes`` the test-role rows.
* ``zero_shot`` refuses a split whose fit/val and test parts share a class; ``same_class``
  refuses ``train_classes``/``test_classes`` and ``val_by="classes"`` (it would remove classes
  from fit that the test part still has).
* File: JSON (sorted int64 row lists, ``query``/``gallery`` null when absent, ``meta``), written
  atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dmlrepro import DmlReproError
from dmlrepro.data.images._index import ImageIndex
from dmlrepro.io import write_json

PROTOCOLS = ("same_class", "zero_shot")
VAL_BY = ("classes", "images")
_PARTS = ("fit", "val", "test", "query", "gallery")


def _rows(a: Any) -> np.ndarray:
    return np.sort(np.asarray(a, dtype=np.int64).reshape(-1))


@dataclass
class ImageSplit:
    """Row indices (sorted int64) of one split; ``query``/``gallery`` only for In-shop."""

    fit: np.ndarray
    val: np.ndarray
    test: np.ndarray
    query: np.ndarray | None = None
    gallery: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fit, self.val, self.test = _rows(self.fit), _rows(self.val), _rows(self.test)
        if (self.query is None) != (self.gallery is None):
            raise DmlReproError("image split: give both query and gallery, or neither")
        if self.query is not None:
            self.query, self.gallery = _rows(self.query), _rows(self.gallery)
            if not np.array_equal(np.union1d(self.query, self.gallery), self.test):
                raise DmlReproError("image split: test must be the union of query and gallery")
        for a, b in (("fit", "val"), ("fit", "test"), ("val", "test")):
            shared = np.intersect1d(getattr(self, a), getattr(self, b))
            if len(shared):
                raise DmlReproError(f"image split: {a} and {b} share {len(shared)} rows (e.g. row {shared[0]})")

    @property
    def train(self) -> np.ndarray:
        """The whole train part (fit and val), for the final fit after model selection."""
        return np.union1d(self.fit, self.val)

    def save(self, path: str | Path) -> None:
        """Write the split as JSON, atomically."""
        obj = {p: (None if getattr(self, p) is None else getattr(self, p).tolist()) for p in _PARTS}
        obj["meta"] = self.meta
        write_json(path, obj)

    @classmethod
    def load(cls, path: str | Path) -> "ImageSplit":
        path = Path(path)
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DmlReproError(f"{path}: split file missing") from None
        except (OSError, ValueError) as exc:
            raise DmlReproError(f"{path}: not a JSON split file: {exc}") from exc
        if not isinstance(obj, dict):
            raise DmlReproError(f"{path}: not a split file (a JSON object with {', '.join(_PARTS)})")
        absent = [p for p in ("fit", "val", "test") if not isinstance(obj.get(p), list)]
        if absent:
            raise DmlReproError(f"{path}: no list '{absent[0]}' (an image split has {', '.join(_PARTS)})")
        try:
            return cls(**{p: obj.get(p) for p in _PARTS}, meta=dict(obj.get("meta") or {}))
        except (TypeError, ValueError) as exc:
            raise DmlReproError(f"{path}: bad row lists: {exc}") from exc
        except DmlReproError as exc:
            raise DmlReproError(f"{path}: {exc}") from None


def _class_filter(index: ImageIndex, rows: np.ndarray, classes: Sequence[int] | None) -> np.ndarray:
    if classes is None:
        return rows
    return rows[np.isin(index.labels[rows], np.asarray(list(classes), dtype=np.int64))]


def _carve_val(index: ImageIndex, train: np.ndarray, val_fraction: float, val_by: str,
               seed: int) -> np.ndarray:
    if val_fraction == 0:
        return np.empty(0, dtype=np.int64)
    labels = index.labels[train]
    if val_by == "classes":
        classes = np.unique(labels)
        n_val = max(1, round(val_fraction * len(classes)))
        if n_val >= len(classes):
            raise DmlReproError(f"{index.name}: val_fraction={val_fraction} of {len(classes)} train classes leaves "
                                "no class to fit on; use val_by='images' or a smaller val_fraction")
        val_classes = np.random.default_rng(seed).choice(classes, size=n_val, replace=False)
        return train[np.isin(labels, val_classes)]
    from sklearn.model_selection import StratifiedShuffleSplit  # heavy: only when carving by images

    splitter = StratifiedShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    try:
        _, val = next(splitter.split(np.zeros(len(train)), labels))
    except ValueError as exc:  # e.g. a class with one image, or fewer val images than classes
        raise DmlReproError(f"{index.name}: cannot carve a stratified val_fraction={val_fraction} "
                            f"from {len(train)} train images: {exc}") from exc
    return train[val]


def make_image_split(index: ImageIndex, *, protocol: str, val_fraction: float = 0.15, val_by: str | None = None,
                     seed: int = 0, train_classes: Sequence[int] | None = None,
                     test_classes: Sequence[int] | None = None) -> ImageSplit:
    """The fit / val / test split of ``index`` under ``protocol`` (see the module docstring).

    ``val_by`` defaults to "classes" for ``zero_shot`` and "images" for ``same_class``.
    """
    if protocol not in PROTOCOLS:
        raise DmlReproError(f"unknown protocol '{protocol}'; known: {', '.join(PROTOCOLS)}")
    val_by = val_by or ("classes" if protocol == "zero_shot" else "images")
    if val_by not in VAL_BY:
        raise DmlReproError(f"unknown val_by '{val_by}'; known: {', '.join(VAL_BY)}")
    if not 0 <= val_fraction < 1:
        raise DmlReproError(f"val_fraction={val_fraction}: must be in [0, 1)")
    if protocol == "same_class":
        if train_classes is not None or test_classes is not None:
            raise DmlReproError(f"{index.name}: train_classes/test_classes make a zero-shot split; "
                                "protocol 'same_class' uses every class")
        if val_by == "classes":
            raise DmlReproError(f"{index.name}: val_by='classes' would remove classes from fit that the "
                                "same-class test part keeps; use val_by='images'")

    train = _class_filter(index, index.rows("train"), train_classes)
    query = gallery = None
    if len(index.rows("query")) or len(index.rows("gallery")):
        query = _class_filter(index, index.rows("query"), test_classes)
        gallery = _class_filter(index, index.rows("gallery"), test_classes)
        test = np.union1d(query, gallery)
    else:
        test = _class_filter(index, index.rows("test"), test_classes)
    if not len(train) or not len(test):
        raise DmlReproError(f"{index.name}: empty {'train' if not len(train) else 'test'} part "
                            f"(train_classes={train_classes!r}, test_classes={test_classes!r})")
    if protocol == "zero_shot":
        shared = np.intersect1d(index.labels[train], index.labels[test])
        if len(shared):
            raise DmlReproError(f"{index.name}: zero_shot split, but train and test share {len(shared)} classes "
                                f"(e.g. {shared[0]}); give disjoint train_classes and test_classes")

    val = _carve_val(index, train, val_fraction, val_by, seed)
    fit = np.setdiff1d(train, val, assume_unique=True)
    meta = {"dataset": index.name, "n_rows": len(index), "protocol": protocol, "val_by": val_by,
            "val_fraction": val_fraction, "seed": seed,
            "train_classes": None if train_classes is None else [int(c) for c in train_classes],
            "test_classes": None if test_classes is None else [int(c) for c in test_classes]}
    return ImageSplit(fit, val, test, query, gallery, meta)
