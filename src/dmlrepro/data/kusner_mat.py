"""Kusner et al.'s (2015) ``*-emd_tr_te_split.mat`` files: reader, and a writer for tests.

Layout (MATLAB v5, n documents; mkusner/wmd README):

* ``X``: 1 x n cell; cell i is the ``d x u`` word2vec matrix of document i's unique words
  (MATLAB may store a 1-word document as a plain d-vector, and an empty one as ``[]``);
* ``BOW_X``: 1 x n cell of 1 x u word counts;
* ``Y``: 1 x n class labels (numbers);
* ``words``: 1 x n cell of 1 x u cells of strings (Recipe has ``the_words`` instead, known to
  be misaligned with ``X``, so it is not used);
* ``TR``, ``TE``: 5 x n_train and 5 x n_test, rows are splits, entries 1-BASED document indices.

:func:`load_kusner_mat` returns the :class:`Pointsets` and the splits with 0-based indices.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dmlrepro import DmlReproError
from dmlrepro.data.pointsets import Pointsets
from dmlrepro.io import atomic_path

log = logging.getLogger(__name__)

REQUIRED_MAT_KEYS = ("X", "BOW_X", "Y", "TR", "TE")


def _cells(mat: dict[str, Any], key: str, path: Path) -> list[Any]:
    """The entries of a 1 x n (or n x 1) cell array, in order."""
    value = mat[key]
    if not isinstance(value, np.ndarray) or value.dtype != object:
        raise DmlReproError(f"{path}: key '{key}' is not a cell array (got {type(value).__name__} "
                            f"{getattr(value, 'dtype', '')})")
    return list(value.ravel(order="F"))


def _cell_strings(cell: Any) -> list[str]:
    """A MATLAB cell of strings (loaded as an object array of 1-element char arrays) as a list."""
    out = []
    for item in np.asarray(cell, dtype=object).ravel(order="F"):
        while isinstance(item, np.ndarray) and item.dtype == object and item.size == 1:
            item = item.item()
        if isinstance(item, np.ndarray):
            item = "".join(item.ravel().tolist()) if item.size else ""
        out.append(str(item))
    return out


def _label_name(value: Any) -> str:
    value = np.asarray(value).item() if np.ndim(value) else value
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # MATLAB stores class numbers as doubles: "3", not "3.0"
    return str(value)


def load_kusner_mat(path: str | os.PathLike, dataset: str | None = None,
                    empty_documents: str = "error") -> tuple[Pointsets, dict[str, list[np.ndarray]]]:
    """Pointsets and splits (``{"train": [...], "test": [...]}``, 0-based) of a Kusner ``.mat`` file.

    ``empty_documents``: ``"error"`` or ``"drop"`` for documents with no word; dropped documents
    are also removed from the splits, whose indices are renumbered.
    """
    from scipy.io import loadmat  # scipy.io is slow to import; only this route needs it

    path = Path(path)
    if not path.is_file():
        raise DmlReproError(f"Kusner .mat file not found: {path} (fetch it with dmlrepro.data.fetch.fetch_raw_file)")
    if empty_documents not in ("error", "drop"):
        raise DmlReproError(f"empty_documents must be 'error' or 'drop', got '{empty_documents}'")
    try:
        mat = loadmat(str(path))
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5) files
        raise DmlReproError(f"{path}: MATLAB v7.3 files are not supported; save it with -v7 ({exc})") from exc
    except Exception as exc:
        raise DmlReproError(f"{path}: not a readable MATLAB .mat file ({exc})") from exc
    for key in REQUIRED_MAT_KEYS:
        if key not in mat:
            present = sorted(k for k in mat if not k.startswith("__"))
            raise DmlReproError(f"{path}: missing key '{key}' (has {present})")

    X = _cells(mat, "X", path)
    bow = _cells(mat, "BOW_X", path)
    y = np.asarray(mat["Y"]).ravel(order="F")
    n = len(X)
    if len(bow) != n or len(y) != n:
        raise DmlReproError(f"{path}: 'X' has {n} documents but 'BOW_X' {len(bow)} and 'Y' {len(y)}")

    counts = [np.asarray(b, dtype=np.float64).ravel(order="F") for b in bow]
    dim = _infer_dim(X, counts, path)
    vectors = [_doc_matrix(X[i], counts[i], dim, i, path) for i in range(n)]

    words: list[list[str]] | None = None
    if "words" in mat:
        words = [_cell_strings(c) for c in _cells(mat, "words", path)]
        bad = next((i for i in range(n) if len(words[i]) != len(counts[i])), None) if len(words) == n else 0
        if bad is not None:
            log.warning("%s: 'words' does not line up with 'BOW_X' (document %d); words not used", path, bad + 1)
            words = None
    else:
        log.warning("%s: no 'words' key; the pointsets will carry no word strings", path)

    train = _split_rows(mat, "TR", n, path)
    test = _split_rows(mat, "TE", n, path)

    empty = [i for i in range(n) if len(counts[i]) == 0]
    keep = np.array([i for i in range(n) if len(counts[i]) > 0], dtype=np.int64)
    if empty and empty_documents == "error":
        raise DmlReproError(f"{path}: document {empty[0] + 1} (MATLAB index) has no words "
                            f"({len(empty)} empty documents; set empty_documents: drop)")
    if len(keep) == 0:
        raise DmlReproError(f"{path}: every document is empty")
    new_index = np.full(n, -1, dtype=np.int64)
    new_index[keep] = np.arange(len(keep))

    def renumber(parts: list[np.ndarray]) -> list[np.ndarray]:
        return [new_index[p][new_index[p] >= 0] for p in parts]

    label_values = [_label_name(v) for v in y]
    label_names = sorted(set(label_values[i] for i in keep), key=_natural_key)
    label_index = {name: j for j, name in enumerate(label_names)}

    word_ids = None
    vocab = None
    if words is not None:
        vocab = sorted({w for i in keep for w in words[i]})
        vocab_index = {w: j for j, w in enumerate(vocab)}
        word_ids = [np.array([vocab_index[w] for w in words[i]], dtype=np.int64) for i in keep]
    meta = {
        "dataset": dataset,
        "source": "kusner_mat",
        "source_file": str(path),
        "word_vectors": "word2vec_google_news (Kusner et al.)",
        "dim": dim,
        "weights": "word counts (BOW_X)",
        "n_documents_read": n,
        "n_documents": int(len(keep)),
        "n_classes": len(label_names),
        "label_values": "original values of Y, as strings",
        "dropped_empty": {"count": len(empty), "doc_ids": [f"mat:{i + 1}" for i in empty]},
        "n_splits": len(train),
    }
    ps = Pointsets.from_documents([(vectors[i], counts[i]) for i in keep],
                                  [label_index[label_values[i]] for i in keep], label_names,
                                  [f"mat:{i + 1}" for i in keep],  # MATLAB's 1-based index, as in TR/TE
                                  word_ids, vocab, meta)
    return ps, {"train": renumber(train), "test": renumber(test)}


def _natural_key(name: str) -> tuple[int, float | str]:
    # Numeric labels sort as numbers ("2" before "10"), others alphabetically after them.
    try:
        return (0, float(name))
    except ValueError:
        return (1, name)


def _infer_dim(X: list[Any], counts: list[np.ndarray], path: Path) -> int:
    dims = {np.asarray(x).size // len(c) for x, c in zip(X, counts) if len(c) and np.asarray(x).size}
    if len(dims) != 1:
        raise DmlReproError(f"{path}: key 'X': cannot infer one embedding dimension (candidates {sorted(dims)})")
    return dims.pop()


def _doc_matrix(x: Any, count: np.ndarray, dim: int, i: int, path: Path) -> np.ndarray:
    """Document i's vectors as ``(u, dim)``; MATLAB stores ``dim x u``, a 1-word one maybe as a vector."""
    x = np.asarray(x, dtype=np.float32)
    u = len(count)
    if x.size != u * dim:
        raise DmlReproError(f"{path}: key 'X', document {i + 1}: {x.size} values for {u} words of dim {dim} "
                            f"(shape {x.shape})")
    if u == 0:
        return np.zeros((0, dim), np.float32)
    if x.ndim == 2 and x.shape == (dim, u):
        return np.ascontiguousarray(x.T)
    if u == 1:  # a single word saved as a row or a 1-D vector
        return x.reshape(1, dim)
    raise DmlReproError(f"{path}: key 'X', document {i + 1}: shape {x.shape}, expected ({dim}, {u})")


