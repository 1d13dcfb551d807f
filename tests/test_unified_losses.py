"""Paper 004 (unified view, RAW + VTHM): every Table 1 row and every Sec. 4 loss against naive
Python loops (values and gradients), VTHM on hand-built batches, and RAW+VTHM against PML's
MultiSimilarityLoss + MultiSimilarityMiner, including batches that trigger each difference."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.losses import ContrastiveLoss, MultiSimilarityLoss
from pytorch_metric_learning.miners import MultiSimilarityMiner
from pytorch_metric_learning.reducers import SumReducer

from dmlrepro import DmlReproError
from dmlrepro.losses.pair_weighting import (
    BinomialDevianceLoss,
    ContrastiveSimilarityLoss,
    EqualWeightLoss,
    RAWLoss,
    TripletSimilarityLoss,
    lifted_structure_loss,
    pair_masks,
    similarity_loss,
)
from dmlrepro.losses.unified_view import OFFICIAL_BETA, TABLE1_ROWS, build_table1_row
from dmlrepro.miners.vthm import VTHMMiner

ALPHA, BETA, GAMMA, MARGIN = 2.0, 50.0, 0.5, 0.1


# ----------------------------------------------------------------------------- naive references
def cos_matrix(emb):
    unit = emb / emb.norm(dim=1, keepdim=True)
    return unit @ unit.T


def naive_vthm(sim, labels, margin=MARGIN, official=False):
    """Sec. 5.1 by loops: (set of positive pairs, set of negative pairs)."""
    m = len(labels)
    pos_pairs, neg_pairs = set(), set()
    for i in range(m):
        if official:
            P = [j for j in range(m) if labels[j] == labels[i] and float(sim[i, j]) < 1 - 1e-5]
        else:
            P = [j for j in range(m) if labels[j] == labels[i] and j != i]
        N = [j for j in range(m) if labels[j] != labels[i]]
        if not P or not N:
            continue
        s_pstar = min(float(sim[i, j]) for j in P)
        s_nstar = max(float(sim[i, j]) for j in N)
        neg_pairs |= {(i, j) for j in N if float(sim[i, j]) + margin > s_pstar}
        pos_pairs |= {(i, j) for j in P if float(sim[i, j]) - margin < s_nstar}
    return pos_pairs, neg_pairs


def all_pairs(labels):
    m = len(labels)
    pos = {(i, j) for i in range(m) for j in range(m) if i != j and labels[i] == labels[j]}
    neg = {(i, j) for i in range(m) for j in range(m) if labels[i] != labels[j]}
    return pos, neg


def pairs_of(indices_tuple):
    if len(indices_tuple) == 3:
        a, p, n = indices_tuple
        indices_tuple = (a, p, a, n)
    a1, p, a2, n = (t.tolist() for t in indices_tuple)
    return set(zip(a1, p)), set(zip(a2, n))


def rows(pairs, i):
    return sorted(j for (a, j) in pairs if a == i)


def naive_raw(sim, m, pos, neg, alpha=ALPHA, beta=BETA, gamma=GAMMA, official=False):
    total = sim.new_zeros(())
    for i in range(m):
        P, N = rows(pos, i), rows(neg, i)
        if official and (not P or not N):
            continue
        total = total + (1 / alpha) * torch.log(1 + sum((torch.exp(-alpha * (sim[i, k] - gamma)) for k in P),
                                                        sim.new_zeros(())))
        total = total + (1 / beta) * torch.log(1 + sum((torch.exp(beta * (sim[i, k] - gamma)) for k in N),
                                                       sim.new_zeros(())))
    return total / m


def naive_binomial(sim, m, pos, neg, alpha=ALPHA, beta=BETA, gamma=GAMMA):
    total = sim.new_zeros(())
    for i in range(m):
        P, N = rows(pos, i), rows(neg, i)
        for k in P:
            total = total + torch.log(1 + torch.exp(alpha * (gamma - sim[i, k]))) / len(P)
        for k in N:
            total = total + torch.log(1 + torch.exp(beta * (sim[i, k] - gamma))) / len(N)
    return total / m


def naive_equal(sim, m, pos, neg):
    total = sim.new_zeros(())
    for (i, k) in neg:
        total = total + sim[i, k]
    for (i, k) in pos:
        total = total - sim[i, k]
    return total / m


def naive_contrastive(sim, m, pos, neg, lam):
    total = sim.new_zeros(())
    for (i, k) in neg:
        total = total + torch.clamp(sim[i, k] - lam, min=0)
    for (i, k) in pos:
        total = total - sim[i, k]
    return total / m


def naive_triplet(sim, m, pos, neg, lam):
    total = sim.new_zeros(())
    for i in range(m):
        for p in rows(pos, i):
            for n in rows(neg, i):
                total = total + torch.clamp(sim[i, n] - sim[i, p] + lam, min=0)
    return total / m


def naive_lifted(sim, m, pos, neg, lam):
    """Hermans et al.'s generalised lifted structure on similarities (Eq. 9, sign fixed)."""
    total = sim.new_zeros(())
    for i in range(m):
        P, N = rows(pos, i), rows(neg, i)
        if not P or not N:
            continue
        value = torch.log(sum(torch.exp(-sim[i, k]) for k in P)) + torch.log(sum(torch.exp(sim[i, k] + lam) for k in N))
        total = total + torch.clamp(value, min=0)
    return total / m


