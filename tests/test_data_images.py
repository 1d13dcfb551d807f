"""Image datasets: each loader on a tiny dataset written in the real on-disk layout, archives,
splits, the torch Dataset, bad input; and the real MNIST / Fashion-MNIST files of the mirror."""

from __future__ import annotations

import gzip
import pickle
import shutil
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from dmlrepro import DmlReproError
from dmlrepro.data.catalog import RAW_FILES, get_raw_file
from dmlrepro.data.fetch import fetch_raw_file, recorded_sha256
from dmlrepro.data.images import (IMAGE_DATASETS, IMAGE_RAW_FILES, ImageIndex, ImageSplit, load_image_dataset,
                                  make_image_split, prepare_image_dataset, read_idx)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def _jpeg(path: Path, value: int, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 255 - value, 7)
    Image.new(mode, (12, 10), color).save(path, format="JPEG", quality=95)


def _tgz(archive: Path, base: Path, *members: str) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for m in members:
            tar.add(base / m, arcname=m)


def _zip(archive: Path, base: Path, top: str) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted((base / top).rglob("*")):
            zf.write(p, p.relative_to(base))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ----------------------------------------------------------------------------------- MNIST idx
def _idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(folder: Path, n_train_per_class: int = 4, n_test_per_class: int = 2, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, per_class in (("train", n_train_per_class), ("t10k", n_test_per_class)):
        y = np.repeat(np.arange(10, dtype=np.uint8), per_class)
        rng.shuffle(y)
        x = rng.integers(0, 256, size=(len(y), 28, 28), dtype=np.uint8)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(x)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(y)))
        out[prefix] = (x, y)
    return out


@pytest.fixture()
def mnist_root(tmp_path) -> tuple[Path, dict]:
    return tmp_path, _write_mnist(tmp_path / "mnist")


def test_mnist_loader_reads_idx_files(mnist_root):
    root, truth = mnist_root
    index = load_image_dataset("mnist", root, expected={"train": 40, "test": 20})
    assert len(index) == 60 and index.array.shape == (60, 28, 28) and index.array.dtype == np.uint8
    train, test = index.rows("train"), index.rows("test")
    np.testing.assert_array_equal(train, np.arange(40))
    np.testing.assert_array_equal(test, np.arange(40, 60))
    np.testing.assert_array_equal(index.labels[train], truth["train"][1])
    np.testing.assert_array_equal(index.labels[test], truth["t10k"][1])
    assert index.labels.dtype == np.int64 and index.roles.dtype == np.dtype("<U8")
    img = index.image(41)
    assert img.mode == "L" and img.size == (28, 28)
    np.testing.assert_array_equal(np.asarray(img), truth["t10k"][0][1])
    # the same reader serves Fashion-MNIST from its own folder
    shutil.copytree(root / "mnist", root / "fashion-mnist")
    assert len(load_image_dataset("fashion_mnist", root, expected=None)) == 60


def test_idx_files_are_decoded_once_per_version_and_each_index_is_its_own(mnist_root, monkeypatch):
    """A batch's second run reuses the decoded idx files (read-only); its index is a fresh, writable
    copy, so a run cannot change another's images or labels; a rewritten file is read again."""
    from dmlrepro.data.images import _loaders
    root, truth = mnist_root
    calls = []
    decompress = gzip.decompress
    monkeypatch.setattr(_loaders.gzip, "decompress", lambda data: calls.append(1) or decompress(data))
    first = load_image_dataset("mnist", root, expected=None)
    assert len(calls) == 4
    first.array[0] = 0
    first.labels[:] = -1
    second = load_image_dataset("mnist", root, expected=None)
    assert len(calls) == 4  # nothing decompressed again
    np.testing.assert_array_equal(second.array[:40], truth["train"][0])
    np.testing.assert_array_equal(second.labels[40:], truth["t10k"][1])
    assert second.array.flags.writeable and not read_idx(root / "mnist" / "t10k-labels-idx1-ubyte.gz").flags.writeable
    _write_mnist(root / "mnist", n_test_per_class=3, seed=1)  # a new version of the files
    assert len(load_image_dataset("mnist", root, expected=None)) == 70 and len(calls) == 8


