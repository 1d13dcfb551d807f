"""Quality of unsupervised supervision signals (PL manifolds, Table 2): label purity of the point
sets a method groups together, and the correlation of its pairwise similarity with the ground
truth. Labels are read here only, to score; no method below sees them.

The paper names both metrics without formulas (TARGETS 003-§1, Table 2); our definitions:

* **Purity** of a point set = the share of its majority class. A method's purity is the mean over
  points i of the purity of the set it assigns to i: i's cluster (K-Means, hierarchical), or i's
  linear neighbourhood X_i (ours). For a partition this equals the usual cluster purity
  Σ_c max_y n_cy / N.
* **Correlation** = Pearson's r between the method's similarity s(i, j) and the same-class
  indicator 1[y_i = y_j], over unordered pairs i < j: for a clustering s is the same-cluster
  indicator (r is then the phi coefficient); for the random walk, the diffusion affinity; for ours,
  Eq. 5's s.

Baselines (the paper's citations, our settings):

* K-Means ([17], DeepCluster): scikit-learn ``KMeans`` with ``n_clusters`` (default: the number of
  classes), ``n_init=10``, seeded;
* hierarchical clustering ([15], UHML): scikit-learn agglomerative clustering, Ward linkage, the
  same number of clusters;
* random walk ([24], MOM): a kNN graph (k = ``knn``, symmetrised by the maximum) with affinity
  max(cos, 0)³ (Iscen et al.'s diffusion), symmetric normalisation S = D^{-1/2} A D^{-1/2}, and
  the random walk with restart R = (1 − a)(I − a S)^{-1}, a = 0.99; R(i, j) is the similarity. It
  assigns no point sets, so it has no purity (the paper's "–").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dmlrepro import DmlReproError

METHODS = ("kmeans", "hierarchical", "random_walk", "ours")


def set_purity(members: np.ndarray, labels: np.ndarray) -> float:
    """Mean over rows i of the majority-class share of {j : members[i, j]} ((n, n) bool)."""
    members, labels = np.asarray(members, dtype=bool), np.asarray(labels)
    if members.ndim != 2 or members.shape != (len(labels), len(labels)):
        raise DmlReproError(f"purity: members must be ({len(labels)}, {len(labels)}), got {members.shape}")
    classes = np.unique(labels, return_inverse=True)[1]
    onehot = np.eye(classes.max() + 1, dtype=np.int64)[classes]        # (n, C)
    counts = members.astype(np.int64) @ onehot                          # (n, C): class counts of each set
    sizes = counts.sum(1)
    if (sizes == 0).any():
        raise DmlReproError("purity: a point's set is empty")
    return float(np.mean(counts.max(1) / sizes))


def cluster_purity(assignment: np.ndarray, labels: np.ndarray) -> float:
    """Purity of a partition: Σ_c max_y n_cy / N (= :func:`set_purity` of the same-cluster sets)."""
    assignment, labels = np.asarray(assignment), np.asarray(labels)
    total = 0
    for c in np.unique(assignment):
        total += np.unique(labels[assignment == c], return_counts=True)[1].max()
    return float(total / len(labels))


def pair_correlation(similarity: np.ndarray, labels: np.ndarray) -> float:
    """Pearson's r between ``similarity[i, j]`` and 1[y_i = y_j] over pairs i < j."""
    similarity, labels = np.asarray(similarity, dtype=np.float64), np.asarray(labels)
    n = len(labels)
    if similarity.shape != (n, n):
        raise DmlReproError(f"correlation: similarity must be ({n}, {n}), got {similarity.shape}")
    iu = np.triu_indices(n, k=1)
    s, same = similarity[iu], (labels[:, None] == labels[None, :])[iu].astype(np.float64)
    if s.std() == 0 or same.std() == 0:
        return float("nan")
    return float(np.corrcoef(s, same)[0, 1])


def _same_cluster(assignment: np.ndarray) -> np.ndarray:
    return (assignment[:, None] == assignment[None, :]).astype(np.float64)


def random_walk_similarity(emb: np.ndarray, knn: int = 10, alpha: float = 0.99, power: float = 3.0) -> np.ndarray:
    """Random walk with restart on the kNN graph (module docstring), (n, n)."""
    x = np.asarray(emb, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    n = len(x)
    k = min(int(knn), n - 1)
    cos = x @ x.T
    np.fill_diagonal(cos, -np.inf)
    nearest = np.argpartition(-cos, k - 1, axis=1)[:, :k]
    a = np.zeros((n, n))
    rows = np.repeat(np.arange(n), k)
    a[rows, nearest.ravel()] = np.maximum(cos[rows, nearest.ravel()], 0.0) ** float(power)
    a = np.maximum(a, a.T)
    d = a.sum(1)
    d_inv = np.where(d > 0, 1.0 / np.sqrt(np.maximum(d, 1e-300)), 0.0)
    s = d_inv[:, None] * a * d_inv[None, :]
    return (1.0 - alpha) * np.linalg.inv(np.eye(n) - float(alpha) * s)


def supervision_quality(emb: np.ndarray, labels: np.ndarray, *, n_clusters: int | None = None, knn: int = 10,
                        m: int = 3, threshold: float = 0.9, n_neighbours: int = 9, n_alpha: float = 4.0,
                        n_beta: float = 0.5, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Table 2's four rows on embeddings ``emb`` (n, d): ``{method: {"purity", "correlation",
    "mean_set_size"}}`` (purity None for the random walk). Ours: the pieces of
    :func:`dmlrepro.miners.pl_manifold.piecewise_linear_manifold` over the whole set (each point's
    ``n_neighbours`` nearest as candidates) and Eq. 5's similarity."""
    from sklearn.cluster import AgglomerativeClustering, KMeans

    from dmlrepro.losses.pl_manifold import point_similarity
    from dmlrepro.miners.pl_manifold import piecewise_linear_manifold

    emb, labels = np.asarray(emb, dtype=np.float64), np.asarray(labels)
    if emb.ndim != 2 or len(emb) != len(labels) or len(emb) < 3:
        raise DmlReproError(f"supervision quality: need (n >= 3, d) embeddings and n labels, got {emb.shape}, {labels.shape}")
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    k = int(n_clusters) if n_clusters else len(np.unique(labels))
    out: dict[str, dict[str, Any]] = {}
    for name, algo in (("kmeans", KMeans(n_clusters=k, n_init=10, random_state=int(seed))),
                       ("hierarchical", AgglomerativeClustering(n_clusters=k, linkage="ward"))):
        assignment = algo.fit_predict(emb)
        out[name] = {"purity": cluster_purity(assignment, labels),
                     "correlation": pair_correlation(_same_cluster(assignment), labels),
                     "mean_set_size": float(np.mean(np.bincount(assignment)[assignment]))}
    out["random_walk"] = {"purity": None, "correlation": pair_correlation(random_walk_similarity(emb, knn), labels),
                          "mean_set_size": None}
    t = torch.from_numpy(emb)
    pieces = piecewise_linear_manifold(t, m, threshold, min(int(n_neighbours), len(emb) - 1))
    s = point_similarity(t, pieces.bases, n_alpha, n_beta).numpy()
    members = pieces.members.numpy()
    out["ours"] = {"purity": set_purity(members, labels), "correlation": pair_correlation(s, labels),
                   "mean_set_size": float(members.sum(1).mean())}
    return out
