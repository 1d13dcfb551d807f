"""SSDML building blocks: affinity propagation and mining, the loss of Eq. 3, the Stiefel metric
step. References are dense inverses, naive loops and hand-built cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from pytorch_metric_learning.reducers import MeanReducer

from dmlrepro import DmlReproError
from dmlrepro.losses.ssdml import SSDMLAngularLoss, ssdml_angular_loss, tan2_from_degrees
from dmlrepro.losses.stiefel_metric import (
    StiefelMetric,
    initial_stiefel_point,
    orthonormality_error,
    run_metric_step,
    update_metric,
)
from dmlrepro.miners.affinity_propagation import (
    SSDMLTripletMiner,
    initial_affinity,
    knn_graph,
    knn_neighbours,
    mine_ssdml_triplets,
    propagate_affinity,
    propagated_affinity_on_graph,
    symmetrise,
)


def _clustered(n=60, d=8, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d)) * 2.0
    y = rng.integers(0, classes, n)
    return centres[y] + rng.normal(size=(n, d)), y


def _dense_w_star(x, labelled, labels, k, gamma):
    """Reference: W* = (1 − γ)(I − γQ)^{-1} W0 with a dense inverse and dense loops."""
    n = x.shape[0]
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = ((xn[:, None] - xn[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    q = np.zeros((n, n))
    for i in range(n):
        q[i, np.argsort(dist[i], kind="stable")[:k]] = 1.0 / k
    w0 = np.eye(n)
    for a, ya in zip(labelled, labels):
        for b, yb in zip(labelled, labels):
            if a != b:
                w0[a, b] = 1.0 if ya == yb else -1.0
    return (1 - gamma) * np.linalg.inv(np.eye(n) - gamma * q) @ w0, q, w0


# ------------------------------------------------------------------------------ graph, W0, W*

def test_knn_graph_matches_brute_force_and_ignores_feature_scale():
    x, _ = _clustered()
    k = 5
    _, q_ref, _ = _dense_w_star(x, [], [], k, 0.5)
    q = knn_graph(x, k)
    np.testing.assert_allclose(q.toarray(), q_ref)
    assert q.nnz == x.shape[0] * k and np.all(q.diagonal() == 0)
    np.testing.assert_allclose(np.asarray(q.sum(axis=1)).ravel(), 1.0)
    scaled = x * np.random.default_rng(1).uniform(0.1, 10.0, size=(x.shape[0], 1))
    assert (knn_graph(scaled, k) != q).nnz == 0          # built on L2-normalised features


def test_knn_excludes_self_even_with_duplicates():
    x = np.repeat(np.eye(3), 4, axis=0)                  # 3 groups of 4 identical points
    nb = knn_neighbours(x, 3)
    assert not (nb == np.arange(12)[:, None]).any()
    assert all(set(nb[i]) == set(range(4 * (i // 4), 4 * (i // 4) + 4)) - {i} for i in range(12))


def test_initial_affinity_by_hand():
    w0 = initial_affinity(5, [4, 0, 2], [7, 7, 3]).toarray()
    expected = np.eye(5)
    expected[0, 4] = expected[4, 0] = 1.0
    expected[0, 2] = expected[2, 0] = expected[2, 4] = expected[4, 2] = -1.0
    np.testing.assert_array_equal(w0, expected)
    with pytest.raises(DmlReproError, match="repeated"):
        initial_affinity(5, [1, 1], [0, 0])
    with pytest.raises(DmlReproError, match="labelled_rows"):
        initial_affinity(5, [5], [0])


def test_propagation_matches_dense_inverse():
    x, y = _clustered()
    labelled = np.array([0, 5, 11, 17, 30, 44])
    w_ref, _, _ = _dense_w_star(x, labelled, y[labelled], k=6, gamma=0.9)
    q = knn_graph(x, 6)
    w0 = initial_affinity(x.shape[0], labelled, y[labelled])
    np.testing.assert_allclose(propagate_affinity(q, w0, 0.9), w_ref, atol=1e-12)
    cols = [3, 5, 59]
    np.testing.assert_allclose(propagate_affinity(q, w0, 0.9, columns=cols), w_ref[:, cols], atol=1e-12)
    w_sym = symmetrise(w_ref)
    rows, cols = q.nonzero()
    for block_size in (1, 7, 1000):
        on_graph = propagated_affinity_on_graph(q, w0, 0.9, block_size=block_size)
        assert np.array_equal(on_graph.indptr, q.indptr) and np.array_equal(on_graph.indices, q.indices)
        np.testing.assert_allclose(np.asarray(on_graph[rows, cols]).ravel(), w_sym[rows, cols], atol=1e-12)
    with pytest.raises(DmlReproError, match="gamma"):
        propagate_affinity(q, w0, 1.0)


def test_unlabelled_columns_carry_no_label_information():
    """A consequence of the printed formula (documented in the module): W*[:, j] for unlabelled j
    is (1 − γ)(I − γQ)^{-1} e_j whatever the labels."""
    x, y = _clustered()
    q = knn_graph(x, 6)
    with_labels = propagate_affinity(q, initial_affinity(60, [0, 1, 2], y[:3]), 0.99, columns=[10, 20])
    without = propagate_affinity(q, sp.identity(60), 0.99, columns=[10, 20])
    np.testing.assert_allclose(with_labels, without, atol=1e-12)


# ------------------------------------------------------------------------------ mining

def _naive_triplets(w_star, q):
    w = symmetrise(w_star)
    n = w.shape[0]
    out = []
    for a in range(n):
        nbrs = list(np.flatnonzero(q[a]))
        # ties: nearer first; here all W differ, so the order is by W alone
        ranked = sorted(nbrs, key=lambda j: -w[a, j])
        half = len(ranked) // 2
        out += [(a, ranked[i], ranked[half + i]) for i in range(half)]
    return np.array(out)


def test_mined_triplets_match_a_naive_dense_miner():
    x, y = _clustered(seed=3)
    labelled = np.array([2, 9, 23, 31, 48])
    w_star, q, _ = _dense_w_star(x, labelled, y[labelled], k=6, gamma=0.99)
    t = mine_ssdml_triplets(x, labelled, y[labelled], k=6, gamma=0.99)
    assert t.shape == (60 * 3, 3)
    np.testing.assert_array_equal(t, _naive_triplets(w_star, q))


def _two_arcs():
    """Two clusters of 8 points on the unit circle (5° apart inside, 12° gap between them);
    the labelled points are the two boundary points, 7 (class 0) and 8 (class 1)."""
    angles = np.radians(np.r_[np.arange(8) * 5.0, 47 + np.arange(8) * 5.0])
    return np.stack([np.cos(angles), np.sin(angles)], 1), np.r_[[0] * 8, [1] * 8]


def test_hand_built_two_clusters():
    x, cluster = _two_arcs()
    assert list(knn_neighbours(x, 4)[7]) == [6, 5, 8, 4]       # 8 is nearer to 7 than 4 is
    for gamma in (0.5, 0.99):
        t = mine_ssdml_triplets(x, [7, 8], [0, 1], k=4, gamma=gamma)
        assert t.shape == (16 * 2, 3)
        assert (cluster[t[:, 1]] == cluster[t[:, 0]]).all()     # every positive in its own cluster
        # the two cross-cluster edges (7-8, 8-7) become the last negative of their anchor
        cross = cluster[t[:, 2]] != cluster[t[:, 0]]
        assert {tuple(r) for r in t[cross][:, [0, 2]]} == {(7, 8), (8, 7)}
        assert t[15, 2] == 8 and t[17, 2] == 7                   # the last pair of anchors 7 and 8
    # without labels, at γ = 0.5, 8 is not 7's last negative (4, the farthest, is): labels move it
    unlabelled = mine_ssdml_triplets(x, [], [], k=4, gamma=0.5)
    assert unlabelled[15, 2] == 4 and unlabelled[14, 2] == 8


def test_miner_class_matches_function_and_checks_input():
    x, y = _clustered(seed=5)
    labels = np.full(60, -1)
    labels[[1, 4, 8, 15]] = y[[1, 4, 8, 15]]
    miner = SSDMLTripletMiner(k=4, gamma=0.99)
    a, p, n = miner(torch.tensor(x, dtype=torch.float32), torch.tensor(labels))
    expected = mine_ssdml_triplets(x.astype(np.float32), [1, 4, 8, 15], y[[1, 4, 8, 15]], 4, 0.99)
    np.testing.assert_array_equal(torch.stack([a, p, n], 1).numpy(), expected)
    assert miner.num_triplets == 120
    with pytest.raises(DmlReproError, match="even"):
        SSDMLTripletMiner(k=5)
    with pytest.raises(DmlReproError, match="even"):
        mine_ssdml_triplets(x, [], [], k=3, gamma=0.5)


# ------------------------------------------------------------------------------ loss (Eq. 3)

def _naive_loss(emb, triplets, L, alpha_deg):
    tan2 = math.tan(math.radians(alpha_deg)) ** 2
    total = emb.new_zeros(())
    for a, p, n in triplets.tolist():
        d_ap = ((emb[a] - emb[p]) @ L).pow(2).sum()
        mid = (emb[a] + emb[p]) / 2
        d_nm = ((emb[n] - mid) @ L).pow(2).sum()
        m = d_ap - 4 * tan2 * d_nm
        total = total + torch.log1p(torch.exp(m))
    return total


def _loss_inputs(seed=0, n=12, d=6, l=3, t=20):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g, dtype=torch.float64)
    L = torch.randn(d, l, generator=g, dtype=torch.float64) * 0.5
    trip = torch.randint(0, n, (t, 3), generator=g)
    return emb, L, trip


def test_loss_matches_naive_loop_values_and_gradients():
    emb, L, trip = _loss_inputs()
    for alpha in (36.0, 45.0):
        e1, l1 = emb.clone().requires_grad_(), L.clone().requires_grad_()
        e2, l2 = emb.clone().requires_grad_(), L.clone().requires_grad_()
        ours = ssdml_angular_loss(e1, trip, l1, alpha)
        ref = _naive_loss(e2, trip, l2, alpha)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
        ours.backward()
        ref.backward()
        torch.testing.assert_close(e1.grad, e2.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(l1.grad, l2.grad, rtol=1e-10, atol=1e-12)
    assert tan2_from_degrees(45.0) == pytest.approx(1.0)


def test_loss_gradcheck():
    emb, L, trip = _loss_inputs(n=6, d=4, l=2, t=8, seed=1)
    assert torch.autograd.gradcheck(lambda e, m: ssdml_angular_loss(e, trip, m, 40.0),
                                    (emb.requires_grad_(), L.requires_grad_()))


def test_loss_is_stable_for_large_margins():
    emb = torch.tensor([[0.0], [100.0], [0.0]], dtype=torch.float64, requires_grad=True)
    loss = ssdml_angular_loss(emb, [[0, 1, 2]], None, 40.0)  # m = 1e4 − 4 tan²40°·2500
    m = 1e4 - 4 * tan2_from_degrees(40.0) * 2500
    assert torch.isfinite(loss) and loss.item() == pytest.approx(m)
    loss.backward()
    assert torch.isfinite(emb.grad).all()


def test_pml_loss_class_reducers_identity_and_labels():
    emb, L, trip = _loss_inputs(seed=2)
    idx = (trip[:, 0], trip[:, 1], trip[:, 2])
    loss = SSDMLAngularLoss(alpha_deg=40.0, L=L)
    torch.testing.assert_close(loss(emb, indices_tuple=idx), ssdml_angular_loss(emb, trip, L, 40.0))
    mean = SSDMLAngularLoss(alpha_deg=40.0, L=L, reducer=MeanReducer())
    torch.testing.assert_close(mean(emb, indices_tuple=idx), ssdml_angular_loss(emb, trip, L, 40.0) / 20)
    # L = None is the identity
    eye = torch.eye(emb.shape[1], dtype=torch.float64)
    torch.testing.assert_close(SSDMLAngularLoss()(emb, indices_tuple=idx), ssdml_angular_loss(emb, trip, eye))
    # L is a buffer: the SGD optimiser of the network must not see it
    assert list(loss.parameters()) == [] and "L" in dict(loss.named_buffers())
    loss.set_metric(eye)
    torch.testing.assert_close(loss(emb, indices_tuple=idx), ssdml_angular_loss(emb, trip, None))
    loss.set_metric(L)
    # from labels: all (a, p, n) triplets of the batch
    labels = torch.tensor([0, 0, 1, 1, 2, 0, 1, 2, 2, 0, 1, 2])
    all_t = [(a, p, n) for a in range(12) for p in range(12) for n in range(12)
             if a != p and labels[a] == labels[p] and labels[n] != labels[a]]
    torch.testing.assert_close(loss(emb, labels), _naive_loss(emb, torch.tensor(all_t), L, 40.0))
    assert loss(emb, indices_tuple=tuple(torch.empty(0, dtype=torch.long) for _ in range(3))) == 0
    with pytest.raises(DmlReproError, match="alpha"):
        SSDMLAngularLoss(alpha_deg=90.0)


# ------------------------------------------------------------------------------ metric step

def _metric_toy(seed=0, n=80, d=10, t=150):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, d, generator=g, dtype=torch.float64)
    feats = feats / feats.norm(dim=1, keepdim=True)
    return feats, torch.randint(0, n, (t, 3), generator=g)


def test_stiefel_step_stays_orthonormal_and_decreases_the_cost():
    feats, trip = _metric_toy()
    L = initial_stiefel_point(10, 4, seed=3)
    assert orthonormality_error(L) <= 1e-12
    previous_end = None
    for _ in range(3):                                     # warm-started consecutive steps
        new_L, result = run_metric_step(L, feats, trip, 40.0, max_iter=10)
        costs = [float(c) for c in result.log["iterations"]["cost"]]
        assert costs[0] == pytest.approx(ssdml_angular_loss(feats, trip, L, 40.0).item(), rel=1e-12)
        assert all(b <= a + 1e-12 for a, b in zip(costs, costs[1:]))        # non-increasing
        if previous_end is not None:
            assert costs[0] == pytest.approx(previous_end, rel=1e-12)       # warm start
        assert orthonormality_error(new_L) <= 1e-6
        previous_end, L = costs[-1], new_L
    assert len(costs) <= 11                                # at most max_iter = 10 CG steps


def test_unconstrained_step_leaves_orthogonality_free():
    feats, trip = _metric_toy(seed=1)
    L0 = initial_stiefel_point(10, 4, seed=0)
    on_stiefel = update_metric(L0, feats, trip, 40.0, orthogonal=True)
    free = update_metric(L0, feats, trip, 40.0, orthogonal=False)
    assert orthonormality_error(free) > 1e-2
    assert ssdml_angular_loss(feats, trip, free, 40.0) < ssdml_angular_loss(feats, trip, L0, 40.0)
    assert orthonormality_error(on_stiefel) <= 1e-6
    with pytest.raises(DmlReproError, match="Stiefel"):
        update_metric(free, feats, trip, 40.0, orthogonal=True)


def test_stiefel_metric_module():
    for init in ("random", "identity"):
        metric = StiefelMetric(10, 4, init=init, seed=7)
        assert metric.L.shape == (10, 4) and orthonormality_error(metric.L) <= 1e-12
    torch.testing.assert_close(StiefelMetric(5, 2, init="identity").L, torch.eye(5, dtype=torch.float64)[:, :2])
    feats, trip = _metric_toy(seed=2)
    metric = StiefelMetric(10, 4, seed=1)
    torch.testing.assert_close(metric(feats), feats @ metric.L)
    before = metric.L.clone()
    with torch.no_grad():                                  # e.g. called from a training hook
        metric.update(feats, trip, 45.0)
    assert not torch.equal(before, metric.L) and orthonormality_error(metric.L) <= 1e-6
    assert metric.last_costs[-1] <= metric.last_costs[0]
    with pytest.raises(DmlReproError, match="l <= d"):
        StiefelMetric(3, 4)


# ------------------------------------------------------------------ the baselines' network step
def _tiny_partition(seed=0, n=40, d=6):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 4
    x = rng.normal(size=(n, d)) + 2.0 * np.eye(d)[y]
    return x, y


@pytest.mark.parametrize("name", ["lrml", "isdml", "apllr", "apit"])
def test_linear_pair_loss_is_the_methods_objective_on_the_batch_pairs(name):
    """Σ_{i<j∈B} C_ij δ²_M / Σ|C_ij| equals tr(M A_B) / mass with A_B the batch's pair scatter (M = LLᵀ)."""
    import scipy.sparse as sp

    from dmlrepro.losses.ssml_baselines import (linear_pair_loss, lrml_objective, pair_scatter,
                                                partition_pair_weights)
    x, y = _tiny_partition()
    labelled = np.arange(12)
    C = partition_pair_weights(name, x, labelled, y[labelled], k=4, gamma=0.9)
    assert abs(C - C.T).max() < 1e-12 and np.allclose(C.diagonal(), 0)
    if name in ("lrml", "isdml"):   # labelled pairs: +γ_S same class, −γ_D different, on top of the graph
        assert C[0, 4] >= 1.0 and (C[:12, :12].toarray() < 0).any()
    positions = np.array([0, 3, 4, 7, 12, 13, 20, 21, 22, 30])
    g = np.random.default_rng(1)
    L = torch.from_numpy(g.normal(size=(6, 3)))
    xb = torch.from_numpy(x[positions])
    loss, n_pairs = linear_pair_loss(xb @ L, C, positions)
    sub = C[positions][:, positions].toarray()
    M = (L @ L.T).numpy()
    mass = np.abs(np.triu(sub, 1)).sum()
    expected = lrml_objective(M, pair_scatter(x[positions], sub)) / mass
    assert float(loss) == pytest.approx(expected, rel=1e-10)
    # a naive double loop over the batch pairs
    naive = sum(sub[a, b] * float(((x[positions[a]] - x[positions[b]]) @ L.numpy()) @
                                  ((x[positions[a]] - x[positions[b]]) @ L.numpy()))
                for a in range(10) for b in range(a + 1, 10))
    assert float(loss) == pytest.approx(naive / mass, rel=1e-10) and n_pairs == np.count_nonzero(np.triu(sub, 1))
    empty, none = linear_pair_loss(xb @ L, sp.csr_matrix((40, 40)), positions)
    assert none == 0 and float(empty) == 0.0