def test_count_check_names_the_file_and_both_counts(mnist_root):
    root, _ = mnist_root
    with pytest.raises(DmlReproError, match=r"train-labels-idx1-ubyte\.gz: 40 'train' images, expected 60000"):
        load_image_dataset("mnist", root)  # the spec's counts by default
    with pytest.raises(DmlReproError, match=r"t10k-labels-idx1-ubyte\.gz: 20 'test' images, expected 21"):
        load_image_dataset("mnist", root, expected={"train": 40, "test": 21})


def test_bad_idx_files(tmp_path):
    _write_mnist(tmp_path / "mnist")
    labels = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    raw = gzip.decompress(labels.read_bytes())
    labels.write_bytes(gzip.compress(raw[:-3]))  # body shorter than the header says
    with pytest.raises(DmlReproError, match=r"train-labels-idx1-ubyte\.gz: idx header says shape \(40,\)"):
        load_image_dataset("mnist", tmp_path, expected=None)
    _truncate(labels)  # truncated gzip stream
    with pytest.raises(DmlReproError, match=r"train-labels-idx1-ubyte\.gz: cannot decompress"):
        load_image_dataset("mnist", tmp_path, expected=None)
    labels.unlink()
    with pytest.raises(DmlReproError, match=r"train-labels-idx1-ubyte\.gz: missing"):
        load_image_dataset("mnist", tmp_path, expected=None)


# ----------------------------------------------------------------------------------- splits
def test_zero_shot_stand_in_split_of_a_same_class_dataset(mnist_root):
    root, _ = mnist_root
    index = load_image_dataset("mnist", root, expected=None)
    split = make_image_split(index, protocol="zero_shot", train_classes=range(5), test_classes=range(5, 10),
                             val_by="images", val_fraction=0.5, seed=3)
    # fit/val: the train images of classes 0-4; test: the test images of classes 5-9
    train_rows = index.rows("train")
    np.testing.assert_array_equal(split.train, train_rows[index.labels[train_rows] < 5])
    test_rows = index.rows("test")
    np.testing.assert_array_equal(split.test, test_rows[index.labels[test_rows] >= 5])
    assert set(index.labels[split.fit]) == set(index.labels[split.val]) == set(range(5))
    # stratified: half of each class's 4 images
    assert np.bincount(index.labels[split.val], minlength=5).tolist() == [2] * 5
    again = make_image_split(index, protocol="zero_shot", train_classes=range(5), test_classes=range(5, 10),
                             val_by="images", val_fraction=0.5, seed=3)
    np.testing.assert_array_equal(again.val, split.val)
    other = make_image_split(index, protocol="zero_shot", train_classes=range(5), test_classes=range(5, 10),
                             val_by="images", val_fraction=0.5, seed=4)
    assert not np.array_equal(other.val, split.val)
    # without class lists, MNIST's train and test share every class: not zero-shot
    with pytest.raises(DmlReproError, match="share 10 classes"):
        make_image_split(index, protocol="zero_shot")
    with pytest.raises(DmlReproError, match="share 1 classes"):
        make_image_split(index, protocol="zero_shot", train_classes=range(5), test_classes=range(4, 10),
                         val_by="images", val_fraction=0.5)


def test_same_class_split(mnist_root):
    root, _ = mnist_root
    index = load_image_dataset("mnist", root, expected=None)
    split = make_image_split(index, protocol="same_class", val_fraction=0.25, seed=0)
    np.testing.assert_array_equal(split.test, index.rows("test"))
    np.testing.assert_array_equal(split.train, index.rows("train"))
    assert len(split.val) == 10 and np.bincount(index.labels[split.val]).tolist() == [1] * 10
    assert split.meta["val_by"] == "images" and split.query is None
    assert len(make_image_split(index, protocol="same_class", val_fraction=0).val) == 0
    with pytest.raises(DmlReproError, match="val_by='classes'"):
        make_image_split(index, protocol="same_class", val_by="classes")
    with pytest.raises(DmlReproError, match="uses every class"):
        make_image_split(index, protocol="same_class", train_classes=range(5))
    with pytest.raises(DmlReproError, match="unknown protocol 'open_set'"):
        make_image_split(index, protocol="open_set")
    with pytest.raises(DmlReproError, match=r"val_fraction=1.0"):
        make_image_split(index, protocol="same_class", val_fraction=1.0)
    with pytest.raises(DmlReproError, match="cannot carve a stratified"):  # 2 val images for 10 classes
        make_image_split(index, protocol="same_class", val_fraction=0.05)


