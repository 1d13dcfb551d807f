"""Paper 004's Figure 1 ("weight coefficient vs. pairwise cosine similarity") drawn from the code.

For each loss, the pair weights come from :func:`dmlrepro.losses.pair_weighting.pair_weights`,
i.e. from autograd of the loss implementation w.r.t. the similarity matrix (Theorem 3.1), on one
synthetic batch (``synthetic_batch``: Gaussian clusters, 12 classes x 5, 4-d, fixed seed). Each
panel scatters weight against cosine similarity for positive pairs (green circles; the paper's
solid green) and negative pairs (blue crosses; the paper's dotted blue). Weights are multiplied by
the batch size m to undo the batch mean, so they are on the scale of the paper's equations.

Panels: (a) contrastive, Eq. 6 (lambda 0.5); (b) triplet, Eq. 8 (lambda 0.1, one random triplet
per anchor, the paper's setting); (c) lifted structure, Eqs. 10-11 (margin 1); (d) binomial
deviance, Eqs. 13-14 (alpha 2, beta 50, gamma 0.5); two panels beyond the paper's four:
(e) RAW on all pairs and (f) RAW+VTHM, Eqs. 15-16. Contrastive and triplet weights are 0/1 steps
as in the paper; lifted, binomial and RAW weights depend on the other pairs of the anchor, so
they scatter around a curve rather than lying on one.

Output: PNG and PDF (same stem), atomically, via ``reporting.figures.save_figure``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from dmlrepro.losses.pair_weighting import (
    BinomialDevianceLoss,
    ContrastiveSimilarityLoss,
    RAWLoss,
    TripletSimilarityLoss,
    lifted_structure_loss,
    pair_weights,
)
from dmlrepro.miners.vthm import VTHMMiner
from dmlrepro.reporting.figures import save_figure

__all__ = ["plot_pair_weights", "synthetic_batch", "weight_panels"]

POSITIVE_COLOR = "#2ca02c"
NEGATIVE_COLOR = "#1f77b4"


def synthetic_batch(n_classes: int = 12, per_class: int = 5, dim: int = 4, spread: float = 0.7,
                    seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings, labels): class centres ~ N(0, I), members = centre + spread * N(0, I)."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, dim, generator=gen, dtype=torch.float64)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    embeddings = centers[labels] + spread * torch.randn(len(labels), dim, generator=gen, dtype=torch.float64)
    return embeddings, labels


def weight_panels(embeddings: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> list[tuple[str, object]]:
    """[(panel title, PairWeights scaled by m)] for the six panels, on one batch."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        one_triplet_per_anchor = lmu.get_random_triplet_indices(labels, t_per_anchor=1)
    specs = [
        ("(a) contrastive, Eq. 6", ContrastiveSimilarityLoss(margin=0.5), {}),
        ("(b) triplet, Eq. 8", TripletSimilarityLoss(margin=0.1), {"indices_tuple": one_triplet_per_anchor}),
        ("(c) lifted structure, Eqs. 10-11", lifted_structure_loss(margin=1.0), {}),
        ("(d) binomial deviance, Eqs. 13-14", BinomialDevianceLoss(), {}),
        ("(e) RAW, all pairs, Eqs. 15-16", RAWLoss(), {}),
        ("(f) RAW + VTHM, Eqs. 15-16", RAWLoss(), {"miner": VTHMMiner()}),
    ]
    m = len(labels)
    panels = []
    for title, loss, kwargs in specs:
        pw = pair_weights(loss, embeddings, labels, **kwargs)
        panels.append((title, pw._replace(pos_weights=pw.pos_weights * m, neg_weights=pw.neg_weights * m)))
    return panels


def plot_pair_weights(path: str | os.PathLike, embeddings: torch.Tensor | None = None,
                      labels: torch.Tensor | None = None, seed: int = 0) -> dict[str, Path]:
    """Draw Figure 1 (weight vs. cosine similarity per loss) to ``path`` (.png) and its .pdf."""
    if embeddings is None or labels is None:
        embeddings, labels = synthetic_batch(seed=seed)
    panels = weight_panels(embeddings, labels, seed=seed)
    fig = Figure(figsize=(12, 7), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3, sharex=True).ravel()
    for ax, (title, pw) in zip(axes, panels):
        ax.scatter(pw.neg_sims.numpy(), pw.neg_weights.numpy(), s=9, marker="x", linewidths=0.7,
                   color=NEGATIVE_COLOR, label="negative pairs")
        ax.scatter(pw.pos_sims.numpy(), pw.pos_weights.numpy(), s=12, marker="o", facecolors="none",
                   edgecolors=POSITIVE_COLOR, linewidths=0.8, label="positive pairs")
        ax.set_title(title, fontsize=10)
        ax.set_xlim(-1.05, 1.05)
        ax.grid(alpha=0.3)
    for ax in axes[3:]:
        ax.set_xlabel("cosine similarity $s_{ij}$")
    for ax in axes[::3]:
        ax.set_ylabel("weight $w_{ij}$ (x m)")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Pair weights by autograd of each loss w.r.t. S (m = {len(labels)})", fontsize=11)
    return save_figure(fig, path)
