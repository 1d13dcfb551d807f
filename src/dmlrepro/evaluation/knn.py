"""Distance-weighted kNN classification accuracy (WSSET Table I metric) and embedding distances.

Protocol (TARGETS 000-§4, ambiguity 000-§5.7): the paper's metric is a distance-weighted
kNN with k = 10. We use scikit-learn's ``KNeighborsClassifier(weights="distance",
metric="precomputed")`` with the **train split as gallery** and the **test split as queries**
(not the released code's buggy leave-one-out vote inside the test set). Votes are weighted
by 1/d; a query at distance 0 from one or more gallery items takes the votes of those items
only (scikit-learn's rule). Ties in the weighted vote go to the smallest class label
(scikit-learn's ``argmax`` over its sorted ``classes_``); which of several gallery items tied
at the k-th distance is used is left to scikit-learn (``argpartition``, not specified).
"""

from __future__ import annotations

import numpy as np
import torch

from dmlrepro import DmlReproError

__all__ = ["weighted_knn_accuracy", "embedding_distances", "check_distance_matrix", "as_label_vector"]


def as_label_vector(labels, name: str, expected_len: int | None = None) -> np.ndarray:
    """Return ``labels`` as a 1-D numpy array, checking its length against ``expected_len``."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise DmlReproError(f"{name} must be a 1-D array of labels, got shape {arr.shape}")
    if expected_len is not None and len(arr) != expected_len:
        raise DmlReproError(f"{name} has {len(arr)} labels but the distance matrix implies {expected_len}")
    return arr


def check_distance_matrix(dist, name: str, shape: tuple[int | None, int | None] | None = None) -> np.ndarray:
    """Validate a distance matrix (2-D, finite, non-negative) and return it as float64.

    ``shape`` entries that are not None must match exactly; the error names ``name`` and both shapes.
    """
    if isinstance(dist, torch.Tensor):
        dist = dist.detach().cpu().numpy()
    d = np.asarray(dist, dtype=np.float64)
    if d.ndim != 2:
        raise DmlReproError(f"{name} must be a 2-D distance matrix, got shape {d.shape}")
    if shape is not None:
        for axis, want in enumerate(shape):
            if want is not None and d.shape[axis] != want:
                raise DmlReproError(
                    f"{name} has shape {d.shape}, expected {want} along axis {axis} "
                    f"(expected shape {tuple('any' if s is None else s for s in shape)})"
                )
    if d.size and not np.all(np.isfinite(d)):
        bad = np.argwhere(~np.isfinite(d))[0]
        raise DmlReproError(f"{name} contains a non-finite value {d[tuple(bad)]!r} at index {tuple(int(i) for i in bad)}")
    if d.size and d.min() < 0:
        bad = np.unravel_index(int(np.argmin(d)), d.shape)
        raise DmlReproError(f"{name} contains a negative distance {d[bad]!r} at index {tuple(int(i) for i in bad)}")
    return d


def weighted_knn_accuracy(dist_query_gallery, gallery_labels, query_labels, k: int = 10) -> float:
    """Distance-weighted kNN accuracy in percent.

    ``dist_query_gallery``: (n_query, n_gallery) distances; ``gallery_labels``: (n_gallery,);
    ``query_labels``: (n_query,). Uses scikit-learn's ``KNeighborsClassifier(n_neighbors=k,
    weights="distance", metric="precomputed")``.
    """
    d = check_distance_matrix(dist_query_gallery, "dist_query_gallery")
    n_query, n_gallery = d.shape
    g = as_label_vector(gallery_labels, "gallery_labels", n_gallery)
    q = as_label_vector(query_labels, "query_labels", n_query)
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise DmlReproError(f"knn k must be a positive integer, got {k!r}")
    if k > n_gallery:
        raise DmlReproError(f"knn k={k} exceeds the gallery size {n_gallery}")
    if n_query == 0:
        raise DmlReproError("dist_query_gallery has no query rows; kNN accuracy is undefined")

    from sklearn.neighbors import KNeighborsClassifier  # 2 s of import: only WSSET's kNN needs it

    clf = KNeighborsClassifier(n_neighbors=int(k), weights="distance", metric="precomputed", algorithm="brute")
    # With metric="precomputed", fit() only stores the (square) gallery matrix and never reads
    # its values for prediction; np.zeros is lazily allocated, so this costs no real memory.
    clf.fit(np.zeros((n_gallery, n_gallery), dtype=np.float64), g)
    pred = clf.predict(d)
    return float(np.mean(pred == q) * 100.0)


def embedding_distances(query_emb, gallery_emb) -> np.ndarray:
    """Euclidean distances (n_query, n_gallery) in float64, via ``torch.cdist`` without the
    matrix-multiplication shortcut (exact zeros for identical rows, no cancellation error)."""
    q = _as_2d_float64(query_emb, "query_emb")
    g = _as_2d_float64(gallery_emb, "gallery_emb")
    if q.shape[1] != g.shape[1]:
        raise DmlReproError(
            f"embedding dimensions differ: query_emb has shape {tuple(q.shape)}, gallery_emb has shape {tuple(g.shape)}"
        )
    if q.shape[0] == 0 or g.shape[0] == 0:
        return np.zeros((q.shape[0], g.shape[0]), dtype=np.float64)
    d = torch.cdist(q, g, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
    return d.numpy()


def _as_2d_float64(x, name: str) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    t = t.to(torch.float64)
    if t.ndim != 2:
        raise DmlReproError(f"{name} must be a 2-D array (n, dim), got shape {tuple(t.shape)}")
    if t.numel() and not torch.isfinite(t).all():
        raise DmlReproError(f"{name} contains non-finite values")
    return t