def test_split_save_load_roundtrip(mnist_root, tmp_path):
    root, _ = mnist_root
    index = load_image_dataset("mnist", root, expected=None)
    split = make_image_split(index, protocol="same_class", val_fraction=0.25, seed=1)
    path = tmp_path / "out" / "split.json"
    split.save(path)
    assert _files(path.parent) == ["split.json"]  # no temporary file left
    back = ImageSplit.load(path)
    for part in ("fit", "val", "test"):
        np.testing.assert_array_equal(getattr(back, part), getattr(split, part))
        assert getattr(back, part).dtype == np.int64
    assert back.query is None and back.meta == split.meta
    path.write_text('{"fit": [1, 2], "test": [3]}')
    with pytest.raises(DmlReproError, match=r"split\.json: no list 'val'"):
        ImageSplit.load(path)
    path.write_text('{"fit": [1, 2], "val": [2], "test": [3]}')
    with pytest.raises(DmlReproError, match=r"split\.json: image split: fit and val share 1 rows"):
        ImageSplit.load(path)
    path.write_text("{not json")
    with pytest.raises(DmlReproError, match=r"split\.json: not a JSON split file"):
        ImageSplit.load(path)


# ----------------------------------------------------------------------------------- CIFAR-10
def _write_cifar(folder: Path, per_batch: int = 6) -> dict:
    rng = np.random.default_rng(1)
    base = folder / "src" / "cifar-10-batches-py"
    base.mkdir(parents=True)
    truth = {}
    for b in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        # the real pickles have bytes keys (written by Python 2)
        (base / b).write_bytes(pickle.dumps({b"batch_label": b.encode(), b"labels": labels, b"data": data,
                                             b"filenames": [b"x.png"] * per_batch}))
        truth[b] = (data, labels)
    (base / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"airplane"] * 10}))
    _tgz(folder / "cifar10" / "cifar-10-python.tar.gz", folder / "src", "cifar-10-batches-py")
    return truth


def test_cifar10_loader_reads_the_python_tarball(tmp_path):
    truth = _write_cifar(tmp_path)
    index = load_image_dataset("cifar10", tmp_path, expected={"train": 30, "test": 6})
    assert index.array.shape == (36, 32, 32, 3)
    np.testing.assert_array_equal(index.labels[:6], truth["data_batch_1"][1])
    np.testing.assert_array_equal(index.labels[30:], truth["test_batch"][1])
    # a CIFAR row is the 1024 red, 1024 green, then 1024 blue values, each plane row-major
    row = truth["data_batch_2"][0][4]
    img = index.image(6 + 4)
    assert img.mode == "RGB"
    for x, y in ((0, 0), (5, 3), (31, 17)):
        assert img.getpixel((x, y)) == tuple(int(row[c * 1024 + y * 32 + x]) for c in range(3))
    # an extracted cifar-10-batches-py/ folder is read when the tarball is absent
    (tmp_path / "cifar10" / "cifar-10-python.tar.gz").unlink()
    shutil.move(tmp_path / "src" / "cifar-10-batches-py", tmp_path / "cifar10")
    np.testing.assert_array_equal(load_image_dataset("cifar10", tmp_path, expected=None).array, index.array)


def test_cifar10_bad_archives(tmp_path):
    _write_cifar(tmp_path)
    tarball = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    _truncate(tarball)
    with pytest.raises(DmlReproError, match=r"cifar-10-python\.tar\.gz: cannot read the archive"):
        load_image_dataset("cifar10", tmp_path, expected=None)
    (tmp_path / "src" / "cifar-10-batches-py" / "test_batch").unlink()
    _tgz(tarball, tmp_path / "src", "cifar-10-batches-py")
    with pytest.raises(DmlReproError, match=r"cifar-10-python\.tar\.gz: no member cifar-10-batches-py/test_batch"):
        load_image_dataset("cifar10", tmp_path, expected=None)


# ----------------------------------------------------------------------------------- CUB
CUB_CLASSES = {1: 3, 2: 2, 100: 2, 101: 3, 200: 2}  # class id -> images


