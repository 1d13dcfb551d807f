"""Baseline building blocks: semi-hard mining (vs TF-Addons semantics), softmax heads, set
augmentations and rotations, and the UDML-SS adaptation (neighbours, batches, masks, loss)."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from dmlrepro import DmlReproError
from dmlrepro.data.augment import (Augmenter, SetRotations, vector_noise, vector_noise_with_draws,
                                   weight_jitter, word_dropout, word_dropout_with_draws, word_vector_std)
from dmlrepro.losses.classification import RotationPredictionLoss, SoftmaxClassifierLoss
from dmlrepro.losses.triplet import WeightedTripletMarginLoss
from dmlrepro.miners.semihard import SemiHardTripletMiner, label_masks
from dmlrepro.papers.wsset.udml_ss import (UDMLSSLoss, cluster_batches, intermediate_neighbours, kmeans_pseudo_labels,
                                     neighbour_batches, pseudo_positive_mask, udml_ss_loss)


# ================================================================================ references
def naive_semihard(emb, pos, neg, margin):
    """Python loop over ordered positive pairs, as FaceNet / TF-Addons describe it.

    Returns the loss (differentiable in ``emb``) and the chosen negative per pair."""
    b = emb.shape[0]
    d = [[((emb[i] - emb[j]) ** 2).sum() for j in range(b)] for i in range(b)]
    terms, chosen = [], []
    for a in range(b):
        for p in range(b):
            if a == p or not pos[a][p]:
                continue
            cands = [n for n in range(b) if n != a and neg[a][n]]
            semi = [n for n in cands if d[a][n].item() > d[a][p].item()]
            if semi:
                n = min(semi, key=lambda n: d[a][n].item())
            elif cands:
                n = max(cands, key=lambda n: d[a][n].item())
            else:
                n = a  # TF-Addons: masked max over nothing = row minimum = d(a, a) = 0
            chosen.append((a, p, n))
            terms.append(torch.relu(margin + d[a][p] - d[a][n]))
    if not terms:
        return emb.sum() * 0.0, chosen
    return torch.stack(terms).mean(), chosen


def tfa_port(labels, emb, margin):
    """Line-by-line torch port of tfa.losses.triplet_semihard_loss (0.11, squared L2)."""
    labels = labels.reshape(-1, 1)
    sq = (emb.pow(2).sum(1, keepdim=True) + emb.pow(2).sum(1)[None, :] - 2 * emb @ emb.T).clamp_min(0.0)
    pdist = sq * (1 - torch.eye(len(emb), dtype=emb.dtype))
    adjacency = labels == labels.T
    adjacency_not = ~adjacency
    b = len(labels)
    pdist_tile = pdist.repeat(b, 1)
    mask = adjacency_not.repeat(b, 1) & (pdist_tile > pdist.T.reshape(-1, 1))
    mask_final = (mask.float().sum(1, keepdim=True) > 0).reshape(b, b).T
    adjacency_not = adjacency_not.to(emb.dtype)
    mask = mask.to(emb.dtype)

    def masked_minimum(data, m):
        mx = data.max(1, keepdim=True).values
        return ((data - mx) * m).min(1, keepdim=True).values + mx

    def masked_maximum(data, m):
        mn = data.min(1, keepdim=True).values
        return ((data - mn) * m).max(1, keepdim=True).values + mn

    negatives_outside = masked_minimum(pdist_tile, mask).reshape(b, b).T
    negatives_inside = masked_maximum(pdist, adjacency_not).repeat(1, b)
    semi_hard = torch.where(mask_final, negatives_outside, negatives_inside)
    loss_mat = margin + pdist - semi_hard
    mask_positives = adjacency.to(emb.dtype) - torch.eye(b, dtype=emb.dtype)
    return (loss_mat * mask_positives).clamp_min(0.0).sum() / mask_positives.sum()


def miner_loss(emb, margin=0.1, labels=None, positive_mask=None, negative_mask=None):
    miner = SemiHardTripletMiner()
    triplets = (miner(emb.detach(), labels) if labels is not None
                else miner.mine_from_masks(emb.detach(), positive_mask, negative_mask))
    return WeightedTripletMarginLoss(margin)(emb, indices_tuple=triplets), triplets


LABEL_CASES = [
    [0, 0, 1, 1, 1, 2, 3, 3, 4, 5],      # singleton classes 2, 4, 5
    [0, 1, 0, 1, 0, 1, 0, 1],
    [7, 7, 7, 7, 7],                     # no negatives at all
    [0, 0, 0, 1],                        # one anchor class, one singleton negative
]


# ================================================================================ semi-hard mining
@pytest.mark.parametrize("labels", LABEL_CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_semihard_matches_naive_loop_and_tfa(labels, seed):
    gen = torch.Generator().manual_seed(seed)
    emb = F.normalize(torch.randn(len(labels), 6, generator=gen, dtype=torch.float64), dim=1).requires_grad_()
    lab = torch.tensor(labels)
    pos, neg = label_masks(lab)

    loss, triplets = miner_loss(emb, labels=lab)
    ref, chosen = naive_semihard(emb, pos.tolist(), neg.tolist(), 0.1)
    assert list(zip(triplets.anchors.tolist(), triplets.positives.tolist(), triplets.negatives.tolist())) == chosen
    assert triplets.weights is None  # unweighted: w = 1
    assert loss.item() == pytest.approx(ref.item(), abs=1e-12)
    assert loss.item() == pytest.approx(tfa_port(lab, emb, 0.1).item(), abs=1e-12)

    g, = torch.autograd.grad(loss, emb)
    g_ref, = torch.autograd.grad(ref, emb)
    g_tfa, = torch.autograd.grad(tfa_port(lab, emb, 0.1), emb)
    assert torch.allclose(g, g_ref, atol=1e-12)
    assert torch.allclose(g, g_tfa, atol=1e-10)


def test_semihard_one_triplet_per_ordered_positive_pair():
    lab = torch.tensor([0, 0, 0, 1, 1, 2])
    t = SemiHardTripletMiner()(torch.randn(6, 3), labels=lab)
    # class 0: 3*2, class 1: 2*1, class 2: 0
    assert isinstance(t, tuple) and len(t) == 3  # PML's (anchors, positives, negatives)
    assert len(t.anchors) == 8
    assert all(lab[a] == lab[p] and a != p for a, p in zip(t.anchors.tolist(), t.positives.tolist()))


def test_semihard_hand_built_case():
    # points on a line; anchor 0 (x=0), positive 1 (x=1): negatives at 0.5 (closer), 3 and 2
    emb = torch.tensor([[0.0], [1.0], [0.5], [3.0], [2.0]], dtype=torch.float64)
    lab = torch.tensor([0, 0, 1, 1, 1])
    t = SemiHardTripletMiner()(emb, labels=lab)
    first = (t.anchors == 0) & (t.positives == 1)
    assert t.negatives[first].item() == 4          # closest beyond d_ap = 1 is x=2 (d=4)
    second = (t.anchors == 1) & (t.positives == 0)
    # anchor 1 (x=1), positive 0 (d=1): 0.5 (0.25) and 2 (1) are not farther; 3 (4) is
    assert t.negatives[second].item() == 3
    # anchor 2 (x=0.5), positive 4 (d=2.25): negatives 0 (0.25), 1 (0.25) -> fallback: farthest (first)
    third = (t.anchors == 2) & (t.positives == 4)
    assert t.negatives[third].item() == 0


def test_no_negatives_uses_zero_anchor_negative_distance():
    emb = torch.tensor([[0.0, 0.0], [0.3, 0.4]], dtype=torch.float64, requires_grad=True)
    loss, t = miner_loss(emb, margin=0.1, labels=torch.tensor([1, 1]))
    assert t.negatives.tolist() == t.anchors.tolist()
    assert loss.item() == pytest.approx(0.25 + 0.1)


@pytest.mark.parametrize("seed", [0, 1])
def test_semihard_with_explicit_masks(seed):
    rng = np.random.default_rng(seed)
    b = 9
    a = rng.random((b, b)) < 0.25
    pos = torch.from_numpy((a | a.T) & ~np.eye(b, dtype=bool))
    neg = torch.from_numpy(~(a | a.T) & ~np.eye(b, dtype=bool) & (rng.random((b, b)) < 0.8))
    gen = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    loss, t = miner_loss(emb, positive_mask=pos, negative_mask=neg)
    ref, chosen = naive_semihard(emb, pos.tolist(), neg.tolist(), 0.1)
    assert list(zip(t.anchors.tolist(), t.positives.tolist(), t.negatives.tolist())) == chosen
    assert loss.item() == pytest.approx(ref.item(), abs=1e-12)
    assert torch.allclose(torch.autograd.grad(loss, emb)[0], torch.autograd.grad(ref, emb)[0], atol=1e-12)


def test_semihard_mining_is_the_same_on_euclidean_distances():
    gen = torch.Generator().manual_seed(3)
    emb = torch.randn(12, 5, generator=gen)
    lab = torch.randint(0, 3, (12,), generator=gen)
    a = SemiHardTripletMiner("squared")(emb, labels=lab)
    b = SemiHardTripletMiner("euclidean")(emb, labels=lab)
    assert torch.equal(a.negatives, b.negatives) and torch.equal(a.positives, b.positives)


def test_semihard_empty_and_invalid_inputs():
    t = SemiHardTripletMiner()(torch.randn(4, 2), labels=torch.tensor([0, 1, 2, 3]))
    assert len(t.anchors) == 0
    emb = torch.randn(3, 2, requires_grad=True)
    assert WeightedTripletMarginLoss()(emb, indices_tuple=t).item() == 0.0
    eye = torch.eye(3, dtype=torch.bool)
    miner = SemiHardTripletMiner()
    with pytest.raises(DmlReproError, match="distance"):
        SemiHardTripletMiner("cosine")
    with pytest.raises(DmlReproError, match="overlap"):
        m = torch.ones(3, 3, dtype=torch.bool)
        miner.mine_from_masks(emb, m, m)
    with pytest.raises(DmlReproError, match="shape"):
        miner.mine_from_masks(emb, torch.zeros(2, 2, dtype=torch.bool), eye)
    with pytest.raises(DmlReproError, match="boolean"):
        miner.mine_from_masks(emb, eye.float(), eye)
    with pytest.raises(DmlReproError, match="labels has 2"):
        miner(emb, labels=torch.tensor([0, 1]))


def test_label_masks():
    pos, neg = label_masks(torch.tensor([0, 1, 0]))
    assert pos.tolist() == [[False, False, True], [False, False, False], [True, False, False]]
    assert neg.tolist() == [[False, True, False], [True, False, True], [False, True, False]]


# ================================================================================ softmax heads
@pytest.mark.parametrize("cls,n", [(SoftmaxClassifierLoss, 5), (RotationPredictionLoss, 4)])
def test_linear_cross_entropy_matches_naive(cls, n):
    torch.manual_seed(0)
    head = cls(8, n).double()
    emb = F.normalize(torch.randn(7, 8, dtype=torch.float64), dim=1).requires_grad_()
    y = torch.randint(0, n, (7,))
    loss = head(emb, y)
    W, c = head.linear.weight, head.linear.bias
    logits = emb @ W.T + c
    naive = torch.stack([torch.logsumexp(logits[i], 0) - logits[i, y[i]] for i in range(7)]).mean()
    ref = F.cross_entropy(emb @ W.T + c, y)
    assert loss.item() == pytest.approx(naive.item(), abs=1e-12)
    assert loss.item() == pytest.approx(ref.item(), abs=1e-12)
    for t in (emb, W, c):
        g, = torch.autograd.grad(loss, t, retain_graph=True)
        g_ref, = torch.autograd.grad(naive, t, retain_graph=True)
        assert torch.allclose(g, g_ref, atol=1e-12)


def test_released_code_ce_is_keras_sparse_ce_on_the_embedding():
    emb = F.normalize(torch.randn(6, 8, dtype=torch.float64), dim=1).requires_grad_()
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    head = SoftmaxClassifierLoss(8, 3, variant="released_code")
    assert len(list(head.parameters())) == 0
    loss = head(emb, y)
    p = emb.clamp(1e-7, 1 - 1e-7)
    ref = torch.stack([-torch.log(p[i, y[i]] / p[i].sum()) for i in range(6)]).mean()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.allclose(torch.autograd.grad(loss, emb)[0], torch.autograd.grad(ref, emb)[0])
    with pytest.raises(DmlReproError, match="n_classes=9"):
        SoftmaxClassifierLoss(8, 9, variant="released_code")
    with pytest.raises(DmlReproError, match="variant 'softmax'"):
        SoftmaxClassifierLoss(8, 3, variant="softmax")


def test_softmax_head_rejects_bad_targets():
    head = SoftmaxClassifierLoss(4, 3)
    with pytest.raises(DmlReproError, match=r"class labels must lie in \[0, 3\)"):
        head(torch.randn(2, 4), torch.tensor([0, 3]))
    with pytest.raises(DmlReproError, match="2 embeddings but 3"):
        head(torch.randn(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(DmlReproError, match="at least 2"):
        RotationPredictionLoss(4, 1)


# ================================================================================ augmentations
def make_batch(seed=0, lengths=(5, 1, 3, 7), dim=4):
    gen = torch.Generator().manual_seed(seed)
    L = max(lengths)
    x = torch.zeros(len(lengths), L, dim + 1, dtype=torch.float64)
    mask = torch.ones(len(lengths), L, dtype=torch.bool)
    for i, u in enumerate(lengths):
        x[i, :u, :dim] = torch.randn(u, dim, generator=gen, dtype=torch.float64) + 0.5
        x[i, :u, dim] = torch.randint(1, 6, (u,), generator=gen).double()
        mask[i, :u] = False
    return x, mask


def rows_of(x, mask, i):
    """The real elements of set i as a sorted list of tuples (a set, order-free)."""
    return sorted(tuple(round(v, 10) for v in r.tolist()) for r in x[i][~mask[i]])


def assert_padding_clean(x, mask):
    assert torch.all(x[mask] == 0)
    # padding is a suffix of every row
    assert torch.all(mask[:, 1:] >= mask[:, :-1])


def test_word_dropout_keeps_a_nonempty_subset_as_prefix():
    x, mask = make_batch()
    for seed in range(20):
        out, m = word_dropout(x, mask, 0.6, torch.Generator().manual_seed(seed))
        assert out.shape == x.shape
        assert_padding_clean(out, m)
        assert torch.all((~m).sum(1) >= 1)
        for i in range(len(x)):
            assert set(rows_of(out, m, i)) <= set(rows_of(x, mask, i))
    # the singleton set is never emptied, even at p close to 1
    out, m = word_dropout(x, mask, 0.99, torch.Generator().manual_seed(1))
    assert torch.all((~m).sum(1) == 1)


def test_word_dropout_rate_and_determinism():
    x, mask = make_batch(lengths=(40, 40))
    kept = [(~word_dropout(x, mask, 0.3, torch.Generator().manual_seed(s))[1]).sum().item() for s in range(200)]
    assert np.mean(kept) / 80 == pytest.approx(0.7, abs=0.02)
    a = word_dropout(x, mask, 0.3, torch.Generator().manual_seed(5))
    b = word_dropout(x, mask, 0.3, torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    same = word_dropout(x, mask, 0.0)
    assert torch.equal(same[0], x) and torch.equal(same[1], mask)


def permute_sets(x, mask, seed):
    """Permute the real elements of every set (padding stays a suffix); returns the permutation."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.arange(x.shape[1]).repeat(x.shape[0], 1)
    for i in range(x.shape[0]):
        u = int((~mask[i]).sum())
        perm[i, :u] = torch.randperm(u, generator=gen)
    return x.gather(1, perm.unsqueeze(-1).expand_as(x)), mask.gather(1, perm), perm


