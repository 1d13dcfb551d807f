"""Raw files and specifications of the seven image datasets of the image papers (001-004).

Raw files follow :mod:`dmlrepro.data.catalog`: one :class:`~dmlrepro.data.catalog.RawFile` per
file, addressed by its path relative to a data root. MNIST and Fashion-MNIST are already in that
catalog (``mnist/``, ``fashion-mnist/``, the shared mirror's files) and are reused from there;
the other five live in :data:`IMAGE_RAW_FILES` here. :func:`dmlrepro.data.catalog.get_raw_file`
falls back to this table, so :func:`dmlrepro.data.fetch.fetch_raw_file` copies or downloads
them like any other catalog file.

Checksums: no sha256 of these archives is published, so ``sha256`` is None. Where upstream's md5
is known (``IMAGE-ANCHORS.md`` §4: torchvision for CIFAR-10, powerful-benchmarker for CUB, Cars,
SOP), it is ``download_md5``: a download from ``url`` and a copy from a mirror alike are checked
against it (a mirror normally holds upstream's bytes; a re-packed archive is refused). In-shop has
no known public URL that a script can fetch (Google Drive) and no known checksum: place the files
by hand; the fetch code records the sha256 of the first copy (trust on first use).

Layout under a data root (archives are extracted in place by
:func:`dmlrepro.data.images.prepare_image_dataset`)::

    mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
    cifar10/cifar-10-python.tar.gz              (read as is, never extracted)
    cub200/CUB_200_2011.tgz         -> cub200/CUB_200_2011/{images.txt,image_class_labels.txt,images/}
    cars196/cars_annos.mat, cars196/car_ims.tgz -> cars196/car_ims/*.jpg
    sop/Stanford_Online_Products.zip -> sop/Stanford_Online_Products/{Ebay_train.txt,Ebay_test.txt,...}
    inshop/list_eval_partition.txt, inshop/img.zip -> inshop/img/...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from dmlrepro import DmlReproError
from dmlrepro.data.catalog import RAW_FILES, RawFile

_CUB_URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz"
_CARS_URL = "http://ai.stanford.edu/~jkrause/car196"
_SOP_URL = "ftp://cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip"
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
_TOFU = (" No sha256 is published: a copy from a mirror or a download is checked against upstream's md5"
         " (an archive in a mirror is normally upstream's bytes).")
_INSHOP_NOTE = ("DeepFashion In-shop Clothes Retrieval Benchmark (Liu et al. 2016), distributed on Google Drive "
                "(https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html) after agreeing to its "
                "terms, so no URL a script can fetch: download it by hand and save {what} as <data root>/{rel}."
                " No checksum is known: the first copy's sha256 is recorded beside it.")


def _image_raw_files() -> dict[str, RawFile]:
    files = [
        RawFile("cifar10/cifar-10-python.tar.gz", _CIFAR_URL, None, None,
                "CIFAR-10, python version (Krizhevsky 2009): cifar-10-batches-py/data_batch_1..5, test_batch, "
                "batches.meta (pickles); md5 from torchvision datasets/cifar.py." + _TOFU,
                download_md5="c58f30108f718f92721af3b95e74349a"),
        RawFile("cub200/CUB_200_2011.tgz", _CUB_URL, None, None,
                "Caltech-UCSD Birds-200-2011 (Wah et al. 2011), 11,788 images, 200 classes; md5 from "
                "powerful-benchmarker datasets/cub200.py. Also on Google Drive, file id "
                "1hbzc_P1FuxMkcabkgn9ZKinBwW683j45." + _TOFU,
                download_md5="97eceeb196236b17998738112f37df78"),
        RawFile("cars196/car_ims.tgz", f"{_CARS_URL}/car_ims.tgz", None, None,
                "Stanford Cars (Krause et al. 2013), 16,185 images car_ims/NNNNNN.jpg; md5 from "
                "powerful-benchmarker datasets/cars196.py. The Stanford host is often down: mirrors "
                "(e.g. Kaggle) hold the same files." + _TOFU,
                download_md5="d5c8f0aa497503f355e17dc7886c3f14"),
        RawFile("cars196/cars_annos.mat", f"{_CARS_URL}/cars_annos.mat", None, None,
                "Stanford Cars annotations: struct array 'annotations' (relative_im_path, bbox_x1, bbox_y1, "
                "bbox_x2, bbox_y2, class, test) and 'class_names'." + _TOFU,
                download_md5="b407c6086d669747186bd1d764ff9dbc"),
        RawFile("sop/Stanford_Online_Products.zip", _SOP_URL, None, None,
                "Stanford Online Products (Oh Song et al. 2016), 120,053 images, 22,634 classes; md5 from "
                "powerful-benchmarker datasets/stanford_online_products.py." + _TOFU,
                download_md5="7f73d41a2f44250d4779881525aea32e"),
        RawFile("inshop/list_eval_partition.txt", None, None, None,
                _INSHOP_NOTE.format(what="Eval/list_eval_partition.txt", rel="inshop/list_eval_partition.txt")),
        RawFile("inshop/img.zip", None, None, None,
                _INSHOP_NOTE.format(what="Img/img.zip (the low-resolution images the DML literature uses, "
                                         "not img_highres)", rel="inshop/img.zip")),
    ]
    return {f.relpath: f for f in files}


IMAGE_RAW_FILES: dict[str, RawFile] = _image_raw_files()


@dataclass(frozen=True)
class ImageDatasetSpec:
    """An image dataset: where its files are, its roles and their expected sizes, its protocol.

    ``raw_files`` are catalog relpaths under the data root; ``archives`` is the subset that
    :func:`~dmlrepro.data.images.prepare_image_dataset` extracts (into the archive's folder).
    ``expected`` maps each role ("train", "test", "query", "gallery") to its number of images;
    ``protocol`` is "same_class" (test classes = train classes) or "zero_shot" (disjoint).
    """

    name: str
    paper_name: str
    folder: str
    raw_files: tuple[str, ...]
    archives: tuple[str, ...]
    expected: Mapping[str, int]
    protocol: str
    recall_ks: tuple[int, ...]
    n_classes: int
    note: str = ""
    image_mode: str = field(default="RGB")

    @property
    def n_images(self) -> int:
        return sum(self.expected.values())


def _counts(**roles: int) -> Mapping[str, int]:
    return MappingProxyType(dict(roles))


_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
_SMALL_KS = (1, 2, 4, 8)

IMAGE_DATASETS: dict[str, ImageDatasetSpec] = {
    "mnist": ImageDatasetSpec(
        "mnist", "MNIST", "mnist", tuple(f"mnist/{f}" for f in _MNIST_FILES), (),
        _counts(train=60_000, test=10_000), "same_class", _SMALL_KS, 10, image_mode="L"),
    "fashion_mnist": ImageDatasetSpec(
        "fashion_mnist", "Fashion-MNIST", "fashion-mnist", tuple(f"fashion-mnist/{f}" for f in _MNIST_FILES), (),
        _counts(train=60_000, test=10_000), "same_class", _SMALL_KS, 10, image_mode="L"),
    "cifar10": ImageDatasetSpec(
        "cifar10", "CIFAR-10", "cifar10", ("cifar10/cifar-10-python.tar.gz",), (),
        _counts(train=50_000, test=10_000), "same_class", _SMALL_KS, 10),
    "cub200": ImageDatasetSpec(
        "cub200", "CUB-200-2011", "cub200", ("cub200/CUB_200_2011.tgz",), ("cub200/CUB_200_2011.tgz",),
        _counts(train=5_864, test=5_924), "zero_shot", (1, 2, 4, 8, 16, 32), 200,
        note="classes 1-100 train, 101-200 test (the DML split, not the 5,994/5,794 classification split)"),
    "cars196": ImageDatasetSpec(
        "cars196", "Cars196", "cars196", ("cars196/cars_annos.mat", "cars196/car_ims.tgz"), ("cars196/car_ims.tgz",),
        _counts(train=8_054, test=8_131), "zero_shot", (1, 2, 4, 8, 16, 32), 196,
        note="classes 1-98 train, 99-196 test (the 'test' flag of cars_annos.mat is ignored)"),
    "sop": ImageDatasetSpec(
        "sop", "Stanford Online Products", "sop", ("sop/Stanford_Online_Products.zip",),
        ("sop/Stanford_Online_Products.zip",),
        _counts(train=59_551, test=60_502), "zero_shot", (1, 10, 100, 1000), 22_634,
        note="Ebay_train.txt (classes 1-11,318) / Ebay_test.txt (11,319-22,634)"),
    "inshop": ImageDatasetSpec(
        "inshop", "In-shop Clothes Retrieval", "inshop", ("inshop/list_eval_partition.txt", "inshop/img.zip"),
        ("inshop/img.zip",),
        _counts(train=25_882, query=14_218, gallery=12_612), "zero_shot", (1, 10, 20, 30, 40, 50), 7_982,
        note="3,997 train items; 3,985 test items searched from query into gallery"),
}


def get_image_dataset_spec(name: str) -> ImageDatasetSpec:
    """The :class:`ImageDatasetSpec` called ``name``; unknown names are a :class:`DmlReproError`."""
    try:
        return IMAGE_DATASETS[name]
    except KeyError:
        raise DmlReproError(f"unknown image dataset '{name}'; known: {', '.join(IMAGE_DATASETS)}") from None


def image_raw_file(relpath: str) -> RawFile:
    """The catalog entry of an image raw file (this table first, then the main catalog)."""
    entry = IMAGE_RAW_FILES.get(relpath) or RAW_FILES.get(relpath)
    if entry is None:
        raise DmlReproError(f"unknown image raw file '{relpath}': in neither catalog")
    return entry