def _write_cub(root: Path, classes: dict[int, int] = CUB_CLASSES, value=lambda cls, k: cls,
               grey: tuple[tuple[int, int], ...] = ((2, 0),)) -> list[tuple[str, int]]:
    """A tiny CUB_200_2011.tgz in ``root/raw/cub200`` (with the real top-level attributes.txt):
    ``classes`` maps a class id to its image count, ``value(cls, k)`` an image's pixel value, and
    the ``(cls, k)`` in ``grey`` are single-channel JPEGs."""
    src = root / "src"
    base = src / "CUB_200_2011"
    entries = []
    for cls, n in classes.items():
        for k in range(n):
            rel = f"{cls:03d}.Bird_{cls}/Bird_{cls}_{k:04d}_{100 + k}.jpg"
            _jpeg(base / "images" / rel, value=value(cls, k), mode="L" if (cls, k) in grey else "RGB")
            entries.append((rel, cls))
    (base / "images.txt").write_text("".join(f"{i} {rel}\n" for i, (rel, _) in enumerate(entries, 1)))
    (base / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, (_, c) in enumerate(entries, 1)))
    # the classification split, which the DML protocol ignores
    (base / "train_test_split.txt").write_text("".join(f"{i} {i % 2}\n" for i in range(1, len(entries) + 1)))
    (src / "attributes.txt").write_text("1 has_bill_shape::curved\n")
    _tgz(root / "raw" / "cub200" / "CUB_200_2011.tgz", src, "CUB_200_2011", "attributes.txt")
    return entries


def test_cub_prepare_and_load(tmp_path):
    entries = _write_cub(tmp_path)
    dest = prepare_image_dataset("cub200", tmp_path / "raw", tmp_path / "data")
    assert dest == tmp_path / "data"
    marker = dest / "cub200" / ".CUB_200_2011.tgz.extracted"
    assert marker.read_text().split() == ["CUB_200_2011", "attributes.txt"]
    index = load_image_dataset("cub200", dest, expected={"train": 7, "test": 5})
    assert index.array is None and index.root == dest / "cub200"
    np.testing.assert_array_equal(index.labels, [c for _, c in entries])  # original ids, not remapped
    np.testing.assert_array_equal(index.roles, ["train" if c <= 100 else "test" for _, c in entries])
    assert index.sources[0] == f"CUB_200_2011/images/{entries[0][0]}"
    img = index.image(3)  # the greyscale JPEG of class 2 comes back as RGB
    assert img.mode == "RGB" and img.size == (12, 10)
    assert abs(img.getpixel((5, 5))[0] - 2) <= 2
    # idempotent: a second call leaves the extracted tree alone
    stamp = (dest / "cub200" / "CUB_200_2011" / "images.txt").stat().st_mtime_ns
    prepare_image_dataset("cub200", tmp_path / "raw", tmp_path / "data")
    assert (dest / "cub200" / "CUB_200_2011" / "images.txt").stat().st_mtime_ns == stamp
    # zero-shot split: val carved by classes from the train classes
    split = make_image_split(index, protocol="zero_shot", val_fraction=0.34, seed=0)
    np.testing.assert_array_equal(split.test, index.rows("test"))
    val_classes = set(index.labels[split.val])
    assert len(val_classes) == 1 and not val_classes & set(index.labels[split.fit])
    assert set(index.labels[split.train]) == {1, 2, 100}


def test_cub_prepare_in_place_then_reload(tmp_path):
    _write_cub(tmp_path)
    prepare_image_dataset("cub200", tmp_path / "raw", tmp_path / "raw")
    assert (tmp_path / "raw" / "cub200" / "CUB_200_2011.tgz").is_file()
    assert len(load_image_dataset("cub200", tmp_path / "raw", expected=None)) == 12


def test_truncated_archive_leaves_nothing(tmp_path):
    _write_cub(tmp_path)
    archive = tmp_path / "raw" / "cub200" / "CUB_200_2011.tgz"
    _truncate(archive, 0.6)
    with pytest.raises(DmlReproError, match=r"CUB_200_2011\.tgz: cannot extract \(truncated or damaged"):
        prepare_image_dataset("cub200", tmp_path / "raw", tmp_path / "data")
    assert _files(tmp_path / "data") in ([], ["cub200"])
    with pytest.raises(DmlReproError, match=r"CUB_200_2011/images\.txt: missing"):
        load_image_dataset("cub200", tmp_path / "data", expected=None)
    archive.unlink()
    with pytest.raises(DmlReproError, match=r"CUB_200_2011\.tgz: missing"):
        prepare_image_dataset("cub200", tmp_path / "raw", tmp_path / "data")


