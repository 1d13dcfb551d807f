"""The benchmarks' own solvers must be exact too, or their comparisons mean nothing (timings are not tested)."""

import sys

import numpy as np
import pytest

from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import bench_solvers  # noqa: E402


def random_problem(rng, n, m):
    x, y = rng.normal(size=(n, 5)), rng.normal(size=(m, 5))
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    from scipy.spatial.distance import cdist
    return a / a.sum(), b / b.sum(), np.ascontiguousarray(cdist(x, y))


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (12, 30), (40, 25)])
def test_column_generation_gives_the_exact_emd(shape):
    from dmlrepro.ot.emd import emd_from_cost
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        a, b, cost = random_problem(rng, *shape)
        assert bench_solvers.column_generation(a, b, cost) == pytest.approx(emd_from_cost(a, b, cost), abs=1e-12)


def test_column_generation_on_the_engines_real_problems(bbcsport_small):
    from dmlrepro.ot.emd import emd_from_cost, ground_cost
    from dmlrepro.ot.engine import PreparedDocs, shared_mass_reduced
    docs = PreparedDocs.from_pointsets(bbcsport_small.subset(np.arange(6)))
    for i in range(len(docs)):
        for j in range(i + 1, len(docs)):
            problem = shared_mass_reduced(docs.weights[i], docs.vector_ids[i], docs.weights[j], docs.vector_ids[j],
                                          ground_cost(docs.vectors[i], docs.vectors[j]))
            _, a, b, cost = problem
            assert bench_solvers.column_generation(a, b, cost) == pytest.approx(emd_from_cost(a, b, cost),
                                                                                abs=1e-12)


# ------------------------------------------------------------------ bench_wasserstein
import bench_wasserstein  # noqa: E402


@pytest.mark.parametrize("blur, scaling", [(0.1, 0.5), (0.05, 0.9), (0.5, 0.7)])
def test_wasserstein_bench_iterations_are_the_ones_geomloss_runs(monkeypatch, blur, scaling):
    """The 'Sinkhorn iterations' column: geomloss's eps-scaling loop calls ``dampening`` once before
    it and once per iteration; counted on a real solve, it must equal the reported number."""
    import torch
    from geomloss._legacy import sinkhorn_divergence as gl

    from dmlrepro.distances.sinkhorn_divergence import pairwise_sinkhorn_divergence
    calls = []
    real = gl.dampening
    monkeypatch.setattr(gl, "dampening", lambda eps, rho: calls.append(eps) or real(eps, rho))
    clouds = torch.nn.functional.normalize(torch.randn(4, 5, 3, generator=torch.Generator().manual_seed(1)), dim=-1)
    pairwise_sinkhorn_divergence(clouds, blur=blur, scaling=scaling)   # 6 pairs, one geomloss call
    assert len(calls) - 1 == bench_wasserstein.sinkhorn_iterations(clouds, blur, scaling)
    assert calls[-1] == pytest.approx(blur ** 2)


def test_wasserstein_bench_runs_at_tiny_sizes():
    """A smoke run (no timing asserted): both settings, baselines and one W-row each, on the CPU."""
    import torch
    rows = bench_wasserstein.run([(0.2, 0.5)], repeats=1, devices=[torch.device("cpu")], head_batches=[4],
                                 emit=lambda _line: None)
    assert [r[3].split(" (")[0] for r in rows] == ["Euclidean triplet", "Triplet row of Table 1", "W-triplet"] * 2
    assert all(len(r) == len(bench_wasserstein.HEADER) for r in rows)
    w_rows = [r for r in rows if r[3].startswith("W-triplet")]
    assert all(int(r[7]) >= 1 and float(r[9]) > 0 for r in w_rows)
    assert w_rows[1][2] == "4 x 49 x 128"
