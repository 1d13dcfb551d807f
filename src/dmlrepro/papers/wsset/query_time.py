"""Time per step of a similarity search from one raw-text query (the WSSET paper's Fig. 5).

A query arrives as raw text and is answered against a *gallery* of documents. Each method's
search is split into the paper's stages, each timed with :func:`time.perf_counter`:

* ``preprocessing``: raw text -> pointset, with exactly the dataset build's preprocessing
  (:func:`dmlrepro.data.build.build_text_pointsets`: lowercase, tokenise, drop stop words,
  keep words with a vector, unique words weighted by their counts). Same for every method.
* ``encoding``: ours only, the model's forward pass on the query (batch of 1, eval mode,
  ``torch.no_grad``), including the padding of the pointset into a tensor. The EMD methods
  have no encoder: their encoding is recorded as 0 s with ``applicable = False``.
* ``distance``: distances from the query to every gallery document, then the top-k ranking:

  - ``classic_emd``: the classic per-pair loop, ``ot.emd2`` (POT's network simplex) on the
    Euclidean ground cost between the two documents' word vectors, normalised word counts;
  - ``threshold_emd``: Pele & Werman's FastEMD through ``pyemd.emd(..., backend="cpp")`` per
    pair, on histograms over the union of the two documents' words; an optional threshold
    ``t`` replaces the ground distance d by min(d, t) (their thresholded distance);
  - ``pruned_emd`` (not in the paper): the same exact WMD, searched with prefetch and prune
    (:class:`dmlrepro.ot.knn.WmdSearchIndex`, the gallery prepared once): classic EMD's top k,
    the other documents ruled out by lower bounds;
  - ``ours``: Euclidean distances from the query embedding to all precomputed gallery
    embeddings (numpy).

* ``total``: the sum of the three stages (by construction). ``wall_seconds`` is a separate
  clock around the whole query (a sanity check: it is never smaller than ``total``).

One-off setup is excluded from every stage: loading word vectors and the model, embedding the
gallery, and preparing the gallery's per-document arrays (float64 vectors, normalised
weights, word lists), which a search system stores once. Distances run in one process and one
thread (the paper used 20-core multiprocessing for EMD); torch runs on one CPU thread by default
(``torch_threads``), or on the model's GPU if it is on one.
The garbage collector is paused while a query is timed, as :mod:`timeit` does.
"""

from __future__ import annotations

import gc
import logging
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

import numpy as np
import ot
import pandas as pd
import torch
from tqdm import tqdm

from dmlrepro import DmlReproError
from dmlrepro.data.build import _resolve_stop_words, build_text_pointsets
from dmlrepro.data.catalog import get_dataset
from dmlrepro.data.pointsets import Pointsets, normalised_weights, pad_batch
from dmlrepro.data.text_corpora import RawDocument
from dmlrepro.data.word_vectors import WordVectors, load_word_vectors
from dmlrepro.io import atomic_path, write_json
from dmlrepro.models.set_transformer import count_parameters
from dmlrepro.ot.emd import MAX_ITER, ground_cost

__all__ = [
    "METHODS",
    "MEASURED_METHODS",
    "STAGES",
    "METHOD_LABELS",
    "PAPER_DISTANCE_SPEEDUP",
    "PAPER_OURS_PARAMETERS",
    "QueryPreprocessor",
    "ClassicEMDSearch",
    "ThresholdEMDSearch",
    "PrunedEMDSearch",
    "EMD_METHODS",
    "EmbeddingSearch",
    "SearchResult",
    "QueryTiming",
    "rank_top_k",
    "time_query",
    "queries_from_split",
    "stage_statistics",
    "run_query_time",
    "write_query_time",
]

log = logging.getLogger(__name__)

# the paper's Fig. 5 order, with our exact pruned search (not in the paper) beside the other EMDs
METHODS = ("classic_emd", "threshold_emd", "pruned_emd", "bert", "ours")
MEASURED_METHODS = ("classic_emd", "threshold_emd", "pruned_emd", "ours")  # BERT is not part of this pipeline
EMD_METHODS = ("classic_emd", "threshold_emd", "pruned_emd")  # our distance stage's speed-up is against these
STAGES = ("preprocessing", "encoding", "distance", "total")
METHOD_LABELS = {"classic_emd": "classic EMD", "threshold_emd": "Threshold EMD (FastEMD)",
                 "pruned_emd": "exact EMD, pruned k-NN", "bert": "BERT", "ours": "Ours"}
