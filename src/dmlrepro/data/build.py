"""Turn documents into pointsets with Kusner et al.'s (2015) preprocessing.

Per document: lowercase, tokenize with :data:`TOKEN_PATTERN`, drop stop words (the 115-word list
for every dataset but Twitter), keep only tokens that have a word vector, and represent the
document by its unique words (sorted, for determinism) weighted by their counts: Kusner's
``X`` (here ``u x d``) and ``BOW_X``.

:func:`build_pointsets` is the entry point the pipeline calls: it reads a catalog dataset from
its raw text or from Kusner's ``.mat`` file, as its config says.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from dmlrepro import DmlReproError
from dmlrepro.data.catalog import STOP_WORDS_115, WORD_VECTORS, get_dataset
from dmlrepro.data.fetch import check_cached_raw_file
from dmlrepro.data.kusner_mat import load_kusner_mat
from dmlrepro.data.pointsets import Pointsets
from dmlrepro.data.text_corpora import (USER_FORMATS, RawDocument, official_split_of, read_amazon, read_bbcsport,
                                        read_r8, read_twitter, read_user_corpus)
from dmlrepro.data.word_vectors import WordVectors, load_word_vectors

log = logging.getLogger(__name__)

TOKEN_PATTERN = r"[a-z0-9]+(?:['\-.][a-z0-9]+)*"
_TOKEN_RE = re.compile(TOKEN_PATTERN)

EmptyPolicy = Literal["error", "drop"]


def tokenize(text: str) -> list[str]:
    """Lowercased tokens: runs of letters/digits, possibly joined by ``'``, ``-`` or ``.``."""
    return _TOKEN_RE.findall(text.lower())


def load_stop_words(path: str | os.PathLike) -> set[str]:
    """A stop list: whitespace-separated words (one per line in the shipped lists), lowercased."""
    path = Path(path)
    if not path.is_file():
        raise DmlReproError(f"stop-word file not found: {path}")
    words = set(path.read_text(encoding="utf-8").lower().split())
    if not words:
        raise DmlReproError(f"{path}: the stop-word list is empty")
    return words


def build_text_pointsets(docs: Sequence[RawDocument], vectors: WordVectors, stop_words: set[str] | None,
                         empty_documents: EmptyPolicy = "error", source_name: str = "documents", *,
                         dataset: str | None = None, stop_words_name: str | None = None) -> Pointsets:
    """Pointsets of ``docs``: one point per unique in-vocabulary word, weighted by its count.

    ``empty_documents``: a document left with no word (all stop words or out of vocabulary)
    is an error (``"error"``, naming ``source_name`` and the first such document) or is
    dropped (``"drop"``; its id is recorded in ``meta["dropped_empty"]``).
    ``vocab`` holds the words of the dataset (sorted); ``word_ids`` index it.
    """
    if empty_documents not in ("error", "drop"):
        raise DmlReproError(f"empty_documents must be 'error' or 'drop', got '{empty_documents}'")
    if not docs:
        raise DmlReproError(f"{source_name}: no documents")
    stop = frozenset(stop_words or ())

    bags: list[tuple[list[str], np.ndarray]] = []
    kept: list[RawDocument] = []
    dropped: list[str] = []
    for doc in docs:
        counts = Counter(t for t in tokenize(doc.text) if t not in stop and t in vectors)
        if not counts:
            dropped.append(doc.doc_id)
            continue
        words = sorted(counts)
        bags.append((words, np.array([counts[w] for w in words], dtype=np.float64)))
        kept.append(doc)
    if not kept:
        raise DmlReproError(f"{source_name}: every document is empty after preprocessing: no word outside the "
                            f"stop list has a vector in '{vectors.source}' (the wrong vectors for this language?)")
    if dropped and empty_documents == "error":
        raise DmlReproError(f"{source_name}: document '{dropped[0]}' has no in-vocabulary word after "
                            f"preprocessing ({len(dropped)} such documents; set empty_documents: drop "
                            "to leave them out)")
    if dropped:
        log.info("%s: dropped %d empty documents (first: %s)", source_name, len(dropped), dropped[0])

    vocab = sorted({w for words, _ in bags for w in words})
    vocab_index = {w: i for i, w in enumerate(vocab)}
    vocab_vectors = vectors.lookup(vocab)
    label_names = sorted({d.label for d in kept})
    label_index = {name: i for i, name in enumerate(label_names)}

    word_ids = [np.array([vocab_index[w] for w in words], dtype=np.int64) for words, _ in bags]
    point_docs = [(vocab_vectors[ids], weights) for ids, (_, weights) in zip(word_ids, bags)]
    lengths = np.array([len(w) for w, _ in bags])
    meta: dict[str, Any] = {
        "dataset": dataset,
        "source": "text",
        "source_file": source_name,
        "word_vectors": vectors.name,
        "dim": vectors.dim,
        "stop_words": None if stop_words is None else {"name": stop_words_name, "count": len(stop)},
        "tokenizer": TOKEN_PATTERN,
        "lowercase": True,
        "weights": "word counts (BOW_X)",
        "n_documents_read": len(docs),
        "n_documents": len(kept),
        "n_classes": len(label_names),
        "vocab_size": len(vocab),
        "mean_unique_words": float(lengths.mean()),
        "dropped_empty": {"count": len(dropped), "doc_ids": dropped},
    }
    return Pointsets.from_documents(point_docs, [label_index[d.label] for d in kept], label_names,
                                    [d.doc_id for d in kept], word_ids, vocab, meta)


