"""The index of an image dataset: one row per image with its source, label and role.

Labels are the dataset's *original* class ids (MNIST digits 0-9, CUB 1-200, Cars 1-196, SOP
1-22,634, In-shop item numbers ``id_00000001`` -> 1), never remapped here: evaluation only
compares labels, and a model that needs contiguous ids (a proxy or softmax loss) gets them from
:class:`~dmlrepro.data.images.ImageDataset` (``remap_labels=True``), computed on its own rows.

Images are decoded one at a time in :meth:`ImageIndex.image`, never at load time. File-backed
images are converted to RGB (CUB and SOP hold a few greyscale and CMYK JPEGs); array-backed
ones keep their mode ("L" for MNIST and Fashion-MNIST, "RGB" for CIFAR-10).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dmlrepro import DmlReproError

ROLES = ("train", "test", "query", "gallery")


@dataclass
class ImageIndex:
    """Every image of a dataset: ``labels`` (int64 class ids), ``roles``, and where its pixels are.

    File-backed datasets set ``root`` and ``sources`` (paths relative to ``root``); array-backed
    ones set ``array`` ((n, H, W) or (n, H, W, 3) uint8) and leave ``sources`` empty strings.
    """

    name: str
    labels: np.ndarray
    roles: np.ndarray
    sources: np.ndarray
    root: Path | None
    array: np.ndarray | None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.roles = np.asarray(self.roles, dtype="<U8")
        self.sources = np.asarray(self.sources, dtype=str)
        n = len(self.labels)
        if self.labels.ndim != 1 or self.roles.shape != (n,) or self.sources.shape != (n,):
            raise DmlReproError(f"{self.name}: labels, roles and sources must be 1-d of one length "
                                f"(got {self.labels.shape}, {self.roles.shape}, {self.sources.shape})")
        unknown = set(np.unique(self.roles).tolist()) - set(ROLES)
        if unknown:
            raise DmlReproError(f"{self.name}: unknown role(s) {sorted(unknown)}; roles are {', '.join(ROLES)}")
        if self.array is not None:
            if len(self.array) != n or self.array.dtype != np.uint8 or self.array.ndim not in (3, 4):
                raise DmlReproError(f"{self.name}: image array must be (n,H,W[,3]) uint8 with n={n} "
                                    f"(got {self.array.shape} {self.array.dtype})")
        elif self.root is None:
            raise DmlReproError(f"{self.name}: an index needs either an image array or a root folder")
        else:
            self.root = Path(self.root)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def classes(self) -> np.ndarray:
        """The sorted distinct class ids."""
        return np.unique(self.labels)

    def rows(self, role: str) -> np.ndarray:
        """Indices (int64, ascending) of the rows with role ``role``."""
        if role not in ROLES:
            raise DmlReproError(f"{self.name}: unknown role '{role}'; roles are {', '.join(ROLES)}")
        return np.flatnonzero(self.roles == role).astype(np.int64)

    def path(self, i: int) -> Path:
        """The file of row ``i`` (file-backed datasets only)."""
        if self.root is None or self.array is not None:
            raise DmlReproError(f"{self.name}: row {i} is held in memory, not in a file")
        return self.root / str(self.sources[i])

    def image(self, i: int) -> Image.Image:
        """Row ``i``'s image as a PIL image ("L" or "RGB"); a file that cannot be decoded is a
        :class:`DmlReproError` naming it."""
        if self.array is not None:
            return Image.fromarray(self.array[i])
        path = self.path(i)
        try:
            with Image.open(path) as img:
                # convert() decodes fully, so a truncated file fails here and not in a worker later
                return img.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise DmlReproError(f"{path}: cannot decode image (row {i} of {self.name}): {exc}") from exc