def test_augmentations_are_permutation_equivariant_given_the_draws():
    x, mask = make_batch(seed=2)
    xp, mp, perm = permute_sets(x, mask, 7)
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(mask.shape, generator=gen, dtype=torch.float64)
    z = torch.randn(x.shape[0], x.shape[1], x.shape[2] - 1, generator=gen, dtype=torch.float64)
    up, zp = u.gather(1, perm), z.gather(1, perm.unsqueeze(-1).expand_as(z))
    d1, m1 = word_dropout_with_draws(x, mask, 0.5, u)
    d2, m2 = word_dropout_with_draws(xp, mp, 0.5, up)
    n1, n2 = vector_noise_with_draws(x, mask, 0.3, z), vector_noise_with_draws(xp, mp, 0.3, zp)
    for i in range(len(x)):
        assert rows_of(d1, m1, i) == rows_of(d2, m2, i)
        assert rows_of(n1, mask, i) == rows_of(n2, mp, i)
    assert word_vector_std(x, mask).item() == pytest.approx(word_vector_std(xp, mp).item())


def test_vector_noise_spares_padding_and_weights():
    x, mask = make_batch(lengths=(30, 50, 2))
    out, m = vector_noise(x, mask, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(m, mask)
    assert_padding_clean(out, m)
    assert torch.equal(out[..., -1], x[..., -1])
    noise = (out - x)[..., :-1][~mask]
    assert noise.std().item() == pytest.approx(0.5 * word_vector_std(x, mask).item(), rel=0.15)
    with pytest.raises(DmlReproError, match="vector_noise"):
        vector_noise(x, mask, -1.0)


@pytest.mark.parametrize("feature", ["count", "normalised", "log"])
def test_weight_jitter_positive_and_in_count_space(feature):
    x, mask = make_batch(lengths=(6, 3))
    if feature == "normalised":
        x[..., -1] = x[..., -1] / x[..., -1].sum(1, keepdim=True)
    if feature == "log":
        x[..., -1] = torch.log1p(x[..., -1]).masked_fill(mask, 0.0)
    out, m = weight_jitter(x, mask, 0.4, torch.Generator().manual_seed(0), weight_feature=feature)
    assert_padding_clean(out, m)
    assert torch.equal(out[..., :-1], x[..., :-1])
    assert torch.all(out[..., -1][~mask] > 0)
    if feature == "normalised":
        assert torch.allclose(out[..., -1].sum(1), torch.ones(2, dtype=out.dtype))


def test_weight_jitter_has_mean_one():
    x, mask = make_batch(lengths=(4000,))
    out, _ = weight_jitter(x, mask, 0.3, torch.Generator().manual_seed(0))
    ratio = out[..., -1][~mask] / x[..., -1][~mask]
    assert ratio.mean().item() == pytest.approx(1.0, abs=0.02)


def test_set_rotations_orthogonal_norm_preserving_equivariant():
    rot = SetRotations(4, n=5, seed=3)
    q = rot.matrices
    assert torch.equal(q[0], torch.eye(4, dtype=q.dtype))
    for t in range(5):
        assert torch.allclose(q[t] @ q[t].T, torch.eye(4, dtype=q.dtype), atol=1e-12)
        assert torch.linalg.det(q[t]).item() == pytest.approx(1.0)
    assert not torch.allclose(q[1], q[2])
    assert torch.equal(SetRotations(4, 5, seed=3).matrices, q)
    assert not torch.allclose(SetRotations(4, 5, seed=4).matrices[1], q[1])

    x, mask = make_batch(seed=1)
    out, idx = rot(x, mask, torch.Generator().manual_seed(0))
    out2, idx2 = rot(x, mask, torch.Generator().manual_seed(0))
    assert torch.equal(out, out2) and torch.equal(idx, idx2)
    assert_padding_clean(out, mask)
    assert torch.equal(out[..., -1], x[..., -1])
    assert torch.allclose(out[..., :-1].norm(dim=-1), x[..., :-1].norm(dim=-1))
    # pairwise distances inside a set are unchanged
    for i in range(len(x)):
        v, w = x[i][~mask[i]][:, :-1], out[i][~mask[i]][:, :-1]
        assert torch.allclose(torch.cdist(v, v), torch.cdist(w, w), atol=1e-10)
    # rotating a permuted set = permuting the rotated set
    xp, mp, perm = permute_sets(x, mask, 4)
    rp = rot.apply(xp, mp, idx)
    assert torch.allclose(rp, out.gather(1, perm.unsqueeze(-1).expand_as(out)))
    assert torch.equal(rot.apply(x, mask, torch.zeros(len(x), dtype=torch.long)), x)


def test_set_rotations_all_transforms_layout():
    rot = SetRotations(4, n=3, seed=0)
    x, mask = make_batch()
    xr, mr, t = rot.all_transforms(x, mask)
    assert xr.shape == (len(x) * 3,) + x.shape[1:]
    assert t.tolist() == [0, 1, 2] * len(x)
    for i in range(len(x)):
        for k in range(3):
            assert torch.equal(mr[3 * i + k], mask[i])
            assert torch.allclose(xr[3 * i + k], rot.apply(x[i:i + 1], mask[i:i + 1], torch.tensor([k]))[0])
    with pytest.raises(DmlReproError, match="dim=3"):
        SetRotations(3, 2)(x, mask)
    with pytest.raises(DmlReproError, match="at least 2"):
        SetRotations(4, 1)


def test_augmenter_config_and_composition():
    x, mask = make_batch(lengths=(10, 1, 6))
    aug = Augmenter({"word_dropout": 0.3, "vector_noise": 0.1, "weight_jitter": 0.2})
    a = aug(x, mask, torch.Generator().manual_seed(9))
    b = aug(x, mask, torch.Generator().manual_seed(9))
    c = aug(x, mask, torch.Generator().manual_seed(10))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert_padding_clean(*a)
    assert torch.all((~a[1]).sum(1) >= 1)
    assert torch.all(a[0][..., -1][~a[1]] > 0)
    ident = Augmenter({})(x, mask, torch.Generator().manual_seed(0))
    assert torch.equal(ident[0], x) and torch.equal(ident[1], mask)
    assert Augmenter().config == {"word_dropout": 0.0, "vector_noise": 0.0, "weight_jitter": 0.0}

    xs = x.clone()
    xs[..., -1] = xs[..., -1] / xs[..., -1].sum(1, keepdim=True)
    out, m = Augmenter({"word_dropout": 0.5}, weight_feature="normalised")(xs, mask, torch.Generator().manual_seed(0))
    assert torch.allclose(out[..., -1].sum(1), torch.ones(3, dtype=out.dtype))


@pytest.mark.parametrize("cfg,match", [
    ({"word_droput": 0.1}, "'word_droput'"),
    ({"noise": 0.1, "weight_jitter": 0.1}, "'noise'"),
    ({"word_dropout": 1.0}, "word_dropout"),
    ({"vector_noise": -0.1}, "vector_noise"),
    ({"weight_jitter": "big"}, "weight_jitter"),
])
def test_augmenter_rejects_bad_config(cfg, match):
    with pytest.raises(DmlReproError, match=match):
        Augmenter(cfg)


# ================================================================================ UDML-SS
def test_intermediate_neighbours_cosine_vs_euclidean():
    # A (1, 0) and B (10, 0.5) point the same way; C (0.8, 0.8) is close to A in Euclidean terms
    c = np.array([[1.0, 0.0], [10.0, 0.5], [0.8, 0.8], [0.0, 1.0], [0.1, 2.0]])
    cos = intermediate_neighbours(c, 1, "cosine")
    euc = intermediate_neighbours(c, 1, "euclidean")
    assert cos[0, 0] == 1 and euc[0, 0] == 2
    assert cos[3, 0] == 4
    nb = intermediate_neighbours(c, 2)
    assert nb.shape == (5, 2) and nb.dtype == np.int64
    assert all(i not in nb[i] for i in range(5))


def test_intermediate_neighbours_excludes_self_among_duplicates():
    c = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    nb = intermediate_neighbours(c, 2)
    for i in range(3):
        assert i not in nb[i] and set(nb[i]) == {0, 1, 2} - {i}
    with pytest.raises(DmlReproError, match="k=4"):
        intermediate_neighbours(c, 4)
    with pytest.raises(DmlReproError, match="metric 'manhattan'"):
        intermediate_neighbours(c, 1, "manhattan")


def test_pseudo_positive_mask_hand_built():
    # fit documents 0..5; kNN (k = 1): 0->1, 1->2, 2->1, 3->4, 4->3, 5->0
    neighbours = np.array([[1], [2], [1], [4], [3], [0]])
    batch = np.array([0, 1, 3, 5, 4])
    pos, neg = pseudo_positive_mask(batch, neighbours)
    expected_pos = {(0, 1), (1, 0), (0, 3), (3, 0), (2, 4), (4, 2)}  # 0~1, 0~5 (5->0), 3~4
    assert {(i, j) for i in range(5) for j in range(5) if pos[i, j]} == expected_pos
    assert torch.equal(pos, pos.T) and not pos.diagonal().any() and not neg.diagonal().any()
    assert torch.equal(neg | pos | torch.eye(5, dtype=torch.bool), torch.ones(5, 5, dtype=torch.bool))
    # the same document twice is a positive pair
    pos2, _ = pseudo_positive_mask(np.array([2, 2, 3]), neighbours)
    assert pos2[0, 1] and pos2[1, 0]
    with pytest.raises(DmlReproError, match="6 fit documents"):
        pseudo_positive_mask(np.array([6]), neighbours)


@pytest.mark.parametrize("batch_size", [8, 7, 30])
def test_neighbour_batches_give_every_member_a_positive(batch_size):
    rng = np.random.default_rng(0)
    c = rng.normal(size=(30, 5))
    nb = intermediate_neighbours(c, 3)
    batches = list(neighbour_batches(30, nb, batch_size, np.random.default_rng(1)))
    assert len(batches) == max(1, 30 // batch_size)
    for b in batches:
        assert len(b) == min(batch_size, 30) and len(set(b.tolist())) == len(b)
        pos, _ = pseudo_positive_mask(b, nb)
        assert pos.any(dim=1).all()
    again = list(neighbour_batches(30, nb, batch_size, np.random.default_rng(1)))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    many = np.concatenate(list(neighbour_batches(30, nb, 8, np.random.default_rng(2), n_batches=40)))
    assert set(many.tolist()) == set(range(30))


def test_kmeans_and_cluster_batches():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10]])
    truth = np.repeat([0, 1, 2], 12)
    feats = centres[truth] + rng.normal(scale=0.3, size=(36, 2))
    labels = kmeans_pseudo_labels(feats, 3, seed=0)
    assert len({(t, l) for t, l in zip(truth, labels)}) == 3  # the same partition
    for b in cluster_batches(labels, 8, 4, np.random.default_rng(0)):
        assert len(b) == 8
        _, counts = np.unique(labels[b], return_counts=True)
        assert counts.tolist() == [4, 4]
    with pytest.raises(DmlReproError, match="n_clusters=1"):
        kmeans_pseudo_labels(feats, 1)
    with pytest.raises(DmlReproError, match="per_cluster=1"):
        next(cluster_batches(labels, 8, 1, np.random.default_rng(0)))


