"""Piecewise-linear manifolds (Paper 003): subset selection, similarities, proxy losses, hooks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from dmlrepro import DmlReproError
from dmlrepro.losses.pl_manifold import (PLManifoldLoss, directed_components, orthonormalise,
                                         point_similarity, proxy_similarity, subspace_cosines)
from dmlrepro.miners.nn_batches import nn_batch_plan, neighbour_table
from dmlrepro.miners.pl_manifold import piecewise_linear_manifold
from dmlrepro.training.loop import Batch, Objective, Trainer
from dmlrepro.training.momentum import MomentumEncoder
from dmlrepro.training.nn_batches import NeighbourBatches
from dmlrepro.training.pl_manifold import ProxyRetraction



@pytest.fixture(autouse=True)
def _float64():
    """Exact comparisons with the loops; restored afterwards for other test files."""
    saved = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(saved)


def _frame(rng, d, m):
    return np.linalg.qr(rng.standard_normal((d, m)))[0]


def _cluster_on_subspace(rng, frame, n, spread=0.15):
    """Unit vectors of span(frame) near one direction of it."""
    centre = frame @ np.array([1.0] + [0.0] * (frame.shape[1] - 1))
    pts = centre + spread * rng.standard_normal((n, frame.shape[1])) @ frame.T
    return pts / np.linalg.norm(pts, axis=1, keepdims=True), centre


def _principal_cosines(a, b):
    return np.linalg.svd(np.asarray(a).T @ np.asarray(b), compute_uv=False)


# ------------------------------------------------------------------ subset selection (Sec. 3.2)
def _naive_pl(x, m, threshold, k, centred, check="all", power=1.0):
    """Direct transcription of Sec. 3.2 with one SVD per trial set."""
    n = len(x)
    members, bases = np.zeros((n, n), bool), []

    def errors(pts):
        mu = pts.mean(0) if centred else np.zeros(pts.shape[1])
        _, _, vt = np.linalg.svd(pts - mu, full_matrices=False)
        u = vt[:m].T
        rec = mu + (pts - mu) @ u @ u.T
        return ((pts - rec) ** 2).sum(1) / (pts ** 2).sum(1), u

    for i in range(n):
        d = np.linalg.norm(x - x[i], axis=1)
        d[i] = np.inf
        nbrs = np.argsort(d, kind="stable")[:k]
        chosen = [i] + list(nbrs[:m - 1])
        for j in nbrs[m - 1:]:
            err, _ = errors(x[chosen + [j]])
            if check == "accepted":
                err = err[:-1]
            if err.max() ** power < 1 - threshold:
                chosen.append(j)
        members[i, chosen] = True
        bases.append(errors(x[chosen])[1])
    return members, np.stack(bases)


def test_pl_recovers_known_subspaces():
    rng = np.random.default_rng(0)
    d, m, per = 16, 3, 10
    frames = [_frame(rng, d, m) for _ in range(3)]
    x = np.concatenate([_cluster_on_subspace(rng, f, per)[0] for f in frames])
    pl = piecewise_linear_manifold(torch.tensor(x), m=m, threshold=0.9, n_neighbours=per - 1)
    for i in range(len(x)):
        group = i // per
        assert pl.members[i].sum() == per                     # every neighbour fits its plane
        assert pl.members[i, group * per:(group + 1) * per].all()
        np.testing.assert_allclose(_principal_cosines(frames[group], pl.bases[i]), 1.0, atol=1e-8)
    np.testing.assert_allclose(pl.bases.transpose(1, 2) @ pl.bases, torch.eye(m).expand(len(x), m, m), atol=1e-10)


def test_pl_rejects_outlier():
    rng = np.random.default_rng(1)
    d, m, n = 12, 2, 8
    frame = _frame(rng, d, m)
    angles = 2 * np.pi * np.arange(n) / n                     # a great circle, neighbours 45° apart
    pts = np.stack([np.cos(angles), np.sin(angles)], 1) @ frame.T
    normal = np.linalg.qr(np.concatenate([frame, rng.standard_normal((d, 1))], 1))[0][:, -1]
    between = frame @ np.array([np.cos(np.pi / n), np.sin(np.pi / n)])   # midway between points 0 and 1
    outlier = between + normal                                # 45° off the plane: sin² = 0.5
    x = np.concatenate([pts, (outlier / np.linalg.norm(outlier))[None]])
    pl = piecewise_linear_manifold(torch.tensor(x), m=m, threshold=0.9)
    assert not (pl.neighbours[:n, :m - 1] == n).any()        # never an unconditional (step 1) neighbour
    assert not pl.members[:n, n].any()                       # nobody takes the outlier
    assert pl.members[:n, :n].all()                          # every inlier takes every inlier
    for i in range(n):
        np.testing.assert_allclose(_principal_cosines(frame, pl.bases[i]), 1.0, atol=1e-8)
    # when 1 - T exceeds its residual (0.5 < 0.6) it is accepted
    assert piecewise_linear_manifold(torch.tensor(x), m=m, threshold=0.4).members[:n, n].all()


def test_pl_tight_neighbourhood_tilts_to_take_a_mild_outlier():
    """Documented behaviour of the energy reading: a candidate 26.6° off the plane (sin² 0.2) is
    taken by points whose accepted set is still narrow, because the refitted plane tilts."""
    rng = np.random.default_rng(1)
    d, m, n = 12, 2, 8
    frame = _frame(rng, d, m)
    angles = 2 * np.pi * np.arange(n) / n
    pts = np.stack([np.cos(angles), np.sin(angles)], 1) @ frame.T
    normal = np.linalg.qr(np.concatenate([frame, rng.standard_normal((d, 1))], 1))[0][:, -1]
    outlier = frame @ np.array([np.cos(np.pi / n), np.sin(np.pi / n)]) + 0.5 * normal
    x = np.concatenate([pts, (outlier / np.linalg.norm(outlier))[None]])
    members = piecewise_linear_manifold(torch.tensor(x), m=m, threshold=0.9).members
    assert members[2:n, n].any() and not members[3:7, n].any()


def test_pl_threshold_one_keeps_only_initial_points():
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.standard_normal((20, 8)))
    pl = piecewise_linear_manifold(x, m=3, threshold=1.0)
    assert (pl.members.sum(1) == 3).all()
    assert pl.members[torch.arange(20), torch.arange(20)].all()
    nearest = pl.neighbours[:, :2]
    assert pl.members.gather(1, nearest).all()


@pytest.mark.parametrize("centred,check,measure", [(False, "all", "energy"), (True, "all", "energy"),
                                                   (False, "accepted", "energy"), (False, "all", "norm")])
def test_pl_matches_naive_loop(centred, check, measure):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, 5)) + np.array([3.0, 0, 0, 0, 0])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    threshold = 0.97 if measure == "energy" else 0.85
    members, bases = _naive_pl(x, 3, threshold, 12, centred, check, 1.0 if measure == "energy" else 0.5)
    pl = piecewise_linear_manifold(torch.tensor(x), m=3, threshold=threshold, n_neighbours=12,
                                   centred=centred, check=check, error_measure=measure)
    assert 0 < (members.sum(1) - 3).mean() < 9                # a mix of accepted and rejected
    np.testing.assert_array_equal(pl.members.numpy(), members)
    proj = lambda u: u @ np.swapaxes(u, 1, 2)
    np.testing.assert_allclose(proj(pl.bases.numpy()), proj(bases), atol=1e-8)


def test_pl_on_a_full_batch_keeps_shape_dtype_and_orthonormal_bases():
    # a batch of the paper's size (240 embeddings of 512-d); its speed belongs to a benchmark, not here
    x = torch.nn.functional.normalize(torch.randn(240, 512, dtype=torch.float32), dim=1)
    pl = piecewise_linear_manifold(x, m=3, threshold=0.9, n_neighbours=9)
    assert pl.bases.shape == (240, 512, 3) and pl.bases.dtype == torch.float32
    gram = pl.bases.transpose(1, 2) @ pl.bases
    assert torch.allclose(gram, torch.eye(3, dtype=gram.dtype).expand_as(gram), atol=1e-4)


def test_pl_bad_input():
    with pytest.raises(DmlReproError, match="threshold"):
        piecewise_linear_manifold(torch.randn(5, 4), threshold=90)
    with pytest.raises(DmlReproError, match="n_neighbours"):
        piecewise_linear_manifold(torch.randn(5, 4), m=3, n_neighbours=1)


# ------------------------------------------------------------------ similarities (Sec. 3.3, 3.5)
def _setup(seed=0, n=7, d=5, m=2, n_proxies=3):
    g = torch.Generator().manual_seed(seed)
    unit = lambda t: torch.nn.functional.normalize(t, dim=-1)
    teacher = unit(torch.randn(n, d, generator=g))
    student = unit(torch.randn(n, d, generator=g)).requires_grad_(True)
    bases = orthonormalise(torch.randn(n, d, m, generator=g))
    loss = PLManifoldLoss(d, n_proxies=n_proxies, m=m, seed=seed)
    return student, teacher, bases, loss


def _s_dir(x, y, u, na=4.0, nb=0.5):
    diff = x - y
    c = u.T @ diff
    o = torch.linalg.vector_norm(diff - u @ c)
    p = torch.linalg.vector_norm(c)
    return (1 + o / 2) ** (-na) * (1 + p) ** (-nb)


def test_directed_components_and_similarity_match_loops():
    student, teacher, bases, _ = _setup()
    o, p = directed_components(teacher, teacher, bases, chunk_elements=11)   # several chunks
    for i in range(7):
        for j in range(7):
            diff = teacher[i] - teacher[j]
            assert math.isclose(p[i, j], float(torch.linalg.vector_norm(bases[j].T @ diff)), abs_tol=1e-12)
            assert math.isclose(o[i, j] ** 2 + p[i, j] ** 2, float(diff @ diff), abs_tol=1e-12)
    s = point_similarity(teacher, bases)
    for i in range(7):
        for j in range(7):
            ref = 0.5 * (_s_dir(teacher[i], teacher[j], bases[j]) + _s_dir(teacher[j], teacher[i], bases[i]))
            assert math.isclose(s[i, j], float(ref), rel_tol=1e-12)
    assert torch.equal(s, s.T) and torch.allclose(s.diagonal(), torch.ones(7))
    assert (s > 0).all() and (s <= 1).all()


def test_in_plane_decays_slower_than_normal():
    u = torch.eye(3)[:, :1]                                   # P_j = x-axis through f_j = 0
    y = torch.zeros(1, 3)
    along, across = torch.tensor([[0.3, 0.0, 0.0]]), torch.tensor([[0.0, 0.3, 0.0]])
    s_along = _s_dir(along[0], y[0], u)
    s_across = _s_dir(across[0], y[0], u)
    assert math.isclose(float(s_along), (1 + 0.3) ** -0.5) and math.isclose(float(s_across), (1 + 0.15) ** -4)
    assert s_along > s_across


def _naive_loss(student, teacher, bases, rho, psi, delta=2.0, detach_target=True):
    n, n_p, m = student.shape[0], rho.shape[0], psi.shape[2]
    point = proxy = neigh = 0.0
    for i in range(n):
        for j in range(n):
            if i != j:
                s = 0.5 * (_s_dir(teacher[i], teacher[j], bases[j]) + _s_dir(teacher[j], teacher[i], bases[i]))
                point = point + (delta * (1 - s) - torch.linalg.vector_norm(student[i] - student[j])) ** 2
        for j in range(n_p):
            s = 0.5 * (_s_dir(teacher[i], rho[j], psi[j]) + _s_dir(rho[j], teacher[i], bases[i]))
            proxy = proxy + (delta * (1 - s) - torch.linalg.vector_norm(student[i] - rho[j])) ** 2
            target = s.detach() if detach_target else s
            for k in range(m):
                cos = torch.linalg.vector_norm(bases[i].T @ psi[j][:, k]) / torch.linalg.vector_norm(psi[j][:, k])
                neigh = neigh + (target - cos) ** 2
    return point, proxy, neigh


@pytest.mark.parametrize("detach_target", [True, False])
def test_loss_values_and_gradients_match_naive_loops(detach_target):
    student, teacher, bases, loss = _setup()
    loss.detach_neighbourhood_target = detach_target
    with torch.no_grad():                                     # off the manifold: exercises cos / ||ψ||
        loss.proxy_bases.mul_(1.3)
    out = loss(student, teacher, bases)
    ref = _naive_loss(student, teacher, bases, loss.proxies, loss.proxy_bases, detach_target=detach_target)
    for name, r in zip(("point", "proxy", "neighbourhood"), ref):
        assert math.isclose(float(out[name].detach()), float(r.detach()), rel_tol=1e-10), name
    params = [student, loss.proxies, loss.proxy_bases]
    got = torch.autograd.grad(out["loss"], params)
    want = torch.autograd.grad(sum(ref), params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)


def test_proxy_similarity_uses_both_neighbourhoods():
    student, teacher, bases, loss = _setup(seed=4)
    s = proxy_similarity(teacher, bases, loss.proxies, loss.proxy_bases)
    i, j = 2, 1
    ref = 0.5 * (_s_dir(teacher[i], loss.proxies[j], loss.proxy_bases[j]) + _s_dir(loss.proxies[j], teacher[i], bases[i]))
    assert math.isclose(float(s[i, j].detach()), float(ref.detach()), rel_tol=1e-12)
    cos = subspace_cosines(bases, loss.proxy_bases)
    assert cos.shape == (7, 3, 2) and (cos <= 1 + 1e-12).all()


def test_each_parameter_group_gets_gradients_only_from_its_losses():
    torch.manual_seed(0)
    d, m = 6, 2
    net = nn.Sequential(nn.Linear(4, d))
    x = torch.randn(8, 4)
    student = torch.nn.functional.normalize(net(x), dim=1)
    teacher_net = MomentumEncoder(net).teacher
    teacher = torch.nn.functional.normalize(teacher_net(x), dim=1)
    loss = PLManifoldLoss(d, n_proxies=4, m=m, n_neighbours=5)
    out = loss(student, teacher)                              # bases built from the teacher
    theta, proxies = list(net.parameters()), loss.proxy_parameters()
    grads = {name: torch.autograd.grad(out[name], theta + proxies, retain_graph=True, allow_unused=True)
             for name in ("point", "proxy", "neighbourhood")}
    nonzero = lambda gs: [g is not None and bool(g.abs().sum() > 0) for g in gs]
    assert nonzero(grads["point"]) == [True, True, False, False]          # θ only
    assert nonzero(grads["proxy"]) == [True, True, True, True]            # θ and (ρ, Ψ)
    assert nonzero(grads["neighbourhood"]) == [False, False, False, True]  # Ψ only (target detached)
    assert all(p.grad is None for p in teacher_net.parameters())
    # and the total routes exactly the sums of the allowed terms
    total = torch.autograd.grad(out["loss"], theta + proxies, retain_graph=True)
    for k, g in enumerate(total):
        parts = [grads[n][k] for n in ("point", "proxy", "neighbourhood") if grads[n][k] is not None]
        torch.testing.assert_close(g, sum(parts))


def test_loss_without_proxies_is_point_loss():
    student, teacher, bases, _ = _setup()
    loss = PLManifoldLoss(5, n_proxies=0, m=2)
    out = loss(student, teacher, bases)
    assert float(out["proxy"].detach()) == 0 and torch.equal(out["loss"], out["point"])


def test_retraction_keeps_frames_orthonormal_and_proxies_unit():
    loss = PLManifoldLoss(10, n_proxies=5, m=3)
    frames = loss.proxy_bases.detach().clone()
    loss.retract_proxies_()
    torch.testing.assert_close(loss.proxy_bases.detach(), frames)         # already orthonormal: unchanged
    with torch.no_grad():
        loss.proxy_bases.add_(0.2 * torch.randn_like(loss.proxy_bases))
        loss.proxies.mul_(3.0)
    spans_before = loss.proxy_bases.detach().clone()
    loss.retract_proxies_()
    q = loss.proxy_bases.detach()
    torch.testing.assert_close(q.transpose(1, 2) @ q, torch.eye(3).expand(5, 3, 3))
    torch.testing.assert_close(q @ torch.linalg.pinv(q) @ spans_before, spans_before)  # same span
    torch.testing.assert_close(loss.proxies.norm(dim=1), torch.ones(5))


def test_loss_bad_shapes():
    student, teacher, bases, loss = _setup()
    with pytest.raises(DmlReproError, match="bases"):
        loss(student, teacher, bases[:, :, :1])
    with pytest.raises(DmlReproError, match="student and teacher"):
        loss(student[:3], teacher, bases)


# ------------------------------------------------------------------ momentum encoder (Sec. 3.1.2)
def _bn_net():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))


def test_momentum_update_rule_and_buffers():
    torch.manual_seed(0)
    student = _bn_net()
    hook = MomentumEncoder(student, momentum=0.9)
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    student(torch.randn(5, 3))                               # moves BN running stats, counts a batch
    before = {k: v.clone() for k, v in hook.teacher.state_dict().items()}
    hook.update()
    after, s = hook.teacher.state_dict(), student.state_dict()
    for k, v in after.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, 0.9 * before[k] + 0.1 * s[k])
        else:
            assert torch.equal(v, s[k])
    assert not any(p.requires_grad for p in hook.teacher.parameters())
    out = hook(torch.randn(2, 3))
    assert not out.requires_grad and not hook.teacher.training


def test_momentum_state_round_trip():
    torch.manual_seed(1)
    student = _bn_net()
    hook = MomentumEncoder(student)
    with torch.no_grad():
        for p in student.parameters():
            p.mul_(2.0)
    hook.update()
    state = hook.state_dict()
    other = MomentumEncoder(_bn_net())
    other.load_state_dict(state)
    for k, v in hook.teacher.state_dict().items():
        assert torch.equal(other.teacher.state_dict()[k], v)
    with pytest.raises(DmlReproError, match="momentum"):
        MomentumEncoder(_bn_net(), momentum=0.5).load_state_dict(state)


# ------------------------------------------------------------------ nearest-neighbour batches (Sec. 3.1.1)
def test_nn_batch_plan_groups_are_seed_plus_nearest():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((50, 4)).astype(np.float32)
    rows = np.arange(1000, 1050)
    plan = nn_batch_plan(emb, rows, batch_size=10, n_per_seed=5, seed=3, epoch=2)
    assert len(plan) == 5 and all(b.shape == (10,) for b in plan)
    d = ((emb[:, None] - emb[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    seeds = []
    for b in plan:
        for group in (b - 1000).reshape(2, 5):
            seeds.append(group[0])
            np.testing.assert_array_equal(np.sort(group[1:]), np.sort(np.argsort(d[group[0]])[:4]))
    assert len(set(seeds)) == len(seeds)                    # distinct seeds over the epoch
    again = nn_batch_plan(emb, rows, batch_size=10, n_per_seed=5, seed=3, epoch=2)
    assert all(np.array_equal(a, b) for a, b in zip(plan, again))
    other = nn_batch_plan(emb, rows, batch_size=10, n_per_seed=5, seed=3, epoch=3)
    assert not all(np.array_equal(a, b) for a, b in zip(plan, other))


def test_nn_batch_plan_bad_input():
    emb = np.zeros((20, 3), np.float32)
    with pytest.raises(DmlReproError, match="multiple"):
        nn_batch_plan(emb, np.arange(20), batch_size=10, n_per_seed=3, seed=0, epoch=1)
    with pytest.raises(DmlReproError, match="embeddings"):
        nn_batch_plan(emb, np.arange(19), batch_size=10, n_per_seed=5, seed=0, epoch=1)
    assert (neighbour_table(emb, 4)[:, 0] == np.arange(20)).all()   # self first even with ties


# ------------------------------------------------------------------ the hooks in the trainer
class _PLObjective(Objective):
    def __init__(self, loss, teacher):
        super().__init__()
        self.loss, self.teacher = loss, teacher

    def forward(self, model, batch):
        out = self.loss(torch.nn.functional.normalize(model(batch.inputs), dim=1),
                        torch.nn.functional.normalize(self.teacher(batch.inputs), dim=1))
        return out["loss"], len(batch.index)


def test_hooks_in_trainer_and_resume(tmp_path):
    data = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))

    def build():
        torch.manual_seed(0)
        model = nn.Linear(4, 6)
        momentum = MomentumEncoder(model, momentum=0.9)
        loss = PLManifoldLoss(6, n_proxies=4, m=2, n_neighbours=4)
        nb = NeighbourBatches(lambda tr: momentum(data).numpy(), np.arange(40), batch_size=10, n_per_seed=5, seed=1)
        opt = torch.optim.Adam([{"params": model.parameters()}, {"params": loss.proxy_parameters(), "lr": 1e-1}], lr=1e-3)
        load = lambda batches: (Batch(data[torch.as_tensor(b)], None, b) for b in batches)
        trainer = Trainer(model, _PLObjective(loss, momentum), opt, plan=nb.plan, load=load, epochs=2,
                          checkpoint=tmp_path / "ckpt.pt", signature="pl", progress=False,
                          hooks=[momentum, nb, ProxyRetraction(loss)])
        return trainer, momentum, loss

    trainer, momentum, loss = build()
    trainer.fit()
    q = loss.proxy_bases.detach()
    torch.testing.assert_close(q.transpose(1, 2) @ q, torch.eye(2).expand(4, 2, 2))
    assert not torch.equal(momentum.teacher.weight, trainer.model.weight)
    resumed, momentum2, _ = build()                           # same checkpoint: nothing left to run
    resumed.fit()
    assert torch.equal(momentum2.teacher.weight, momentum.teacher.weight)
