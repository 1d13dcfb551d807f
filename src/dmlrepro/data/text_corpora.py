"""Readers for the raw text of the document datasets (BBCSport, Twitter, Amazon, R8), of the
external corpus of "Ours+Ext." (Datafiniti's Consumer Reviews of Amazon Products, from Kaggle), and
of a labelled corpus of your own in ``tsv``, ``folders`` or ``jsonl`` (:func:`read_user_corpus`).

Each reader returns a list of :class:`RawDocument` in a deterministic order, with a ``doc_id``
that says where the document came from (archive member, line number, file and position), so a
document in a pointset file can always be traced back to its text. Encodings follow the
reference snippet of ``shared/data/README.md``: Twitter is UTF-8, the others are read as
Latin-1 (every byte decodes, and the files are plain ASCII with a few Latin-1 characters).
The Kaggle CSVs are read as UTF-8 (see :func:`read_consumer_reviews`).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterable, Literal

from dmlrepro import DmlReproError

log = logging.getLogger(__name__)

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


# ---------------------------------------------------------------- Consumer Reviews (Kaggle)
# The CSV files of Kaggle's datafiniti/consumer-reviews-of-amazon-products archive, in the order
# they are read: the two files that carry ``primaryCategories`` first, so that a review listed in
# several files keeps its category label; then 1429_1.csv (older crawl, no category column).
CONSUMER_REVIEWS_CSVS = (
    "Datafiniti_Amazon_Consumer_Reviews_of_Amazon_Products.csv",
    "Datafiniti_Amazon_Consumer_Reviews_of_Amazon_Products_May19.csv",
    "1429_1.csv",
)
CONSUMER_REVIEWS_TEXT_COLUMN = "reviews.text"
CONSUMER_REVIEWS_LABEL_COLUMN = "primaryCategories"
UNLABELLED = "unlabelled"
_WS = re.compile(r"\s+")


def read_consumer_reviews(zip_path: str | os.PathLike, dedupe: bool = True) -> list[RawDocument]:
    """Datafiniti's "Consumer Reviews of Amazon Products" (Kaggle) from the downloaded zip.

    The archive holds up to three CSV files (:data:`CONSUMER_REVIEWS_CSVS`, matched by base name,
    so a folder prefix inside the archive is fine); those present are read in that order, others
    are ignored. Every file read must have a ``reviews.text`` column. Per row:

    * ``text`` is ``reviews.text``; rows whose text is empty or blank are skipped;
    * ``doc_id`` is ``<csv file name>#<k>``, k the row's position among the file's data rows
      (from 1, header not counted; a quoted multi-line field is one row), so it is stable for a
      given archive and traces back to the row;
    * ``label`` is the product's ``primaryCategories`` when the file has that column and the cell
      is not blank, else ``"unlabelled"``. The corpus serves as unlabelled pretraining data
      ("Ours+Ext."): the labels are recorded for inspection only, never used for training.

    ``dedupe`` (default) keeps only the first occurrence of each review text (compared after
    collapsing whitespace), across and within the files: the Datafiniti files overlap, and one
    review is often listed once per product variant. Distinct reviews with the same wording
    ("Great product") are thus kept once, which is harmless for unlabelled pretraining.

    Files are decoded as UTF-8 (a leading BOM is ignored); a file that is not valid UTF-8 is
    decoded with U+FFFD replacements and a warning (the tokenizer drops non-ASCII anyway).
    """
    zip_path = _require_file(Path(zip_path), "Consumer Reviews of Amazon Products zip")
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DmlReproError(f"{zip_path}: not a readable zip archive ({exc}); if it was downloaded, Kaggle "
                            "may have sent a login page instead: delete it (and its .sha256) and place the "
                            "archive there by hand (see the catalog note)") from exc
    docs: list[RawDocument] = []
    seen: set[str] = set()
    n_blank = n_duplicate = 0
    with archive:
        members = {PurePosixPath(n).name: n for n in archive.namelist() if not n.endswith("/")}
        present = [name for name in CONSUMER_REVIEWS_CSVS if name in members]
        if not present:
            raise DmlReproError(f"{zip_path}: none of the expected CSV files ({', '.join(CONSUMER_REVIEWS_CSVS)}) "
                                f"in the archive (it holds: {', '.join(sorted(members)) or 'nothing'})")
        missing = [name for name in CONSUMER_REVIEWS_CSVS if name not in members]
        if missing:
            log.warning("%s: archive lacks %s; reading %s", zip_path, ", ".join(missing), ", ".join(present))
        for name in present:
            for k, label, text in _read_consumer_reviews_csv(archive, members[name], zip_path):
                if not text.strip():
                    n_blank += 1
                    continue
                if dedupe:
                    key = _WS.sub(" ", text).strip()
                    if key in seen:
                        n_duplicate += 1
                        continue
                    seen.add(key)
                docs.append(RawDocument(doc_id=f"{name}#{k}", label=label, text=text))
    if not docs:
        raise DmlReproError(f"{zip_path}: no review with a non-empty '{CONSUMER_REVIEWS_TEXT_COLUMN}'")
    log.info("%s: %d reviews (%d blank rows and %d duplicate texts skipped)", zip_path, len(docs), n_blank,
             n_duplicate)
    return docs


def _read_consumer_reviews_csv(archive: zipfile.ZipFile, member: str, zip_path: Path) -> list[tuple[int, str, str]]:
    """``(row number, label, text)`` for each data row of CSV ``member`` of ``archive``."""
    where = f"{zip_path}: member '{member}'"
    try:
        return _parse_consumer_reviews_csv(archive, member, where, errors="strict")
    except UnicodeDecodeError as exc:
        log.warning("%s: not valid UTF-8 (%s); decoding it with replacement characters", where, exc.reason)
        return _parse_consumer_reviews_csv(archive, member, where, errors="replace")


def _parse_consumer_reviews_csv(archive: zipfile.ZipFile, member: str, where: str,
                                errors: str) -> list[tuple[int, str, str]]:
    rows: list[tuple[int, str, str]] = []
    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(old_limit, 2**31 - 1))  # a few URL-list cells are long
    try:
        with archive.open(member) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", errors=errors,
                                                          newline="") as stream:
            reader = csv.reader(stream)
            header = next(reader, None)
            if header is None:
                raise DmlReproError(f"{where}: empty file, expected a CSV header with "
                                    f"'{CONSUMER_REVIEWS_TEXT_COLUMN}'")
            header = [h.strip() for h in header]
            if CONSUMER_REVIEWS_TEXT_COLUMN not in header:
                raise DmlReproError(f"{where}: no '{CONSUMER_REVIEWS_TEXT_COLUMN}' column "
                                    f"(columns: {', '.join(header)})")
            text_at = header.index(CONSUMER_REVIEWS_TEXT_COLUMN)
            label_at = header.index(CONSUMER_REVIEWS_LABEL_COLUMN) if CONSUMER_REVIEWS_LABEL_COLUMN in header else None
            for k, row in enumerate(reader, start=1):
                if not row:
                    continue  # a blank line: no row at all
                text = row[text_at] if text_at < len(row) else ""
                label = row[label_at].strip() if label_at is not None and label_at < len(row) else ""
                rows.append((k, label or UNLABELLED, text))
    except csv.Error as exc:
        raise DmlReproError(f"{where}: malformed CSV ({exc})") from exc
    except (zipfile.BadZipFile, OSError) as exc:  # CRC errors, truncated members
        raise DmlReproError(f"{where}: cannot be read ({exc})") from exc
    finally:
        csv.field_size_limit(old_limit)
    return rows


READERS = {"bbcsport": read_bbcsport, "twitter": read_twitter, "amazon": read_amazon, "r8": read_r8,
           "consumer_reviews": read_consumer_reviews}


# ------------------------------------------------------------------------- your own corpus
# A labelled corpus of your own, declared in config (``datasets: <name>: {source: tsv, path: ...}``):
#
# * ``tsv``: one ``label<TAB>text`` line per document (UTF-8; the text is everything after the
#   first tab; blank lines skipped); ``doc_id`` is ``line:N``;
# * ``folders``: ``<path>/<class>/<document file>`` (UTF-8 text files; files in subfolders of a
#   class folder belong to it; hidden files and folders skipped); ``doc_id`` is the file's path
#   relative to ``<path>`` (``<class>/<file>``), documents in class then file-name order;
# * ``jsonl``: one JSON object per line with a text and a label key (``text`` and ``label`` unless
#   ``text_key``/``label_key`` say otherwise; ``id_key`` optionally names a document-id key);
#   ``doc_id`` is that id, else ``line:N``.
#
# With ``labelled=False`` (documents given to ``embed``/``search``) a label may be missing: a
# ``tsv`` line without a tab is an unlabelled document, ``jsonl`` objects need no label key, and a
# folder's top-level files are unlabelled documents. Their label is "".
USER_FORMATS = ("tsv", "folders", "jsonl")


def read_user_corpus(fmt: str, path: str | os.PathLike, *, text_key: str = "text", label_key: str = "label",
                     id_key: str | None = None, labelled: bool = True) -> list[RawDocument]:
    """The documents of a corpus of your own in format ``fmt`` (:data:`USER_FORMATS`) at ``path``.

    Errors are one line naming the file and line (or key): a missing file or folder, an empty
    file, a malformed line, a missing or bad label (empty, or not a string or integer), a class
    folder without documents, a file that is not UTF-8.
    """
    if fmt not in USER_FORMATS:
        raise DmlReproError(f"{path}: unknown corpus format '{fmt}' ({' | '.join(USER_FORMATS)})")
    path = Path(path)
    if fmt == "folders":
        docs = _read_folder_corpus(path, labelled)
    elif fmt == "tsv":
        docs = _read_tsv_corpus(path, labelled)
    else:
        docs = _read_jsonl_corpus(path, text_key, label_key, id_key, labelled)
    if labelled and len({d.label for d in docs}) < 2:
        raise DmlReproError(f"{path}: every document has the label '{docs[0].label}'; metric learning and "
                            "kNN accuracy need at least 2 classes")
    return docs


def _user_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 corpus file, blank lines left out; an empty file is an error."""
    if path.is_dir():
        raise DmlReproError(f"{path}: a folder, not a file (a folder-per-class corpus is source: folders)")
    _require_file(path, "corpus")
    lines = [(n, line) for n, line in enumerate(_read_text(path, "utf-8-sig").splitlines(), start=1) if line.strip()]
    if not lines:
        raise DmlReproError(f"{path}: empty file, no documents")
    return lines