class TinySetModel(torch.nn.Module):
    """DeepSets-like: per-element linear map, masked sum, linear head, L2 normalisation."""

    def __init__(self, input_dim, embedding_dim=6):
        super().__init__()
        self.phi = torch.nn.Linear(input_dim, 16)
        self.rho = torch.nn.Linear(16, embedding_dim)
        self.embedding_dim = embedding_dim

    def forward(self, x, padding_mask):
        h = torch.tanh(self.phi(x)).masked_fill(padding_mask.unsqueeze(-1), 0.0).sum(1)
        return F.normalize(self.rho(h), dim=-1)


def test_udml_ss_loss_is_triplet_plus_weighted_rotation():
    torch.manual_seed(0)
    x, mask = make_batch(seed=3, lengths=(5, 2, 4, 6, 3, 5), dim=4)
    neighbours = np.array([[1], [0], [3], [2], [5], [4]])
    rows = np.arange(6)
    model = TinySetModel(5).double()
    crit = UDMLSSLoss(6, 4, margin=0.1, rotation_weight=0.5, n_rotations=4, seed=1, rotation_batch=3).double()
    loss, n = crit(model, x, mask, rows, neighbours, generator=torch.Generator().manual_seed(7))
    assert n == 6  # three mutual pairs, one triplet per ordered pair
    parts = crit.last_parts

    pos, neg = pseudo_positive_mask(rows, neighbours)
    emb = model(x, mask)
    t = SemiHardTripletMiner().mine_from_masks(emb.detach(), pos, neg)
    triplet = WeightedTripletMarginLoss(0.1)(emb, indices_tuple=t)
    pick = torch.randperm(6, generator=torch.Generator().manual_seed(7))[:3]
    xr, mr, targets = crit.rotations.all_transforms(x[pick], mask[pick])
    rotation = crit.rotation_head(model(xr, mr), targets)
    assert parts.triplet.item() == pytest.approx(triplet.item(), abs=1e-12)
    assert parts.rotation.item() == pytest.approx(rotation.item(), abs=1e-12)
    assert loss.item() == pytest.approx(triplet.item() + 0.5 * rotation.item(), abs=1e-12)

    loss.backward()
    assert crit.rotation_head.linear.weight.grad is not None
    assert model.phi.weight.grad is not None and model.phi.weight.grad.abs().sum() > 0
    # the rotations are fixed: saved with the objective, not trained
    assert "rotations.matrices" in crit.state_dict()
    assert all(p is not crit.rotations.matrices for p in crit.parameters())


