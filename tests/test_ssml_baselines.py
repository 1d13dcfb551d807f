"""SSDML's five baselines' metric steps (Deep-LRML, -ISDML, -SERAPH, -APLLR, -APIT) and the common
MetricStep interface. References: naive loops over pairs, dense inverses, finite differences,
optimality conditions of the closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dmlrepro import DmlReproError
from dmlrepro.losses import ssml_baselines as sb
from dmlrepro.miners.affinity_propagation import mine_ssdml_triplets


def _two_clusters(n=100, d=6, seed=0):
    """Two classes apart along dim 0 only (std 0.5, means ±1.5), nuisance std 3 elsewhere: the
    identity metric mixes them, a learned one should not. Offset keeps rows away from 0."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    x = rng.normal(size=(n, d)) * 3.0
    x[:, 0] = rng.normal(size=n) * 0.5 + np.where(y == 1, 1.5, -1.5)
    labelled = np.r_[0:10, n // 2:n // 2 + 10]
    return x + 10.0, y, labelled


def _within_between_ratio(x, y, M):
    d = np.sqrt(np.maximum(sb._squared_distances(x, np.asarray(M, dtype=np.float64)), 0.0))
    same = y[:, None] == y[None, :]
    off = ~np.eye(len(y), dtype=bool)
    return d[same & off].mean() / d[~same].mean()


def _small(n=24, d=4, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) + 3.0
    labelled = np.array([0, 3, 5, 8, 11, 14, 20])
    labels = np.array([0, 1, 0, 2, 1, 0, 2])
    return x, labelled, labels


def _random_spd(d, rng, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.2 * np.eye(d))


def _sym_fd_gradient(f, m, eps=1e-6):
    """Finite-difference gradient of f over symmetric matrices (perturbing (i, j) and (j, i))."""
    d = m.shape[0]
    g = np.zeros_like(m)
    for i in range(d):
        for j in range(i, d):
            e = np.zeros_like(m)
            e[i, j] = e[j, i] = eps
            val = (f(m + e) - f(m - e)) / (2 * eps)
            g[i, j] = g[j, i] = val if i == j else val / 2.0
    return g


# ------------------------------------------------------------------------------ building blocks

def test_pair_scatter_matches_a_loop_dense_and_sparse():
    import scipy.sparse as sp
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 3))
    c = rng.normal(size=(9, 9))
    c = c + c.T
    ref = sum(c[i, j] * np.outer(x[i] - x[j], x[i] - x[j]) for i in range(9) for j in range(i + 1, 9))
    np.testing.assert_allclose(sb.pair_scatter(x, c), ref, atol=1e-10)
    np.testing.assert_allclose(sb.pair_scatter(x, sp.csr_matrix(c)), ref, atol=1e-10)


def test_labelled_pair_scatters_by_loop():
    x, labelled, labels = _small()
    c_s, c_d, n_s, n_d = sb.labelled_pair_scatters(x, labelled, labels)
    ref_s, ref_d, cs, cd = np.zeros((4, 4)), np.zeros((4, 4)), 0, 0
    for a in range(len(labelled)):
        for b in range(a + 1, len(labelled)):
            v = x[labelled[a]] - x[labelled[b]]
            if labels[a] == labels[b]:
                ref_s += np.outer(v, v)
                cs += 1
            else:
                ref_d += np.outer(v, v)
                cd += 1
    np.testing.assert_allclose(c_s, ref_s, atol=1e-10)
    np.testing.assert_allclose(c_d, ref_d, atol=1e-10)
    assert (n_s, n_d) == (cs, cd) == (5, 16)


