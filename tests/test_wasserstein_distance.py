"""Debiased Sinkhorn divergence between image point clouds (Paper 002, Eqs. 3-4) and its PML distance."""

import numpy as np
import ot
import pytest
import torch
from geomloss import SamplesLoss
from pytorch_metric_learning.distances import BaseDistance

from dmlrepro import DmlReproError
from dmlrepro.distances.sinkhorn_divergence import (
    SinkhornDivergenceDistance, cloud_diameter, clouds_from_feature_map, flatten_clouds,
    paired_sinkhorn_divergence, pairwise_sinkhorn_divergence, unflatten_clouds)


def random_clouds(n, points, dim, seed=0, dtype=torch.float64):
    return torch.randn(n, points, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def exact_ot(x, y, p=2):
    """POT's exact OT between uniform clouds, cost in geomloss's convention."""
    x, y = x.detach().numpy(), y.detach().numpy()
    cost = ot.dist(x, y) / 2 if p == 2 else ot.dist(x, y, metric="euclidean")
    return ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), cost)


# ------------------------------------------------------------------------------------ properties
def test_self_matrix_is_symmetric_nonnegative_with_zero_diagonal():
    x = random_clouds(6, 7, 3)
    mat = pairwise_sinkhorn_divergence(x, blur=0.1)
    assert mat.shape == (6, 6)
    assert torch.equal(mat, mat.T)
    assert torch.all(mat.diagonal() == 0)
    assert mat[~torch.eye(6, dtype=bool)].min() > 0


def test_cross_matrix_symmetry_and_self_divergence_through_the_solver():
    # an explicit second set goes through geomloss for every pair, the diagonal included
    x = random_clouds(5, 6, 3, seed=1)
    xy = pairwise_sinkhorn_divergence(x, x.clone(), blur=0.1)
    yx = pairwise_sinkhorn_divergence(x.clone(), x, blur=0.1)
    assert torch.allclose(xy, xy.T, atol=1e-10)
    assert torch.allclose(xy, yx.T, atol=1e-10)
    assert xy.diagonal().abs().max() < 1e-8
    assert xy.min() > -1e-8


def test_nonnegative_for_nearby_clouds_and_large_blur():
    # the biased OT_eps would be > 0 for a == b; the debiased one is ~0 and >= 0 nearby
    x = random_clouds(4, 8, 2, seed=2)
    y = x + 1e-3 * random_clouds(4, 8, 2, seed=3)
    d = paired_sinkhorn_divergence(x, y, blur=1.0, scaling=0.95)
    assert torch.all(d >= -1e-12)
    assert torch.all(d < 1e-4)
    biased = paired_sinkhorn_divergence(x, x, blur=1.0, scaling=0.95, debias=False)
    assert torch.all(biased > 0.1)


def test_different_cloud_sizes_between_sets():
    # geomloss's eps-scaling is not run to convergence: with unequal sizes the plans split mass
    # and small blurs need scaling -> 1 to reach the exact cost; here: the values are geomloss's
    x, y = random_clouds(3, 5, 2, seed=4), random_clouds(2, 8, 2, seed=5)
    mat = pairwise_sinkhorn_divergence(x, y, blur=0.1, scaling=0.8)
    solver = SamplesLoss("sinkhorn", p=2, blur=0.1, scaling=0.8, diameter=cloud_diameter(x, y),
                         backend="tensorized")
    ref = torch.stack([torch.stack([solver(x[i], y[j]) for j in range(2)]) for i in range(3)])
    torch.testing.assert_close(mat, ref)
    assert mat.min() > 0


# ------------------------------------------------------------------------------------ eps -> 0
@pytest.mark.parametrize("p", [1, 2])
def test_small_blur_gives_the_exact_ot_cost_of_pot(p):
    x, y = random_clouds(4, 6, 3, seed=6), random_clouds(3, 6, 3, seed=7)   # image clouds: equal sizes
    ref = np.array([[exact_ot(x[i], y[j], p) for j in range(3)] for i in range(4)])
    for blur, tol in [(1e-1, 0.05), (1e-3, 1e-4)]:
        mat = pairwise_sinkhorn_divergence(x, y, blur=blur, p=p, scaling=0.9)
        np.testing.assert_allclose(mat.numpy(), ref, atol=tol * ref.max())
    # the entropic bias is what a larger blur shows
    far = pairwise_sinkhorn_divergence(x, y, blur=1.0, p=p, scaling=0.9)
    assert np.abs(far.numpy() - ref).max() > 1e-3


def test_geomloss_convention_paper_scale():
    # Eq. 3's cost ||x - y||^2 with weight eta is twice geomloss's problem at eps = eta / 2:
    # at small blur S_eps equals half the squared-Euclidean exact OT cost
    x, y = random_clouds(1, 5, 2, seed=8), random_clouds(1, 5, 2, seed=9)
    full_cost = ot.emd2(np.full(5, 0.2), np.full(5, 0.2), ot.dist(x[0].numpy(), y[0].numpy()))
    assert paired_sinkhorn_divergence(x, y, blur=1e-3).item() == pytest.approx(full_cost / 2, rel=1e-5)


