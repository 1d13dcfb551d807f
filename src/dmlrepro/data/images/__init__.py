"""The seven image datasets of the image papers: MNIST, Fashion-MNIST, CIFAR-10, CUB-200-2011,
Cars196, Stanford Online Products and In-shop.

Flat API (private modules behind it):

* :data:`IMAGE_DATASETS` / :class:`ImageDatasetSpec` (``catalog``): raw files, expected counts
  per role, protocol ("same_class" or "zero_shot"), Recall@K ks, number of classes;
  :data:`IMAGE_RAW_FILES`: the archives' catalog entries (URL, md5), fetched by
  :func:`dmlrepro.data.fetch.fetch_raw_file`;
* :func:`prepare_image_dataset` (``_prepare``): extract archives, atomically and idempotently;
* :func:`load_image_dataset` -> :class:`ImageIndex` (``_loaders``, ``_index``): labels, roles
  and image sources, read from the annotation files without decoding any image;
* :func:`make_image_split` -> :class:`ImageSplit` (``_splits``): fit / val / test rows;
* :func:`write_image_folder_manifest` / :func:`scan_image_folder` (``_folders``): a user's
  folder-per-class images (:data:`IMAGE_FOLDER_LAYOUTS`), indexed like a catalogued dataset;
* :class:`ImageDataset` (``_dataset``): the torch ``Dataset``; imported on first use, so that
  this package (which the fetch step imports) does not import torch.

The decisions (splits, roles, label ids, how val is carved) are in the private modules' docstrings.
"""

from __future__ import annotations

from typing import Any

from dmlrepro.data.images._folders import LAYOUTS as IMAGE_FOLDER_LAYOUTS
from dmlrepro.data.images._folders import (index_images, read_image_folder_manifest, scan_image_folder,
                                           write_image_folder_manifest)
from dmlrepro.data.images._index import ROLES, ImageIndex
from dmlrepro.data.images._loaders import load_image_dataset, read_idx
from dmlrepro.data.images._prepare import extract_archive, prepare_image_dataset
from dmlrepro.data.images._splits import PROTOCOLS, ImageSplit, make_image_split
from dmlrepro.data.images.catalog import (IMAGE_DATASETS, IMAGE_RAW_FILES, ImageDatasetSpec,
                                          get_image_dataset_spec, image_raw_file)

__all__ = ["IMAGE_DATASETS", "IMAGE_FOLDER_LAYOUTS", "IMAGE_RAW_FILES", "PROTOCOLS", "ROLES", "ImageDataset", "ImageDatasetSpec",
           "ImageIndex", "ImageSplit", "extract_archive", "index_images", "get_image_dataset_spec", "image_raw_file",
           "load_image_dataset", "make_image_split", "prepare_image_dataset", "read_idx",
           "read_image_folder_manifest", "scan_image_folder", "write_image_folder_manifest"]


def __getattr__(name: str) -> Any:
    if name == "ImageDataset":
        from dmlrepro.data.images._dataset import ImageDataset
        return ImageDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