def official_ms_loss(emb, labels, beta=OFFICIAL_BETA):
    """msight-tech/research-ms-loss's loop, rewritten as a reference (scale_neg = beta)."""
    unit = emb / emb.norm(dim=1, keepdim=True)
    sim = unit @ unit.T
    losses = []
    for i in range(len(labels)):
        pos_ = sim[i][labels == labels[i]]
        pos_ = pos_[pos_ < 1 - 1e-5]
        neg_ = sim[i][labels != labels[i]]
        if len(pos_) == 0 or len(neg_) == 0:
            continue
        neg = neg_[neg_ + MARGIN > pos_.min()]
        pos = pos_[pos_ - MARGIN < neg_.max()]
        if len(neg) < 1 or len(pos) < 1:
            continue
        losses.append(torch.log(1 + torch.exp(-ALPHA * (pos - GAMMA)).sum()) / ALPHA
                      + torch.log(1 + torch.exp(beta * (neg - GAMMA)).sum()) / beta)
    return sum(losses, sim.new_zeros(())) / len(labels)


def clustered_batch(seed, n_classes=4, per_class=4, dim=6, spread=0.8, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, dim, generator=gen, dtype=dtype)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    emb = centers[labels] + spread * torch.randn(len(labels), dim, generator=gen, dtype=dtype)
    perm = torch.randperm(len(labels), generator=gen)
    return emb[perm], labels[perm]


def circle(degrees):
    """Unit vectors at the given angles: cos(theta_i - theta_j) are the similarities."""
    rad = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([torch.cos(rad), torch.sin(rad)], dim=1)


def value_and_grad(fn, emb):
    emb = emb.detach().clone().requires_grad_(True)
    value = fn(emb)
    (grad,) = torch.autograd.grad(value, emb)
    return value.detach(), grad


# ----------------------------------------------------------------------------- Table 1 rows
NAIVE_LOSS = {
    "binomial": naive_binomial, "raw": naive_raw, "vthm": naive_equal, "binomial_vthm": naive_binomial,
    "raw_dw": naive_raw, "raw_semihard": naive_raw, "raw_vthm": naive_raw,
}


@pytest.mark.parametrize("name", sorted(TABLE1_ROWS))
@pytest.mark.parametrize("seed", [0, 1])
def test_table1_row_matches_naive_loop(name, seed):
    emb, labels = clustered_batch(seed)
    loss, miner = build_table1_row(name)
    torch.manual_seed(seed)  # DistanceWeightedMiner samples
    indices = miner(emb, labels) if miner is not None else None
    sim = cos_matrix(emb).detach()
    if indices is None:
        pos, neg = all_pairs(labels.tolist())
    else:
        pos, neg = pairs_of(indices)
    if name.endswith("vthm"):  # the miner itself against the naive loop
        assert (pos, neg) == naive_vthm(sim, labels.tolist())
    assert pos and neg
    m = len(labels)
    ours, ours_grad = value_and_grad(lambda e: loss(e, labels, indices), emb)
    ref, ref_grad = value_and_grad(lambda e: NAIVE_LOSS[name](cos_matrix(e), m, pos, neg), emb)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10, abs=1e-12)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("make, naive", [
    (lambda: ContrastiveSimilarityLoss(margin=0.3), lambda s, m, p, n: naive_contrastive(s, m, p, n, 0.3)),
    (lambda: TripletSimilarityLoss(margin=0.1), lambda s, m, p, n: naive_triplet(s, m, p, n, 0.1)),
    (lambda: lifted_structure_loss(margin=1.0), lambda s, m, p, n: naive_lifted(s, m, p, n, 1.0)),
    (lambda: lifted_structure_loss(margin=-3.4), lambda s, m, p, n: naive_lifted(s, m, p, n, -3.4)),
])
def test_section4_losses_match_naive_loop(make, naive):
    emb, labels = clustered_batch(3)
    pos, neg = all_pairs(labels.tolist())
    m = len(labels)
    ours, ours_grad = value_and_grad(lambda e: make()(e, labels), emb)
    ref, ref_grad = value_and_grad(lambda e: naive(cos_matrix(e), m, pos, neg), emb)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10, abs=1e-12)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-6, atol=1e-10)