def test_interrupted_extraction_is_redone(tmp_path):
    _write_cub(tmp_path)
    stale = tmp_path / "data" / "cub200" / "CUB_200_2011"
    stale.mkdir(parents=True)
    (stale / "images.txt").write_text("1 half/written.jpg\n")  # no marker: an interrupted run
    prepare_image_dataset("cub200", tmp_path / "raw", tmp_path / "data")
    assert len(load_image_dataset("cub200", tmp_path / "data", expected=None)) == 12


def test_cub_bad_annotations_and_images(tmp_path):
    _write_cub(tmp_path)
    root = prepare_image_dataset("cub200", tmp_path / "raw", tmp_path / "data")
    base = root / "cub200" / "CUB_200_2011"
    index = load_image_dataset("cub200", root, expected=None)
    bad = base / "images" / index.sources[5].removeprefix("CUB_200_2011/images/")
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DmlReproError, match=rf"{bad.name}: cannot decode image \(row 5 of cub200\)"):
        index.image(5)
    _truncate(base / "images" / index.sources[6].removeprefix("CUB_200_2011/images/"), 0.5)
    with pytest.raises(DmlReproError, match="cannot decode image"):
        index.image(6)
    with pytest.raises(DmlReproError, match=r"CUB_200_2011/image_class_labels\.txt: 7 'train' images, expected 8"):
        load_image_dataset("cub200", root, expected={"train": 8})
    with pytest.raises(DmlReproError, match=r"image_class_labels\.txt: 7 'train' images, expected 5864 for CUB"):
        load_image_dataset("cub200", root)
    labels = base / "image_class_labels.txt"
    labels.write_text(labels.read_text().replace("12 200", "13 200"))
    with pytest.raises(DmlReproError, match=r"image_class_labels\.txt: its 12 image ids do not match"):
        load_image_dataset("cub200", root, expected=None)
    labels.write_text("1 2 3\n")
    with pytest.raises(DmlReproError, match=r"image_class_labels\.txt:1: expected 2 columns, got 3"):
        load_image_dataset("cub200", root, expected=None)
    labels.unlink()
    with pytest.raises(DmlReproError, match=r"image_class_labels\.txt: missing"):
        load_image_dataset("cub200", root, expected=None)


# ----------------------------------------------------------------------------------- Cars196
CARS_CLASSES = [1, 1, 98, 98, 99, 99, 196, 50]


def _write_cars(root: Path) -> None:
    raw = root / "raw" / "cars196"
    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    annos = np.zeros((1, len(CARS_CLASSES)), dtype=[(f, "O") for f in fields])  # 1 x n struct, as in the real file
    for i, cls in enumerate(CARS_CLASSES):
        rel = f"car_ims/{i + 1:06d}.jpg"
        _jpeg(root / "src" / rel, value=cls)
        annos[0, i] = (rel, np.uint8(3), np.uint8(4), np.uint16(300), np.uint16(200), np.uint8(cls), np.uint8(i % 2))
    raw.mkdir(parents=True)
    scipy.io.savemat(raw / "cars_annos.mat", {"annotations": annos,
                                              "class_names": np.array([["AM General Hummer SUV 2000"]], dtype=object)})
    _tgz(raw / "car_ims.tgz", root / "src", "car_ims")


def test_cars_prepare_and_load(tmp_path):
    _write_cars(tmp_path)
    root = prepare_image_dataset("cars196", tmp_path / "raw", tmp_path / "data")
    assert (root / "cars196" / "cars_annos.mat").is_file()  # the plain file was placed beside the images
    index = load_image_dataset("cars196", root, expected={"train": 5, "test": 3})
    np.testing.assert_array_equal(index.labels, CARS_CLASSES)
    # classes 1-98 train, 99-196 test; the mat's 'test' flag (classification split) is ignored
    np.testing.assert_array_equal(index.roles, ["train"] * 4 + ["test"] * 3 + ["train"])
    assert index.sources[7] == "car_ims/000008.jpg" and index.image(7).size == (12, 10)
    split = make_image_split(index, protocol="zero_shot", val_fraction=0.3, seed=2)
    assert len(set(index.labels[split.val])) == 1 and set(index.labels[split.test]) == {99, 196}


