"""Readers of the seven image datasets' real on-disk formats, and :func:`load_image_dataset`.

Each reader builds an :class:`ImageIndex` from the annotation files alone (no JPEG is opened)
and records, per role, the file its count comes from, so that a count check names it.

Roles:

* MNIST, Fashion-MNIST: the idx files' train (60,000) and t10k (10,000) images; read with
  ``np.frombuffer`` on the decompressed bytes, kept in memory.
* CIFAR-10: the pickles ``data_batch_1..5`` (train, 50,000) and ``test_batch`` (test, 10,000),
  read straight from ``cifar-10-python.tar.gz`` (or from an extracted
  ``cifar-10-batches-py/`` folder when the tarball is absent). The pickles are trusted input
  (the archive is checksum-verified by the fetch step).
* CUB-200-2011: ``images.txt`` + ``image_class_labels.txt``; classes 1-100 are train (5,864
  images), 101-200 test (5,924): the zero-shot DML split, not the classification split of
  ``train_test_split.txt`` (5,994/5,794), which is ignored.
* Cars196: ``cars_annos.mat`` (``annotations``: relative_im_path, class, test, bbox_*); classes
  1-98 train (8,054), 99-196 test (8,131); the ``test`` flag (the classification split) is ignored.
* SOP: ``Ebay_train.txt`` / ``Ebay_test.txt`` (header ``image_id class_id super_class_id path``).
* In-shop: ``list_eval_partition.txt`` (line 1: the number of images, line 2: the column names,
  then ``image_name item_id evaluation_status``); roles train/query/gallery as given; labels are
  the item numbers (``id_00000001`` -> 1).
"""

from __future__ import annotations

import gzip
import pickle
import tarfile
import zlib
from pathlib import Path
from typing import Callable, Mapping, TypeVar

import numpy as np

from dmlrepro import DmlReproError
from dmlrepro.data.images._index import ImageIndex
from dmlrepro.data.images._folders import read_image_folder_manifest
from dmlrepro.data.images.catalog import IMAGE_DATASETS, get_image_dataset_spec

# role -> the file whose content defines that role's images (named by count errors)
RoleFiles = dict[str, Path]
T = TypeVar("T")

# Decoded files kept for the interpreter's life, per (resolved path, mtime, size): the runs of a
# `dmlrepro batch` decompress and decode a dataset's files once. What is kept is immutable (bytes,
# read-only arrays); every index is built afresh from it, so no run sees another's changes.
_DECODED: dict[tuple[str, int, int], object] = {}
_DECODED_MAX = 8


def _cached(path: Path, decode: Callable[[Path], T]) -> T:
    """``decode(path)``, decoded once per version of the file (a rewritten file is read again)."""
    try:
        st = path.stat()
    except OSError:  # missing: the decoder names it
        return decode(path)
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _DECODED:
        if len(_DECODED) >= _DECODED_MAX:
            _DECODED.pop(next(iter(_DECODED)))
        _DECODED[key] = decode(path)
    return _DECODED[key]  # type: ignore[return-value]


def _missing(path: Path, what: str, hint: str) -> DmlReproError:
    return DmlReproError(f"{path}: missing ({what}); {hint}")


def _need(path: Path, what: str, hint: str) -> Path:
    if not path.is_file():
        raise _missing(path, what, hint)
    return path


# ------------------------------------------------------------------------------------- idx files
_IDX_UINT8 = 0x08


def read_idx(path: Path) -> np.ndarray:
    """An idx(.gz) file (LeCun's MNIST format) as a read-only uint8 array, decoded once per version
    of the file in an interpreter; a bad header or a short body is a :class:`DmlReproError` naming
    the file."""
    return _cached(Path(path), _decode_idx)


def _decode_idx(path: Path) -> np.ndarray:
    try:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except FileNotFoundError:
        raise _missing(path, "idx file", "fetch it with 'dmlrepro fetch'") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DmlReproError(f"{path}: cannot decompress: {exc}") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != _IDX_UINT8 or not 1 <= data[3] <= 4:
        raise DmlReproError(f"{path}: not a uint8 idx file (magic {data[:4].hex() or 'empty'})")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) != header + int(np.prod(dims)):
        raise DmlReproError(f"{path}: idx header says shape {tuple(dims)} ({int(np.prod(dims))} bytes) "
                            f"but the body has {len(data) - header} bytes")
    array = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    array.flags.writeable = False
    return array