def test_contrastive_equals_pml_contrastive_up_to_constant():
    """PML's ContrastiveLoss(pos_margin=1, neg_margin=lambda) on cosine, summed, is
    sum_P (1 - s) + sum_N [s - lambda]_+ = #P + m * ours."""
    emb, labels = clustered_batch(4)
    m = len(labels)
    n_pos = len(all_pairs(labels.tolist())[0])
    pml = ContrastiveLoss(pos_margin=1.0, neg_margin=0.3, distance=CosineSimilarity(), reducer=SumReducer())
    ours = ContrastiveSimilarityLoss(margin=0.3)
    assert pml(emb, labels).item() == pytest.approx(n_pos + m * ours(emb, labels).item(), rel=1e-12)


def test_triplet_with_mined_triplets_uses_their_pairs():
    emb, labels = clustered_batch(5)
    sim = cos_matrix(emb)
    a = torch.tensor([0, 3]); p = torch.tensor([int((labels == labels[0]).nonzero()[1]), int((labels == labels[3]).nonzero()[-1])])
    n = torch.tensor([int((labels != labels[0]).nonzero()[0]), int((labels != labels[3]).nonzero()[0])])
    assert p[0] != 0 and p[1] != 3
    expected = sum(max(float(sim[i, k] - sim[i, j]) + 0.1, 0.0) for i, j, k in zip(a.tolist(), p.tolist(), n.tolist()))
    assert TripletSimilarityLoss(margin=0.1)(emb, labels, (a, p, n)).item() == pytest.approx(expected / len(labels))


# ----------------------------------------------------------------------------- VTHM, hand-built
def test_vthm_hand_built_anchor():
    # anchor 0 at 0 deg; positives at 20 and 60 deg; negatives at 50, 80, 170 deg.
    emb = circle([0, 20, 60, 50, 80, 170])
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    # s_01 = .940, s_02 = .500 (p*), s_03 = .643 (n*), s_04 = .174, s_05 = -.985
    # negatives: s > .5 - .1 = .4 -> only 3; positives: s < .643 + .1 = .743 -> only 2.
    pos, neg = pairs_of(VTHMMiner(margin=0.1)(emb, labels))
    assert rows(pos, 0) == [2] and rows(neg, 0) == [3]
    # anchor 5 is alone in its class: no positives, so no p*, so nothing is mined for it.
    assert rows(pos, 5) == [] and rows(neg, 5) == []
    assert (pos, neg) == naive_vthm(cos_matrix(emb), labels.tolist())


def test_vthm_easy_anchor_mines_nothing_and_margin_widens():
    # positives at 10 and 25 deg (s = .985, .906); the only negative at 120 deg (s = -.5).
    emb = circle([0, 10, 25, 120])
    labels = torch.tensor([0, 0, 0, 1])
    pos, neg = pairs_of(VTHMMiner(margin=0.1)(emb, labels))
    assert rows(pos, 0) == [] and rows(neg, 0) == []
    # margin 1.45: negatives with s > .906 - 1.45 = -.544 -> 3; positives with s < -.5 + 1.45 = .95 -> 2.
    pos, neg = pairs_of(VTHMMiner(margin=1.45)(emb, labels))
    assert rows(pos, 0) == [2] and rows(neg, 0) == [3]


def test_vthm_is_exactly_the_pairs_in_violating_triplets():
    """Sec. 5.1's name: a pair is mined iff some triplet (i, p, n) containing it has
    s_in - s_ip + margin > 0."""
    emb, labels = clustered_batch(6, per_class=5)
    sim = cos_matrix(emb)
    lab = labels.tolist()
    pos, neg = pairs_of(VTHMMiner(margin=0.1)(emb, labels))
    m = len(lab)
    P = {i: [j for j in range(m) if j != i and lab[j] == lab[i]] for i in range(m)}
    N = {i: [j for j in range(m) if lab[j] != lab[i]] for i in range(m)}
    violating = {(i, p, n) for i in range(m) for p in P[i] for n in N[i] if sim[i, n] - sim[i, p] + 0.1 > 0}
    assert pos == {(i, p) for (i, p, _) in violating}
    assert neg == {(i, n) for (i, _, n) in violating}