def test_cars_bad_mat(tmp_path):
    folder = tmp_path / "cars196"
    folder.mkdir()
    scipy.io.savemat(folder / "cars_annos.mat", {"annots": np.zeros(3)})
    with pytest.raises(DmlReproError, match=r"cars_annos\.mat: no struct array 'annotations'.*annots"):
        load_image_dataset("cars196", tmp_path, expected=None)
    (folder / "cars_annos.mat").write_bytes(b"MATLAB 5.0 but then garbage")
    with pytest.raises(DmlReproError, match=r"cars_annos\.mat: cannot read the \.mat file"):
        load_image_dataset("cars196", tmp_path, expected=None)
    (folder / "cars_annos.mat").unlink()
    with pytest.raises(DmlReproError, match=r"cars_annos\.mat: missing"):
        load_image_dataset("cars196", tmp_path, expected=None)


# ----------------------------------------------------------------------------------- SOP
def _write_sop(root: Path) -> None:
    base = root / "src" / "Stanford_Online_Products"
    rows = {"train": [(1, 1, "bicycle"), (1, 1, "bicycle"), (2, 2, "chair"), (2, 2, "chair"), (3, 2, "chair")],
            "test": [(11319, 1, "bicycle"), (11319, 1, "bicycle"), (22634, 12, "toaster")]}
    image_id = 0
    for part, items in rows.items():
        lines = ["image_id class_id super_class_id path"]
        for cls, sup, folder in items:
            image_id += 1
            rel = f"{folder}_final/{1000 + cls}_{image_id}.JPG"
            _jpeg(base / rel, value=cls % 256)
            lines.append(f"{image_id} {cls} {sup} {rel}")
        (base / f"Ebay_{part}.txt").write_text("\n".join(lines) + "\n")
    (base / "Ebay_info.txt").write_text("image_id class_id super_class_id path\n")
    _zip(root / "raw" / "sop" / "Stanford_Online_Products.zip", root / "src", "Stanford_Online_Products")


def test_sop_prepare_and_load(tmp_path):
    _write_sop(tmp_path)
    root = prepare_image_dataset("sop", tmp_path / "raw", tmp_path / "data")
    index = load_image_dataset("sop", root, expected={"train": 5, "test": 3})
    np.testing.assert_array_equal(index.labels, [1, 1, 2, 2, 3, 11319, 11319, 22634])
    assert index.sources[0] == "Stanford_Online_Products/bicycle_final/1001_1.JPG"
    assert index.image(7).mode == "RGB"
    with pytest.raises(DmlReproError, match=r"Ebay_test\.txt: 3 'test' images, expected 60502"):
        load_image_dataset("sop", root, expected={"train": 5, "test": 60_502})
    header = root / "sop" / "Stanford_Online_Products" / "Ebay_train.txt"
    header.write_text(header.read_text().replace("image_id class_id", "id class"))
    with pytest.raises(DmlReproError, match=r"Ebay_train\.txt:1: header 'id class super_class_id path'"):
        load_image_dataset("sop", root, expected=None)


def test_truncated_zip_leaves_nothing(tmp_path):
    _write_sop(tmp_path)
    _truncate(tmp_path / "raw" / "sop" / "Stanford_Online_Products.zip", 0.7)
    with pytest.raises(DmlReproError, match=r"Stanford_Online_Products\.zip: cannot extract"):
        prepare_image_dataset("sop", tmp_path / "raw", tmp_path / "data")
    assert _files(tmp_path / "data") in ([], ["sop"])


# ----------------------------------------------------------------------------------- In-shop
INSHOP = [("img/WOMEN/Dresses/id_00000002/02_1_front.jpg", 2, "train"),
          ("img/WOMEN/Dresses/id_00000002/02_2_side.jpg", 2, "train"),
          ("img/MEN/Denim/id_00000007/01_1_front.jpg", 7, "train"),
          ("img/MEN/Denim/id_00000007/01_2_side.jpg", 7, "train"),
          ("img/WOMEN/Skirts/id_00000011/01_1_front.jpg", 11, "train"),
          ("img/WOMEN/Skirts/id_00000011/01_3_back.jpg", 11, "train"),
          ("img/WOMEN/Blouses/id_00000001/02_1_front.jpg", 1, "query"),
          ("img/WOMEN/Blouses/id_00000001/02_2_side.jpg", 1, "gallery"),
          ("img/MEN/Tees/id_00007982/01_1_front.jpg", 7982, "gallery")]