def test_adjacencies_by_brute_force():
    x, _, _ = _small(n=20)
    k = 3
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = ((xn[:, None] - xn[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    nn = np.argsort(dist, axis=1, kind="stable")[:, :k]
    b = np.zeros((20, 20))
    for i in range(20):
        b[i, nn[i]] = 1.0
    b = np.maximum(b, b.T)
    np.testing.assert_array_equal(sb.knn_adjacency(x, k).toarray(), b)
    sq = np.take_along_axis(dist, nn, axis=1)
    rho = np.exp(-sq / sq.mean()).mean(axis=1)
    rho /= rho.mean()
    np.testing.assert_allclose(sb.density_scaled_adjacency(x, k).toarray(), b * np.sqrt(np.outer(rho, rho)),
                               atol=1e-12)


def test_low_rank_factor():
    rng = np.random.default_rng(2)
    m = _random_spd(6, rng)
    L = sb.low_rank_factor(m, 6).numpy()
    np.testing.assert_allclose(L @ L.T, m, atol=1e-10)
    L3 = sb.low_rank_factor(m, 3).numpy()
    w = np.linalg.eigvalsh(m)
    assert L3.shape == (6, 3)
    assert np.linalg.norm(m - L3 @ L3.T, 2) == pytest.approx(w[-4], rel=1e-8)   # Eckart–Young


# ------------------------------------------------------------------------------ LRML / ISDML

def _naive_lrml_matrix(x, labelled, labels, w, gamma_s, gamma_d):
    a = np.zeros((x.shape[1],) * 2)
    for p in range(len(labelled)):
        for q in range(p + 1, len(labelled)):
            v = x[labelled[p]] - x[labelled[q]]
            a += (gamma_s if labels[p] == labels[q] else -gamma_d) * np.outer(v, v)
    for i in range(x.shape[0]):
        for j in range(x.shape[0]):
            a += 0.5 * w[i, j] * np.outer(x[i] - x[j], x[i] - x[j])
    return a


@pytest.mark.parametrize("update, adjacency", [(sb.update_lrml, sb.knn_adjacency),
                                               (sb.update_isdml, sb.density_scaled_adjacency)])
def test_lrml_isdml_closed_form_is_the_constrained_minimum(update, adjacency):
    x, labelled, labels = _small()
    a = _naive_lrml_matrix(x, labelled, labels, adjacency(x, 4).toarray(), 0.7, 0.3)
    np.testing.assert_allclose(sb.lrml_matrix(x, labelled, labels, adjacency(x, 4), 0.7, 0.3), a, atol=1e-9)
    M = update(torch.eye(4), x, labelled, labels, k=4, gamma_s=0.7, gamma_d=0.3).numpy()
    m_ref, a_floor = sb.lrml_closed_form(a)
    np.testing.assert_allclose(M, m_ref, atol=1e-10)
    assert np.linalg.eigvalsh(M).min() > 0 and np.linalg.slogdet(M)[1] == pytest.approx(0.0, abs=1e-10)
    # KKT: A M = det(A)^{1/d} I
    np.testing.assert_allclose(a_floor @ M, np.exp(np.linalg.slogdet(a_floor)[1] / 4) * np.eye(4), atol=1e-8)
    best = sb.lrml_objective(M, a_floor)
    assert best <= sb.lrml_objective(np.eye(4), a_floor) + 1e-12          # decreases from I (det 1)
    rng = np.random.default_rng(0)
    for _ in range(200):                                                    # any feasible M is worse
        r = _random_spd(4, rng)
        r /= np.exp(np.linalg.slogdet(r)[1] / 4)
        assert sb.lrml_objective(r, a_floor) >= best - 1e-9


def test_lrml_floors_an_indefinite_matrix():
    x, labelled, labels = _small()
    a = sb.lrml_matrix(x, labelled, labels, sb.knn_adjacency(x, 4), gamma_s=0.0, gamma_d=50.0)
    assert np.linalg.eigvalsh(a).min() < 0
    M, a_floor = sb.lrml_closed_form(a, eig_floor=1e-2)
    w = np.linalg.eigvalsh(a_floor)
    assert w.min() == pytest.approx(1e-2 * np.abs(np.linalg.eigvalsh(a)).max())
    assert np.isfinite(M).all() and np.linalg.eigvalsh(M).min() > 0


# ------------------------------------------------------------------------------ SERAPH

def _naive_seraph(m, x, labelled, labels, eta, mu, lam):
    unl = np.setdiff1d(np.arange(x.shape[0]), labelled)
    val = lam * np.trace(m)
    for p in range(len(labelled)):
        for q in range(p + 1, len(labelled)):
            v = x[labelled[p]] - x[labelled[q]]
            y = 1.0 if labels[p] == labels[q] else -1.0
            prob = 1.0 / (1.0 + np.exp(y * (v @ m @ v - eta)))
            val -= np.log(prob)
    for p in range(len(unl)):
        for q in range(p + 1, len(unl)):
            v = x[unl[p]] - x[unl[q]]
            prob = 1.0 / (1.0 + np.exp(v @ m @ v - eta))
            val += mu * -(prob * np.log(prob) + (1 - prob) * np.log(1 - prob))
    return val


def test_seraph_objective_value_and_gradient():
    x, labelled, labels = _small()
    x = x / 4.0
    rng = np.random.default_rng(3)
    m = _random_spd(4, rng, 0.5)
    pairs = sb.SeraphPairs(x, labelled, labels, mu=0.7)
    value, grad = sb.seraph_objective(m, pairs, eta=1.3, lam=0.2)
    assert value == pytest.approx(_naive_seraph(m, x, labelled, labels, 1.3, 0.7, 0.2), rel=1e-10)
    fd = _sym_fd_gradient(lambda mm: sb.seraph_objective(mm, pairs, 1.3, 0.2, gradient=False)[0], m)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6)
    # μ by default: #labelled pairs / #unlabelled pairs
    assert sb.SeraphPairs(x, labelled, labels).mu == pytest.approx(21 / 136)


def test_seraph_step_decreases_and_stays_psd():
    x, y, labelled = _two_clusters(n=60)
    x = x / 10.0
    m0 = 6 / 7 * np.eye(6)
    M, costs = sb.run_seraph_step(m0, x, labelled, y[labelled], max_iter=15)
    assert len(costs) > 2 and all(b <= a + 1e-12 for a, b in zip(costs, costs[1:]))
    pairs = sb.SeraphPairs(x, labelled, y[labelled])
    assert sb.seraph_objective(M, pairs, gradient=False)[0] == pytest.approx(costs[-1])
    assert costs[-1] < costs[0]
    assert np.linalg.eigvalsh(M.numpy()).min() > -1e-10
    # max_unlabelled subsamples rows (seeded)
    sub = sb.SeraphPairs(x, labelled, y[labelled], max_unlabelled=10, seed=4)
    assert sub.x_u.shape == (10, 6)


# ------------------------------------------------------------------------------ priors

def test_llr_prior_is_kissme_by_hand():
    x, labelled, labels = _small(n=40, d=3)
    labelled = np.arange(0, 40, 2)
    labels = np.arange(20) % 3
    diffs_s = [x[labelled[a]] - x[labelled[b]] for a in range(20) for b in range(a + 1, 20) if labels[a] == labels[b]]
    diffs_d = [x[labelled[a]] - x[labelled[b]] for a in range(20) for b in range(a + 1, 20) if labels[a] != labels[b]]
    cov_s = np.mean([np.outer(v, v) for v in diffs_s], axis=0)
    cov_d = np.mean([np.outer(v, v) for v in diffs_d], axis=0)
    ref = (np.linalg.inv(cov_s + 1e-3 * np.trace(cov_s) / 3 * np.eye(3))
           - np.linalg.inv(cov_d + 1e-3 * np.trace(cov_d) / 3 * np.eye(3)))
    w, v = np.linalg.eigh(ref)
    w = np.clip(w, 0, None)
    ref = (v * np.maximum(w, 1e-3 * w.max())) @ v.T
    np.testing.assert_allclose(sb.llr_prior(x, labelled, labels), ref, rtol=1e-9, atol=1e-12)


def test_itml_prior_satisfies_hard_constraints():
    # feasible by construction: classes differ along dim 0 only, where same-class rows coincide
    rng = np.random.default_rng(6)
    y = np.repeat([0, 1, 2], 8)
    x = np.c_[3.0 * y, rng.normal(size=(24, 2))]
    labelled = np.arange(24)
    m = sb.itml_prior(x, labelled, y, gamma=1e8, max_projections=50_000, tol=1e-6)
    assert np.linalg.eigvalsh(m).min() > 0
    i, j = np.triu_indices(labelled.size, 1)
    diffs = x[labelled[i]] - x[labelled[j]]
    d_id = (diffs ** 2).sum(1)
    upper, lower = np.percentile(d_id, [5, 95])
    d_m = np.einsum("pd,de,pe->p", diffs, m, diffs)
    same = y[labelled[i]] == y[labelled[j]]
    assert (d_id[same] > upper).any() and (d_id[~same] < lower).any()      # the constraints bite
    assert d_m[same].max() <= upper * (1 + 1e-2)
    assert d_m[~same].min() >= lower * (1 - 1e-2)


# ------------------------------------------------------------------------------ APLLR / APIT

def test_propagated_affinity_scatter_against_dense_inverse():
    x, labelled, labels = _small(n=30)
    k, gamma = 4, 0.9
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    dist = ((xn[:, None] - xn[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    q = np.zeros((30, 30))
    for i in range(30):
        q[i, np.argsort(dist[i], kind="stable")[:k]] = 1.0 / k
    w0 = np.eye(30)
    for a, ya in zip(labelled, labels):
        for b, yb in zip(labelled, labels):
            if a != b:
                w0[a, b] = 1.0 if ya == yb else -1.0
    w = (1 - gamma) * np.linalg.inv(np.eye(30) - gamma * q) @ w0
    w = 0.5 * (w + w.T)
    ref = sum(w[i, j] * np.outer(x[i] - x[j], x[i] - x[j]) for i in range(30) for j in range(i + 1, 30))
    mass = sum(abs(w[i, j]) for i in range(30) for j in range(i + 1, 30))
    np.testing.assert_allclose(sb.propagated_affinity_scatter(x, labelled, labels, k, gamma, normalise=False),
                               ref, atol=1e-9)
    np.testing.assert_allclose(sb.propagated_affinity_scatter(x, labelled, labels, k, gamma), ref / mass,
                               atol=1e-9)
    on_graph = sb.propagated_affinity_scatter(x, labelled, labels, k, gamma, support="graph", normalise=False)
    edges = (q > 0) | (q.T > 0)
    ref_graph = sum(w[i, j] * np.outer(x[i] - x[j], x[i] - x[j]) * 0.5 * (float(q[i, j] > 0) + float(q[j, i] > 0))
                    for i in range(30) for j in range(i + 1, 30) if edges[i, j])
    np.testing.assert_allclose(on_graph, ref_graph, atol=1e-9)


def test_ap_closed_form_is_the_minimum():
    rng = np.random.default_rng(5)
    m0 = _random_spd(4, rng)
    s = rng.normal(size=(4, 4))
    s = s @ s.T / 4                                       # a PSD scatter: no flooring
    M, b = sb.ap_closed_form(m0, s, lam=0.5)
    np.testing.assert_allclose(b, np.linalg.inv(m0) + 0.5 * s, atol=1e-10)
    f = lambda mm: sb.ap_objective(mm, m0, b)              # noqa: E731
    np.testing.assert_allclose(_sym_fd_gradient(f, M), 0.0, atol=1e-6)   # stationary (and convex)
    # its gradient is M0⁻¹ − M⁻¹ + λS: check at a random point
    r = _random_spd(4, rng)
    np.testing.assert_allclose(_sym_fd_gradient(f, r), np.linalg.inv(m0) - np.linalg.inv(r) + 0.5 * s,
                               atol=1e-5)
    assert f(M) <= f(m0) and f(M) <= f(np.eye(4))
    for _ in range(100):
        assert f(_random_spd(4, rng)) >= f(M) - 1e-10
    assert sb.logdet_divergence(m0, m0) == pytest.approx(0.0, abs=1e-10)


def test_ap_closed_form_floors_an_indefinite_sum():
    m0 = np.eye(3)
    s = np.diag([-5.0, 1.0, 2.0])
    M, b = sb.ap_closed_form(m0, s, lam=1.0, eig_floor=0.01)
    np.testing.assert_allclose(np.diag(b), [0.04, 2.0, 3.0])     # B = diag(-4, 2, 3), floor 0.01 · 4
    np.testing.assert_allclose(M, np.diag([25.0, 0.5, 1 / 3]), atol=1e-12)


# ------------------------------------------------------------------------------ toy and interface

TOY_STEPS = {
    "lrml": {}, "isdml": {}, "seraph": {},
    "apllr": {}, "apit": {"max_projections": 20_000},
}


@pytest.mark.parametrize("name", list(TOY_STEPS))
def test_each_baseline_separates_two_clusters_better_than_identity(name):
    x, y, labelled = _two_clusters()
    step = sb.make_metric_step(name, **TOY_STEPS[name])
    assert isinstance(step, sb.MetricStep)
    step.init(6, 6, seed=0)
    step.update(x, labelled, y[labelled])
    M = step.M.numpy()
    assert np.linalg.eigvalsh(M).min() > -1e-10
    identity = _within_between_ratio(x, y, np.eye(6))
    learned = _within_between_ratio(x, y, M)
    assert learned < 0.9 * identity, (name, learned, identity)


def test_ssdml_step_through_the_interface():
    x, y, labelled = _two_clusters()
    triplets = mine_ssdml_triplets(x, labelled, y[labelled], k=10, gamma=0.99)
    step = sb.make_metric_step("ssdml", alpha_deg=40.0, max_iter=10)
    step.init(6, 3, seed=0)
    z = torch.as_tensor(x / 10.0)
    before = step.project(z).clone()
    step.update(x / 10.0, labelled, y[labelled], mined=triplets)
    assert step.metric.last_costs[-1] < step.metric.last_costs[0]
    assert not torch.allclose(step.project(z), before)
    L = step.L
    np.testing.assert_allclose((L.T @ L).numpy(), np.eye(3), atol=1e-8)
    state = step.state_dict()
    other = sb.make_metric_step("ssdml")
    other.load_state_dict(state)
    torch.testing.assert_close(other.project(z), step.project(z))
    with pytest.raises(DmlReproError, match="mined"):
        step.update(x, labelled, y[labelled])


@pytest.mark.parametrize("name", ["lrml", "seraph", "apllr"])
def test_projection_and_state(name):
    x, y, labelled = _two_clusters(n=40)
    step = sb.make_metric_step(name)
    with pytest.raises(DmlReproError, match="init"):
        step.update(x, labelled, y[labelled])
    step.init(6, 6, seed=0)
    step.update(x / 10.0, labelled, y[labelled])
    z = torch.as_tensor(x[:5] / 10.0)
    p = step.project(z)
    dz = z[0] - z[1]
    assert float((p[0] - p[1]).pow(2).sum()) == pytest.approx(float(dz @ step.M @ dz), rel=1e-8)  # l = d: exact
    restored = sb.make_metric_step(name)
    restored.load_state_dict(step.state_dict())
    torch.testing.assert_close(restored.project(z), p)
    low = sb.make_metric_step(name)
    low.load_state_dict({**step.state_dict(), "l": 2})
    assert low.project(z).shape == (5, 2)


def test_bad_inputs():
    x, labelled, labels = _small()
    with pytest.raises(DmlReproError, match=r"M must be \(4, 4\)"):
        sb.update_lrml(torch.eye(3), x, labelled, labels)
    with pytest.raises(DmlReproError, match="labels"):
        sb.update_seraph(torch.eye(4), x, labelled, labels[:-1])
    with pytest.raises(DmlReproError, match="labelled_rows"):
        sb.update_apllr(torch.eye(4), x, [0, 99], [0, 1])
    with pytest.raises(DmlReproError, match="support"):
        sb.propagated_affinity_scatter(x, labelled, labels, support="sparse")
    with pytest.raises(DmlReproError, match="unknown metric step"):
        sb.make_metric_step("lmnn")
    with pytest.raises(DmlReproError, match="similar and dissimilar"):
        sb.llr_prior(x, [0, 1, 2], [0, 1, 2])
    with pytest.raises(DmlReproError, match="loaded into"):
        sb.make_metric_step("lrml").load_state_dict({"name": "apit", "M": torch.eye(2), "l": 2})


def test_benchmark_script_runs_on_a_tiny_case(capsys):
    import sys
    from conftest import REPO_ROOT
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    import bench_ssdml_metric_step
    bench_ssdml_metric_step.main(["--n", "60", "--d", "8", "--l", "4", "--labelled", "20", "--classes", "2",
                                  "--triplets", "50", "--repeats", "1", "--no-append"])
    out = capsys.readouterr().out
    assert all(f"| {name} |" in out for name in ("ssdml", "lrml", "isdml", "seraph", "apllr", "apit"))
