"""A trained WSSET run applied to new documents: what ``dmlrepro embed`` and ``dmlrepro search`` do
for text runs (images: :mod:`dmlrepro.evaluation.image_search`).

A text run directory is ``<workdir>/results/wsset/<dataset>/[<point>/]split<k>/<method>``. Its
``model.pt`` holds the set encoder (architecture, input size, model config with the weight
feature); the dataset's ``results/wsset/<dataset>/pointsets.npz`` records how its documents were
preprocessed (word vectors, stop list; ``meta["preprocessing"]`` for your own corpus, the catalog
names otherwise). New documents go through exactly that preprocessing
(:func:`dmlrepro.data.build.build_text_pointsets`: Kusner's tokenizer, the stop list, words
with a vector, counts), then through the encoder. The catalogued vectors and stop list are
read from ``<workdir>/resources/raw`` (where the run fetched them) unless ``raw_root`` says
otherwise.

Search is exact in both spaces: faiss ``IndexFlatL2`` on the embeddings, Euclidean as the runs
are evaluated (:func:`dmlrepro.evaluation.image_search.search_images`), or exact WMD with the OT
engine's pruned k-NN (:func:`dmlrepro.ot.knn.exact_wmd_knn`), which returns exactly the
exhaustive search's neighbours. A query that is also a gallery document (the same file, or
the same line of the same file) is not its own neighbour. Documents left with no word after
preprocessing are reported and left out.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmlrepro import DmlReproError
from dmlrepro.data.pointsets import Pointsets

__all__ = ["TextRun", "TextDocuments", "is_text_run", "read_documents", "embed_documents", "search_documents"]

log = logging.getLogger(__name__)


def _results_root(run_dir: Path) -> tuple[Path, str] | None:
    """``(<workdir>/results/wsset, dataset)`` of a run directory under ``results/wsset/<dataset>/``,
    else None."""
    parts = run_dir.resolve().parts
    for i in range(len(parts) - 3, -1, -1):
        if parts[i:i + 2] == ("results", "wsset"):
            return Path(*parts[: i + 2]), parts[i + 2]
    return None


def is_text_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is a WSSET run: a set encoder's ``model.pt`` (it records ``input_dim``),
    or a run without a model (WMD kNN) under ``results/wsset/<dataset>/`` beside the dataset's pointsets."""
    run_dir = Path(run_dir)
    model = run_dir / "model.pt"
    if model.is_file():
        import torch
        saved = torch.load(model, map_location="cpu", weights_only=False)
        return isinstance(saved, dict) and "input_dim" in saved and "architecture" in saved
    found = _results_root(run_dir)
    return found is not None and (found[0] / found[1] / "pointsets.npz").is_file()


@dataclass
class TextDocuments:
    """New documents as pointsets, with a display id, an identity key (absolute file [+ line]) and a
    label ("" where the input has none) per document kept."""

    pointsets: Pointsets
    ids: list[str]
    keys: list[str]
    labels: list[str]


class TextRun:
    """A WSSET run's encoder (None for WMD kNN) and the preprocessing of its dataset."""

    def __init__(self, run_dir: str | Path, raw_root: str | Path | None = None):
        import torch

        from dmlrepro.data.build import _resolve_stop_words
        from dmlrepro.data.catalog import WORD_VECTORS
        from dmlrepro.data.word_vectors import load_word_vectors
        from dmlrepro.papers.wsset.trainer import build_model
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise DmlReproError(f"{self.run_dir}: run directory not found")
        found = _results_root(self.run_dir)
        if found is None:
            raise DmlReproError(f"{self.run_dir}: not a WSSET run directory (results/wsset/<dataset>/split<k>/<method>)")
        results, self.dataset = found
        self.pointsets_path = results / self.dataset / "pointsets.npz"
        meta = Pointsets.load(self.pointsets_path).meta
        if meta.get("source") != "text":
            raise DmlReproError(f"{self.pointsets_path}: built from {meta.get('source')}, not raw text: there is "
                                "no preprocessing to apply to new documents")
        prep = meta.get("preprocessing") or {"vectors": meta.get("word_vectors"),
                                             "stop_words": (meta.get("stop_words") or {}).get("name")}
        if prep["vectors"] not in WORD_VECTORS and not Path(str(prep["vectors"])).is_absolute():
            raise DmlReproError(f"{self.pointsets_path}: word vectors '{prep['vectors']}' cannot be found again "
                                "(rebuild the pointsets with this version)")
        self.raw_root = Path(raw_root) if raw_root else results.parents[1] / "resources" / "raw"
        self.vectors = load_word_vectors(prep["vectors"], self.raw_root)
        self.stop_words, _ = _resolve_stop_words(prep["stop_words"], None, self.raw_root)
        self.preprocessing = prep
        self.model, self.weight_feature = None, "count"
        model_file = self.run_dir / "model.pt"
        if model_file.is_file():
            saved = torch.load(model_file, map_location="cpu", weights_only=False)
            if not (isinstance(saved, dict) and "input_dim" in saved):
                raise DmlReproError(f"{model_file}: not a WSSET set encoder (no input_dim)")
            if saved["input_dim"] != self.vectors.dim + 1:
                raise DmlReproError(f"{model_file}: encoder takes {saved['input_dim'] - 1}-d words, the vectors "
                                    f"'{self.vectors.source}' are {self.vectors.dim}-d")
            self.model = build_model(saved["input_dim"], saved["model_cfg"], saved.get("architecture", "self_attention"))
            self.model.load_state_dict(saved["state_dict"])
            self.model.eval()
            self.weight_feature = saved["model_cfg"].get("weight_feature", "count")

    def documents(self, path: str | Path, fmt: str | None = None) -> TextDocuments:
        """``path``'s documents preprocessed like the run's dataset (see :func:`read_documents`)."""
        from dmlrepro.data.build import build_text_pointsets
        docs, keys = read_documents(path, fmt)
        ps = build_text_pointsets(docs, self.vectors, self.stop_words, "drop", str(path))
        dropped = ps.meta["dropped_empty"]["doc_ids"]
        if dropped:
            log.warning("%s: %d document(s) with no word left after preprocessing are left out (first: %s)",
                        path, len(dropped), dropped[0])
        key_of = {d.doc_id: k for d, k in zip(docs, keys)}
        label_of = {d.doc_id: d.label for d in docs}
        ids = ps.doc_ids.tolist()
        return TextDocuments(ps, ids, [key_of[i] for i in ids], [label_of[i] for i in ids])