# ------------------------------------------------------------------------------------ gradients
@pytest.mark.parametrize("p", [1, 2])
def test_gradients_match_finite_differences(p):
    # geomloss's gradients are the envelope-theorem gradients of the converged problem; its
    # annealing runs one iteration per eps, so to converge the value we anneal very slowly from
    # just above the target blur (100 iterations, eps within 0.2% of the final one)
    x = random_clouds(2, 4, 2, seed=10).requires_grad_(True)
    y = random_clouds(2, 3, 2, seed=11).requires_grad_(True)
    weights = torch.tensor([[0.3, -1.2], [0.7, 0.5]], dtype=torch.float64)
    options = dict(blur=1.0, p=p, scaling=0.99999, diameter=1.001)

    def objective(a, b):
        return (pairwise_sinkhorn_divergence(a, b, **options) * weights).sum()

    analytic = torch.autograd.grad(objective(x, y), (x, y))
    h = 1e-6
    for which, (tensor, grad) in enumerate(zip((x, y), analytic)):
        flat = tensor.detach().reshape(-1)
        numeric = torch.zeros_like(flat)
        for k in range(len(flat)):
            shifted = []
            for step in (h, -h):
                moved = flat.clone()
                moved[k] += step
                args = [x.detach(), y.detach()]
                args[which] = moved.reshape(tensor.shape)
                shifted.append(objective(*args))
            numeric[k] = (shifted[0] - shifted[1]) / (2 * h)
        torch.testing.assert_close(grad.reshape(-1), numeric, atol=2e-5, rtol=1e-4)


def test_self_matrix_gradient_equals_cross_matrix_gradient():
    # mirroring the pairs i < j must not change the gradients (the diagonal has zero gradient)
    x = random_clouds(4, 5, 3, seed=12).requires_grad_(True)
    w = random_clouds(1, 4, 4, seed=13)[0]
    options = dict(blur=0.3, scaling=0.95, diameter=10.0)
    (g_self,) = torch.autograd.grad((pairwise_sinkhorn_divergence(x, **options) * w).sum(), x)
    xc = x.detach().clone().requires_grad_(True)
    (g_cross,) = torch.autograd.grad((pairwise_sinkhorn_divergence(xc, xc, **options) * w).sum(), xc)
    torch.testing.assert_close(g_self, g_cross, atol=1e-8, rtol=1e-6)


