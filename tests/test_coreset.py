"""WCRAIG (Paper 002, Eq. 6): facility-location greedy against brute force and a naive greedy; CRAIG weights."""

import itertools
import math

import numpy as np
import pytest
import torch

from dmlrepro import DmlReproError
from dmlrepro.miners.coreset import (
    craig_weights, facility_location_objective, lazy_greedy_facility_location, similarity_from_divergence,
    wasserstein_coreset, wcraig_coreset)


def random_divergence(n, seed):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, 2))
    sd = ((points[:, None] - points[None]) ** 2).sum(-1) / 2
    return sd + 0.05 * rng.random((n, n)) * (1 - np.eye(n))   # not a metric, not symmetric: no matter


def naive_greedy(similarity, budget):
    """Plain greedy from scratch: F(S + e) - F(S) for every e, largest first, ties to the lowest index."""
    chosen = []
    for _ in range(budget):
        base = facility_location_objective(similarity, chosen)
        gains = [facility_location_objective(similarity, chosen + [e]) - base if e not in chosen else -np.inf
                 for e in range(len(similarity))]
        chosen.append(int(np.argmax(gains)))
    return chosen


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("kind", ["reciprocal", "max_minus"])
def test_greedy_equals_naive_greedy_and_is_within_1_minus_1_over_e_of_brute_force(seed, kind):
    n = 5 + seed % 4                         # 5..8 images
    similarity = similarity_from_divergence(random_divergence(n, seed), kind)
    for budget in range(1, n + 1):
        indices, gains = lazy_greedy_facility_location(similarity, budget)
        assert indices.tolist() == naive_greedy(similarity, budget)
        value = facility_location_objective(similarity, indices)
        assert gains.sum() == pytest.approx(value, rel=1e-12)
        assert np.all(np.diff(gains) <= 1e-12)   # submodular: gains never grow
        optimum = max(facility_location_objective(similarity, subset)
                      for subset in itertools.combinations(range(n), budget))
        assert value >= (1 - 1 / math.e) * optimum - 1e-12
        assert value <= optimum + 1e-9


def test_greedy_finds_the_optimum_on_planted_clusters():
    # three tight groups: the best 3 medoids take one per group, and so does the greedy
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    groups = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    points = centres[groups] + 0.1 * rng.normal(size=(8, 2))
    sd = ((points[:, None] - points[None]) ** 2).sum(-1)
    core = wcraig_coreset(sd, 3)
    assert sorted(groups[core.indices]) == [0, 1, 2]
    assert dict(zip(groups[core.indices], core.weights)) == {0: 3, 1: 2, 2: 3}
    optimum = max(facility_location_objective(similarity_from_divergence(sd), s)
                  for s in itertools.combinations(range(8), 3))
    assert core.objective == pytest.approx(optimum)


def test_craig_weights_are_cluster_sizes_summing_to_n():
    sd = random_divergence(8, 11)
    core = wcraig_coreset(sd, 3)
    similarity = similarity_from_divergence(sd)
    assert core.weights.sum() == 8
    assert np.all(core.weights >= 1)
    for i in range(8):   # each image goes to its most similar selected image
        assert similarity[i, core.indices[core.assignment[i]]] == similarity[i, core.indices].max()
    assert np.all(core.indices[core.assignment[core.indices]] == core.indices)   # medoids are their own
    weights, assignment = craig_weights(similarity, core.indices)
    assert np.array_equal(weights, np.bincount(assignment, minlength=3))


def test_reciprocal_similarity_handles_zero_and_negative_divergences():
    sd = np.array([[0.0, 2.0, 0.0, 4.0],
                   [2.0, 0.0, 2.0, -1e-9],     # a tiny negative value from Sinkhorn noise
                   [0.0, 2.0, 0.0, 4.0],       # image 2 duplicates image 0
                   [4.0, -1e-9, 4.0, 0.0]])
    s = similarity_from_divergence(sd, relative_offset=0.5)
    delta = 0.5 * np.median([2.0, 4.0, 2.0, 2.0, 4.0, 4.0])     # positive off-diagonal values
    assert np.all(np.isfinite(s))
    assert s[0, 0] == s[0, 2] == s[1, 3] == pytest.approx(1 / delta)
    assert s[0, 1] == pytest.approx(1 / (2 + delta))
    core = wcraig_coreset(sd, 2, relative_offset=0.5)
    assert core.weights.sum() == 4
    assert set(core.indices) in ({0, 1}, {0, 3}, {2, 1}, {2, 3})   # never both duplicates
    assert np.array_equal(similarity_from_divergence(np.zeros((3, 3))), np.ones((3, 3)) / 1e-2)


def test_wasserstein_coreset_from_clouds_whole_set_and_per_class():
    gen = torch.Generator().manual_seed(0)
    prototypes = torch.randn(3, 6, 2, generator=gen, dtype=torch.float64) * 3
    groups = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    clouds = prototypes[groups] + 0.05 * torch.randn(9, 6, 2, generator=gen, dtype=torch.float64)
    options = dict(blur=0.1, scaling=0.8)
    core = wasserstein_coreset(clouds, 3, **options)
    assert sorted(groups[core.indices].tolist()) == [0, 1, 2]
    assert dict(zip(groups[core.indices].tolist(), core.weights.tolist())) == {0: 3, 1: 2, 2: 4}
    # per class, with a fraction: each class keeps round(0.5 * n_c) >= 1 images
    labels = np.array([0, 1, 0, 1, 0, 1, 1, 0, 0])
    per_class = wasserstein_coreset(clouds, 0.5, labels=labels, **options)
    assert sorted(labels[per_class.indices].tolist()) == [0, 0, 1, 1]
    assert per_class.weights.sum() == 9
    for c in (0, 1):
        members = np.flatnonzero(labels == c)
        # each image is assigned to a selected image of its own class
        assert set(labels[per_class.indices[per_class.assignment[members]]]) == {c}
    assert np.array_equal(per_class.indices[per_class.assignment[per_class.indices]], per_class.indices)


def test_bad_inputs_raise():
    with pytest.raises(DmlReproError, match="budget"):
        lazy_greedy_facility_location(np.ones((3, 3)), 4)
    with pytest.raises(DmlReproError, match="non-negative"):
        lazy_greedy_facility_location(-np.ones((3, 3)), 1)
    with pytest.raises(DmlReproError, match="square"):
        similarity_from_divergence(np.ones((2, 3)))
    with pytest.raises(DmlReproError, match="kind"):
        similarity_from_divergence(np.ones((2, 2)), kind="cosine")
    with pytest.raises(DmlReproError, match="fraction"):
        wasserstein_coreset(torch.zeros(4, 2, 2), 1.5)
    with pytest.raises(DmlReproError, match="labels"):
        wasserstein_coreset(torch.zeros(4, 2, 2), 2, labels=[0, 1])