def _read_tsv_corpus(path: Path, labelled: bool) -> list[RawDocument]:
    docs = []
    for n, line in _user_lines(path):
        label, sep, text = line.partition("\t")
        if not sep:
            if labelled:
                raise DmlReproError(f"{path}:{n}: no tab, expected 'label<TAB>text': {line[:60]!r}")
            label, text = "", line
        elif not label.strip():
            raise DmlReproError(f"{path}:{n}: empty label before the tab: {line[:60]!r}")
        docs.append(RawDocument(doc_id=f"line:{n}", label=label.strip(), text=text))
    return docs


def _read_jsonl_corpus(path: Path, text_key: str, label_key: str, id_key: str | None,
                       labelled: bool) -> list[RawDocument]:
    import json

    docs, seen = [], {}
    for n, line in _user_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DmlReproError(f"{path}:{n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise DmlReproError(f"{path}:{n}: expected a JSON object with keys '{text_key}' and '{label_key}', "
                                f"got {type(obj).__name__}")
        if text_key not in obj:
            raise DmlReproError(f"{path}:{n}: no key '{text_key}' (keys: {', '.join(obj) or 'none'}; "
                                "set text_key to the key holding the text)")
        if not isinstance(obj[text_key], str):
            raise DmlReproError(f"{path}:{n}: key '{text_key}' holds {type(obj[text_key]).__name__}, not text")
        label = obj.get(label_key)
        if not labelled and (label is None or label == ""):
            label = ""
        elif label_key not in obj:
            raise DmlReproError(f"{path}:{n}: no key '{label_key}' (keys: {', '.join(obj)}; "
                                "set label_key to the key holding the class)")
        elif isinstance(label, bool) or not isinstance(label, (str, int)) or not str(label).strip():
            raise DmlReproError(f"{path}:{n}: bad label {label!r} under key '{label_key}' "
                                "(a non-empty string or an integer)")
        doc_id = f"line:{n}"
        if id_key is not None:
            if id_key not in obj or not str(obj[id_key]).strip():
                raise DmlReproError(f"{path}:{n}: no document id under key '{id_key}' (id_key)")
            doc_id = str(obj[id_key])
            if doc_id in seen:
                raise DmlReproError(f"{path}:{n}: document id '{doc_id}' repeats line {seen[doc_id]}")
            seen[doc_id] = n
        docs.append(RawDocument(doc_id=doc_id, label=str(label).strip(), text=obj[text_key]))
    return docs