def test_udml_ss_without_rotation_is_the_triplet_term():
    x, mask = make_batch(seed=4, lengths=(3, 3, 3, 3), dim=4)
    model = TinySetModel(5).double()
    crit = UDMLSSLoss(6, 4, rotation_weight=0.0).double()
    pos, neg = pseudo_positive_mask(np.arange(4), np.array([[1], [0], [3], [2]]))
    parts = crit.from_masks(model, x, mask, pos, neg)
    assert parts.rotation.item() == 0.0
    assert parts.total.item() == pytest.approx(parts.triplet.item())
    func = udml_ss_loss(model, x, mask, pos, neg, crit.rotations, crit.rotation_head, 0.0,
                        WeightedTripletMarginLoss(0.1))
    assert func.total.item() == pytest.approx(parts.total.item())
    with pytest.raises(DmlReproError, match="rotation_weight"):
        UDMLSSLoss(6, 4, rotation_weight=-1.0)


def test_udml_ss_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    # two topics: word vectors around +e1 or +e2; centroids recover the topic
    n, L, d = 24, 4, 4
    x = torch.zeros(n, L, d + 1, dtype=torch.float64)
    topic = np.repeat([0, 1], n // 2)
    for i in range(n):
        base = np.eye(d)[topic[i]] * 2.0
        x[i, :, :d] = torch.from_numpy(base + rng.normal(scale=0.5, size=(L, d)))
        x[i, :, d] = 1.0
    mask = torch.zeros(n, L, dtype=torch.bool)
    centroids = x[:, :, :d].mean(1).numpy()
    nb = intermediate_neighbours(centroids, 3)
    assert np.mean(topic[nb] == topic[:, None]) > 0.9
    model = TinySetModel(d + 1).double()
    crit = UDMLSSLoss(6, d, rotation_weight=0.1, rotation_batch=8).double()
    opt = torch.optim.Adam(list(model.parameters()) + list(crit.parameters()), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    rows = np.arange(n)
    first = crit(model, x, mask, rows, nb, generator=gen)[0].item()
    for _ in range(30):
        loss, _ = crit(model, x, mask, rows, nb, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert crit(model, x, mask, rows, nb, generator=gen)[0].item() < first


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_device_agnostic_on_cuda():
    dev = torch.device("cuda")
    x, mask = make_batch(seed=5, dim=4)
    gen = torch.Generator().manual_seed(0)
    a_cpu = Augmenter({"word_dropout": 0.3, "vector_noise": 0.1, "weight_jitter": 0.2})(x, mask, gen)
    gen = torch.Generator().manual_seed(0)
    a_gpu = Augmenter({"word_dropout": 0.3, "vector_noise": 0.1, "weight_jitter": 0.2})(x.to(dev), mask.to(dev), gen)
    assert torch.allclose(a_gpu[0].cpu(), a_cpu[0]) and torch.equal(a_gpu[1].cpu(), a_cpu[1])
    lab = torch.tensor([0, 0, 1, 1], device=dev)
    emb = torch.randn(4, 3, device=dev)
    assert len(SemiHardTripletMiner()(emb, labels=lab)[0]) == 4
    model = TinySetModel(5).double().to(dev)
    crit = UDMLSSLoss(6, 4).double().to(dev)
    loss, n = crit(model, x.to(dev), mask.to(dev), np.arange(4), np.array([[1], [0], [3], [2]]))
    assert math.isfinite(loss.item()) and n == 4
