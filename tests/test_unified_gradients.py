"""Theorem 3.1 of paper 004, checked: the gradient of each loss w.r.t. the similarity matrix S is
the paper's pair weights (Eqs. 6, 8, 10-11, 13-14, 15-16) times the batch mean's 1/m, and the
linear surrogate F(S) = sum_i (sum_N w s - sum_P w s) with those weights frozen has the loss's
gradient w.r.t. the network parameters (Definition 3.1)."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning.losses import MultiSimilarityLoss
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from dmlrepro import DmlReproError
from dmlrepro.losses.pair_weighting import (
    BinomialDevianceLoss,
    ContrastiveSimilarityLoss,
    EqualWeightLoss,
    RAWLoss,
    SimilarityMatrixLoss,
    TripletSimilarityLoss,
    lifted_structure_loss,
    pair_masks,
    pair_weight_matrix,
    pair_weights,
    similarity_loss,
)
from dmlrepro.miners.vthm import VTHMMiner

ALPHA, BETA, GAMMA = 2.0, 50.0, 0.5


def batch(seed, n_classes=4, per_class=4, dim=5, spread=0.9):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, dim, generator=gen, dtype=torch.float64)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    emb = centers[labels] + spread * torch.randn(len(labels), dim, generator=gen, dtype=torch.float64)
    return emb, labels


def setup(seed, indices_tuple=None, miner=None, **kw):
    emb, labels = batch(seed, **kw)
    unit = torch.nn.functional.normalize(emb, dim=1)
    sim = unit @ unit.T
    if miner is not None:
        indices_tuple = miner(emb, labels)
    m = len(labels)
    pos, neg = pair_masks(indices_tuple, labels, labels, m, m, sim.device)
    return emb, labels, sim, pos, neg


def assert_weights(loss, sim, pos, neg, expected_pos, expected_neg):
    m = sim.shape[0]
    weights = pair_weight_matrix(loss, sim, pos, neg)
    torch.testing.assert_close(weights[pos], expected_pos[pos] / m, rtol=1e-7, atol=1e-14)
    torch.testing.assert_close(weights[neg], expected_neg[neg] / m, rtol=1e-7, atol=1e-14)
    assert torch.all(weights[~(pos | neg)] == 0)
    assert torch.all(weights >= 0)


@pytest.mark.parametrize("seed", [0, 1])
def test_contrastive_weights_eq6(seed):
    emb, labels, sim, pos, neg = setup(seed)
    lam = 0.3
    ones = torch.ones_like(sim)
    assert_weights(ContrastiveSimilarityLoss(margin=lam), sim, pos, neg, ones, (sim > lam).double())


@pytest.mark.parametrize("seed", [0, 1])
def test_triplet_weights_eq8_one_triplet_per_anchor(seed):
    emb, labels = batch(seed)
    torch.manual_seed(seed)
    a, p, n = lmu.get_random_triplet_indices(labels, t_per_anchor=1)
    assert len(set(a.tolist())) == len(a) == len(labels)   # one triplet per anchor
    _, _, sim, pos, neg = setup(seed, indices_tuple=(a, p, n))
    lam = 0.1
    in_B = (sim[a, n] - sim[a, p] + lam > 0).double()
    assert 0 < in_B.sum() < len(a)                         # some triplets violate, some not
    expected = torch.zeros_like(sim)
    expected[a, p] = in_B
    expected[a, n] = in_B
    assert_weights(TripletSimilarityLoss(margin=lam), sim, pos, neg, expected, expected)


def test_triplet_weights_all_triplets_count_violations():
    emb, labels, sim, pos, neg = setup(2)
    lam = 0.1
    viol = (sim[:, None, :] - sim[:, :, None] + lam > 0) & pos[:, :, None] & neg[:, None, :]  # [i, p, n]
    assert_weights(TripletSimilarityLoss(margin=lam), sim, pos, neg,
                   viol.sum(dim=2).double(), viol.sum(dim=1).double())


@pytest.mark.parametrize("lam", [1.0, -3.4])
def test_lifted_weights_eq10_eq11(lam):
    emb, labels, sim, pos, neg = setup(3)
    exp_neg_pos = torch.where(pos, torch.exp(-sim), torch.zeros_like(sim))
    exp_pos_neg = torch.where(neg, torch.exp(sim), torch.zeros_like(sim))
    active = (torch.log(exp_neg_pos.sum(1)) + torch.log(exp_pos_neg.sum(1)) + lam > 0).double()[:, None]
    if lam < 0:
        assert 0 < active.sum() < len(labels)              # the hinge is off for some anchors
    eq10 = exp_neg_pos / exp_neg_pos.sum(1, keepdim=True)   # exp(-s_ij) / sum_P exp(-s_ik)
    eq11 = exp_pos_neg / exp_pos_neg.sum(1, keepdim=True)   # exp(s_ij) / sum_N exp(s_ik)
    assert_weights(lifted_structure_loss(margin=lam), sim, pos, neg, active * eq10, active * eq11)
    # Eq. 10's second form agrees with its first; Eq. 11's printed second form 1/sum exp(s_ij - s_ik)
    # does not (its sign is flipped; exp(s_ij)/sum exp(s_ik) = 1/sum exp(s_ik - s_ij)).
    i = 0
    P, N = pos[i].nonzero().flatten(), neg[i].nonzero().flatten()
    j, k = P[0], N[0]
    assert (1 / torch.exp(sim[i, j] - sim[i, P]).sum()).item() == pytest.approx(eq10[i, j].item())
    assert (1 / torch.exp(sim[i, N] - sim[i, k]).sum()).item() == pytest.approx(eq11[i, k].item())
    assert (1 / torch.exp(sim[i, k] - sim[i, N]).sum()).item() != pytest.approx(eq11[i, k].item())


class PrintedEq9(SimilarityMatrixLoss):
    """Eq. 9 exactly as printed: {log sum_P exp(-s) - log sum_N exp(lambda - s)}_+."""

    def __init__(self, lam, **kwargs):
        super().__init__(**kwargs)
        self.lam = lam

    def _compute_loss(self, s, pos, neg):
        inf = torch.full_like(s, float("-inf"))
        value = (torch.logsumexp(torch.where(pos, -s, inf), 1) - torch.logsumexp(torch.where(neg, self.lam - s, inf), 1))
        return self._per_anchor(torch.relu(value), s)


def test_printed_eq9_sign_contradicts_eq11():
    """The lifted-structure sign decision: the printed Eq. 9 gives a negative pair the weight
    exp(-s_ij)/sum exp(-s_ik) -- largest for the least similar negative -- not Eq. 11."""
    emb, labels, sim, pos, neg = setup(4)
    # with lambda = 1 the printed hinge is off for every anchor of this batch (another symptom);
    # lambda = -3 switches it on
    assert not pair_weight_matrix(PrintedEq9(1.0), sim, pos, neg).any()
    weights = pair_weight_matrix(PrintedEq9(-3.0), sim, pos, neg)
    active = weights.abs().sum(1) > 0
    assert active.any()
    i = int(active.nonzero()[0])
    N = neg[i].nonzero().flatten()
    printed = torch.exp(-sim[i, N]) / torch.exp(-sim[i, N]).sum()
    eq11 = torch.exp(sim[i, N]) / torch.exp(sim[i, N]).sum()
    torch.testing.assert_close(weights[i, N] * len(labels), printed)
    order = torch.argsort(sim[i, N])
    assert torch.all(torch.diff(weights[i, N][order]) <= 0)     # decreasing in s: wrong way round
    assert not torch.allclose(printed, eq11)
    ours = pair_weight_matrix(lifted_structure_loss(margin=1.0), sim, pos, neg)
    assert torch.all(torch.diff(ours[i, N][order]) >= 0)         # ours increases with s (Eq. 11)


@pytest.mark.parametrize("seed", [0, 1])
def test_binomial_weights_eq13_eq14(seed):
    emb, labels, sim, pos, neg = setup(seed)
    n_pos = pos.sum(1, keepdim=True).double()
    n_neg = neg.sum(1, keepdim=True).double()
    e_pos = torch.exp(ALPHA * (GAMMA - sim))
    e_neg = torch.exp(BETA * (sim - GAMMA))
    eq13 = ALPHA * e_pos / (1 + e_pos) / n_pos
    eq14 = BETA * e_neg / (1 + e_neg) / n_neg
    assert_weights(BinomialDevianceLoss(ALPHA, BETA, GAMMA), sim, pos, neg, eq13, eq14)


def raw_weights_eq15_eq16(sim, pos, neg):
    m = sim.shape[0]
    eq15 = torch.zeros_like(sim)
    eq16 = torch.zeros_like(sim)
    for i in range(m):
        P, N = pos[i].nonzero().flatten(), neg[i].nonzero().flatten()
        for j in P:
            eq15[i, j] = 1 / (torch.exp(ALPHA * (sim[i, j] - sim[i, P])).sum() + torch.exp(ALPHA * (sim[i, j] - GAMMA)))
        for j in N:
            eq16[i, j] = 1 / (torch.exp(-BETA * (sim[i, j] - sim[i, N])).sum() + torch.exp(-BETA * (sim[i, j] - GAMMA)))
    return eq15, eq16


@pytest.mark.parametrize("mined", [False, True])
def test_raw_weights_eq15_eq16(mined):
    emb, labels, sim, pos, neg = setup(5, miner=VTHMMiner() if mined else None)
    assert pos.any() and neg.any()
    assert_weights(RAWLoss(ALPHA, BETA, GAMMA), sim, pos, neg, *raw_weights_eq15_eq16(sim, pos, neg))
    # PML's MultiSimilarityLoss assigns the same weights
    torch.testing.assert_close(pair_weight_matrix(MultiSimilarityLoss(ALPHA, BETA, GAMMA), sim, pos, neg),
                               pair_weight_matrix(RAWLoss(ALPHA, BETA, GAMMA), sim, pos, neg))


def test_equal_weight_loss_gives_weight_one_to_mined_pairs():
    emb, labels, sim, pos, neg = setup(6, miner=VTHMMiner())
    all_pos, all_neg = pair_masks(None, labels, labels, len(labels), len(labels), sim.device)
    assert (pos != all_pos).any() or (neg != all_neg).any()   # VTHM dropped something
    ones = torch.ones_like(sim)
    assert_weights(EqualWeightLoss(), sim, pos, neg, ones, ones)


LOSSES = {
    "contrastive": lambda: ContrastiveSimilarityLoss(margin=0.3),
    "triplet": lambda: TripletSimilarityLoss(margin=0.1),
    "lifted": lambda: lifted_structure_loss(margin=1.0),
    "binomial": lambda: BinomialDevianceLoss(),
    "raw": lambda: RAWLoss(),
    "raw_vthm": lambda: RAWLoss(),
    "equal_vthm": lambda: EqualWeightLoss(),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_theorem_3_1_gradient_equivalence(name):
    """dL/dtheta = dF/dtheta for F(S) = sum_i (sum_N w_ik s_ik - sum_P w_ij s_ij), w frozen,
    theta = a linear embedding layer's weights."""
    inputs, labels = batch(7, dim=6)
    layer = torch.nn.Linear(6, 4, bias=False).double()
    torch.nn.init.normal_(layer.weight, generator=torch.Generator().manual_seed(7))
    loss = LOSSES[name]()
    miner = VTHMMiner() if name.endswith("vthm") else None
    emb = layer(inputs)
    indices = miner(emb, labels) if miner is not None else None
    (grad_loss,) = torch.autograd.grad(loss(emb, labels, indices), layer.weight)

    unit = torch.nn.functional.normalize(layer(inputs), dim=1)
    sim = unit @ unit.T
    m = len(labels)
    pos, neg = pair_masks(indices, labels, labels, m, m, sim.device)
    w = pair_weight_matrix(loss, sim.detach(), pos, neg)
    surrogate = (w * sim)[neg].sum() - (w * sim)[pos].sum()
    (grad_surrogate,) = torch.autograd.grad(surrogate, layer.weight)
    assert grad_loss.abs().max() > 0
    torch.testing.assert_close(grad_loss, grad_surrogate, rtol=1e-9, atol=1e-13)