def _read_mnist_like(name: str, folder: Path) -> tuple[ImageIndex, RoleFiles]:
    images, labels, roles, files = [], [], [], {}
    for role, prefix in (("train", "train"), ("test", "t10k")):
        x_path = folder / f"{prefix}-images-idx3-ubyte.gz"
        y_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
        x, y = read_idx(x_path), read_idx(y_path)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DmlReproError(f"{y_path}: {len(y)} labels of shape {y.shape} for images of shape {x.shape} "
                                f"in {x_path.name}")
        images.append(x)
        labels.append(y.astype(np.int64))
        roles.append(np.full(len(y), role, dtype="<U8"))
        files[role] = y_path
    n = sum(len(y) for y in labels)
    return ImageIndex(name, np.concatenate(labels), np.concatenate(roles), np.full(n, "", dtype="<U1"),
                      None, np.concatenate(images)), files


# ------------------------------------------------------------------------------------- CIFAR-10
_CIFAR_DIR = "cifar-10-batches-py"
_CIFAR_BATCHES = (("train", [f"data_batch_{i}" for i in range(1, 6)]), ("test", ["test_batch"]))
_CIFAR_MEMBERS = frozenset(f"{_CIFAR_DIR}/{b}" for _, batches in _CIFAR_BATCHES for b in batches)


