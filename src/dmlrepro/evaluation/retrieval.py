"""Retrieval metrics: the WSSET paper's IR Recall@K and the usual DML metrics (P@1, MAP@R).

Recall@K (TARGETS 000-§4, ambiguity 000-§5.8): the paper does not define it; its numbers only
fit *IR recall* with leave-one-out retrieval inside the **test split**. For query i, all other
test documents are ranked by distance; Recall@K(i) = (# same-class documents among the top K)
/ (# same-class documents in the test split other than i). Queries with no same-class peer are
skipped; the result is the mean over the remaining queries, in percent. If K exceeds the
number of other documents, the top K is all of them. **Ties** are broken by document index:
rows are ordered with a stable sort, so among equal distances the lower test index ranks first.

P@1 and MAP@R (Musgrave et al., "A Metric Learning Reality Check") are computed with
pytorch-metric-learning's ``AccuracyCalculator`` on the same leave-one-out test-set protocol
(reference = query = test split, the query excluded from its own neighbours). Because the WMD
baseline has no embeddings, ``AccuracyCalculator`` is fed index vectors as "embeddings" and a
kNN function that looks the neighbours up in the precomputed distance matrix (stable order,
ties by index as above). Queries whose class has no other member are skipped (the library's rule).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from dmlrepro import DmlReproError
from dmlrepro.evaluation.knn import as_label_vector, check_distance_matrix, embedding_distances, weighted_knn_accuracy

__all__ = [
    "ir_recall_at_k",
    "dml_retrieval_metrics",
    "PrecomputedKNN",
    "evaluate_distances",
    "evaluate_embeddings",
]


def _check_square(dist, labels, name: str) -> tuple[np.ndarray, np.ndarray]:
    d = check_distance_matrix(dist, name)
    if d.shape[0] != d.shape[1]:
        raise DmlReproError(f"{name} must be square (test x test), got shape {d.shape}")
    y = as_label_vector(labels, "labels", d.shape[0])
    if d.shape[0] < 2:
        raise DmlReproError(f"{name} has {d.shape[0]} documents; retrieval needs at least 2")
    return d, y


def _leave_one_out_order(d: np.ndarray) -> np.ndarray:
    """(n, n-1) indices of the other documents for each query, nearest first, ties by index."""
    n = d.shape[0]
    masked = d.copy()
    np.fill_diagonal(masked, np.inf)  # all other entries are finite, so self sorts last
    order = np.argsort(masked, axis=1, kind="stable")
    return order[:, : n - 1]


def _check_ks(ks: Iterable[int]) -> list[int]:
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise DmlReproError(f"recall K values must be positive integers, got {k!r}")
        out.append(int(k))
    if not out:
        raise DmlReproError("recall K list is empty")
    return out


def ir_recall_at_k(dist_test_test, labels, ks: Iterable[int]) -> dict[int, float]:
    """WSSET Recall@K (percent) for each K in ``ks``; see the module docstring for the definition."""
    d, y = _check_square(dist_test_test, labels, "dist_test_test")
    ks = _check_ks(ks)
    n = d.shape[0]
    order = _leave_one_out_order(d)
    same = y[order] == y[:, None]  # (n, n-1): is the j-th ranked neighbour relevant
    peers = np.sum(y[None, :] == y[:, None], axis=1) - 1
    valid = peers > 0
    if not valid.any():
        raise DmlReproError("no test document has a same-class peer; Recall@K is undefined (check the labels)")
    cum = np.cumsum(same, axis=1)
    out: dict[int, float] = {}
    for k in ks:
        kk = min(k, n - 1)
        hits = cum[valid, kk - 1]
        out[k] = float(np.mean(hits / peers[valid]) * 100.0)
    return out


class PrecomputedKNN:
    """A ``knn_func`` for ``AccuracyCalculator`` that reads neighbours from a distance matrix.

    The "embeddings" given to the calculator must be 1-column index vectors: row ``i`` holds
    the float index ``i`` into ``dist`` (query indices index rows, reference indices columns).
    With ``ref_includes_query`` the query's own index is removed from its neighbour list.
    """

    def __init__(self, dist: np.ndarray):
        self.dist = torch.from_numpy(np.asarray(dist, dtype=np.float64))

    def __call__(self, query, k, reference, ref_includes_query=False):
        qi = torch.round(query[:, 0]).long().cpu()
        ri = torch.round(reference[:, 0]).long().cpu()
        sub = self.dist[qi][:, ri].clone()
        if ref_includes_query:
            pos = torch.arange(len(qi))
            sub[pos, pos] = torch.inf  # first len(query) references are the queries themselves
        if k > sub.shape[1] - int(ref_includes_query):
            raise DmlReproError(f"AccuracyCalculator asked for k={k} neighbours but only {sub.shape[1]} references exist")
        order = torch.from_numpy(np.argsort(sub.numpy(), axis=1, kind="stable")[:, :k].copy())
        dists = torch.gather(sub, 1, order)
        device = query.device
        return dists.to(device=device, dtype=torch.float32), order.to(device)


def dml_retrieval_metrics(dist_test_test, labels) -> dict[str, float]:
    """P@1 and MAP@R (percent) with pytorch-metric-learning, leave-one-out inside the test split.

    Returns ``{"precision_at_1": .., "mean_average_precision_at_r": ..}``.
    """
    d, y = _check_square(dist_test_test, labels, "dist_test_test")
    n = d.shape[0]
    # Labels go through float32 inside AccuracyCalculator; map them to dense integer codes first.
    _, codes = np.unique(y, return_inverse=True)
    if not np.any(np.bincount(codes) > 1):
        raise DmlReproError("no test document has a same-class peer; P@1 and MAP@R are undefined (check the labels)")
    idx = torch.arange(n, dtype=torch.float32)[:, None]
    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r"),
        k="max_bin_count",
        device=torch.device("cpu"),
        knn_func=PrecomputedKNN(d),
    )
    res = calc.get_accuracy(
        idx, torch.from_numpy(codes.astype(np.int64)), idx, torch.from_numpy(codes.astype(np.int64)), ref_includes_query=True
    )
    return {
        "precision_at_1": float(res["precision_at_1"]) * 100.0,
        "mean_average_precision_at_r": float(res["mean_average_precision_at_r"]) * 100.0,
    }


def evaluate_distances(
    d_test_train,
    d_test_test,
    train_labels,
    test_labels,
    recall_ks: Iterable[int],
    knn_k: int = 10,
) -> dict:
    """All WSSET metrics from precomputed distances.

    ``d_test_train``: (n_test, n_train) for kNN accuracy (train = gallery);
    ``d_test_test``: (n_test, n_test) for Recall@K, P@1, MAP@R (leave-one-out in test).
    Returns ``{"knn_accuracy", "recall_at": {"K": ..}, "precision_at_1", "map_at_r"}`` (percent).
    """
    y_train = as_label_vector(train_labels, "train_labels")
    y_test = as_label_vector(test_labels, "test_labels")
    d_tt = check_distance_matrix(d_test_train, "d_test_train", shape=(len(y_test), len(y_train)))
    d_ss = check_distance_matrix(d_test_test, "d_test_test", shape=(len(y_test), len(y_test)))
    recall = ir_recall_at_k(d_ss, y_test, recall_ks)
    dml = dml_retrieval_metrics(d_ss, y_test)
    return {
        "knn_accuracy": weighted_knn_accuracy(d_tt, y_train, y_test, k=knn_k),
        "recall_at": {str(k): v for k, v in recall.items()},
        "precision_at_1": dml["precision_at_1"],
        "map_at_r": dml["mean_average_precision_at_r"],
    }


def evaluate_embeddings(train_emb, train_labels, test_emb, test_labels, recall_ks: Iterable[int], knn_k: int = 10) -> dict:
    """Euclidean distances from embeddings, then :func:`evaluate_distances`."""
    y_train = as_label_vector(train_labels, "train_labels")
    y_test = as_label_vector(test_labels, "test_labels")
    n_train = len(train_emb)
    n_test = len(test_emb)
    if n_train != len(y_train):
        raise DmlReproError(f"train_emb has {n_train} rows but train_labels has {len(y_train)} labels")
    if n_test != len(y_test):
        raise DmlReproError(f"test_emb has {n_test} rows but test_labels has {len(y_test)} labels")
    d_test_train = embedding_distances(test_emb, train_emb)
    d_test_test = embedding_distances(test_emb, test_emb)
    return evaluate_distances(d_test_train, d_test_test, y_train, y_test, recall_ks, knn_k=knn_k)