def read_documents(path: str | Path, fmt: str | None = None):
    """Documents to embed or search, and their identity keys. ``fmt`` (default: by ``path``): a
    folder is ``folders`` (class folders; files at its top are unlabelled), ``.tsv`` is ``tsv``
    (a line without a tab is an unlabelled document), ``.jsonl``/``.json`` is ``jsonl`` (keys
    ``text`` and, optionally, ``label``), any other file is one unlabelled document."""
    from dmlrepro.data.text_corpora import USER_FORMATS, RawDocument, _read_text, read_user_corpus
    path = Path(path)
    if not path.exists():
        raise DmlReproError(f"{path}: not found (a .tsv or .jsonl file, a folder, or one text file)")
    if fmt is None:
        fmt = ("folders" if path.is_dir() else "tsv" if path.suffix.lower() == ".tsv"
               else "jsonl" if path.suffix.lower() in (".jsonl", ".json") else "file")
    root = path.resolve()
    if fmt == "file":
        return [RawDocument(path.name, "", _read_text(path, "utf-8-sig"))], [str(root)]
    if fmt not in USER_FORMATS:
        raise DmlReproError(f"{path}: unknown format '{fmt}' ({' | '.join(USER_FORMATS)})")
    docs = read_user_corpus(fmt, path, labelled=False)
    if fmt == "folders":
        return docs, [str(root / d.doc_id) for d in docs]
    keys = [f"{root}#{d.doc_id}" for d in docs]
    return [RawDocument(f"{path.name}:{d.doc_id}", d.label, d.text) for d in docs], keys


def embed_documents(run: TextRun, docs: TextDocuments, batch_size: int = 64) -> np.ndarray:
    """The run's embedding (n, d) float32 of ``docs``, as its training job embedded its dataset."""
    from dmlrepro.papers.wsset.trainer import embed
    if run.model is None:
        raise DmlReproError(f"{run.run_dir}: no model.pt (WMD kNN has no embedding; search it with --exact-wmd)")
    return embed(run.model, docs.pointsets, np.arange(len(docs.ids)), batch_size=batch_size,
                 weight_feature=run.weight_feature).astype(np.float32)


def search_documents(run: TextRun, query: TextDocuments, gallery: TextDocuments, k: int,
                     exact_wmd: bool = False, processes: int = 1) -> list[list[tuple[int, float]]]:
    """Each query's ``k`` nearest gallery documents as (gallery row, distance), nearest first:
    Euclidean on the run's embedding (faiss), or exact WMD (``exact_wmd``, the pruned k-NN)."""
    if k < 1:
        raise DmlReproError(f"-k {k}: must be at least 1")
    if not exact_wmd:
        from dmlrepro.evaluation.image_search import EmbeddedImages, search_images
        q = EmbeddedImages(embed_documents(run, query), query.keys, query.labels)
        g = EmbeddedImages(embed_documents(run, gallery), gallery.keys, gallery.labels)
        return search_images(q, g, k)
    from dmlrepro.ot.engine import PreparedDocs
    from dmlrepro.ot.knn import exact_wmd_knn
    g_ps, q_ps = gallery.pointsets, query.pointsets
    docs = [g_ps.doc(i) for i in range(len(g_ps))] + [q_ps.doc(j) for j in range(len(q_ps))]
    both = Pointsets.from_documents(docs, np.zeros(len(docs), np.int64), ["-"], [str(i) for i in range(len(docs))])
    position = {key: i for i, key in enumerate(gallery.keys)}
    # a query that is a gallery document searches as that document, which exclude_self leaves out
    ids = [position.get(key, len(g_ps) + j) for j, key in enumerate(query.keys)]
    inside = any(key in position for key in query.keys)
    k_eff = min(k, len(g_ps) - int(inside))
    if k_eff < 1:
        raise DmlReproError("the gallery holds no document besides the query")
    idx, dist, stats = exact_wmd_knn(PreparedDocs.from_pointsets(both), ids, range(len(g_ps)), k_eff,
                                     exclude_self=True, processes=processes)
    log.info("exact WMD k-NN: %d of %d pairs solved exactly, the rest pruned by lower bounds",
             stats["pairs_exact"], stats["pairs_total"])
    return [[(int(i), float(d)) for i, d in zip(irow, drow) if i >= 0] for irow, drow in zip(idx, dist)]
