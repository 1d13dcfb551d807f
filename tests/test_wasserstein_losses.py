"""W-contrastive (Eq. 1) and W-triplet (Eq. 2) of Paper 002 against naive loops, values and gradients."""

import itertools

import pytest
import torch
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.losses import ContrastiveLoss
from pytorch_metric_learning.reducers import MeanReducer

from dmlrepro import DmlReproError
from dmlrepro.distances.sinkhorn_divergence import (
    SinkhornDivergenceDistance, flatten_clouds, pairwise_sinkhorn_divergence)
from dmlrepro.losses.wasserstein import WContrastiveLoss, w_contrastive_loss, w_triplet_loss

OPTIONS = dict(blur=0.1, scaling=0.8)
LABELS = torch.tensor([0, 0, 0, 1, 1, 2, 2])   # unequal class sizes: unequal pos/neg counts


def batch(seed=0, n=7, points=5, dim=3):
    clouds = torch.randn(n, points, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return flatten_clouds(clouds).requires_grad_(True)


def naive_divergences(rows, dim=3):
    """The divergence matrix computed directly, without PML (points normalised one by one)."""
    clouds = torch.nn.functional.normalize(rows.reshape(len(rows), -1, dim), dim=-1)
    return pairwise_sinkhorn_divergence(clouds, **OPTIONS)


def naive_triplet(d, labels, margin, triplets=None):
    if triplets is None:
        n = len(labels)
        triplets = [(a, p, q) for a, p, q in itertools.product(range(n), repeat=3)
                    if a != p and labels[a] == labels[p] and labels[q] != labels[a]]
    terms = [torch.relu(d[a, p] - d[a, q] + margin) for a, p, q in triplets]
    return sum(terms) / len(terms)


def naive_contrastive(d, labels, margin, pairs=None):
    n = len(labels)
    pairs = pairs or [(i, j) for i in range(n) for j in range(n) if i != j]
    terms = [d[i, j] if labels[i] == labels[j] else torch.relu(margin - d[i, j]) for i, j in pairs]
    return sum(terms) / len(terms)


def assert_same_value_and_gradient(loss_fn, reference_fn, rows):
    value = loss_fn(rows)
    (grad,) = torch.autograd.grad(value, rows)
    ref_rows = rows.detach().clone().requires_grad_(True)
    ref_value = reference_fn(ref_rows)
    (ref_grad,) = torch.autograd.grad(ref_value, ref_rows)
    torch.testing.assert_close(value, ref_value)
    torch.testing.assert_close(grad, ref_grad)
    assert grad.abs().sum() > 0


def test_w_triplet_is_eq2_over_all_triplets():
    distance = SinkhornDivergenceDistance(point_dim=3, **OPTIONS)
    # a margin that leaves some triplets inactive: the mean still counts them (b = |T|)
    d = naive_divergences(batch()).detach()
    margin = float(d[d > 0].median()) / 4
    loss, miner = w_triplet_loss(distance, margin=margin)
    assert miner is None
    assert_same_value_and_gradient(lambda r: loss(r, LABELS),
                                   lambda r: naive_triplet(naive_divergences(r), LABELS, margin), batch())
    n = len(LABELS)
    active = [bool(d[a, p] - d[a, q] + margin > 0) for a, p, q in itertools.product(range(n), repeat=3)
              if a != p and LABELS[a] == LABELS[p] and LABELS[q] != LABELS[a]]
    assert any(active) and not all(active)


def test_w_contrastive_is_eq1_one_mean_over_all_pairs():
    distance = SinkhornDivergenceDistance(point_dim=3, **OPTIONS)
    d = naive_divergences(batch(1)).detach()
    margin = float(d[d > 0].median())
    loss, miner = w_contrastive_loss(distance, margin=margin)
    assert miner is None
    assert_same_value_and_gradient(lambda r: loss(r, LABELS),
                                   lambda r: naive_contrastive(naive_divergences(r), LABELS, margin), batch(1))


def test_pml_contrastive_is_not_eq1():
    # why WContrastiveLoss exists: PML adds a mean over positives and a mean over negatives
    rows = batch(2).detach()
    distance = SinkhornDivergenceDistance(point_dim=3, **OPTIONS)
    d = naive_divergences(rows)
    margin = float(d[d > 0].max()) + 0.1     # every negative pair active
    pml = ContrastiveLoss(pos_margin=0, neg_margin=margin, distance=distance, reducer=MeanReducer())(rows, LABELS)
    n = len(LABELS)
    same = LABELS[:, None] == LABELS[None, :]
    off = ~torch.eye(n, dtype=bool)
    split_means = d[same & off].mean() + (margin - d[~same]).mean()
    torch.testing.assert_close(pml, split_means)
    ours = WContrastiveLoss(margin=margin, distance=distance)(rows, LABELS)
    torch.testing.assert_close(ours, naive_contrastive(d, LABELS, margin))
    assert abs(float(ours - pml)) > 0.1


@pytest.mark.parametrize("mining", ["semihard", "hard"])
def test_mined_triplets_reach_both_losses(mining):
    distance = SinkhornDivergenceDistance(point_dim=3, **OPTIONS)
    rows = batch(3)
    d = naive_divergences(rows).detach()
    margin = float(d[d > 0].median()) / 2
    triplet, miner = w_triplet_loss(distance, margin=margin, mining=mining)
    a, p, q = miner(rows, LABELS)
    assert len(a) > 0
    gap = d[a, q] - d[a, p]
    if mining == "semihard":
        assert torch.all((gap > 0) & (gap <= margin))
    else:
        assert torch.all(gap <= 0)
    mined = list(zip(a.tolist(), p.tolist(), q.tolist()))
    torch.testing.assert_close(triplet(rows, LABELS, (a, p, q)), naive_triplet(naive_divergences(rows), LABELS,
                                                                             margin, mined))
    contrastive, _ = w_contrastive_loss(distance, margin=2 * margin, mining=mining, miner_margin=margin)
    pairs = [(i, j) for i, j, _ in mined] + [(i, k) for i, _, k in mined]
    torch.testing.assert_close(contrastive(rows, LABELS, (a, p, q)),
                               naive_contrastive(naive_divergences(rows), LABELS, 2 * margin, pairs))


def test_w_contrastive_with_euclidean_distance_and_a_single_pair():
    emb = torch.randn(2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    loss = WContrastiveLoss(margin=10.0, distance=LpDistance(normalize_embeddings=False))
    # one negative pair in each order: PML's pair losses would return 0 here
    expected = 10.0 - (emb[0] - emb[1]).norm()
    torch.testing.assert_close(loss(emb, torch.tensor([0, 1])), expected)
    torch.testing.assert_close(loss(emb, torch.tensor([0, 0])), (emb[0] - emb[1]).norm())
    assert loss(emb[:1], torch.tensor([0])) == 0


def test_bad_arguments_raise():
    distance = SinkhornDivergenceDistance(point_dim=3)
    with pytest.raises(DmlReproError, match="Euclidean distances"):
        w_triplet_loss(distance, margin=0.2, mining="distance")
    with pytest.raises(DmlReproError, match="unknown mining"):
        w_contrastive_loss(distance, margin=1.0, mining="lifted")
    with pytest.raises(DmlReproError, match="SinkhornDivergenceDistance"):
        w_triplet_loss(LpDistance(), margin=0.2)