# ------------------------------------------------------------------------------ pipeline entry
_CFG_DEFAULTS: dict[str, Any] = {
    "source": "text",
    "vectors": "glove50_subset",
    "stop_words": "default",
    "empty_documents": "error",
    "label": None,
}


def build_pointsets(dataset: str, cfg: dict[str, Any], raw_root: str | os.PathLike, *,
                    word_vectors: WordVectors | None = None) -> tuple[Pointsets, dict[str, list[np.ndarray]] | None]:
    """Read ``dataset`` under ``raw_root`` as ``cfg`` says; return its pointsets and fixed splits.

    ``cfg`` keys (all optional; defaults in brackets):

    * ``source`` [text]: ``text`` (raw text + word vectors) or ``kusner_mat`` (Kusner's file);
    * ``vectors`` [glove50_subset]: word-vector catalog name or file path (text only);
    * ``stop_words`` [default]: ``default`` (the dataset's usual list: the 115 words, none for
      Twitter), null (none) or a stop-list path (relative to ``raw_root`` or absolute);
    * ``empty_documents`` [error]: ``error`` or ``drop`` (documents with no word left);
    * ``label`` [category]: Amazon only, ``category`` or ``sentiment``.

    The second item is the splits that come with the data, as ``{"train": [...], "test": [...]}``
    lists of 0-based index arrays: Kusner's 5 TR/TE splits (``kusner_mat``), R8's official split
    (one split), else None. ``word_vectors`` skips loading when the caller already holds them.
    """
    cfg = {**_CFG_DEFAULTS, **{k: v for k, v in (cfg or {}).items()}}
    if cfg["source"] in USER_FORMATS:  # your own corpus: no catalog entry, random splits
        return build_user_pointsets(dataset, cfg, raw_root, word_vectors=word_vectors), None
    if cfg["source"] not in ("text", "kusner_mat"):
        raise DmlReproError(f"config key 'source' for '{dataset}': unknown value '{cfg['source']}' "
                            f"(text | kusner_mat | {' | '.join(USER_FORMATS)})")
    spec = get_dataset(dataset)
    raw_root = Path(raw_root)
    source = cfg["source"]

    # the schema fills in label: category everywhere; only another label is meaningless elsewhere
    if cfg["label"] not in (None, "category") and dataset != "amazon":
        raise DmlReproError(f"config key 'label: {cfg['label']}' applies only to amazon, not to '{dataset}'")

    if source == "kusner_mat":
        if spec.mat_file is None:
            raise DmlReproError(f"dataset '{dataset}' has no Kusner .mat file (source: kusner_mat)")
        path = check_cached_raw_file(raw_root / spec.mat_file)
        ps, splits = load_kusner_mat(path, dataset=dataset, empty_documents=cfg["empty_documents"])
        ps.meta["source_file"] = spec.mat_file  # the relpath: meta must not depend on the data root
        return ps, splits
    if not spec.text_files:
        raise DmlReproError(f"dataset '{dataset}' has no raw text (only Kusner's .mat); set source: kusner_mat")

    files = [raw_root / rel for rel in spec.text_files]
    docs = read_raw_documents(dataset, raw_root, cfg["label"])

    stop_words, stop_name = _resolve_stop_words(cfg["stop_words"], spec.default_stop_words, raw_root)
    vectors = word_vectors if word_vectors is not None else load_word_vectors(cfg["vectors"], raw_root)
    # Errors name the real path(s); meta records catalog relpaths, so the output does not depend
    # on where the data root lies.
    source_name = str(files[0].parent) if len(files) > 2 else " + ".join(str(f) for f in files)
    ps = build_text_pointsets(docs, vectors, stop_words, cfg["empty_documents"], source_name,
                              dataset=dataset, stop_words_name=stop_name)
    ps.meta["source_file"] = list(spec.text_files)
    if dataset == "amazon":
        ps.meta["label"] = cfg["label"] or "category"

    if spec.reader == "r8":
        train, test = official_split_of(ps.doc_ids.tolist())
        return ps, {"train": [np.asarray(train, np.int64)], "test": [np.asarray(test, np.int64)]}
    return ps, None