# Fig. 5 text: Euclidean distance on embeddings vs the two EMDs; the model's size
PAPER_DISTANCE_SPEEDUP = {"classic_emd": 905.9, "threshold_emd": 39.625}
PAPER_OURS_PARAMETERS = 4_900_000
EXCLUDED_FROM_TIMING = (
    "word-vector loading",
    "model loading",
    "gallery embeddings (computed once, stored with the gallery)",
    "gallery per-document arrays (float64 vectors, normalised weights, word lists)",
)


# ---------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class QueryPreprocessor:
    """Raw text -> a one-document :class:`Pointsets`, with the dataset build's preprocessing."""

    vectors: WordVectors
    stop_words: frozenset[str] | None
    stop_words_name: str | None = None

    @classmethod
    def from_config(cls, dataset: str, cfg: dict[str, Any] | None, raw_root: str | os.PathLike,
                    vectors: WordVectors | None = None) -> "QueryPreprocessor":
        """The preprocessing ``build_pointsets(dataset, cfg, raw_root)`` applies to text.

        ``cfg`` is the dataset's build config (``vectors``, ``stop_words``); ``vectors`` skips
        loading when the caller already holds them.
        """
        cfg = cfg or {}
        if cfg.get("source", "text") != "text":
            raise DmlReproError(f"query time needs pointsets built from raw text; dataset '{dataset}' "
                                f"has source '{cfg.get('source')}'")
        spec = get_dataset(dataset)
        stop, stop_name = _resolve_stop_words(cfg.get("stop_words", "default"), spec.default_stop_words,
                                              Path(raw_root))
        if vectors is None:
            vectors = load_word_vectors(cfg.get("vectors", "glove50_subset"), raw_root)
        return cls(vectors, None if stop is None else frozenset(stop), stop_name)

    def __call__(self, text: str, query_id: str) -> Pointsets:
        doc = RawDocument(doc_id=query_id, label="query", text=text)
        try:
            return build_text_pointsets([doc], self.vectors, self.stop_words, "error",
                                        source_name=f"query '{query_id}'")
        except DmlReproError as exc:  # with one non-empty list, the only failure is an empty document
            raise DmlReproError(
                f"query '{query_id}' has no word left after preprocessing (no token outside the stop "
                f"list has a vector in '{self.vectors.name}'): {text[:80]!r}") from exc

    def check_matches(self, gallery: Pointsets) -> None:
        """Refuse a gallery built with other word vectors or another stop list than the queries."""
        if gallery.dim != self.vectors.dim:
            raise DmlReproError(f"gallery word vectors have {gallery.dim} dimensions, the query "
                                f"preprocessing's '{self.vectors.name}' has {self.vectors.dim}")
        meta = gallery.meta or {}
        if meta.get("source") not in (None, "text"):
            raise DmlReproError(f"gallery pointsets come from '{meta.get('source')}', not raw text: "
                                "queries preprocessed from raw text would not match them")
        if meta.get("word_vectors") not in (None, self.vectors.name):
            raise DmlReproError(f"gallery built with word vectors '{meta['word_vectors']}', queries "
                                f"with '{self.vectors.name}'")
        if "stop_words" in meta:
            built = (meta["stop_words"] or {}).get("count")
            ours = len(self.stop_words) if self.stop_words is not None else None
            if built != ours:
                raise DmlReproError(f"gallery built with a stop list of {built} words, query "
                                    f"preprocessing uses {ours}")


# ---------------------------------------------------------------------------- searches
@dataclass
class SearchResult:
    distances: np.ndarray  # (gallery size,) distance from the query to each gallery document
    top_k: np.ndarray  # gallery row indices, nearest first (ties: lower index first)


class Search(Protocol):
    name: str
    uses_encoder: bool

    def encode(self, query: Pointsets) -> Any: ...

    def distances(self, query: Any) -> np.ndarray: ...