def _split_rows(mat: dict[str, Any], key: str, n: int, path: Path) -> list[np.ndarray]:
    """Rows of TR / TE as 0-based index arrays, checked to lie in 1..n."""
    arr = np.asarray(mat[key])
    if arr.dtype == object or arr.size == 0:
        raise DmlReproError(f"{path}: key '{key}' must be a non-empty numeric matrix (splits x documents)")
    arr = np.atleast_2d(arr)
    values = arr.astype(np.float64)
    if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
        raise DmlReproError(f"{path}: key '{key}' holds non-integer indices")
    values = values.astype(np.int64)
    if values.min() < 1 or values.max() > n:
        raise DmlReproError(f"{path}: key '{key}' indices must be 1-based in 1..{n}, "
                            f"found {values.min()}..{values.max()}")
    return [row - 1 for row in values]


# ------------------------------------------------------------------------------------ writer
def write_kusner_mat(path: str | os.PathLike, docs: Sequence[tuple[np.ndarray, np.ndarray]],
                     labels: Sequence[Any], train_splits: Sequence[Sequence[int]],
                     test_splits: Sequence[Sequence[int]], words: Sequence[Sequence[str]] | None = None) -> None:
    """Write a small file in Kusner's layout (used by tests).

    ``docs`` are ``(vectors (u, d), counts (u,))`` pairs; ``X`` gets ``d x u``. Splits are
    0-based here and written 1-based, one row per split (all rows of one kind equally long).
    """
    from scipy.io import savemat

    n = len(docs)
    X = np.empty((1, n), dtype=object)
    bow = np.empty((1, n), dtype=object)
    for i, (vec, cnt) in enumerate(docs):
        X[0, i] = np.asarray(vec, dtype=np.float64).T  # d x u, as MATLAB
        bow[0, i] = np.asarray(cnt, dtype=np.float64).reshape(1, -1)
    content: dict[str, Any] = {
        "X": X,
        "BOW_X": bow,
        "Y": np.asarray(labels).reshape(1, -1),
        "TR": np.asarray(train_splits, dtype=np.float64).reshape(len(train_splits), -1) + 1,
        "TE": np.asarray(test_splits, dtype=np.float64).reshape(len(test_splits), -1) + 1,
    }
    if words is not None:
        cells = np.empty((1, n), dtype=object)
        for i, ws in enumerate(words):
            inner = np.empty((1, len(ws)), dtype=object)
            for j, w in enumerate(ws):
                inner[0, j] = str(w)
            cells[0, i] = inner
        content["words"] = cells
    with atomic_path(path, suffix=".mat") as tmp:
        savemat(str(tmp), content, do_compression=True)