def test_vthm_rejects_bad_arguments():
    with pytest.raises(DmlReproError, match="variant"):
        VTHMMiner(variant="nope")
    with pytest.raises(DmlReproError, match="margin"):
        VTHMMiner(margin=-0.1)
    with pytest.raises(DmlReproError, match="unknown Table 1 row"):
        build_table1_row("raw_plus")
    with pytest.raises(DmlReproError, match="unknown parameter 'epsilon'"):
        build_table1_row("raw_vthm", epsilon=0.2)


def test_build_table1_row_routes_parameters():
    loss, miner = build_table1_row("raw_vthm", beta=OFFICIAL_BETA, margin=0.2, variant="official")
    assert (loss.alpha, loss.beta, loss.gamma, loss.variant) == (2.0, 40.0, 0.5, "official")
    assert (miner.margin, miner.variant) == (0.2, "official")
    loss, miner = build_table1_row("raw_vthm")
    assert (loss.beta, miner.margin, loss.variant) == (50.0, 0.1, "paper")   # the paper's beta is the default
    loss, miner = build_table1_row("vthm")
    assert isinstance(loss, EqualWeightLoss) and isinstance(miner, VTHMMiner)
    loss, miner = build_table1_row("binomial")
    assert isinstance(loss, BinomialDevianceLoss) and miner is None


# ----------------------------------------------------------------------------- equality with PML
@pytest.mark.parametrize("seed", range(5))
def test_raw_vthm_equals_pml_multi_similarity(seed):
    emb, labels = clustered_batch(seed, n_classes=6, per_class=4, dim=8)
    emb = emb.float()
    loss, miner = build_table1_row("raw_vthm")
    pml_loss, pml_miner = MultiSimilarityLoss(alpha=2, beta=50, base=0.5), MultiSimilarityMiner(epsilon=0.1)
    ours_pairs, pml_pairs = miner(emb, labels), pml_miner(emb, labels)
    assert pairs_of(ours_pairs) == pairs_of(pml_pairs)
    ours, ours_grad = value_and_grad(lambda e: loss(e, labels, miner(e, labels)), emb)
    ref, ref_grad = value_and_grad(lambda e: pml_loss(e, labels, pml_miner(e, labels)), emb)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-5, atol=1e-7)
    # the same function on any mask: PML's _compute_loss on our masks
    sim = CosineSimilarity()(emb)
    masks = pair_masks(None, labels, labels, len(labels), len(labels), sim.device)
    assert similarity_loss(RAWLoss(), sim, *masks).item() == pytest.approx(
        similarity_loss(pml_loss, sim, *masks).item(), rel=1e-6)


def test_normaliser_is_batch_size_everywhere():
    """Eq. 17's 1/m, PML's MeanReducer and the official code all divide by m, not by the number of
    anchors that have mined pairs."""
    emb, labels = clustered_batch(7, n_classes=5, per_class=4, spread=0.3)
    loss, miner = build_table1_row("raw_vthm")
    pairs = miner(emb, labels)
    active = set(pairs[0].tolist()) | set(pairs[2].tolist())
    assert 0 < len(active) < len(labels)          # some anchors mine nothing
    ours = loss(emb, labels, pairs).item()
    pml = MultiSimilarityLoss()(emb, labels, MultiSimilarityMiner()(emb, labels)).item()
    per_anchor_sum = naive_raw(cos_matrix(emb), len(labels), *pairs_of(pairs)).item() * len(labels)
    assert ours == pytest.approx(pml, rel=1e-10)
    assert ours == pytest.approx(per_anchor_sum / len(labels), rel=1e-10)
    assert ours != pytest.approx(per_anchor_sum / len(active), rel=1e-3)
    assert official_ms_loss(emb, labels, beta=BETA).item() == pytest.approx(ours, rel=1e-10)


