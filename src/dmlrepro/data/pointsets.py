"""The pointset file: one per dataset, the contract between data, OT, training and evaluation.

Schema of ``pointsets.npz`` (all arrays; documents are concatenated, ``offsets`` delimits them):

=============  ==========================  ==================================================
key            dtype / shape               meaning
=============  ==========================  ==================================================
``vectors``    float32 (W, d)              word vectors of every document's unique words
``weights``    float64 (W,)                word weights (raw counts: BOW_X in Kusner's files)
``offsets``    int64 (n + 1,)              document i is rows ``offsets[i]:offsets[i+1]``
``word_ids``   int64 (W,)                  index into ``vocab`` (-1 when the words are unknown)
``vocab``      str (V,)                    word strings
``labels``     int64 (n,)                  class index per document
``label_names`` str (C,)                   class names, ``labels`` indexes into them
``doc_ids``    str (n,)                    a stable id per document (file name, line number)
``meta``       str ()                      JSON: dataset, source, word vectors, preprocessing
=============  ==========================  ==================================================

A document is a set: its rows are unique words, its weights are positive. The EMD between two
documents uses the weights normalised to sum to one; the encoder sees the raw weight as an
extra feature column (the paper's "word frequency" feature: d + 1 inputs).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dmlrepro import DmlReproError
from dmlrepro.io import save_npz

REQUIRED_KEYS = ("vectors", "weights", "offsets", "labels", "label_names", "doc_ids", "meta")


@dataclass
class Pointsets:
    vectors: np.ndarray
    weights: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray
    label_names: np.ndarray
    doc_ids: np.ndarray
    word_ids: np.ndarray | None = None
    vocab: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        self.weights = np.ascontiguousarray(self.weights, dtype=np.float64)
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.label_names = np.asarray(self.label_names, dtype=str)
        self.doc_ids = np.asarray(self.doc_ids, dtype=str)
        if self.word_ids is None:
            self.word_ids = np.full(len(self.weights), -1, dtype=np.int64)
        if self.vocab is None:
            self.vocab = np.asarray([], dtype=str)
        self.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_documents(
        cls,
        docs: Sequence[tuple[np.ndarray, np.ndarray]],
        labels: Sequence[int],
        label_names: Sequence[str],
        doc_ids: Sequence[str],
        word_ids: Sequence[np.ndarray] | None = None,
        vocab: Sequence[str] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> "Pointsets":
        """Build from a list of ``(vectors (u, d), weights (u,))`` pairs."""
        if not docs:
            raise DmlReproError("no documents to build pointsets from")
        lengths = np.array([len(w) for _, w in docs], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        dim = docs[0][0].shape[1] if docs[0][0].ndim == 2 else 0
        vectors = np.concatenate([np.asarray(v, np.float32).reshape(-1, dim) for v, _ in docs])
        weights = np.concatenate([np.asarray(w, np.float64) for _, w in docs])
        wid = None if word_ids is None else np.concatenate([np.asarray(x, np.int64) for x in word_ids])
        return cls(vectors, weights, offsets, np.asarray(labels), np.asarray(label_names),
                   np.asarray(doc_ids), wid, None if vocab is None else np.asarray(vocab), dict(meta or {}))

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def doc(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Vectors (u, d) and raw weights (u,) of document ``i``."""
        s, e = self.offsets[i], self.offsets[i + 1]
        return self.vectors[s:e], self.weights[s:e]

    def doc_words(self, i: int) -> list[str]:
        s, e = self.offsets[i], self.offsets[i + 1]
        ids = self.word_ids[s:e]
        if len(self.vocab) == 0 or (ids < 0).any():
            return []
        return [str(w) for w in self.vocab[ids]]

    def subset(self, index: Sequence[int]) -> "Pointsets":
        index = np.asarray(index, dtype=np.int64)
        docs = [self.doc(int(i)) for i in index]
        wids = [self.word_ids[self.offsets[i]:self.offsets[i + 1]] for i in index]
        return Pointsets.from_documents(docs, self.labels[index], self.label_names, self.doc_ids[index],
                                        wids, self.vocab, self.meta)

    # ------------------------------------------------------------------ checks and I/O
    def validate(self, source: str = "pointsets") -> None:
        """Raise :class:`DmlReproError` naming the first inconsistency."""
        n = len(self.offsets) - 1
        if self.vectors.ndim != 2:
            raise DmlReproError(f"{source}: 'vectors' must be 2-D, got shape {self.vectors.shape}")
        if n < 1 or self.offsets[0] != 0 or self.offsets[-1] != len(self.vectors) or np.any(np.diff(self.offsets) < 0):
            raise DmlReproError(f"{source}: 'offsets' must rise from 0 to len(vectors)={len(self.vectors)}")
        if len(self.weights) != len(self.vectors) or len(self.word_ids) != len(self.vectors):
            raise DmlReproError(f"{source}: 'weights'/'word_ids' must have one entry per row of 'vectors'")
        if len(self.labels) != n or len(self.doc_ids) != n:
            raise DmlReproError(f"{source}: 'labels' and 'doc_ids' must have {n} entries (one per document)")
        empty = np.flatnonzero(np.diff(self.offsets) == 0)
        if len(empty):
            raise DmlReproError(f"{source}: document '{self.doc_ids[empty[0]]}' has no words "
                                f"({len(empty)} empty documents in all)")
        if np.any(self.weights <= 0) or not np.all(np.isfinite(self.weights)):
            raise DmlReproError(f"{source}: 'weights' must be positive and finite")
        finite = np.isfinite(self.vectors).all(axis=1)
        if not finite.all():
            raise DmlReproError(f"{source}: 'vectors' contains NaN or inf ({self._describe_rows(np.flatnonzero(~finite))})")
        if n and (self.labels.min() < 0 or self.labels.max() >= max(len(self.label_names), 1)):
            raise DmlReproError(f"{source}: 'labels' must index 'label_names' ({len(self.label_names)} classes)")

    def _describe_rows(self, rows: np.ndarray) -> str:
        """``"3 rows; first: word 'x' of document 'd'"``: where bad rows are, for error messages."""
        first = int(rows[0])
        doc = int(np.searchsorted(self.offsets, first, side="right")) - 1
        wid = int(self.word_ids[first])
        word = f"word {str(self.vocab[wid])!r} of " if 0 <= wid < len(self.vocab) else f"row {first}, "
        return f"{len(rows)} row(s); first: {word}document {str(self.doc_ids[doc])!r}"

    def save(self, path: str | os.PathLike) -> None:
        save_npz(path, vectors=self.vectors, weights=self.weights, offsets=self.offsets,
                 word_ids=self.word_ids, vocab=self.vocab, labels=self.labels,
                 label_names=self.label_names, doc_ids=self.doc_ids,
                 meta=np.asarray(json.dumps(self.meta, sort_keys=True)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Pointsets":
        path = Path(path)
        if not path.exists():
            raise DmlReproError(f"pointset file not found: {path}")
        try:
            z = np.load(path, allow_pickle=False)
        except Exception as exc:  # zip or header damage
            raise DmlReproError(f"{path}: not a readable .npz pointset file ({exc})") from exc
        with z:
            missing = [k for k in REQUIRED_KEYS if k not in z.files]
            if missing:
                raise DmlReproError(f"{path}: missing key(s) {missing}; see dmlrepro.data.pointsets for the schema")
            ps = cls.__new__(cls)
            ps.vectors = z["vectors"].astype(np.float32, copy=False)
            ps.weights = z["weights"].astype(np.float64, copy=False)
            ps.offsets = z["offsets"].astype(np.int64, copy=False)
            ps.labels = z["labels"].astype(np.int64, copy=False)
            ps.label_names = z["label_names"].astype(str)
            ps.doc_ids = z["doc_ids"].astype(str)
            ps.word_ids = z["word_ids"] if "word_ids" in z.files else np.full(len(ps.weights), -1, np.int64)
            ps.vocab = z["vocab"].astype(str) if "vocab" in z.files else np.asarray([], str)
            ps.meta = json.loads(str(z["meta"]))
        ps.validate(str(path))
        return ps


def normalised_weights(weights: np.ndarray) -> np.ndarray:
    """Word weights as a probability vector (the mass EMD transports)."""
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()


def pad_batch(ps: Pointsets, index: Sequence[int], weight_feature: str = "count") -> tuple[np.ndarray, np.ndarray]:
    """Stack documents into a zero-padded array ``(b, L, d + 1)`` and a padding mask ``(b, L)``.

    The last feature column is the word weight (``count``: raw count as in the paper's code,
    ``normalised``: share of the document, ``log``: log(1 + count)). ``mask`` is True on padding.
    """
    index = np.asarray(index, dtype=np.int64)
    lengths = ps.lengths[index]
    width = int(lengths.max())
    out = np.zeros((len(index), width, ps.dim + 1), dtype=np.float32)
    mask = np.ones((len(index), width), dtype=bool)
    for row, i in enumerate(index):
        v, w = ps.doc(int(i))
        u = len(w)
        out[row, :u, :-1] = v
        if weight_feature == "count":
            out[row, :u, -1] = w
        elif weight_feature == "normalised":
            out[row, :u, -1] = w / w.sum()
        elif weight_feature == "log":
            out[row, :u, -1] = np.log1p(w)
        else:
            raise DmlReproError(f"unknown weight_feature '{weight_feature}' (count | normalised | log)")
        mask[row, :u] = False
    return out, mask