def build_user_pointsets(dataset: str, cfg: dict[str, Any], raw_root: str | os.PathLike, *,
                         word_vectors: WordVectors | None = None) -> Pointsets:
    """Pointsets of a corpus of your own (``cfg["source"]`` in ``tsv | folders | jsonl``, ``cfg["path"]``).

    The same preprocessing as a catalogued corpus (Kusner's tokenizer, stop list, words with a
    vector, counts). ``stop_words: default`` is Kusner's 115-word list (under ``raw_root``);
    ``vectors`` a catalog name or a file. ``meta["preprocessing"]`` records the vectors and stop
    list as they are found again later (catalog names; user files as absolute paths), so that
    ``dmlrepro embed``/``search`` treat new documents exactly like these.
    """
    cfg = {**_CFG_DEFAULTS, **cfg}
    if not cfg.get("path"):
        raise DmlReproError(f"datasets.{dataset}: source '{cfg['source']}' needs 'path' (the corpus file or folder)")
    if cfg.get("label") not in (None, "category"):
        raise DmlReproError(f"datasets.{dataset}: 'label: {cfg['label']}' applies only to amazon; your own "
                            "corpus's labels are the ones in its files")
    path = Path(cfg["path"])
    corpus = {"format": cfg["source"], "path": str(path.resolve()), "text_key": cfg.get("text_key") or "text",
              "label_key": cfg.get("label_key") or "label", "id_key": cfg.get("id_key")}
    docs = read_own_corpus(corpus)
    preprocessing = user_preprocessing(cfg, raw_root)
    stop_words, stop_name = _resolve_stop_words(preprocessing["stop_words"], None, Path(raw_root))
    vectors = word_vectors if word_vectors is not None else load_word_vectors(preprocessing["vectors"], raw_root)
    ps = build_text_pointsets(docs, vectors, stop_words, cfg["empty_documents"], str(path), dataset=dataset,
                              stop_words_name=stop_name)
    ps.meta.update({"source_file": str(cfg["path"]), "own_corpus": corpus, "preprocessing": preprocessing})
    return ps


def read_own_corpus(corpus: dict[str, Any], labelled: bool = True) -> list[RawDocument]:
    """The documents of a user corpus as ``meta["own_corpus"]`` records it (format, path, jsonl keys)."""
    return read_user_corpus(corpus["format"], corpus["path"], text_key=corpus.get("text_key") or "text",
                            label_key=corpus.get("label_key") or "label", id_key=corpus.get("id_key"),
                            labelled=labelled)


def user_preprocessing(cfg: dict[str, Any], raw_root: str | os.PathLike) -> dict[str, str | None]:
    """The vectors and stop list a user corpus's config names, as ``load_word_vectors`` and
    ``_resolve_stop_words`` find them again from any working directory: catalog names and data-root
    relpaths as they are, the user's own files as absolute paths."""
    def own_file(value: str) -> str:
        under_root = Path(raw_root) / value
        return value if not Path(value).is_absolute() and under_root.is_file() else str(Path(value).resolve())

    vectors = str(cfg.get("vectors") or "glove50_subset")
    stop = cfg.get("stop_words", "default")
    if stop == "default":
        stop = STOP_WORDS_115
    elif stop:
        stop = own_file(str(stop))
    return {"vectors": vectors if vectors in WORD_VECTORS else own_file(vectors), "stop_words": stop or None}


def read_raw_documents(dataset: str, raw_root: str | os.PathLike, label: str | None = None) -> list[RawDocument]:
    """Every raw-text document of catalog dataset ``dataset`` under ``raw_root``, in file order."""
    spec = get_dataset(dataset)
    if not spec.text_files:
        raise DmlReproError(f"dataset '{dataset}' has no raw text (only Kusner's .mat)")
    files = [Path(raw_root) / rel for rel in spec.text_files]
    for f in files:
        if not f.is_file():
            raise DmlReproError(f"raw file not found: {f} (fetch it with dmlrepro.data.fetch.fetch_raw_file)")
        check_cached_raw_file(f)  # a file fetch verified must not have changed since
    if spec.reader == "bbcsport":
        return read_bbcsport(files[0])
    if spec.reader == "twitter":
        return read_twitter(files[0])
    if spec.reader == "amazon":
        return read_amazon(files, label=label or "category")
    if spec.reader == "r8":
        return read_r8(files[0], files[1])
    if spec.reader == "consumer_reviews":  # the external corpus of "Ours+Ext." (Kaggle zip)
        from dmlrepro.data.text_corpora import read_consumer_reviews
        return read_consumer_reviews(files[0])
    # a catalog entry without a reader is a programming error, but say so clearly
    raise DmlReproError(f"dataset '{dataset}': no text reader '{spec.reader}'")


def _resolve_stop_words(value: Any, default: str | None, raw_root: Path) -> tuple[set[str] | None, str | None]:
    """The stop words a config value names, and a name to record in ``meta``."""
    if value == "default":
        if default is None:
            return None, None
        return load_stop_words(check_cached_raw_file(raw_root / default)), default
    if value is None or value is False:
        return None, None
    if not isinstance(value, (str, os.PathLike)):
        raise DmlReproError(f"config key 'stop_words': expected 'default', null or a path, got {value!r}")
    path = Path(value)
    if not path.is_absolute() and (raw_root / path).is_file():
        path = raw_root / path
    return load_stop_words(check_cached_raw_file(path)), str(value)