def _write_inshop(root: Path, header_count: int | None = None) -> None:
    raw = root / "raw" / "inshop"
    raw.mkdir(parents=True)
    lines = [str(len(INSHOP) if header_count is None else header_count), "image_name item_id evaluation_status"]
    lines += [f"{path}   id_{item:08d}  {status}" for path, item, status in INSHOP]
    (raw / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    for path, item, _ in INSHOP:
        _jpeg(root / "src" / path, value=item % 256)
    _zip(raw / "img.zip", root / "src", "img")


def test_inshop_prepare_load_and_query_gallery_split(tmp_path):
    _write_inshop(tmp_path)
    root = prepare_image_dataset("inshop", tmp_path / "raw", tmp_path / "data")
    index = load_image_dataset("inshop", root, expected={"train": 6, "query": 1, "gallery": 2})
    np.testing.assert_array_equal(index.labels, [item for _, item, _ in INSHOP])  # id_00000002 -> 2
    np.testing.assert_array_equal(index.rows("query"), [6])
    assert index.path(8) == root / "inshop" / "img/MEN/Tees/id_00007982/01_1_front.jpg"
    assert index.image(8).mode == "RGB"
    split = make_image_split(index, protocol="zero_shot", val_fraction=0.34, seed=0)
    np.testing.assert_array_equal(split.query, [6])
    np.testing.assert_array_equal(split.gallery, [7, 8])
    np.testing.assert_array_equal(split.test, [6, 7, 8])
    assert len(split.val) == 2 and len(set(index.labels[split.val])) == 1
    assert len(split.fit) == 4
    path = tmp_path / "inshop_split.json"
    split.save(path)
    back = ImageSplit.load(path)
    np.testing.assert_array_equal(back.gallery, [7, 8])


def test_inshop_bad_partition_file(tmp_path):
    _write_inshop(tmp_path, header_count=52712)
    folder = tmp_path / "raw"
    with pytest.raises(DmlReproError, match=r"list_eval_partition\.txt:1: says 52712 images but lists 9"):
        load_image_dataset("inshop", folder, expected=None)
    part = folder / "inshop" / "list_eval_partition.txt"
    part.write_text(part.read_text().replace("52712", "9").replace("id_00000007  train", "item7  train"))
    with pytest.raises(DmlReproError, match=r"list_eval_partition\.txt: item_id 'item7' is not of the form"):
        load_image_dataset("inshop", folder, expected=None)
    part.write_text(part.read_text().replace("item7  train", "id_00000007  val"))
    with pytest.raises(DmlReproError, match=r"list_eval_partition\.txt: evaluation_status 'val'"):
        load_image_dataset("inshop", folder, expected=None)
    part.unlink()
    with pytest.raises(DmlReproError, match=r"inshop/list_eval_partition\.txt: missing"):
        load_image_dataset("inshop", folder, expected=None)


# ----------------------------------------------------------------------------------- torch Dataset
def test_image_dataset_items_transform_and_label_remap(tmp_path):
    import torch
    from torchvision.transforms import v2

    from dmlrepro.data.images import ImageDataset

    _write_cars(tmp_path)
    root = prepare_image_dataset("cars196", tmp_path / "raw", tmp_path / "data")
    index = load_image_dataset("cars196", root, expected=None)
    rows = index.rows("test")
    plain = ImageDataset(index, rows)
    image, label, row = plain[1]
    assert isinstance(image, Image.Image) and (label, row) == (99, 5) and len(plain) == 3
    to_tensor = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])
    remapped = ImageDataset(index, rows, to_tensor, remap_labels=True)
    tensor, label, row = remapped[2]
    assert tuple(tensor.shape) == (3, 10, 12) and (label, row) == (1, 6)
    np.testing.assert_array_equal(remapped.classes, [99, 196])
    assert [remapped[k][1] for k in range(3)] == [0, 0, 1]
    with pytest.raises(DmlReproError, match=r"rows must lie in \[0, 8\)"):
        ImageDataset(index, [0, 8])