def _visible_files(folder: Path) -> list[Path]:
    """Files under ``folder`` (recursively), hidden files and folders left out, in path order."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _read_folder_corpus(root: Path, labelled: bool) -> list[RawDocument]:
    if not root.is_dir():
        if root.exists():
            raise DmlReproError(f"{root}: a file, not a folder (source: folders wants <path>/<class>/<document>)")
        raise DmlReproError(f"{root}: corpus folder not found")
    docs = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            files = _visible_files(entry)
            if not files and labelled:
                raise DmlReproError(f"{entry}: class folder without documents")
            for f in files:
                docs.append(RawDocument(doc_id=f.relative_to(root).as_posix(), label=entry.name,
                                        text=_read_text(f, "utf-8-sig")))
        elif labelled:
            raise DmlReproError(f"{entry}: a file outside the class folders (expected {root}/<class>/<document>)")
        else:
            docs.append(RawDocument(doc_id=entry.name, label="", text=_read_text(entry, "utf-8-sig")))
    if not docs:
        raise DmlReproError(f"{root}: no documents (expected {root}/<class>/<document>)")
    return docs


def write_user_corpus(docs: Iterable[RawDocument], fmt: str, path: str | os.PathLike) -> Path:
    """Write ``docs`` as a corpus in format ``fmt`` that :func:`read_user_corpus` reads back (same
    documents, same order when ``docs`` come in label order): ``tsv``/``jsonl`` one line each
    (whitespace runs in the text become one space), ``folders`` one file ``<label>/<NNNN>.txt`` each."""
    import json

    from dmlrepro.io import write_text

    docs = list(docs)
    path = Path(path)
    if fmt == "folders":
        for n, d in enumerate(docs):
            write_text(path / d.label / f"{n:04d}.txt", d.text)
        return path
    flat = [(d.label, _WS.sub(" ", d.text).strip()) for d in docs]
    if fmt == "tsv":
        write_text(path, "".join(f"{label}\t{text}\n" for label, text in flat))
    elif fmt == "jsonl":
        write_text(path, "".join(json.dumps({"text": text, "label": label}) + "\n" for label, text in flat))
    else:
        raise DmlReproError(f"unknown corpus format '{fmt}' ({' | '.join(USER_FORMATS)})")
    return path


def amazon_sentiment_example(mirror: str | os.PathLike, per_class: int = 40,
                             categories: Iterable[str] = ("kitchen",)) -> list[RawDocument]:
    """A small real corpus for trying your-own-data: the first ``per_class`` positive and negative
    Amazon reviews (Blitzer et al.) of ``categories``, labelled by sentiment, negative first."""
    root = Path(mirror) / "wmd-text" / "amazon"
    paths = [root / c / f"{p}.review" for c in categories for p in ("negative", "positive")]
    docs = read_amazon(paths, label="sentiment")
    return [d for s in ("negative", "positive") for d in [x for x in docs if x.label == s][:per_class]]
