"""WSSET's evaluation step: Table I/II metrics of one run (shared by ``train``, ``bert`` and
``evaluate``)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def evaluate_run(ps, splits, k: int, method: str, dataset: str, recall_ks: Sequence[Any], knn_k: int,
                 embeddings: np.ndarray | None = None, emd: np.ndarray | None = None,
                 data_note: str = "", labelled: np.ndarray | None = None) -> dict[str, Any]:
    """Table I/II metrics of one run on split ``k``: test queries, train gallery (kNN), test
    gallery (Recall@K); from embeddings, or from the EMD matrix for the WMD baseline.
    ``labelled`` replaces the train gallery (small-data study: only the subsample's labels are known)."""
    from dmlrepro.evaluation.retrieval import evaluate_distances, evaluate_embeddings
    train = np.asarray(splits.train[k] if labelled is None else labelled)
    test = np.asarray(splits.test[k])
    ks = [int(x) for x in recall_ks]
    if embeddings is not None:
        metrics = evaluate_embeddings(embeddings[train], ps.labels[train], embeddings[test], ps.labels[test], ks,
                                      knn_k)
    else:
        metrics = evaluate_distances(np.asarray(emd[np.ix_(test, train)]), np.asarray(emd[np.ix_(test, test)]),
                                     ps.labels[train], ps.labels[test], ks, knn_k)
    source = ps.meta.get("data_source", "")
    metrics.update({"dataset": dataset, "method": method, "split": k,
                    "data_source": "; ".join(part for part in (source, data_note) if part),
                    "n_train": len(train), "n_test": len(test)})
    if ps.meta.get("task_note"):  # not the paper's task: the tables show no paper value beside it
        metrics["task_note"] = ps.meta["task_note"]
    return metrics
