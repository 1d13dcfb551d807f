"""Image DML evaluation: Recall@K, NMI, F1, MAP@R and mAP@k on embeddings (papers 001-004).

One module for every image paper. Neighbours and k-means come from faiss (exact ``IndexFlatL2``
search, ``faiss.Kmeans``); neighbour search is chunked over the queries, so memory is
O(chunk_size * k) and a dense n x n distance matrix is never built (SOP: 60,502 x 60,502).

Protocols
---------
* **Leave-one-out** (``gallery=None``; CUB, Cars, SOP, MNIST, ...): every test item is a query and
  the references are all *other* test items. The query's own index is removed from its neighbour
  list (search k+1, drop the own index wherever it appears; if exact duplicates push it out of the
  k+1, the (k+1)-th column is dropped instead), which is robust to duplicates, unlike Roth et al.'s
  "drop column 0".
* **Query -> gallery** (In-shop): queries are searched in a separate gallery; nothing is excluded.

Relevance and lone queries
--------------------------
A reference is relevant to a query iff it has the same label. ``n_rel(q)`` is the number of
relevant references of q (the query itself not counted). **Queries with n_rel = 0 are skipped by
every ranking metric** (pytorch-metric-learning's ``AccuracyCalculator`` rule: MAP@R is undefined
for them). Roth et al. count such queries as misses in Recall@K; the two conventions differ only
when a class has a single test item (or an In-shop query's item is absent from the gallery), which
does not happen on CUB, Cars, SOP or In-shop. If no query has a relevant reference, DmlReproError.

Definitions (all returned as fractions in [0, 1]; multiply by 100 for tables)
-----------------------------------------------------------------------------
Let rel_i(q) = 1 if the i-th nearest reference of q is relevant, P_i(q) = (1/i) sum_{j<=i} rel_j(q).

* **Recall@K** (Song et al. 2016; Roth et al. ``metrics/e_recall.py``): mean over queries of
  1[sum_{i<=K} rel_i(q) >= 1] ("any same-class item among the top K"; not IR recall, which the text
  paper 000 uses in ``retrieval.py``). Recall@1 equals PML's ``precision_at_1``.
* **MAP@R** (Musgrave et al. 2020, "A Metric Learning Reality Check"; PML
  ``mean_average_precision_at_r``): with R = n_rel(q), AP@R(q) = (1/R) sum_{i<=R} P_i(q) rel_i(q);
  MAP@R is the mean over queries.
* **mAP@k** (Roth et al. 2020 ``metrics/mAP_1000.py``, k = 1000):
  AP@k(q) = (1/N(q)) sum_{i<=k} P_i(q) rel_i(q) with Roth's normaliser **N(q) = the number of items
  of q's class in the searched pool, counting q itself when q is in it**: N = n_rel + 1 leave-one-out
  (Roth divides by the class frequency in the test set, self included), N = n_rel query -> gallery
  (Roth has no query -> gallery mAP; this is the same rule, the query not being in the pool).
  Consequences, kept on purpose to match Roth's published numbers: a perfect leave-one-out ranking
  scores n_rel / (n_rel + 1) < 1, and classes with n_rel > k cannot reach 1. It is not the
  textbook AP@k, whose normaliser is min(k, n_rel).
* **NMI** (Roth et al. ``metrics/nmi.py``; PML ``NMI``): k-means with k = number of distinct labels
  (``faiss.Kmeans``, niter = 20, ``seed``; ``min_points_per_centroid = 1`` and no subsampling,
  ``max_points_per_centroid = 1e9``, as in Roth et al.), each point assigned to its nearest
  centroid, then NMI with **arithmetic averaging**, NMI = I(Y; C) / ((H(Y) + H(C)) / 2)
  (scikit-learn's ``normalized_mutual_info_score`` default since 0.22; geometric before), computed
  here from the contingency table with scikit-learn's limit cases (tested equal to it): importing
  scikit-learn costs ~2 s of CPU in every training job for two sums.
* **F1** (Song et al. 2017 "Deep metric learning via facility location"; Roth et al.
  ``metrics/f1.py``): pairwise F1 of the same clustering against the labels. Over unordered pairs,
  TP = #pairs in the same cluster and the same class, precision = TP / #pairs in the same cluster,
  recall = TP / #pairs in the same class, F1 = 2 TP / (#same-cluster + #same-class pairs). Pairs
  are counted from the contingency table (as scikit-learn's ``pair_confusion_matrix``), never by
  an n^2 loop. (Roth's code swaps the names of precision and recall; F1 is symmetric, so the value
  is the same.) If no two points share a class or a cluster, F1 is defined as 1 (both partitions
  are all singletons and agree; scikit-learn's convention for pair-counting scores).

Decisions
---------
* **Which set is clustered (NMI, F1).** Leave-one-out: the test set. Query -> gallery: the union
  query + gallery, with k = number of distinct labels in the union, as Roth et al.'s In-shop
  evaluation (``Confusezius/Deep-Metric-Learning-Baselines`` ``auxiliaries.py:
  eval_metrics_query_and_gallery_dataset`` stacks query and gallery, k = #query classes; In-shop
  query and gallery share their 3,985 classes, so the two k agree). PML would cluster the query set
  only. In-shop papers (004) report Recall@K only, so this choice does not touch a reported number.
* **float32 and ties.** faiss computes squared L2 distances in float32 (as ||x||^2 + ||y||^2 -
  2 x.y for batches of >= 20 queries). Distances closer than float32 rounding (about 1e-7 relative
  to the squared norms) can swap or tie; exact duplicates need not come out at distance exactly 0;
  and the order among tied distances is faiss's, not specified. Results are exact for data whose
  neighbour distances are separated by more than that (the tests use such data); on real
  embeddings, ties between a relevant and an irrelevant reference are the only case where this
  differs from a float64 evaluation.
* ``knn_search`` returns **squared** Euclidean distances (faiss's convention; the ranking is that of
  the Euclidean distance). Embeddings are not normalised here: pass normalised embeddings if the
  paper evaluates on the unit sphere (for them Roth's cosine ``c_*`` metrics equal these).
* K larger than the number of references (gallery size, minus one leave-one-out) is an error, not a
  silent truncation (Roth's code would read faiss's -1 padding as an index).
* Cost: one faiss search of depth max(K, max n_rel, k) is shared by all ranking metrics in
  :func:`evaluate_image_embeddings`. k-means is O(n * n_classes * dim * 20): seconds for CUB/Cars,
  minutes single-threaded for SOP's 11,316 classes (as in Roth et al.).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Iterator

import faiss
import numpy as np

from dmlrepro import DmlReproError

__all__ = [
    "knn_search",
    "recall_at_k",
    "nmi_and_f1",
    "pairwise_f1",
    "normalized_mutual_info",
    "map_at_r",
    "map_at_k",
    "evaluate_image_embeddings",
]

KMEANS_NITER = 20
_NO_SUBSAMPLING = 10**9  # faiss.Kmeans subsamples to 256 points per centroid by default; Roth et al. do not


# --------------------------------------------------------------------------- validation


def _as_embeddings(x, name: str) -> np.ndarray:
    """``x`` as a C-contiguous float32 (n, dim) array; DmlReproError on bad shape or non-finite values."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise DmlReproError(f"{name} must be a 2-D array (n, dim), got shape {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DmlReproError(f"{name} must have at least one row and one column, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DmlReproError(f"{name} must be numeric, got dtype {arr.dtype}")
    with np.errstate(over="ignore"):  # overflow to inf is reported below, with the row
        out = np.ascontiguousarray(arr, dtype=np.float32)
    finite = np.isfinite(out).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        why = "NaN/inf" if not np.isfinite(arr[row]).all() else "a value too large for float32"
        raise DmlReproError(f"{name} contains {why} in row {row}")
    return out


def _as_labels(labels, name: str, n_rows: int, emb_name: str) -> np.ndarray:
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise DmlReproError(f"{name} must be a 1-D array of labels, got shape {arr.shape}")
    if len(arr) != n_rows:
        raise DmlReproError(f"{name} has {len(arr)} labels but {emb_name} has {n_rows} rows")
    return arr


def _label_kind(arr: np.ndarray) -> str:
    return "number" if arr.dtype.kind in "biuf" else "string" if arr.dtype.kind in "US" else "object"


def _check_positive_int(k, name: str) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DmlReproError(f"{name} must be a positive integer, got {k!r}")
    return int(k)


def _check_ks(ks: Iterable[int], name: str) -> list[int]:
    out = [_check_positive_int(k, name) for k in ks]
    if not out:
        raise DmlReproError(f"{name} is empty")
    return out


# --------------------------------------------------------------------------- neighbours


def _knn_chunks(
    query: np.ndarray, gallery: np.ndarray, k: int, exclude_self: bool, chunk_size: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(start, distances, indices)`` for consecutive query chunks (validated float32 inputs)."""
    index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(gallery)
    depth = k + 1 if exclude_self else k
    for start in range(0, query.shape[0], chunk_size):
        stop = min(start + chunk_size, query.shape[0])
        dist, idx = index.search(query[start:stop], depth)
        if exclude_self:
            own = idx == np.arange(start, stop)[:, None]
            # Duplicates (or float32 rounding) may push the own index past depth k+1: then the
            # k+1 found are all others, and the last one is dropped to keep exactly k.
            own[~own.any(axis=1), -1] = True
            keep = ~own
            dist = dist[keep].reshape(stop - start, k)
            idx = idx[keep].reshape(stop - start, k)
        yield start, dist, idx


def knn_search(
    query: np.ndarray, gallery: np.ndarray | None, k: int, *, exclude_self: bool, chunk_size: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours by Euclidean distance (faiss ``IndexFlatL2``), chunked over queries.

    ``gallery=None`` searches ``query`` in itself. ``exclude_self=True`` removes each query's own
    index from its list (search k+1, remove the own index, or the (k+1)-th if duplicates hide it);
    with an explicit gallery this assumes gallery row i is query row i for i < len(query)
    (pytorch-metric-learning's ``ref_includes_query``). Returns ``(distances, indices)``, both
    (n_query, k), nearest first; distances are **squared** L2 in float32, indices int64 into the
    gallery. Memory is O(chunk_size * k). Ties: see the module docstring (float32).
    """
    q = _as_embeddings(query, "query")
    g = q if gallery is None else _as_embeddings(gallery, "gallery")
    if g.shape[1] != q.shape[1]:
        raise DmlReproError(f"embedding dimensions differ: query has shape {q.shape}, gallery has shape {g.shape}")
    k = _check_positive_int(k, "k")
    chunk_size = _check_positive_int(chunk_size, "chunk_size")
    if exclude_self and g.shape[0] < q.shape[0]:
        raise DmlReproError(
            f"exclude_self needs the queries as the first gallery rows, but the gallery has {g.shape[0]} rows "
            f"for {q.shape[0]} queries"
        )
    available = g.shape[0] - int(exclude_self)
    if k > available:
        raise DmlReproError(f"k={k} exceeds the {available} references available per query")
    dists = np.empty((q.shape[0], k), dtype=np.float32)
    idxs = np.empty((q.shape[0], k), dtype=np.int64)
    for start, d, i in _knn_chunks(q, g, k, exclude_self, chunk_size):
        dists[start : start + len(d)] = d
        idxs[start : start + len(i)] = i
    return dists, idxs


# --------------------------------------------------------------------------- ranking metrics


@dataclass
class _RetrievalProblem:
    """Validated inputs: float32 embeddings, integer label codes, relevant-reference counts."""

    query: np.ndarray
    gallery: np.ndarray  # is `query` for leave-one-out
    query_codes: np.ndarray
    gallery_codes: np.ndarray
    n_relevant: np.ndarray  # per query, the query itself not counted
    leave_one_out: bool

    @property
    def n_references(self) -> int:
        """References per query: the gallery, minus the query itself leave-one-out."""
        return self.gallery.shape[0] - int(self.leave_one_out)


def _problem(query_emb, query_labels, gallery_emb, gallery_labels) -> _RetrievalProblem:
    q = _as_embeddings(query_emb, "query_emb")
    yq = _as_labels(query_labels, "query_labels", q.shape[0], "query_emb")
    if (gallery_emb is None) != (gallery_labels is None):
        raise DmlReproError("gallery_emb and gallery_labels must be given together (or both None for leave-one-out)")
    if gallery_emb is None:
        if q.shape[0] < 2:
            raise DmlReproError(f"query_emb has {q.shape[0]} row; leave-one-out retrieval needs at least 2")
        _, codes = np.unique(yq, return_inverse=True)
        counts = np.bincount(codes)
        return _RetrievalProblem(q, q, codes, codes, counts[codes] - 1, leave_one_out=True)
    g = _as_embeddings(gallery_emb, "gallery_emb")
    yg = _as_labels(gallery_labels, "gallery_labels", g.shape[0], "gallery_emb")
    if g.shape[1] != q.shape[1]:
        raise DmlReproError(
            f"embedding dimensions differ: query_emb has shape {q.shape}, gallery_emb has shape {g.shape}"
        )
    if _label_kind(yq) != _label_kind(yg):
        raise DmlReproError(
            f"query_labels ({yq.dtype}) and gallery_labels ({yg.dtype}) are of different kinds and cannot match"
        )
    _, codes = np.unique(np.concatenate([yq, yg]), return_inverse=True)
    cq, cg = codes[: len(yq)], codes[len(yq) :]
    counts = np.bincount(cg, minlength=int(codes.max()) + 1)
    return _RetrievalProblem(q, g, cq, cg, counts[cq], leave_one_out=False)


def _average_precision(rel: np.ndarray, cutoff: np.ndarray, normaliser: np.ndarray) -> np.ndarray:
    """Per row: sum_{i <= cutoff} P_i rel_i / normaliser, with P_i the precision at rank i."""
    ranks = np.arange(1, rel.shape[1] + 1)
    precision = np.cumsum(rel, axis=1) / ranks
    counted = rel & (ranks[None, :] <= cutoff[:, None])
    return np.sum(precision * counted, axis=1) / normaliser


def _ranking_metrics(
    problem: _RetrievalProblem,
    recall_ks: Iterable[int] = (),
    with_map_at_r: bool = False,
    map_ks: Iterable[int] = (),
    chunk_size: int = 4096,
) -> dict[str, float]:
    """All requested ranking metrics from one chunked neighbour search (keys as in the public API)."""
    recall_ks = [_check_positive_int(k, "recall K") for k in recall_ks]
    map_ks = [_check_positive_int(k, "mAP k") for k in map_ks]
    for k, what in [(k, "recall K") for k in recall_ks] + [(k, "mAP k") for k in map_ks]:
        if k > problem.n_references:
            raise DmlReproError(f"{what}={k} exceeds the {problem.n_references} references available per query")
    valid = problem.n_relevant > 0
    n_valid = int(valid.sum())
    if n_valid == 0:
        raise DmlReproError(
            "no query has a same-class reference; the retrieval metrics are undefined (check the labels)"
        )
    depth = max(recall_ks + map_ks + ([int(problem.n_relevant.max())] if with_map_at_r else []))

    # Per-query scores, averaged once at the end: the result does not depend on the chunking.
    recall_hit = {k: np.zeros(len(valid), dtype=bool) for k in recall_ks}
    ap_r = np.zeros(len(valid))
    ap_k = {k: np.zeros(len(valid)) for k in map_ks}
    for start, _, idx in _knn_chunks(problem.query, problem.gallery, depth, problem.leave_one_out, chunk_size):
        rows = slice(start, start + len(idx))
        rel = problem.gallery_codes[idx] == problem.query_codes[rows, None]
        n_rel = problem.n_relevant[rows]
        for k in recall_ks:
            recall_hit[k][rows] = rel[:, :k].any(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):  # lone queries (n_rel = 0) are dropped below
            if with_map_at_r:
                ap_r[rows] = _average_precision(rel, n_rel, n_rel)
            for k in map_ks:
                roth_norm = n_rel + int(problem.leave_one_out)  # class size in the searched pool, query included
                ap_k[k][rows] = _average_precision(rel[:, :k], np.full(len(rel), k), roth_norm)

    out = {f"recall@{k}": float(np.mean(recall_hit[k][valid])) for k in recall_ks}
    if with_map_at_r:
        out["map_at_r"] = float(np.mean(ap_r[valid]))
    out.update({f"map_at_{k}": float(np.mean(ap_k[k][valid])) for k in map_ks})
    return out


def recall_at_k(query_emb, query_labels, gallery_emb=None, gallery_labels=None, ks=(1, 2, 4, 8)) -> dict[int, float]:
    """Recall@K for each K in ``ks`` ("any same-class reference among the top K"), as fractions.

    Leave-one-out inside ``query_emb`` when no gallery is given, else query -> gallery (In-shop).
    """
    ks = _check_ks(ks, "ks")
    res = _ranking_metrics(_problem(query_emb, query_labels, gallery_emb, gallery_labels), recall_ks=ks)
    return {k: res[f"recall@{k}"] for k in ks}


def map_at_r(query_emb, query_labels, gallery_emb=None, gallery_labels=None) -> float:
    """MAP@R of Musgrave et al. (R = number of same-class references of each query)."""
    return _ranking_metrics(_problem(query_emb, query_labels, gallery_emb, gallery_labels), with_map_at_r=True)[
        "map_at_r"
    ]


def map_at_k(query_emb, query_labels, gallery_emb=None, gallery_labels=None, k: int = 1000) -> float:
    """Roth et al.'s mAP@k (``mAP_1000`` for k=1000): AP over the top k divided by the class size in
    the searched pool, the query included (n_rel + 1 leave-one-out, n_rel query -> gallery)."""
    k = _check_positive_int(k, "k")
    return _ranking_metrics(_problem(query_emb, query_labels, gallery_emb, gallery_labels), map_ks=[k])[f"map_at_{k}"]


# --------------------------------------------------------------------------- clustering metrics


def _kmeans_assign(x: np.ndarray, n_clusters: int, seed: int) -> np.ndarray:
    kmeans = faiss.Kmeans(
        x.shape[1],
        n_clusters,
        niter=KMEANS_NITER,
        seed=int(seed),
        min_points_per_centroid=1,
        max_points_per_centroid=_NO_SUBSAMPLING,
    )
    kmeans.train(x)
    _, assign = kmeans.index.search(x, 1)
    return assign[:, 0]


def _contingency(labels: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """counts[i, j] = #points of class i in cluster j."""
    _, y = np.unique(labels, return_inverse=True)
    _, c = np.unique(clusters, return_inverse=True)
    counts = np.zeros((int(y.max(initial=-1)) + 1, int(c.max(initial=-1)) + 1), dtype=np.int64)
    np.add.at(counts, (y.ravel(), c.ravel()), 1)
    return counts


def _pairs(counts: np.ndarray) -> int:
    return int((counts * (counts - 1) // 2).sum())


def pairwise_f1(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Pairwise F1 of a clustering against labels (see the module docstring); O(n + contingency)."""
    counts = _contingency(labels, clusters)
    tp = _pairs(counts)
    denom = _pairs(counts.sum(axis=1)) + _pairs(counts.sum(axis=0))  # same-class + same-cluster pairs
    return 1.0 if denom == 0 else 2.0 * tp / denom


def normalized_mutual_info(labels: np.ndarray, clusters: np.ndarray) -> float:
    """NMI with arithmetic averaging, scikit-learn's ``normalized_mutual_info_score`` formula."""
    counts = _contingency(labels, clusters)
    if counts.shape[0] == counts.shape[1] == 1 or counts.size == 0:
        return 1.0  # one class and one cluster (or nothing): the partitions agree
    n = counts.sum()
    p_ij = counts[counts > 0] / n
    rows, cols = np.nonzero(counts)
    a = counts.sum(axis=1) / n
    b = counts.sum(axis=0) / n
    mi = max(float(np.sum(p_ij * (np.log(p_ij) - np.log(a[rows]) - np.log(b[cols])))), 0.0)
    if mi == 0.0:
        return 0.0
    entropy = lambda p: float(-np.sum(p[p > 0] * np.log(p[p > 0])))  # noqa: E731
    return mi / max((entropy(a) + entropy(b)) / 2.0, np.finfo(np.float64).eps)


def nmi_and_f1(emb, labels, n_clusters: int | None = None, seed: int = 0) -> tuple[float, float]:
    """NMI (arithmetic averaging) and pairwise F1 of faiss k-means on ``emb`` against ``labels``.

    k = ``n_clusters`` or, by default, the number of distinct labels; niter 20, seed ``seed``.
    """
    x = _as_embeddings(emb, "emb")
    y = _as_labels(labels, "labels", x.shape[0], "emb")
    k = len(np.unique(y)) if n_clusters is None else _check_positive_int(n_clusters, "n_clusters")
    if k > x.shape[0]:
        raise DmlReproError(f"n_clusters={k} exceeds the {x.shape[0]} points to cluster")
    clusters = _kmeans_assign(x, k, seed)
    nmi = normalized_mutual_info(y, clusters)
    return nmi, pairwise_f1(y, clusters)


# --------------------------------------------------------------------------- all at once

_MAP_AT_K = re.compile(r"map_at_(\d+)")


def evaluate_image_embeddings(
    query_emb,
    query_labels,
    gallery_emb=None,
    gallery_labels=None,
    *,
    recall_ks=(1, 2, 4, 8),
    metrics=("recall", "nmi", "f1", "map_at_r"),
    seed: int = 0,
) -> dict[str, float]:
    """The requested image-DML metrics, as fractions in [0, 1].

    ``metrics`` names: ``"recall"`` (keys ``"recall@K"`` for K in ``recall_ks``), ``"nmi"``, ``"f1"``,
    ``"map_at_r"``, ``"map_at_<k>"`` (Roth's mAP@k, e.g. ``"map_at_1000"``). The ranking metrics share
    one neighbour search; NMI and F1 share one k-means, run on the query set leave-one-out and on
    query + gallery query -> gallery (module docstring, "Decisions").
    """
    metrics = list(metrics)
    if not metrics:
        raise DmlReproError("metrics is empty; name at least one of recall, nmi, f1, map_at_r, map_at_<k>")
    map_ks: list[int] = []
    for name in metrics:
        match = _MAP_AT_K.fullmatch(name) if isinstance(name, str) else None
        if match:
            map_ks.append(_check_positive_int(int(match.group(1)), f"metric {name!r}"))
        elif name not in ("recall", "nmi", "f1", "map_at_r"):
            raise DmlReproError(f"unknown metric {name!r}; known: recall, nmi, f1, map_at_r, map_at_<k>")
    problem = _problem(query_emb, query_labels, gallery_emb, gallery_labels)
    recall_ks = _check_ks(recall_ks, "recall_ks") if "recall" in metrics else []

    out: dict[str, float] = {}
    if recall_ks or map_ks or "map_at_r" in metrics:
        ranking = _ranking_metrics(problem, recall_ks=recall_ks, with_map_at_r="map_at_r" in metrics, map_ks=map_ks)
        out.update({key: ranking[key] for key in ranking if key.startswith("recall@")})
    if "nmi" in metrics or "f1" in metrics:
        if problem.leave_one_out:
            emb, codes = problem.query, problem.query_codes
        else:
            emb = np.concatenate([problem.query, problem.gallery])
            codes = np.concatenate([problem.query_codes, problem.gallery_codes])
        nmi, f1 = nmi_and_f1(emb, codes, seed=seed)
        if "nmi" in metrics:
            out["nmi"] = nmi
        if "f1" in metrics:
            out["f1"] = f1
    if "map_at_r" in metrics:
        out["map_at_r"] = ranking["map_at_r"]
    for k in map_ks:
        out[f"map_at_{k}"] = ranking[f"map_at_{k}"]
    return out
