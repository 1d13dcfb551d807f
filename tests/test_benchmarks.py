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