# ----------------------------------------------------------------------------------- catalog, fetch
def test_catalog_entries_and_specs():
    assert set(IMAGE_DATASETS) == {"mnist", "fashion_mnist", "cifar10", "cub200", "cars196", "sop", "inshop"}
    for spec in IMAGE_DATASETS.values():
        for rel in spec.raw_files:
            assert get_raw_file(rel).relpath == rel  # every raw file resolves through the main catalog
            assert rel.startswith(spec.folder + "/")
        assert set(spec.archives) <= set(spec.raw_files)
        assert spec.protocol == ("same_class" if spec.name in ("mnist", "fashion_mnist", "cifar10") else "zero_shot")
    assert not set(IMAGE_RAW_FILES) & set(RAW_FILES)
    assert IMAGE_DATASETS["mnist"].raw_files[0] in RAW_FILES  # MNIST reused from the main catalog
    assert dict(IMAGE_DATASETS["cub200"].expected) == {"train": 5864, "test": 5924}
    assert dict(IMAGE_DATASETS["cars196"].expected) == {"train": 8054, "test": 8131}
    assert dict(IMAGE_DATASETS["sop"].expected) == {"train": 59551, "test": 60502}
    assert dict(IMAGE_DATASETS["inshop"].expected) == {"train": 25882, "query": 14218, "gallery": 12612}
    assert IMAGE_DATASETS["sop"].recall_ks == (1, 10, 100, 1000)
    assert IMAGE_DATASETS["inshop"].recall_ks == (1, 10, 20, 30, 40, 50)
    assert IMAGE_DATASETS["cub200"].recall_ks == (1, 2, 4, 8, 16, 32)
    assert IMAGE_DATASETS["cifar10"].recall_ks == (1, 2, 4, 8)
    assert IMAGE_RAW_FILES["cub200/CUB_200_2011.tgz"].download_md5 == "97eceeb196236b17998738112f37df78"
    assert IMAGE_RAW_FILES["inshop/img.zip"].url is None
    with pytest.raises(DmlReproError, match="unknown image dataset 'cub'"):
        load_image_dataset("cub", "/nonexistent")


def test_fetch_copies_an_image_raw_file_from_a_mirror(tmp_path):
    _write_inshop(tmp_path)
    mirror = tmp_path / "raw"
    dest = fetch_raw_file("inshop/list_eval_partition.txt", tmp_path / "root", mirror, allow_download=False)
    assert dest.read_bytes() == (mirror / "inshop" / "list_eval_partition.txt").read_bytes()
    assert recorded_sha256(dest) is not None  # no published checksum: trusted on first use
    with pytest.raises(DmlReproError, match=r"inshop/img\.zip: not available .*by hand"):
        fetch_raw_file("inshop/img.zip", tmp_path / "root", tmp_path / "empty", allow_download=False)


# ----------------------------------------------------------------------------------- real MNIST files
MNIST_COUNTS = {"train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
                "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]}


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_real_mnist_and_fashion_mnist(shared_data, name):
    if not (shared_data / IMAGE_DATASETS[name].raw_files[0]).is_file():
        pytest.skip(f"{name} not in the mirror")
    start = time.process_time()  # CPU time: robust to other processes sharing the cores
    index = load_image_dataset(name, shared_data)  # checks 60,000 / 10,000 and 10 classes
    assert time.process_time() - start < 2.0
    assert index.array.shape == (70_000, 28, 28)
    for role, counts in MNIST_COUNTS.items():
        expected = counts if name == "mnist" else [6000 if role == "train" else 1000] * 10
        assert np.bincount(index.labels[index.rows(role)], minlength=10).tolist() == expected
    mean = index.array[index.rows("train")].mean()
    assert abs(mean - (33.318 if name == "mnist" else 72.94)) < 0.01  # the README's pixel means
    split = make_image_split(index, protocol="zero_shot", train_classes=range(5), test_classes=range(5, 10),
                             val_by="images", seed=0)
    assert np.all(index.labels[split.train] < 5) and np.all(index.labels[split.test] >= 5)
    assert np.all(index.roles[split.train] == "train") and np.all(index.roles[split.test] == "test")
    assert abs(len(split.val) - 0.15 * len(split.train)) <= 1


def test_image_index_refuses_inconsistent_fields():
    labels, sources = np.array([3, 4]), np.array(["", ""])
    with pytest.raises(DmlReproError, match=r"toy: unknown role\(s\) \['val'\]"):
        ImageIndex("toy", labels, np.array(["train", "val"]), sources, None, np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DmlReproError, match="toy: image array must be"):
        ImageIndex("toy", labels, np.array(["train", "test"]), sources, None, np.zeros((3, 4, 4), np.uint8))
    with pytest.raises(DmlReproError, match="either an image array or a root"):
        ImageIndex("toy", labels, np.array(["train", "test"]), sources, None, None)
    index = ImageIndex("toy", labels, np.array(["train", "test"]), sources, None, np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DmlReproError, match="toy: unknown role 'val'"):
        index.rows("val")
    with pytest.raises(DmlReproError, match="held in memory"):
        index.path(0)
