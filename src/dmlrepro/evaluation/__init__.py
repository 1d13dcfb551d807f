"""Evaluation metrics: distance-weighted kNN accuracy (``knn``), the WSSET paper's IR Recall@K
and the DML metrics P@1 / MAP@R (``retrieval``), the image papers' Recall@K / NMI / F1 / MAP@R
(``image_retrieval``).

The names below load their module on first use: ``retrieval`` imports pytorch-metric-learning's
AccuracyCalculator and with it scikit-learn (~1.5 s of CPU), which an image training job, importing
only ``image_retrieval``, should not pay."""

_LAZY = {
    "weighted_knn_accuracy": "knn",
    "embedding_distances": "knn",
    "ir_recall_at_k": "retrieval",
    "dml_retrieval_metrics": "retrieval",
    "evaluate_distances": "retrieval",
    "evaluate_embeddings": "retrieval",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