def _unpickle_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = pickle.loads(raw, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as exc:  # pickle raises many types on bad bytes
        raise DmlReproError(f"{where}: not a CIFAR-10 batch pickle: {type(exc).__name__}: {exc}") from exc
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DmlReproError(f"{where}: data {data.shape} and labels {labels.shape} are not a CIFAR-10 batch")
    # rows are 1024 red, 1024 green, 1024 blue values, each plane row-major: (n,3,32,32) -> NHWC
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _read_cifar_members(tar_path: Path) -> dict[str, bytes]:
    """The batch pickles' bytes in ``cifar-10-python.tar.gz``, by member name."""
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(tar_path, "r:gz") as tar:
            for info in tar:
                if info.name in _CIFAR_MEMBERS and info.isfile():
                    members[info.name] = tar.extractfile(info).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise DmlReproError(f"{tar_path}: cannot read the archive (truncated or damaged?): {exc}") from exc
    return members


def _read_cifar10(name: str, folder: Path) -> tuple[ImageIndex, RoleFiles]:
    tar_path = folder / "cifar-10-python.tar.gz"
    if tar_path.is_file():
        source = tar_path
        members = dict(_cached(tar_path, _read_cifar_members))
    elif (folder / _CIFAR_DIR).is_dir():
        source = folder / _CIFAR_DIR
        members = {m: (folder / m).read_bytes() for m in _CIFAR_MEMBERS if (folder / m).is_file()}
    else:
        raise _missing(tar_path, "CIFAR-10 python archive", "fetch it with 'dmlrepro fetch'")
    absent = sorted(_CIFAR_MEMBERS - members.keys())
    if absent:
        raise DmlReproError(f"{source}: no member {absent[0]} (CIFAR-10 python version expected)")
    images, labels, roles = [], [], []
    for role, batches in _CIFAR_BATCHES:
        for b in batches:
            x, y = _unpickle_batch(members[f"{_CIFAR_DIR}/{b}"], f"{source}:{_CIFAR_DIR}/{b}")
            images.append(x)
            labels.append(y)
            roles.append(np.full(len(y), role, dtype="<U8"))
    n = sum(len(y) for y in labels)
    return (ImageIndex(name, np.concatenate(labels), np.concatenate(roles), np.full(n, "", dtype="<U1"), None,
                       np.ascontiguousarray(np.concatenate(images))),
            {"train": source, "test": source})


# ------------------------------------------------------------------------------------- CUB
def _read_columns(path: Path, n_columns: int, what: str, hint: str, skip: int = 0) -> list[list[str]]:
    """Whitespace-separated rows of ``path`` after ``skip`` lines; each must have ``n_columns``."""
    _need(path, what, hint)
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if lineno <= skip or not line.strip():
                continue
            fields = line.split()
            if len(fields) != n_columns:
                raise DmlReproError(f"{path}:{lineno}: expected {n_columns} columns, got {len(fields)}: "
                                    f"{line.strip()[:80]!r}")
            rows.append(fields)
    return rows


def _ints(path: Path, values: list[str], column: str) -> np.ndarray:
    try:
        return np.array([int(v) for v in values], dtype=np.int64)
    except ValueError as exc:
        raise DmlReproError(f"{path}: column {column} is not an integer: {exc}") from None


def _split_by_class(labels: np.ndarray, last_train_class: int) -> np.ndarray:
    return np.where(labels <= last_train_class, "train", "test").astype("<U8")


def _read_cub(name: str, folder: Path) -> tuple[ImageIndex, RoleFiles]:
    base = folder / "CUB_200_2011"
    hint = "run prepare_image_dataset('cub200', ...) to extract CUB_200_2011.tgz"
    images = _read_columns(base / "images.txt", 2, "CUB-200-2011 image list", hint)
    labels_path = base / "image_class_labels.txt"
    classes = _read_columns(labels_path, 2, "CUB-200-2011 class labels", hint)
    ids = _ints(base / "images.txt", [r[0] for r in images], "image_id")
    label_ids = _ints(labels_path, [r[0] for r in classes], "image_id")
    if len(ids) != len(label_ids) or not np.array_equal(ids, label_ids):
        raise DmlReproError(f"{labels_path}: its {len(label_ids)} image ids do not match the {len(ids)} "
                            f"of images.txt line for line")
    labels = _ints(labels_path, [r[1] for r in classes], "class_id")
    sources = np.array([f"CUB_200_2011/images/{r[1]}" for r in images])
    return (ImageIndex(name, labels, _split_by_class(labels, 100), sources, folder, None),
            {"train": labels_path, "test": labels_path})


# ------------------------------------------------------------------------------------- Cars196
def _read_cars(name: str, folder: Path) -> tuple[ImageIndex, RoleFiles]:
    import scipy.io  # only Cars needs it

    path = _need(folder / "cars_annos.mat", "Cars196 annotations", "fetch it with 'dmlrepro fetch'")
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True)
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError... on bad files
        raise DmlReproError(f"{path}: cannot read the .mat file: {type(exc).__name__}: {exc}") from exc
    annos = mat.get("annotations")
    fields = getattr(getattr(annos, "dtype", None), "names", None) or ()
    if "relative_im_path" not in fields or "class" not in fields:
        raise DmlReproError(f"{path}: no struct array 'annotations' with fields relative_im_path and class "
                            f"(found {sorted(k for k in mat if not k.startswith('__'))}, fields {list(fields)})")
    annos = np.atleast_1d(annos)
    try:
        labels = np.array([int(c) for c in annos["class"]], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DmlReproError(f"{path}: annotations.class is not an integer: {exc}") from None
    sources = np.array([str(p) for p in annos["relative_im_path"]])
    return (ImageIndex(name, labels, _split_by_class(labels, 98), sources, folder, None),
            {"train": path, "test": path})


# ------------------------------------------------------------------------------------- SOP
_SOP_HEADER = ["image_id", "class_id", "super_class_id", "path"]


def _read_sop(name: str, folder: Path) -> tuple[ImageIndex, RoleFiles]:
    base = folder / "Stanford_Online_Products"
    hint = "run prepare_image_dataset('sop', ...) to extract Stanford_Online_Products.zip"
    labels, roles, sources, files = [], [], [], {}
    for role in ("train", "test"):
        path = base / f"Ebay_{role}.txt"
        _need(path, f"SOP {role} list", hint)
        with open(path, encoding="utf-8") as f:
            header = f.readline().split()
        if header != _SOP_HEADER:
            raise DmlReproError(f"{path}:1: header {' '.join(header)!r}, expected {' '.join(_SOP_HEADER)!r}")
        rows = _read_columns(path, 4, f"SOP {role} list", hint, skip=1)
        labels.append(_ints(path, [r[1] for r in rows], "class_id"))
        roles.append(np.full(len(rows), role, dtype="<U8"))
        sources.extend(f"Stanford_Online_Products/{r[3]}" for r in rows)
        files[role] = path
    return ImageIndex(name, np.concatenate(labels), np.concatenate(roles), np.array(sources), folder, None), files


# ------------------------------------------------------------------------------------- In-shop
_INSHOP_HEADER = ["image_name", "item_id", "evaluation_status"]


def _read_inshop(name: str, folder: Path) -> tuple[ImageIndex, RoleFiles]:
    path = _need(folder / "list_eval_partition.txt", "In-shop evaluation partition",
                 "download it by hand (see the catalog note of inshop/list_eval_partition.txt)")
    with open(path, encoding="utf-8") as f:
        first, second = f.readline().strip(), f.readline().split()
    if not first.isdigit():
        raise DmlReproError(f"{path}:1: expected the number of images, got {first[:40]!r}")
    if second != _INSHOP_HEADER:
        raise DmlReproError(f"{path}:2: header {' '.join(second)!r}, expected {' '.join(_INSHOP_HEADER)!r}")
    rows = _read_columns(path, 3, "In-shop evaluation partition", "", skip=2)
    if len(rows) != int(first):
        raise DmlReproError(f"{path}:1: says {int(first)} images but lists {len(rows)}")
    items = [r[1] for r in rows]
    bad = next((v for v in items if not (v.startswith("id_") and v[3:].isdigit())), None)
    if bad is not None:
        raise DmlReproError(f"{path}: item_id {bad!r} is not of the form id_<digits>")
    roles = np.array([r[2] for r in rows], dtype="<U8")
    unknown = sorted(set(roles.tolist()) - {"train", "query", "gallery"})
    if unknown:
        raise DmlReproError(f"{path}: evaluation_status {unknown[0]!r} is not train, query or gallery")
    labels = np.array([int(v[3:]) for v in items], dtype=np.int64)
    sources = np.array([r[0] for r in rows])
    return ImageIndex(name, labels, roles, sources, folder, None), {r: path for r in ("train", "query", "gallery")}


# ------------------------------------------------------------------------------------- front door
_READERS: dict[str, Callable[[str, Path], tuple[ImageIndex, RoleFiles]]] = {
    "mnist": _read_mnist_like,
    "fashion_mnist": _read_mnist_like,
    "cifar10": _read_cifar10,
    "cub200": _read_cub,
    "cars196": _read_cars,
    "sop": _read_sop,
    "inshop": _read_inshop,
}


def load_image_dataset(name: str, root: str | Path,
                       expected: Mapping[str, int] | None | str = "spec") -> ImageIndex:
    """Index dataset ``name`` from the data root ``root`` (archives already extracted where needed,
    see :func:`prepare_image_dataset`), without decoding any image file. A name outside the
    catalog is a user's image folder, read from its manifest ``root/<name>/index.json``.

    ``expected``: "spec" (default) checks the role counts and the number of classes against
    :data:`IMAGE_DATASETS`; a mapping role -> count checks those counts only; None checks nothing
    (tests on tiny datasets). A differing count is a :class:`DmlReproError` naming the file that
    defines the role and both counts.
    """
    if name not in IMAGE_DATASETS:  # a user's image folder, prepared into a manifest (no counts to check)
        return read_image_folder_manifest(name, root)[0]
    spec = get_image_dataset_spec(name)
    folder = Path(root) / spec.folder
    index, role_files = _READERS[name](name, folder)
    if expected is None:
        return index
    if isinstance(expected, str):
        if expected != "spec":
            raise DmlReproError(f"expected={expected!r}: give 'spec', a mapping role -> count, or None")
        counts, n_classes = spec.expected, spec.n_classes
    else:
        counts, n_classes = expected, None
    for role, want in counts.items():
        got = int(np.count_nonzero(index.roles == role))
        if got != want:
            where = role_files.get(role, folder)
            raise DmlReproError(f"{where}: {got} '{role}' images, expected {want} for {spec.paper_name}")
    if n_classes is not None and len(index.classes) != n_classes:
        where = next(iter(role_files.values()), folder)
        raise DmlReproError(f"{where}: {len(index.classes)} classes, expected {n_classes} for {spec.paper_name}")
    return index
