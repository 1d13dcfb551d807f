"""STML: self-taught metric learning without labels (Kim, Kim, Cho & Kwak, CVPR 2022), the
baseline Paper 003 re-runs (its Table 1, "STML*").

Written from the STML paper's equations, checked against the public code
(``tjddus9597/STML-CVPR22@10b155a:code/loss.py``) where the paper is terse:

Teacher side (no gradient), on the teacher's L2-normalised embeddings t of the batch (all views):

* pairwise similarity ``W_P(i, j) = exp(−||t_i − t_j||² / σ)``;
* k-nearest neighbours by W_P with k = ``num_neighbors × views``; the views of one image are
  forced into each other's neighbourhood (``image_ids``); a point is its own neighbour;
* k-reciprocal neighbours ``R(i) = {j : j ∈ kNN(i) and i ∈ kNN(j)}``;
* contextual similarity ``W̃_C(i, j) = |R(i) ∩ R(j)| / |R(i)|`` for j ∈ R(i), else 0;
* query expansion ``Ŵ_C(i, ·) = mean of W̃_C(q, ·) over q in the round(k/2) nearest neighbours of i``;
* ``W_C = (Ŵ_C + Ŵ_Cᵀ) / 2`` and the target ``W = (W_P + W_C) / 2``.

Student side: two heads, the embedding ``f`` (d) and a wide auxiliary ``g`` (1024 in STML).
Distances are divided by each row's mean distance, ``d̃_ij = d_ij / mean_k d_ik`` (the mean over
the full row, the zero self-distance included).

* Relaxed contrastive loss (per head), over ordered pairs i ≠ j:
  ``L_RC = 1/(N(N−1)) Σ_{i≠j} [W_ij d̃_ij² + (1 − W_ij) [δ − d̃_ij]_+²]``;
* self-distillation ``L_KL = 1/N Σ_i KL(softmax(−d̃^g_i) || softmax(−d̃^f_i))`` with the g side
  detached (the f head learns the g head's neighbourhood structure), rows including the diagonal;
* ``L = (L_RC(f) + L_RC(g)) / 2 + L_KL``.

Defaults: σ 3 and δ 1 (the STML README's commands for CUB/Cars; the code's argparse defaults are
σ 1, δ 1), ``num_neighbors`` 5, 2 views. Student embeddings are not normalised (STML's
``student_norm 0``); ``normalize_student=True`` normalises both heads first.

Where the paper and the code might differ, we follow the code: the ``round(k/2)`` expansion
size, forcing views of one image into the neighbourhood, the row-mean normalisation including
the zero diagonal, the KL direction and its ``/N``. ``round`` is Python's (half to even, like the
code's ``np.around``): k = 10 gives 5, k = 3 gives 2. Unsure from the paper alone: whether the
query expansion averages W̃_C rows of the neighbours only or includes i itself (the code: the
top-round(k/2) by W_P, which includes i); whether ``L_RC`` is averaged over ordered pairs (the code:
yes).

Not a pytorch-metric-learning ``BaseMetricLossFunction``: it needs two student heads and the
teacher's embeddings of the same batch, which that interface cannot carry.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dmlrepro import DmlReproError


@torch.no_grad()
def contextual_similarity(teacher: torch.Tensor, image_ids: torch.Tensor | None, sigma: float = 3.0,
                          topk: int = 10) -> torch.Tensor:
    """The target W (N, N) = (W_P + W_C) / 2 from the teacher's embeddings (normalised here)."""
    t = F.normalize(teacher.detach(), dim=1)
    n = t.shape[0]
    if not 1 <= int(topk) <= n:
        raise DmlReproError(f"stml: topk={topk} neighbours must lie in [1, batch size {n}]")
    w_p = torch.exp(-torch.cdist(t, t).pow(2) / float(sigma))
    ranking = w_p.clone()
    if image_ids is not None:
        ids = torch.as_tensor(image_ids, device=t.device).reshape(-1)
        if ids.numel() != n:
            raise DmlReproError(f"stml: {ids.numel()} image_ids for a batch of {n}")
        ranking[ids[:, None] == ids[None, :]] = 1.0               # views of one image: always neighbours
    order = torch.topk(ranking, int(topk), dim=1).indices
    knn = torch.zeros_like(w_p).scatter_(1, order, 1.0)
    reciprocal = knn * knn.T                                      # V: mutual neighbours
    overlap = reciprocal @ reciprocal                             # |R(i) ∩ R(j)| (V symmetric)
    w_c_tilde = reciprocal * overlap / reciprocal.sum(1, keepdim=True).clamp_min(1.0)
    half = order[:, : int(round(int(topk) / 2))]
    w_c_hat = w_c_tilde[half].mean(1)
    w_c = 0.5 * (w_c_hat + w_c_hat.T)
    return 0.5 * (w_p + w_c)


