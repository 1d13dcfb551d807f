"""STML loss (Kim et al. 2022) against naive loops: target W, relaxed contrastive, self-distillation."""

from __future__ import annotations

import math

import pytest
import torch

from dmlrepro import DmlReproError
from dmlrepro.losses.stml import STMLLoss, contextual_similarity


def _naive_target(t, ids, sigma, topk):
    t = torch.nn.functional.normalize(t, dim=1)
    n = len(t)
    w_p = [[math.exp(-float((t[i] - t[j]).pow(2).sum()) / sigma) for j in range(n)] for i in range(n)]
    rank = [[1.0 if ids[i] == ids[j] else w_p[i][j] for j in range(n)] for i in range(n)]
    knn = [sorted(range(n), key=lambda j: -rank[i][j])[:topk] for i in range(n)]
    recip = [{j for j in knn[i] if i in knn[j]} for i in range(n)]
    w_ct = [[len(recip[i] & recip[j]) / len(recip[i]) if j in recip[i] else 0.0 for j in range(n)] for i in range(n)]
    half = round(topk / 2)
    w_ch = [[sum(w_ct[q][j] for q in knn[i][:half]) / half for j in range(n)] for i in range(n)]
    return torch.tensor([[0.5 * (w_p[i][j] + 0.5 * (w_ch[i][j] + w_ch[j][i])) for j in range(n)] for i in range(n)],
                        dtype=torch.float64)


def _naive_loss(f, g, w, delta):
    n = len(f)

    def rel(x):
        d = [[torch.linalg.vector_norm(x[i] - x[j]) for j in range(n)] for i in range(n)]
        return [[d[i][j] / (sum(d[i]) / n) for j in range(n)] for i in range(n)]

    def rc(x):
        d, total = rel(x), 0.0
        for i in range(n):
            for j in range(n):
                if i != j:
                    total = total + w[i, j] * d[i][j] ** 2 + (1 - w[i, j]) * torch.relu(delta - d[i][j]) ** 2
        return total / (n * (n - 1))

    df, dg = rel(f), rel(g)
    kl = 0.0
    for i in range(n):
        lq = torch.log_softmax(-torch.stack(df[i]), 0)
        p = torch.softmax(-torch.stack(dg[i]).detach(), 0)
        kl = kl + (p * (p.log() - lq)).sum()
    return 0.5 * (rc(f) + rc(g)) + kl / n


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    n_img, views = 6, 2
    ids = torch.arange(n_img).repeat(views)
    base = torch.randn(n_img, 8, generator=g, dtype=torch.float64)
    teacher = base[ids] + 0.3 * torch.randn(n_img * views, 8, generator=g, dtype=torch.float64)
    f = torch.randn(12, 4, generator=g, dtype=torch.float64, requires_grad=True)
    gg = torch.randn(12, 8, generator=g, dtype=torch.float64, requires_grad=True)
    return f, gg, teacher, ids


def test_contextual_similarity_matches_loop(batch):
    _, _, teacher, ids = batch
    for topk in (3, 4, 6):
        w = contextual_similarity(teacher, ids, sigma=3.0, topk=topk)
        torch.testing.assert_close(w, _naive_target(teacher, ids.tolist(), 3.0, topk))
        assert torch.allclose(w, w.T) and (w >= 0).all() and (w <= 1).all()


def test_views_of_one_image_are_neighbours(batch):
    _, _, teacher, ids = batch
    far = teacher.clone()
    far[6] = -far[0]                                          # the second view of image 0 points away
    w = contextual_similarity(far, ids, sigma=3.0, topk=2)
    w_free = contextual_similarity(far, None, sigma=3.0, topk=2)
    assert w[0, 6] > w_free[0, 6]                             # forced reciprocal neighbours add W_C


def test_stml_loss_value_and_gradients_match_loop(batch):
    f, g, teacher, ids = batch
    loss = STMLLoss(sigma=3.0, delta=1.0, num_neighbors=2, views=2)
    out = loss(f, g, teacher, ids)
    w = _naive_target(teacher, ids.tolist(), 3.0, 4)
    ref = _naive_loss(f, g, w, 1.0)
    assert math.isclose(float(out["loss"].detach()), float(ref.detach()), rel_tol=1e-10)
    torch.testing.assert_close(out["rc"] + out["kl"], out["loss"])
    got = torch.autograd.grad(out["loss"], [f, g])
    want = torch.autograd.grad(ref, [f, g])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_teacher_gets_no_gradient(batch):
    f, g, teacher, ids = batch
    teacher = teacher.clone().requires_grad_(True)
    out = STMLLoss(num_neighbors=2)(f, g, teacher, ids)
    assert torch.autograd.grad(out["loss"], teacher, allow_unused=True)[0] is None
    # the KL term trains f only (g is its detached target)
    kl_g = torch.autograd.grad(out["kl"], g, allow_unused=True, retain_graph=True)[0]
    assert kl_g is None or float(kl_g.abs().sum()) == 0.0


def test_stml_bad_input(batch):
    f, g, teacher, ids = batch
    with pytest.raises(DmlReproError, match="same N"):
        STMLLoss()(f[:5], g, teacher, ids)
    with pytest.raises(DmlReproError, match="topk"):
        contextual_similarity(teacher, ids, topk=50)
    with pytest.raises(DmlReproError, match="sigma"):
        STMLLoss(sigma=0)
