"""Readers for the raw text of the document datasets (BBCSport, Twitter, Amazon, R8).

Each reader returns a list of :class:`RawDocument` in a deterministic order, with a ``doc_id``
that says where the document came from (archive member, line number, file and position), so a
document in a pointset file can always be traced back to its text. Encodings follow the
reference snippet of ``shared/data/README.md``: Twitter is UTF-8, the others are read as
Latin-1 (every byte decodes, and the files are plain ASCII with a few Latin-1 characters).
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

from dmlrepro import DmlReproError


@dataclass(frozen=True)
class RawDocument:
    doc_id: str
    label: str
    text: str


def _require_file(path: Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DmlReproError(f"{what} file not found: {path}")
    return path


def _read_text(path: Path, encoding: str) -> str:
    try:
        return path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DmlReproError(f"{path}:{line}: not valid {encoding} text ({exc.reason})") from exc


# --------------------------------------------------------------------------------- BBCSport
def read_bbcsport(zip_path: str | os.PathLike) -> list[RawDocument]:
    """BBCSport from its zip: members ``bbcsport/<class>/NNN.txt`` (737 documents, 5 classes).

    ``doc_id`` is the member name (``bbcsport/athletics/001.txt``), ``label`` the class folder.
    """
    zip_path = _require_file(Path(zip_path), "BBCSport zip")
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DmlReproError(f"{zip_path}: not a readable zip archive ({exc})") from exc
    docs: list[RawDocument] = []
    with archive:
        for name in sorted(archive.namelist()):
            parts = name.split("/")
            if not name.endswith(".txt"):
                continue  # folders and any README in the archive
            if len(parts) != 3:
                raise DmlReproError(f"{zip_path}: member '{name}' is not laid out as <root>/<class>/<file>.txt")
            try:
                text = archive.read(name).decode("latin-1")
            except (zipfile.BadZipFile, OSError) as exc:  # CRC errors, truncated members
                raise DmlReproError(f"{zip_path}: member '{name}' cannot be read ({exc})") from exc
            docs.append(RawDocument(doc_id=name, label=parts[1], text=text))
    if not docs:
        raise DmlReproError(f"{zip_path}: no <root>/<class>/*.txt documents in the archive")
    return docs


# ---------------------------------------------------------------------------------- Twitter
def read_twitter(path: str | os.PathLike) -> list[RawDocument]:
    """Kusner's Twitter file: one ``"label"<TAB>text`` line per tweet (3115 lines, 3 classes).

    The label's quotes are stripped; the text is everything after the first tab (a few tweets
    contain tabs themselves). ``doc_id`` is ``line:N`` with N counted from 1.
    """
    path = _require_file(Path(path), "Twitter")
    return _read_label_tab_text(path, encoding="utf-8", id_prefix="", skip_header=False)


def _read_label_tab_text(path: Path, *, encoding: str, id_prefix: str, skip_header: bool) -> list[RawDocument]:
    """Lines ``label<TAB>text``; blank lines are skipped, a line without a tab is an error."""
    docs: list[RawDocument] = []
    for number, line in enumerate(_read_text(path, encoding).splitlines(), start=1):
        if number == 1 and skip_header and _is_r8_header(line):
            continue
        if not line.strip():
            continue
        label, sep, text = line.partition("\t")
        label = label.strip().strip('"').strip()
        if not sep or not label:
            raise DmlReproError(f"{path}:{number}: malformed line, expected 'label<TAB>text': {line[:60]!r}")
        docs.append(RawDocument(doc_id=f"{id_prefix}line:{number}", label=label, text=text))
    if not docs:
        raise DmlReproError(f"{path}: no documents")
    return docs


# ----------------------------------------------------------------------------------- Amazon
_REVIEW = re.compile(r"<review>(.*?)</review>", re.S)
_REVIEW_TEXT = re.compile(r"<review_text>\s*(.*?)\s*</review_text>", re.S)
AMAZON_CATEGORIES = ("books", "dvd", "electronics", "kitchen")


def read_amazon(dir_or_paths: str | os.PathLike | Iterable[str | os.PathLike],
                label: Literal["category", "sentiment"] = "category") -> list[RawDocument]:
    """Amazon reviews from ``<category>/{positive,negative}.review`` pseudo-XML files (8000, 4 classes).

    ``dir_or_paths`` is the folder holding the category folders, or an explicit list of
    ``.review`` files. The text is the ``<review_text>`` field. ``label`` picks the class: the
    category folder name, or the sentiment (the file name: positive / negative).
    ``doc_id`` is ``<category>/<file>#<k>`` with k the review's position in the file (from 1).
    """
    if label not in ("category", "sentiment"):
        raise DmlReproError(f"unknown Amazon label '{label}' (category | sentiment)")
    if isinstance(dir_or_paths, (str, os.PathLike)):
        root = Path(dir_or_paths)
        if not root.is_dir():
            raise DmlReproError(f"Amazon folder not found: {root}")
        paths = sorted(root.glob("*/*.review"))
        if not paths:
            raise DmlReproError(f"{root}: no <category>/*.review files")
    else:
        paths = [Path(p) for p in dir_or_paths]
    docs: list[RawDocument] = []
    for path in paths:
        _require_file(path, "Amazon review")
        content = _read_text(path, "latin-1")
        category, sentiment = path.parent.name, path.stem
        reviews = list(_REVIEW.finditer(content))
        if not reviews:
            raise DmlReproError(f"{path}: no <review>...</review> blocks")
        if content.count("<review>") != len(reviews):
            raise DmlReproError(f"{path}: {content.count('<review>')} <review> tags but only "
                                f"{len(reviews)} closed blocks (truncated file?)")
        for k, review in enumerate(reviews, start=1):
            body = _REVIEW_TEXT.search(review.group(1))
            if body is None:
                line = content.count("\n", 0, review.start()) + 1
                raise DmlReproError(f"{path}:{line}: review {k} has no <review_text> field")
            docs.append(RawDocument(doc_id=f"{category}/{path.name}#{k}",
                                    label=category if label == "category" else sentiment,
                                    text=body.group(1)))
    return docs


# --------------------------------------------------------------------------------------- R8
def _is_r8_header(line: str) -> bool:
    # The mirror's copy starts with a header "Class\tExample" its uploader added; Cardoso-Cachopo's
    # original files have none, so skip the first line only when it is that header.
    return line.strip().lower().replace(" ", "\t") == "class\texample"


def read_r8(train_path: str | os.PathLike, test_path: str | os.PathLike) -> list[RawDocument]:
    """Reuters R8 (``class<TAB>text`` per line; 5485 train + 2189 test, 8 classes).

    The train documents come first, then the test ones; ``doc_id`` is ``train:line:N`` or
    ``test:line:N`` (N = line number in its file), so the official split is recoverable with
    :func:`official_split_of`.
    """
    docs: list[RawDocument] = []
    for part, path in (("train", train_path), ("test", test_path)):
        path = _require_file(Path(path), f"R8 {part}")
        docs += _read_label_tab_text(path, encoding="latin-1", id_prefix=f"{part}:", skip_header=True)
    return docs


def official_split_of(doc_ids: Iterable[str]) -> tuple[list[int], list[int]]:
    """Positions of the ``train:`` and ``test:`` documents among ``doc_ids`` (R8's split)."""
    train, test = [], []
    for i, doc_id in enumerate(doc_ids):
        if doc_id.startswith("train:"):
            train.append(i)
        elif doc_id.startswith("test:"):
            test.append(i)
        else:
            raise DmlReproError(f"document '{doc_id}' has no 'train:'/'test:' prefix: no official split")
    return train, test


READERS = {"bbcsport": read_bbcsport, "twitter": read_twitter, "amazon": read_amazon, "r8": read_r8}
