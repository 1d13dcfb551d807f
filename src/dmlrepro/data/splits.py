"""Train / validation / test splits of a dataset's documents.

Each split ``k`` has a ``test`` part and a ``train`` part; a ``val`` part is carved from the
train part (stratified), never touches test, and is what model selection looks at. ``train``
holds the full train part (val included), as in Kusner's TR; :meth:`Splits.fit` is train minus
val, what a model is fitted on during model selection. All index arrays are sorted, 0-based.

File format (``.npz``, written atomically): ``train_0..``, ``val_0..``, ``test_0..`` (int64)
and ``meta`` (a JSON string with the seed, sizes and number of documents).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from sklearn.model_selection import StratifiedShuffleSplit

from dmlrepro import DmlReproError
from dmlrepro.io import save_npz


@dataclass
class Splits:
    train: list[np.ndarray]
    val: list[np.ndarray]
    test: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.train = [np.sort(np.asarray(p, dtype=np.int64)) for p in self.train]
        self.val = [np.sort(np.asarray(p, dtype=np.int64)) for p in self.val]
        self.test = [np.sort(np.asarray(p, dtype=np.int64)) for p in self.test]
        if not (len(self.train) == len(self.val) == len(self.test)) or not self.train:
            raise DmlReproError(f"splits: need as many train, val and test parts (got {len(self.train)}, "
                                f"{len(self.val)}, {len(self.test)})")

    def __len__(self) -> int:
        return len(self.train)

    @property
    def n_splits(self) -> int:
        return len(self.train)

    def fit(self, k: int) -> np.ndarray:
        """Split ``k``'s documents to fit on during model selection: train minus val."""
        return np.setdiff1d(self.train[k], self.val[k], assume_unique=True)

    def small_data(self, labels: Sequence[int], k: int, samples_per_class: float) -> tuple[np.ndarray, np.ndarray]:
        """Split ``k``'s small-data subsample (Fig. 4) as ``(fit, val)``: :func:`subsample_train`
        seeded by the split alone, so every method of the study (BERT included) sees the same documents."""
        seed = int(self.meta.get("seed", 0)) * 1000 + k
        return subsample_train(labels, self.train[k], samples_per_class, float(self.meta.get("val_size", 0.2)), seed)

    def training_parts(self, labels: Sequence[int], k: int,
                       samples_per_class: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(fit, val, labelled)`` of split ``k``: documents to fit on, to select on, and whose labels
        the kNN classifier may use (the train part; in the small-data study only the subsample)."""
        if not samples_per_class:
            return self.fit(k), self.val[k], self.train[k]
        fit, val = self.small_data(labels, k, samples_per_class)
        return fit, val, np.union1d(fit, val)

    # ------------------------------------------------------------------ checks and I/O
    def validate(self, n_documents: int | None = None, source: str = "splits") -> None:
        """Raise :class:`DmlReproError` naming the first part that breaks the rules."""
        n = n_documents if n_documents is not None else self.meta.get("n_documents")
        for k in range(self.n_splits):
            for kind, part in (("train", self.train[k]), ("val", self.val[k]), ("test", self.test[k])):
                key = f"{kind}_{k}"
                if len(np.unique(part)) != len(part):
                    raise DmlReproError(f"{source}: key '{key}' repeats an index")
                if len(part) and (part.min() < 0 or (n is not None and part.max() >= n)):
                    raise DmlReproError(f"{source}: key '{key}' has indices outside 0..{n - 1 if n else '?'}")
            if len(self.train[k]) == 0 or len(self.test[k]) == 0:
                raise DmlReproError(f"{source}: split {k} has an empty train or test part")
            both = np.intersect1d(self.train[k], self.test[k])
            if len(both):
                raise DmlReproError(f"{source}: keys 'train_{k}' and 'test_{k}' share {len(both)} documents "
                                    f"(e.g. {both[0]})")
            outside = np.setdiff1d(self.val[k], self.train[k])
            if len(outside):
                raise DmlReproError(f"{source}: key 'val_{k}' is not inside 'train_{k}' "
                                    f"({len(outside)} documents, e.g. {outside[0]})")

    def save(self, path: str | os.PathLike) -> None:
        arrays: dict[str, Any] = {}
        for k in range(self.n_splits):
            arrays[f"train_{k}"] = self.train[k]
            arrays[f"val_{k}"] = self.val[k]
            arrays[f"test_{k}"] = self.test[k]
        save_npz(path, meta=np.asarray(json.dumps(self.meta, sort_keys=True)), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike, n_documents: int | None = None) -> "Splits":
        """Read and validate a split file (against ``n_documents`` when given, else its meta)."""
        path = Path(path)
        if not path.is_file():
            raise DmlReproError(f"split file not found: {path}")
        try:
            archive = np.load(path, allow_pickle=False)
        except Exception as exc:
            raise DmlReproError(f"{path}: not a readable .npz split file ({exc})") from exc
        with archive:
            files = set(archive.files)
            if "meta" not in files:
                raise DmlReproError(f"{path}: missing key 'meta'")
            try:
                meta = json.loads(str(archive["meta"]))
            except (ValueError, TypeError) as exc:
                raise DmlReproError(f"{path}: key 'meta' is not JSON ({exc})") from exc
            n_splits = sum(1 for f in files if f.startswith("train_"))
            if n_splits == 0:
                raise DmlReproError(f"{path}: missing key 'train_0'")
            parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
            for k in range(n_splits):
                for kind in parts:
                    key = f"{kind}_{k}"
                    if key not in files:
                        raise DmlReproError(f"{path}: missing key '{key}'")
                    arr = archive[key]
                    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
                        raise DmlReproError(f"{path}: key '{key}' must be a 1-D integer array "
                                            f"(got {arr.dtype} {arr.shape})")
                    parts[kind].append(arr.astype(np.int64))
        if n_documents is not None and meta.get("n_documents") not in (None, n_documents):
            raise DmlReproError(f"{path}: made for {meta['n_documents']} documents, the dataset has {n_documents}")
        splits = cls(parts["train"], parts["val"], parts["test"], meta)
        splits.validate(n_documents, source=str(path))
        return splits

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_fixed(cls, train_list: Sequence[Sequence[int]], test_list: Sequence[Sequence[int]],
                   labels: Sequence[int], val_size: float = 0.2, seed: int = 0) -> "Splits":
        """Splits that come with the data (Kusner's TR/TE, R8's official split), plus a val part."""
        labels = np.asarray(labels)
        if len(train_list) != len(test_list) or not train_list:
            raise DmlReproError(f"fixed splits: {len(train_list)} train parts but {len(test_list)} test parts")
        seeds = _child_seeds(seed, len(train_list))
        train = [np.asarray(t, np.int64) for t in train_list]
        val = [_carve_val(labels, t, val_size, s, k) for k, (t, s) in enumerate(zip(train, seeds))]
        meta = {"kind": "fixed", "seed": seed, "val_size": val_size, "n_splits": len(train),
                "n_documents": int(len(labels))}
        splits = cls(train, val, [np.asarray(t, np.int64) for t in test_list], meta)
        splits.validate(len(labels), source="fixed splits")
        return splits


def _child_seeds(seed: int, n: int) -> list[int]:
    # Independent, reproducible seeds for the val carving of each split.
    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def _carve_val(labels: np.ndarray, train: np.ndarray, val_size: float, seed: int, k: int) -> np.ndarray:
    if val_size == 0:
        return np.empty(0, np.int64)
    if not 0 < val_size < 1:
        raise DmlReproError(f"val_size must be in [0, 1), got {val_size}")
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=val_size, random_state=seed)
    try:
        _, val_pos = next(splitter.split(np.zeros(len(train)), labels[train]))
    except ValueError as exc:  # a class too small to stratify
        raise DmlReproError(f"split {k}: cannot carve a stratified val part of {val_size} from "
                            f"{len(train)} train documents ({exc})") from exc
    return np.sort(train[val_pos])


def make_splits(labels: Sequence[int], n_splits: int = 5, test_size: float = 0.3, val_size: float = 0.2,
                seed: int = 0) -> Splits:
    """``n_splits`` seeded stratified train/test shuffles, each with a stratified val part.

    ``test_size`` is a share of all documents, ``val_size`` a share of each train part.
    """
    labels = np.asarray(labels)
    if n_splits < 1:
        raise DmlReproError(f"n_splits must be at least 1, got {n_splits}")
    if not 0 < test_size < 1:
        raise DmlReproError(f"test_size must be in (0, 1), got {test_size}")
    splitter = StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=seed)
    try:
        pairs = list(splitter.split(np.zeros(len(labels)), labels))
    except ValueError as exc:
        raise DmlReproError(f"cannot make stratified splits of {len(labels)} documents ({exc})") from exc
    seeds = _child_seeds(seed, n_splits)
    train = [np.sort(tr) for tr, _ in pairs]
    val = [_carve_val(labels, tr, val_size, s, k) for k, (tr, s) in enumerate(zip(train, seeds))]
    meta = {"kind": "stratified_shuffle", "seed": seed, "n_splits": n_splits, "test_size": test_size,
            "val_size": val_size, "n_documents": int(len(labels))}
    return Splits(train, val, [np.sort(te) for _, te in pairs], meta)


def subsample_train(labels: Sequence[int], train: Sequence[int], samples_per_class: float, val_size: float,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A smaller training set for WSSET's small-data study (Fig. 4): ``fit`` and ``val`` parts.

    ``samples_per_class`` is the *average* over classes, as in the paper ("average number of
    samples per class"): ``round(samples_per_class * n_classes)`` train documents are drawn,
    stratified, so the original class distribution is kept; every class keeps at least 2 so a
    val document can be carved. ``val_size`` of them (stratified) is held out for model
    selection, exactly as for full splits. The test part is unchanged (not an argument).
    """
    labels, train = np.asarray(labels), np.asarray(train, dtype=np.int64)
    classes, counts = np.unique(labels[train], return_counts=True)
    total = int(round(samples_per_class * len(classes)))
    if samples_per_class <= 0 or total > len(train):
        raise DmlReproError(f"samples_per_class={samples_per_class}: needs {total} train documents, "
                            f"the split has {len(train)}")
    # largest-remainder allocation of `total` in proportion to the class counts, at least 2 each
    share = counts / counts.sum() * total
    quota = np.maximum(np.floor(share).astype(int), 2)
    for c in np.argsort(-(share - np.floor(share))):
        if quota.sum() >= total:
            break
        quota[c] += 1
    quota = np.minimum(quota, counts)
    rng = np.random.default_rng(seed)
    chosen = np.sort(np.concatenate([rng.choice(train[labels[train] == c], q, replace=False)
                                     for c, q in zip(classes, quota)]))
    val = _carve_val(labels, chosen, val_size, seed, 0) if val_size else np.empty(0, np.int64)
    return np.setdiff1d(chosen, val, assume_unique=True), val
