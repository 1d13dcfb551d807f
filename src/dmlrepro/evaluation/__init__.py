"""Evaluation metrics: distance-weighted kNN accuracy (``knn``), the WSSET paper's IR Recall@K
and the DML metrics P@1 / MAP@R (``retrieval``)."""

from dmlrepro.evaluation.knn import embedding_distances, weighted_knn_accuracy
from dmlrepro.evaluation.retrieval import (
    dml_retrieval_metrics,
    evaluate_distances,
    evaluate_embeddings,
    ir_recall_at_k,
)

__all__ = [
    "weighted_knn_accuracy",
    "embedding_distances",
    "ir_recall_at_k",
    "dml_retrieval_metrics",
    "evaluate_distances",
    "evaluate_embeddings",
]