def test_self_pair_threshold_duplicate_positive():
    """Difference 1: the official code drops positives with s >= 1 - 1e-5, which removes the
    anchor itself but also a distinct positive with the same embedding. The paper's P_i excludes
    j = i by index only (= PML)."""
    # 0 and 1 are identical (class 0); 2 is a negative at 18 deg (s = .951 > 1 - .1).
    emb = circle([0, 0, 18, 100])
    labels = torch.tensor([0, 0, 1, 2])
    paper_pairs = pairs_of(VTHMMiner()(emb, labels))
    assert paper_pairs == pairs_of(MultiSimilarityMiner(epsilon=0.1)(emb, labels))
    assert rows(paper_pairs[0], 0) == [1] and rows(paper_pairs[1], 0) == [2]
    official_pairs = pairs_of(VTHMMiner(variant="official")(emb, labels))
    assert rows(official_pairs[0], 0) == [] and rows(official_pairs[1], 0) == []
    assert official_pairs == naive_vthm(cos_matrix(emb), labels.tolist(), official=True)
    paper_value = build_table1_row("raw_vthm")[0](emb, labels, VTHMMiner()(emb, labels)).item()
    pml_value = MultiSimilarityLoss()(emb, labels, MultiSimilarityMiner()(emb, labels)).item()
    loss, miner = build_table1_row("raw_vthm", variant="official", beta=OFFICIAL_BETA)
    official_value = loss(emb, labels, miner(emb, labels)).item()
    assert paper_value == pytest.approx(pml_value, rel=1e-10) and paper_value > 0
    assert official_value == pytest.approx(official_ms_loss(emb, labels).item(), rel=1e-10, abs=1e-15)
    assert official_value == 0.0


def test_anchor_with_one_empty_half():
    """Difference 2: with all pairs (the "RAW" row) an anchor alone in its class has no positives.
    Eq. 17 (and PML) keep its negative half; the official code skips the anchor."""
    emb, labels = clustered_batch(8, n_classes=3, per_class=3)
    emb = torch.cat([emb, torch.randn(1, emb.shape[1], dtype=emb.dtype, generator=torch.Generator().manual_seed(1))])
    labels = torch.cat([labels, torch.tensor([99])])          # a singleton class
    m = len(labels)
    pos, neg = all_pairs(labels.tolist())
    sim = cos_matrix(emb)
    paper = RAWLoss()(emb, labels).item()
    official = RAWLoss(variant="official")(emb, labels).item()
    pml = MultiSimilarityLoss()(emb, labels).item()
    singleton_neg_half = (1 / BETA) * math.log1p(sum(math.exp(BETA * (float(sim[m - 1, k]) - GAMMA)) for k in rows(neg, m - 1)))
    assert paper == pytest.approx(pml, rel=1e-10)
    assert paper == pytest.approx(naive_raw(sim, m, pos, neg).item(), rel=1e-10)
    assert paper - official == pytest.approx(singleton_neg_half / m, rel=1e-8)
    assert official == pytest.approx(naive_raw(sim, m, pos, neg, official=True).item(), rel=1e-10)


def test_pml_zeroes_a_batch_with_one_mined_pair_of_each_kind():
    """Difference 3 (PML only): GenericPairLoss returns 0 when every index tensor has <= 1 entry,
    so a batch whose VTHM yields exactly one positive and one negative pair trains nothing in PML.
    Eq. 17 gives it a non-zero loss (as does the official code)."""
    # s_01 = .5, s_02 = .45, s_12 = -.5: anchor 0 mines (0,1) and (0,2); anchor 1 nothing; 2 alone.
    e0 = [1.0, 0.0, 0.0]
    e1 = [0.5, math.sqrt(0.75), 0.0]
    y = (-0.5 - 0.45 * 0.5) / math.sqrt(0.75)
    e2 = [0.45, y, math.sqrt(1 - 0.45 ** 2 - y ** 2)]
    emb = torch.tensor([e0, e1, e2], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1])
    pairs = VTHMMiner()(emb, labels)
    assert pairs_of(pairs) == ({(0, 1)}, {(0, 2)})
    assert pairs_of(MultiSimilarityMiner()(emb, labels)) == ({(0, 1)}, {(0, 2)})
    ours = build_table1_row("raw_vthm")[0](emb, labels, pairs).item()
    expected = ((1 / ALPHA) * math.log1p(math.exp(-ALPHA * (0.5 - GAMMA)))
                + (1 / BETA) * math.log1p(math.exp(BETA * (0.45 - GAMMA)))) / 3
    assert ours == pytest.approx(expected, rel=1e-10)
    assert official_ms_loss(emb, labels, beta=BETA).item() == pytest.approx(expected, rel=1e-10)
    assert MultiSimilarityLoss()(emb, labels, MultiSimilarityMiner()(emb, labels)).item() == 0.0


def test_raw_rejects_unknown_variant_and_non_similarity():
    from pytorch_metric_learning.distances import LpDistance
    with pytest.raises(DmlReproError, match="variant"):
        RAWLoss(variant="pml")
    with pytest.raises(DmlReproError, match="similarity"):
        RAWLoss(distance=LpDistance())