def test_pair_weights_returns_all_pairs_with_zero_for_unmined():
    emb, labels = batch(8)
    pw = pair_weights(RAWLoss(), emb, labels, miner=VTHMMiner())
    m = len(labels)
    n_pos = int(sum((labels == labels[i]).sum() - 1 for i in range(m)))
    assert len(pw.pos_sims) == len(pw.pos_weights) == n_pos
    assert len(pw.neg_sims) == len(pw.neg_weights) == m * m - m - n_pos
    assert (pw.neg_weights == 0).any() and (pw.neg_weights > 0).any()
    # VTHM drops easy negatives: the least similar negative is unmined
    assert pw.neg_weights[pw.neg_sims.argmin()] == 0
    unit = torch.nn.functional.normalize(emb, dim=1)
    sim = unit @ unit.T
    pos, neg = pair_masks(None, labels, labels, m, m, sim.device)
    torch.testing.assert_close(pw.pos_sims, sim[pos])
    full = pair_weights(RAWLoss(), emb, labels)
    assert (full.neg_weights > 0).all()


def test_pair_weights_rejects_bad_input():
    emb, labels = batch(9)
    with pytest.raises(DmlReproError, match="embeddings"):
        pair_weights(RAWLoss(), emb, labels[:-1])
    with pytest.raises(DmlReproError, match="not both"):
        pair_weights(RAWLoss(), emb, labels, miner=VTHMMiner(), indices_tuple=VTHMMiner()(emb, labels))
    from pytorch_metric_learning.losses import ContrastiveLoss
    with pytest.raises(DmlReproError, match="similarity matrix"):
        similarity_loss(ContrastiveLoss(), emb @ emb.T, *pair_masks(None, labels, labels, 16, 16, emb.device))