def test_seraph_pair_loss_is_eq1_on_the_batch_pairs():
    from dmlrepro.losses.ssml_baselines import SeraphPairs, seraph_objective, seraph_pair_loss
    x, y = _tiny_partition(n=16, d=5)
    labels = np.where(np.arange(16) < 6, y, -1)
    g = np.random.default_rng(2)
    L = g.normal(size=(5, 5)) * 0.4
    M = L @ L.T
    pairs = SeraphPairs(x, np.arange(6), y[:6], mu=0.3)
    value, _ = seraph_objective(M, pairs, eta=1.2, lam=0.0, gradient=False)
    loss, n = seraph_pair_loss(torch.from_numpy(x @ L), labels, eta=1.2, mu=0.3)
    assert n == 15 + 45 and float(loss) * n == pytest.approx(value, rel=1e-10)
    # μ = None: #labelled pairs / #unlabelled pairs, SERAPH's auto rule
    auto, _ = seraph_pair_loss(torch.from_numpy(x @ L), labels, eta=1.2)
    v_auto, _ = seraph_objective(M, SeraphPairs(x, np.arange(6), y[:6]), eta=1.2, gradient=False)
    assert float(auto) * 60 == pytest.approx(v_auto, rel=1e-10)
    z = torch.from_numpy(x @ L).requires_grad_(True)
    seraph_pair_loss(z, labels, eta=1.2, mu=0.3)[0].backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
