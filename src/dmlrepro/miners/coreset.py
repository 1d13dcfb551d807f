"""WCRAIG (Paper 002, Eq. 6 and Algorithm 1): a weighted coreset of images by facility location
with Sinkhorn-divergence similarities, as in CRAIG (Mirzasoleiman, Bilmes and Leskovec 2020).

**Our reading of Algorithm 1.** The text of Algorithm 1 is garbled. It reads as two algorithms
pasted together:

1. CRAIG's greedy. ``S_0 = {}``, then while ``F_w(S) < L({s_0}) - eps``: add
   ``j in argmax_{e in V \\ S} F_w(e | S)``. Here ``F_w(S) = sum_{i in V} max_{j in S} s_ij``
   (Eq. 6) and ``F_w(e | S)`` is the marginal gain. In CRAIG, ``L({s_0}) - eps`` is the stopping
   rule: stop once the facility-location value is within ``eps`` of that of the whole set. As in
   CRAIG's released code, we stop at a **budget** (number of images) instead.
2. "initialise ``x_1..x_n ~ mu``; sample ``y_1..y_m ~ mu``; update the estimate of ``v*``;
   generalised Voronoi regions ``V_i(v*)``; step ``x_i <- x_i - gamma grad SD``". This is the
   stochastic measure-coreset algorithm of Claici, Genevay and Solomon (2020) for Eq. 5. It moves
   *synthetic* support points: semi-discrete OT dual ``v*``, Laguerre cells, gradient steps. It
   selects no images, so it cannot give a training subset, and it is **not implemented**.

WCRAIG is therefore read as CRAIG with ``s_ij = 1 / SD(i, j)``. Each selected image gets the
weight of CRAIG: the size of its cluster, i.e. the number of images whose most similar selected
image it is. The weights sum to ``n``.

**Decisions.**

* ``SD(i, i) = 0`` (and ``SD = 0`` between duplicates) makes ``1 / SD`` infinite. We use
  ``s_ij = 1 / (max(SD_ij, 0) + delta)`` with ``delta = relative_offset * median`` of the
  positive off-diagonal divergences (default ``1e-2``). ``delta`` is relative so that it does
  not depend on the scale of the divergences. Then the similarity is largest on the diagonal
  (``1 / delta``): a selected image is always in its own cluster, and duplicates of a selected
  image are covered as well as the image itself. Negative divergences (unconverged Sinkhorn
  iterations) count as 0. ``kind="max_minus"`` gives CRAIG's own similarity
  ``max(SD) - SD`` instead.
* The greedy is our own lazy greedy (Minoux 1978). Its result is *identical* to the plain
  greedy: the largest gain, ties to the lowest index. The cost is ``O(n)`` per gain evaluated;
  the ``(n, n)`` similarity matrix is dense. apricot-select's ``FacilityLocationSelection``
  computes the same selection, but its numba compilation costs about 12 s per process, so it is
  not used.
* Where the divergences come from: :func:`wasserstein_coreset` computes them from image clouds
  with :func:`dmlrepro.distances.sinkhorn_divergence.pairwise_sinkhorn_divergence` (no
  gradients), optionally per class (``labels``), as CRAIG selects per class.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
import torch

from dmlrepro import DmlReproError
from dmlrepro.distances.sinkhorn_divergence import pairwise_sinkhorn_divergence

DEFAULT_RELATIVE_OFFSET = 1e-2
SIMILARITIES = ("reciprocal", "max_minus")


@dataclass(frozen=True)
class Coreset:
    """``indices``: the selected images in greedy order; ``weights``: their cluster sizes
    (summing to ``n``); ``assignment``: for each image, the position in ``indices`` of its most
    similar selected image; ``gains``: the marginal gains in greedy order; ``objective``:
    ``F_w`` of the selection (the sum of the gains)."""
    indices: np.ndarray
    weights: np.ndarray
    assignment: np.ndarray
    gains: np.ndarray
    objective: float


def similarity_from_divergence(divergence: np.ndarray, kind: str = "reciprocal",
                               relative_offset: float = DEFAULT_RELATIVE_OFFSET) -> np.ndarray:
    """The ``(n, n)`` similarity of Eq. 6, ``1 / (SD + delta)``, or CRAIG's ``max(SD) - SD``
    (see the module docstring)."""
    sd = np.asarray(divergence, dtype=np.float64)
    if sd.ndim != 2 or sd.shape[0] != sd.shape[1] or not np.all(np.isfinite(sd)):
        raise DmlReproError(f"divergence must be a finite square matrix, got shape {sd.shape}")
    if kind not in SIMILARITIES:
        raise DmlReproError(f"unknown similarity kind '{kind}' (known: {', '.join(SIMILARITIES)})")
    sd = np.maximum(sd, 0.0)
    if kind == "max_minus":
        return sd.max() - sd
    if not (relative_offset > 0 and math.isfinite(relative_offset)):
        raise DmlReproError(f"relative_offset must be a positive number, got {relative_offset}")
    off_diagonal = sd[~np.eye(len(sd), dtype=bool)]
    positive = off_diagonal[off_diagonal > 0]
    delta = relative_offset * (float(np.median(positive)) if len(positive) else 1.0)
    return 1.0 / (sd + delta)


def facility_location_objective(similarity: np.ndarray, selected) -> float:
    """``F(S) = sum_i max_{j in S} s_ij`` (Eq. 6); 0 for the empty set."""
    selected = list(selected)
    if not selected:
        return 0.0
    return float(np.asarray(similarity)[:, selected].max(1).sum())


def _check_similarity(similarity: np.ndarray, budget: int) -> np.ndarray:
    s = np.asarray(similarity, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or not np.all(np.isfinite(s)) or (s < 0).any():
        raise DmlReproError(f"similarity must be a finite, non-negative square matrix (shape {s.shape})")
    if not 1 <= budget <= len(s):
        raise DmlReproError(f"coreset budget must be in 1..{len(s)}, got {budget}")
    return s


def lazy_greedy_facility_location(similarity: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximisation of ``F(S) = sum_i max_{j in S} s_ij`` for ``budget`` steps, with lazy
    gain updates (Minoux). Returns the selected indices in order and their marginal gains.

    Identical to the plain greedy (largest gain, ties to the lowest index). The gains shrink as
    ``S`` grows (submodularity), so a stale gain is an upper bound. An element whose fresh gain
    still beats every other bound, ``(-gain, index)`` compared as a tuple, is the plain greedy's
    choice. ``F`` is monotone submodular, so the result is within ``1 - 1/e`` of the optimum.
    """
    s = _check_similarity(similarity, budget)
    n = len(s)
    cover = np.zeros(n)                    # max_{j in S} s_ij (0 for S empty: similarities >= 0)
    fresh_at = np.zeros(n, dtype=np.int64)  # the |S| for which each heap entry's gain is exact
    heap = [(-float(g), e) for e, g in enumerate(s.sum(0))]
    heapq.heapify(heap)
    chosen: list[int] = []
    gains: list[float] = []
    while len(chosen) < budget:
        negative_gain, e = heapq.heappop(heap)
        if fresh_at[e] == len(chosen):
            chosen.append(e)
            gains.append(-negative_gain)
            np.maximum(cover, s[:, e], out=cover)
        else:
            fresh_at[e] = len(chosen)
            heapq.heappush(heap, (-float(np.maximum(s[:, e] - cover, 0.0).sum()), e))
    return np.asarray(chosen, dtype=np.int64), np.asarray(gains)


