"""A torch ``Dataset`` over some rows of an :class:`ImageIndex`.

An item is ``(image, label, row)``: the image after ``transform`` (a PIL image when there is no
transform), the label as a Python int and the row index into the index (for caches, pseudo-label
tables and memory banks keyed by image).

Labels are the original class ids unless ``remap_labels=True``: then they are ``0..C-1`` in the
ascending order of the original ids of *these rows* (:attr:`ImageDataset.classes` maps back),
which proxy- and softmax-based losses need.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch.utils.data

from dmlrepro import DmlReproError
from dmlrepro.data.images._index import ImageIndex


class ImageDataset(torch.utils.data.Dataset):
    """``(transform(image), label, row)`` for each of ``rows`` of ``index``."""

    def __init__(self, index: ImageIndex, rows: Any, transform: Callable | None = None, *,
                 remap_labels: bool = False) -> None:
        self.index = index
        self.rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if len(self.rows) and (self.rows.min() < 0 or self.rows.max() >= len(index)):
            raise DmlReproError(f"{index.name}: rows must lie in [0, {len(index)}) "
                                f"(got {self.rows.min()}..{self.rows.max()})")
        self.transform = transform
        original = index.labels[self.rows]
        self.classes = np.unique(original)
        self.labels = np.searchsorted(self.classes, original) if remap_labels else original

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> tuple[Any, int, int]:
        row = int(self.rows[k])
        image = self.index.image(row)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[k]), row