def _relative_distances(x: torch.Tensor) -> torch.Tensor:
    d = torch.linalg.vector_norm(x[:, None, :] - x[None, :, :], dim=-1)   # zero gradient at d = 0
    return d / d.mean(1, keepdim=True)


def relaxed_contrastive_loss(student: torch.Tensor, target: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """L_RC: pull with weight W, push below margin δ with weight 1 − W, over ordered pairs i ≠ j."""
    n = student.shape[0]
    d = _relative_distances(student)
    off = 1.0 - torch.eye(n, device=student.device, dtype=student.dtype)
    pull = d.pow(2) * target * off
    push = torch.relu(float(delta) - d).pow(2) * (1.0 - target) * off
    return (pull.sum() + push.sum()) / (n * (n - 1))


def self_distillation_loss(student_f: torch.Tensor, student_g: torch.Tensor) -> torch.Tensor:
    """L_KL: KL(softmax(−d̃^g) || softmax(−d̃^f)) summed over rows, / N; g is detached."""
    log_q = F.log_softmax(-_relative_distances(student_f), dim=1)
    p = F.softmax(-_relative_distances(student_g).detach(), dim=1)
    return F.kl_div(log_q, p, reduction="sum") / student_f.shape[0]


class STMLLoss(nn.Module):
    """``forward(student_f, student_g, teacher_g, image_ids) -> {"loss", "rc", "kl"}``.

    ``student_f`` (N, d) and ``student_g`` (N, d_g): the student's two heads for all views of the
    batch; ``teacher_g`` (N, d_g): the momentum teacher's g head; ``image_ids`` (N,): which image
    each row is a view of (or None)."""

    def __init__(self, sigma: float = 3.0, delta: float = 1.0, num_neighbors: int = 5, views: int = 2,
                 normalize_student: bool = False):
        super().__init__()
        if float(sigma) <= 0 or float(delta) <= 0 or int(num_neighbors) < 1 or int(views) < 1:
            raise DmlReproError(f"STMLLoss: need sigma, delta > 0 and num_neighbors, views >= 1; got "
                                f"sigma={sigma}, delta={delta}, num_neighbors={num_neighbors}, views={views}")
        self.sigma, self.delta = float(sigma), float(delta)
        self.topk = int(num_neighbors) * int(views)
        self.normalize_student = bool(normalize_student)

    def forward(self, student_f: torch.Tensor, student_g: torch.Tensor, teacher_g: torch.Tensor,
                image_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if not (student_f.shape[0] == student_g.shape[0] == teacher_g.shape[0]) or student_f.shape[0] < 2:
            raise DmlReproError(f"STMLLoss: student_f, student_g, teacher_g need the same N >= 2 rows, got "
                                f"{student_f.shape[0]}, {student_g.shape[0]}, {teacher_g.shape[0]}")
        if self.normalize_student:
            student_f, student_g = F.normalize(student_f, dim=1), F.normalize(student_g, dim=1)
        target = contextual_similarity(teacher_g, image_ids, self.sigma, self.topk)
        rc = 0.5 * (relaxed_contrastive_loss(student_f, target, self.delta)
                    + relaxed_contrastive_loss(student_g, target, self.delta))
        kl = self_distillation_loss(student_f, student_g)
        return {"loss": rc + kl, "rc": rc, "kl": kl}