def craig_weights(similarity: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CRAIG's weights: each image goes to its most similar selected image (the first in
    ``indices`` on ties); a selected image's weight is the number of images it receives.
    Returns ``(weights, assignment)``, ``assignment[i]`` a position in ``indices``."""
    s = np.asarray(similarity, dtype=np.float64)
    assignment = s[:, np.asarray(indices)].argmax(1)
    return np.bincount(assignment, minlength=len(indices)).astype(np.int64), assignment


def wcraig_coreset(divergence: np.ndarray, budget: int, *, kind: str = "reciprocal",
                   relative_offset: float = DEFAULT_RELATIVE_OFFSET) -> Coreset:
    """WCRAIG on a precomputed ``(n, n)`` Sinkhorn-divergence matrix: ``budget`` images by
    greedy facility location with ``s = 1 / (SD + delta)`` (Eq. 6), weighted by cluster size."""
    similarity = similarity_from_divergence(divergence, kind, relative_offset)
    indices, gains = lazy_greedy_facility_location(similarity, budget)
    weights, assignment = craig_weights(similarity, indices)
    return Coreset(indices, weights, assignment, gains, float(gains.sum()))


def wasserstein_coreset(clouds: torch.Tensor, budget: int | float, *, labels=None, kind: str = "reciprocal",
                        relative_offset: float = DEFAULT_RELATIVE_OFFSET, **divergence_options) -> Coreset:
    """WCRAIG from image clouds ``(n, P, D)``: the divergences come from
    :func:`pairwise_sinkhorn_divergence` (``divergence_options``: ``blur``, ``p``, ``scaling``,
    ...; no gradients).

    ``budget``: a number of images (int), or a fraction of ``n`` (float in (0, 1]). With
    ``labels``, the selection runs per class, as in CRAIG: each class keeps
    ``max(1, round(fraction * n_c))`` images (an int budget becomes the fraction
    ``budget / n``), and only within-class divergences are computed. ``indices`` and
    ``assignment`` refer to the whole set; within each class the selection is in greedy order,
    classes in the order of ``np.unique``. ``gains`` and ``objective`` add up the per-class
    problems.
    """
    n = len(clouds)
    if isinstance(budget, float):
        if not 0 < budget <= 1:
            raise DmlReproError(f"coreset budget as a fraction must be in (0, 1], got {budget}")
        fraction = budget
    else:
        if not 1 <= int(budget) <= n:
            raise DmlReproError(f"coreset budget must be in 1..{n}, got {budget}")
        fraction = int(budget) / n
    with torch.no_grad():
        if labels is None:
            size = int(budget) if not isinstance(budget, float) else max(1, round(fraction * n))
            divergence = pairwise_sinkhorn_divergence(clouds, **divergence_options).cpu().numpy()
            return wcraig_coreset(divergence, size, kind=kind, relative_offset=relative_offset)
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise DmlReproError(f"labels must have one entry per cloud ({n}), got shape {labels.shape}")
        indices, weights, gains = [], [], []
        assignment = np.empty(n, dtype=np.int64)
        for label in np.unique(labels):
            members = np.flatnonzero(labels == label)
            size = min(len(members), max(1, round(fraction * len(members))))
            divergence = pairwise_sinkhorn_divergence(clouds[torch.as_tensor(members)],
                                                      **divergence_options).cpu().numpy()
            part = wcraig_coreset(divergence, size, kind=kind, relative_offset=relative_offset)
            assignment[members] = part.assignment + sum(map(len, indices))
            indices.append(members[part.indices])
            weights.append(part.weights)
            gains.append(part.gains)
    gains_all = np.concatenate(gains)
    return Coreset(np.concatenate(indices), np.concatenate(weights), assignment, gains_all, float(gains_all.sum()))