# ------------------------------------------------------------------------------------ batching
def test_chunked_equals_unchunked_values_and_gradients():
    x = random_clouds(5, 6, 4, seed=14, dtype=torch.float32).requires_grad_(True)
    y = random_clouds(4, 6, 4, seed=15, dtype=torch.float32)
    w = random_clouds(1, 5, 4, seed=16, dtype=torch.float32)[0]
    results = []
    for max_pairs in (10_000, 7, 1):
        mat = pairwise_sinkhorn_divergence(x, y, blur=0.1, max_pairs=max_pairs)
        (grad,) = torch.autograd.grad((mat * w).sum(), x)
        results.append((mat.detach(), grad))
    for mat, grad in results[1:]:
        torch.testing.assert_close(mat, results[0][0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(grad, results[0][1], atol=1e-6, rtol=1e-5)
    self_mats = [pairwise_sinkhorn_divergence(x, blur=0.1, max_pairs=k).detach() for k in (10_000, 4)]
    torch.testing.assert_close(self_mats[0], self_mats[1], atol=1e-6, rtol=1e-5)


def test_a_pair_batch_equals_geomloss_on_each_pair_alone():
    x, y = random_clouds(3, 6, 2, seed=17), random_clouds(3, 6, 2, seed=18)
    diameter = cloud_diameter(x, y)
    batched = paired_sinkhorn_divergence(x, y, blur=0.05, scaling=0.8)
    solver = SamplesLoss("sinkhorn", p=2, blur=0.05, scaling=0.8, debias=True, diameter=diameter,
                         backend="tensorized")
    alone = torch.stack([solver(x[k], y[k]) for k in range(3)])
    torch.testing.assert_close(batched, alone)


# ------------------------------------------------------------------------------------ clouds and PML
def test_feature_map_to_clouds_and_flat_rows_round_trip():
    fmap = torch.randn(2, 4, 3, 5)   # (b, D, h, w)
    clouds = clouds_from_feature_map(fmap, normalize=False)
    assert clouds.shape == (2, 15, 4)
    assert torch.equal(clouds[1, 2 * 5 + 3], fmap[1, :, 2, 3])   # cell (h=2, w=3), row-major
    unit = clouds_from_feature_map(fmap)
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(2, 15))
    assert torch.equal(unflatten_clouds(flatten_clouds(clouds), 4), clouds)
    with pytest.raises(DmlReproError, match="point_dim=7"):
        unflatten_clouds(flatten_clouds(clouds), 7)


def test_pml_distance_equals_the_function_on_normalised_clouds():
    clouds = random_clouds(5, 6, 3, seed=19)
    unit = torch.nn.functional.normalize(clouds, dim=-1)
    dist = SinkhornDivergenceDistance(point_dim=3, blur=0.1)
    assert isinstance(dist, BaseDistance) and not dist.is_inverted and not dist.normalize_embeddings
    rows = flatten_clouds(clouds)
    expected = pairwise_sinkhorn_divergence(unit, blur=0.1)
    torch.testing.assert_close(dist(rows), expected)
    torch.testing.assert_close(dist(rows, rows), expected)           # PML's default ref_emb
    ref = flatten_clouds(random_clouds(2, 4, 3, seed=20))
    torch.testing.assert_close(
        dist(rows, ref), pairwise_sinkhorn_divergence(unit, dist.clouds(ref), blur=0.1))
    torch.testing.assert_close(dist.pairwise_distance(rows[:2], ref),
                               pairwise_sinkhorn_divergence(unit[:2], dist.clouds(ref), blur=0.1).diagonal())
    raw = SinkhornDivergenceDistance(point_dim=3, blur=0.1, normalize_points=False)
    torch.testing.assert_close(raw(rows), pairwise_sinkhorn_divergence(clouds, blur=0.1))


@pytest.mark.parametrize("kwargs, match", [
    (dict(blur=0.0), "blur"), (dict(scaling=1.0), "scaling"), (dict(p=3), "p must be"),
    (dict(backend="multiscale"), "backend"), (dict(normalize_embeddings=True), "normalize_embeddings"),
    (dict(is_inverted=True), "is_inverted"), (dict(power=2), "power")])
def test_bad_options_raise(kwargs, match):
    with pytest.raises(DmlReproError, match=match):
        SinkhornDivergenceDistance(point_dim=3, **kwargs)


def test_bad_shapes_raise():
    with pytest.raises(DmlReproError, match="clouds_x"):
        pairwise_sinkhorn_divergence(torch.zeros(3, 4))
    with pytest.raises(DmlReproError, match="point dimension"):
        pairwise_sinkhorn_divergence(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))


# ----------------------------------------------------------------------- the histogram reading
def test_histogram_reading_is_a_symmetric_divergence_that_tends_to_exact_ot():
    import ot

    from dmlrepro.distances.histogram_sinkhorn import HistogramSinkhornDistance, embedding_histograms
    torch.manual_seed(0)
    emb = torch.randn(6, 5, dtype=torch.float64)
    emb[5] = 3.0 * emb[0]  # the same direction: the same histogram
    dist = HistogramSinkhornDistance(5, blur=0.01, scaling=0.99)  # geomloss: one iteration per eps step
    mat = dist(emb).detach()
    assert torch.equal(mat, mat.T) and torch.all(mat.diagonal() == 0)
    assert abs(float(mat[0, 5])) < 1e-6 and float(mat[0, 1]) > 1e-3
    # identity support: cost 1 between distinct dimensions, so OT is the total variation ½‖h − g‖₁
    h = embedding_histograms(emb).numpy()
    cost = 1.0 - np.eye(5)
    for i, j in [(0, 1), (2, 3), (1, 4)]:
        exact = ot.emd2(h[i], h[j], cost)
        assert exact == pytest.approx(0.5 * np.abs(h[i] - h[j]).sum(), abs=1e-9)
        assert float(mat[i, j]) == pytest.approx(exact, abs=0.01)


def test_histogram_reading_learns_its_support_and_is_a_pml_distance():
    from pytorch_metric_learning.losses import TripletMarginLoss

    from dmlrepro.distances.histogram_sinkhorn import HistogramSinkhornDistance
    torch.manual_seed(1)
    emb = torch.randn(8, 4, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    dist = HistogramSinkhornDistance(4, blur=0.1, scaling=0.5)
    loss = TripletMarginLoss(margin=0.1, distance=dist)(emb, labels)
    loss.backward()
    assert torch.isfinite(loss) and emb.grad.abs().sum() > 0 and dist.support.grad.abs().sum() > 0
    assert [p is dist.support for p in dist.parameters()] == [True]  # optimised with the loss's parameters
    paired = dist.pairwise_distance(emb[:3], emb[3:6]).detach()
    full = dist(emb[:3].detach(), emb[3:6].detach()).detach()
    assert torch.allclose(paired, full.diagonal(), atol=1e-5)
    with pytest.raises(DmlReproError, match="4 dimensions"):
        HistogramSinkhornDistance(5)(emb)