def rank_top_k(distances: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest distances, nearest first; equal distances by lower index."""
    d = np.asarray(distances)
    k = min(int(k), len(d))
    idx = np.argpartition(d, k - 1)[:k] if k < len(d) else np.arange(len(d))
    return idx[np.lexsort((idx, d[idx]))]


class ClassicEMDSearch:
    """Exact EMD (WMD) to every gallery document: ``ot.emd2`` on each pair, one after another."""

    name = "classic_emd"
    uses_encoder = False

    def __init__(self, gallery: Pointsets):
        self._docs = [(v.astype(np.float64), normalised_weights(w)) for v, w in map(gallery.doc, range(len(gallery)))]

    def encode(self, query: Pointsets) -> Pointsets:  # pragma: no cover - never called
        raise DmlReproError("classic EMD has no encoder")

    def distances(self, query: Pointsets) -> np.ndarray:
        xq, wq = query.doc(0)
        xq, a = xq.astype(np.float64), normalised_weights(wq)
        out = np.empty(len(self._docs))
        for j, (xg, b) in enumerate(self._docs):
            out[j] = ot.emd2(a, b, ground_cost(xq, xg), numItermax=MAX_ITER)
        return out


class PrunedEMDSearch:
    """Exact EMD k-NN with prefetch and prune (:class:`dmlrepro.ot.knn.WmdSearchIndex`), not in the paper.

    The same exact WMD as classic EMD, but only the ``k`` neighbours are guaranteed: the other
    gallery documents are ruled out by lower bounds and get ``inf`` as their distance, so
    :func:`rank_top_k` returns exactly classic EMD's top ``k`` (ties by lower index as well).
    """

    name = "pruned_emd"
    uses_encoder = False

    def __init__(self, gallery: Pointsets, k: int):
        from dmlrepro.ot.knn import WmdSearchIndex
        self._index = WmdSearchIndex(gallery, min(int(k), len(gallery)))
        self._size = len(gallery)

    def encode(self, query: Pointsets) -> Pointsets:  # pragma: no cover - never called
        raise DmlReproError("pruned EMD has no encoder")

    def distances(self, query: Pointsets) -> np.ndarray:
        idx, dist, _ = self._index.query(*query.doc(0))
        out = np.full(self._size, np.inf)
        out[idx] = dist
        return out


class ThresholdEMDSearch:
    """FastEMD (Pele & Werman, ``pyemd`` C++ backend) to every gallery document, one pair at a time.

    Each pair becomes two histograms over the union of the two documents' words (a word in both
    is one bin, as gensim's WMD does with pyemd), with the Euclidean distances between the
    union's vectors as ground distance, cut at ``threshold`` when one is given. Without word
    strings (pointsets whose vocabulary is unknown) the union keeps every row as its own bin,
    which gives the same EMD. ``threshold=None`` (the default) leaves the ground distance
    exact, so the answer is the exact WMD (up to FastEMD's integer rounding of masses and
    costs, about 1e-6 relative) and the comparison with classic EMD is between solvers alone.
    """

    name = "threshold_emd"
    uses_encoder = False

    def __init__(self, gallery: Pointsets, threshold: float | None = None):
        if threshold is not None and not (np.isfinite(threshold) and threshold > 0):
            raise DmlReproError(f"threshold EMD: threshold must be a positive number or None, got {threshold}")
        import pyemd  # imported here: only this method needs it

        self._emd = pyemd.emd
        self.threshold = None if threshold is None else float(threshold)
        self._docs = [(v.astype(np.float64), normalised_weights(w), gallery.doc_words(j))
                      for j, (v, w) in enumerate(map(gallery.doc, range(len(gallery))))]

    def encode(self, query: Pointsets) -> Pointsets:  # pragma: no cover - never called
        raise DmlReproError("threshold EMD has no encoder")

    def distances(self, query: Pointsets) -> np.ndarray:
        xq, wq = query.doc(0)
        xq, a_q = xq.astype(np.float64), normalised_weights(wq)
        q_words = query.doc_words(0)
        q_bin = {w: i for i, w in enumerate(q_words)}
        u_q = len(a_q)
        out = np.empty(len(self._docs))
        for j, (xg, b_g, g_words) in enumerate(self._docs):
            if q_words and g_words:
                bins = np.fromiter((q_bin.get(w, -1) for w in g_words), np.int64, len(g_words))
            else:
                bins = np.full(len(b_g), -1, np.int64)
            new = bins < 0
            bins[new] = u_q + np.arange(int(new.sum()))
            union = np.concatenate([xq, xg[new]])
            cost = ground_cost(union, union)
            if self.threshold is not None:
                np.minimum(cost, self.threshold, out=cost)
            a = np.zeros(len(union))
            a[:u_q] = a_q
            b = np.zeros(len(union))
            b[bins] = b_g
            out[j] = self._emd(a, b, cost, backend="cpp")
        return out


class EmbeddingSearch:
    """Ours: embed the query with the model, then Euclidean distances to the gallery embeddings."""

    name = "ours"
    uses_encoder = True

    def __init__(self, model: torch.nn.Module, gallery_embeddings: np.ndarray, weight_feature: str = "count"):
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.gallery_embeddings = np.ascontiguousarray(gallery_embeddings, dtype=np.float32)
        self.weight_feature = weight_feature

    @torch.no_grad()
    def encode(self, query: Pointsets) -> np.ndarray:
        x, mask = pad_batch(query, [0], self.weight_feature)
        emb = self.model(torch.from_numpy(x).to(self.device), torch.from_numpy(mask).to(self.device))
        return emb[0].cpu().numpy()  # .cpu() waits for a GPU, so the clock sees the whole forward

    def distances(self, query_embedding: np.ndarray) -> np.ndarray:
        return np.linalg.norm(self.gallery_embeddings - query_embedding, axis=1)


# ---------------------------------------------------------------------------- one timed query
@dataclass
class QueryTiming:
    method: str
    query_id: str
    preprocessing: float
    encoding: float
    distance: float
    wall: float
    n_query_words: int
    result: SearchResult

    @property
    def total(self) -> float:
        return self.preprocessing + self.encoding + self.distance


def time_query(search: Search, preprocess: QueryPreprocessor, text: str, query_id: str, k: int = 10) -> QueryTiming:
    """Answer one raw-text query with ``search``, timing each stage (see the module docstring)."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        wall_start = time.perf_counter()
        t0 = time.perf_counter()
        query = preprocess(text, query_id)
        t1 = time.perf_counter()
        if search.uses_encoder:
            representation = search.encode(query)
            t2 = time.perf_counter()
        else:
            representation, t2 = query, t1  # no encoder: encoding takes no time by definition
        distances = search.distances(representation)
        top = rank_top_k(distances, k)
        t3 = time.perf_counter()
        timing = QueryTiming(search.name, query_id, t1 - t0, t2 - t1, t3 - t2, 0.0, len(query.weights),
                             SearchResult(distances, top))
        timing.wall = time.perf_counter() - wall_start
    finally:
        if gc_was_enabled:
            gc.enable()
    return timing


# ---------------------------------------------------------------------------- the experiment
def _as_query(item: str | RawDocument, position: int) -> tuple[str, str]:
    if isinstance(item, RawDocument):
        return item.doc_id, item.text
    if isinstance(item, str):
        return f"query[{position}]", item
    raise DmlReproError(f"query {position}: expected raw text (str) or a RawDocument, got {type(item).__name__}")


def queries_from_split(raw_docs: Sequence[RawDocument], pointsets: Pointsets,
                       index: Iterable[int]) -> list[RawDocument]:
    """The raw documents of ``pointsets`` rows ``index`` (e.g. a test split), matched by ``doc_id``."""
    by_id = {d.doc_id: d for d in raw_docs}
    out = []
    for i in np.asarray(list(index), dtype=np.int64):
        doc_id = str(pointsets.doc_ids[i])
        if doc_id not in by_id:
            raise DmlReproError(f"pointset document '{doc_id}' (row {i}) is not among the raw documents")
        out.append(by_id[doc_id])
    return out


def stage_statistics(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and std (ddof=1; 0 for one query) of each method's stages over the queries."""
    missing = [c for c in ("method", "stage", "seconds") if c not in df.columns]
    if missing:
        raise DmlReproError(f"query-time table lacks column(s) {missing}; has {list(df.columns)}")
    grouped = df.groupby(["method", "stage"], sort=False)["seconds"]
    stats = grouped.agg(mean="mean", n="count").reset_index()
    stats["std"] = grouped.std(ddof=1).fillna(0.0).to_numpy()
    return stats[["method", "stage", "mean", "std", "n"]]


def _speedups(stats: pd.DataFrame, stage: str) -> dict[str, float | None]:
    means = {m: v for m, v in stats[stats["stage"] == stage][["method", "mean"]].itertuples(index=False)}
    ours = means.get("ours")
    return {m: (float(means[m] / ours) if ours and m in means else None) for m in EMD_METHODS}


def _environment(model: torch.nn.Module | None) -> dict[str, Any]:
    import pyemd

    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "pot": ot.__version__,
        "pyemd": getattr(pyemd, "__version__", "unknown"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "model_device": str(next(model.parameters()).device) if model is not None else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def run_query_time(queries: Sequence[str | RawDocument], gallery: Pointsets, gallery_embeddings: np.ndarray | None,
                   model: torch.nn.Module, preprocess: QueryPreprocessor, n_queries: int = 20, seed: int = 0,
                   k: int = 10, gallery_size: int | None = None, threshold: float | None = None,
                   weight_feature: str = "count", methods: Sequence[str] = MEASURED_METHODS,
                   torch_threads: int | None = 1, progress: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Time ``n_queries`` raw-text queries with each method against ``gallery``.

    ``queries``: candidate query texts (str, or :class:`RawDocument` to keep their ids); they
    should not be gallery documents (pass a test split's texts and a train split's gallery).
    ``n_queries + 1`` distinct ones are drawn with ``seed``: the first is a warm-up query run
    by every method and not recorded. ``gallery_embeddings``: the model's embeddings of the
    gallery rows (None: computed here, outside the timing). ``gallery_size``: when smaller
    than the gallery, a seeded random subset of that size (rows and embeddings together).
    ``threshold``: the threshold EMD's ground-distance cut (None: no cut). ``torch_threads``:
    torch's CPU threads while timing (restored afterwards; None leaves them): 1 by default, as
    the EMD loops use one core, and because extra threads on a busy machine can slow a batch of
    one down many times over.

    Returns the tidy table (one row per method x query x stage: ``method, query, query_id,
    stage, seconds, applicable, wall_seconds, n_query_words``) and a summary dict (per-stage
    mean/std, speed-ups of ours' distance stage, parameter count, settings, environment).
    Every query is answered by all methods in turn, so a slow drift of the machine's load
    affects them alike.
    """
    unknown = [m for m in methods if m not in MEASURED_METHODS]
    if unknown or not methods:
        raise DmlReproError(f"unknown query-time method(s) {unknown or methods}; known: {', '.join(MEASURED_METHODS)}")
    if n_queries < 1 or k < 1:
        raise DmlReproError(f"n_queries and k must be >= 1, got n_queries={n_queries}, k={k}")
    if len(queries) < n_queries + 1:
        raise DmlReproError(f"query time needs n_queries + 1 = {n_queries + 1} query texts (one is a "
                            f"warm-up), got {len(queries)}")
    preprocess.check_matches(gallery)

    # gallery subset and embeddings: setup, not timed
    if gallery_embeddings is not None:
        gallery_embeddings = np.asarray(gallery_embeddings)
        if gallery_embeddings.ndim != 2 or gallery_embeddings.shape[0] != len(gallery):
            raise DmlReproError(f"gallery embeddings of shape {gallery_embeddings.shape} do not match the "
                                f"gallery's {len(gallery)} documents")
    if gallery_size is not None and gallery_size < 1:
        raise DmlReproError(f"gallery_size must be >= 1 or None, got {gallery_size}")
    if gallery_size is not None and gallery_size < len(gallery):
        rows = np.sort(np.random.default_rng([seed, 1]).choice(len(gallery), gallery_size, replace=False))
        gallery = gallery.subset(rows)
        gallery_embeddings = None if gallery_embeddings is None else gallery_embeddings[rows]
    elif gallery_size is not None and gallery_size > len(gallery):
        log.warning("gallery_size %d exceeds the gallery (%d documents); using all of them", gallery_size, len(gallery))
    if getattr(model, "input_dim", gallery.dim + 1) != gallery.dim + 1:
        raise DmlReproError(f"model expects {model.input_dim} input features, the gallery gives {gallery.dim + 1} "
                            "(word vector + weight)")
    if gallery_embeddings is None:
        from dmlrepro.papers.wsset.trainer import embed

        gallery_embeddings = embed(model, gallery, np.arange(len(gallery)), weight_feature=weight_feature)

    picked = np.random.default_rng([seed, 0]).choice(len(queries), n_queries + 1, replace=False)
    chosen = [_as_query(queries[int(i)], int(i)) for i in picked]
    for query_id, text in chosen:  # fail before minutes of EMD, naming the bad query
        preprocess(text, query_id)

    searches: dict[str, Search] = {}
    for method in methods:
        if method == "classic_emd":
            searches[method] = ClassicEMDSearch(gallery)
        elif method == "threshold_emd":
            searches[method] = ThresholdEMDSearch(gallery, threshold)
        elif method == "pruned_emd":
            searches[method] = PrunedEMDSearch(gallery, k)
        else:
            searches[method] = EmbeddingSearch(model, gallery_embeddings, weight_feature)

    previous_threads = torch.get_num_threads()
    if torch_threads is not None:
        torch.set_num_threads(int(torch_threads))
    try:
        env_start = _environment(model)
        (warm_id, warm_text), timed = chosen[0], chosen[1:]
        for search in searches.values():
            time_query(search, preprocess, warm_text, warm_id, k)

        rows: list[dict[str, Any]] = []
        for q, (query_id, text) in enumerate(tqdm(timed, desc=f"query time ({len(gallery)} gallery docs)",
                                                  unit="query", disable=not progress)):
            for method, search in searches.items():
                t = time_query(search, preprocess, text, query_id, k)
                for stage, seconds in zip(STAGES, (t.preprocessing, t.encoding, t.distance, t.total)):
                    rows.append({"method": method, "query": q, "query_id": query_id, "stage": stage, "seconds": seconds,
                                 "applicable": not (stage == "encoding" and not search.uses_encoder),
                                 "wall_seconds": t.wall, "n_query_words": t.n_query_words})
                log.debug("query %s %s: total %.4fs (distance %.4fs)", query_id, method, t.total, t.distance)
    finally:
        torch.set_num_threads(previous_threads)
    df = pd.DataFrame(rows, columns=["method", "query", "query_id", "stage", "seconds", "applicable",
                                     "wall_seconds", "n_query_words"])

    stats = stage_statistics(df)
    totals = df[df["stage"] == "total"]
    summary: dict[str, Any] = {
        "methods": list(methods),
        "methods_not_run": [m for m in METHODS if m not in methods],
        "stages": {m: {r.stage: {"mean": float(r.mean), "std": float(r.std), "n": int(r.n)}
                       for r in stats[stats["method"] == m].itertuples()} for m in methods},
        "speedup_distance": _speedups(stats, "distance"),
        "speedup_total": _speedups(stats, "total"),
        "paper_speedup_distance": dict(PAPER_DISTANCE_SPEEDUP),
        "speedup_definition": "mean time of the method's stage / mean time of ours' stage, over the same queries",
        "ours_parameters": int(count_parameters(model)),
        "paper_ours_parameters": PAPER_OURS_PARAMETERS,
        "n_queries": n_queries,
        "query_ids": [q for q, _ in timed],
        "warmup_query_id": warm_id,
        "gallery_size": len(gallery),
        "gallery_doc_ids_sha": _ids_digest(gallery.doc_ids),
        "mean_query_words": float(totals.groupby("query")["n_query_words"].first().mean()),
        "mean_gallery_words": float(gallery.lengths.mean()),
        "k": int(k),
        "seed": int(seed),
        "threshold": threshold,
        "weight_feature": weight_feature,
        "stop_words": {"name": preprocess.stop_words_name,
                       "count": None if preprocess.stop_words is None else len(preprocess.stop_words)},
        "word_vectors": preprocess.vectors.name,
        "max_wall_minus_total_seconds": float((totals["wall_seconds"] - totals["seconds"]).max()),
        "excluded_from_timing": list(EXCLUDED_FROM_TIMING),
        "environment": {**env_start, "load_average_end": _environment(None)["load_average"]},
    }
    log.info("query time: ours' distance stage faster than %s", ", ".join(
        f"{METHOD_LABELS[m]} {'n/a' if v is None else f'{v:.1f}x'} (paper: "
        f"{PAPER_DISTANCE_SPEEDUP[m] if m in PAPER_DISTANCE_SPEEDUP else 'not in the paper'})"
        for m, v in summary["speedup_distance"].items()))
    return df, summary


def _ids_digest(ids: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:16]


def write_query_time(df: pd.DataFrame, summary: dict[str, Any], csv_path: str | os.PathLike,
                     json_path: str | os.PathLike) -> None:
    """Write the tidy table (CSV) and the summary (JSON), each atomically."""
    with atomic_path(csv_path, suffix=".csv") as tmp:
        df.to_csv(tmp, index=False)
    write_json(json_path, summary)
