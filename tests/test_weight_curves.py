"""Paper 004's Figure 1 drawn from the code: a smoke test plus the panels' defining shapes."""

from __future__ import annotations

import torch

from dmlrepro.reporting.weight_curves import plot_pair_weights, synthetic_batch, weight_panels


def test_plot_pair_weights_writes_png_and_pdf(tmp_path):
    out = plot_pair_weights(tmp_path / "fig1_weights.png")
    assert out["png"].stat().st_size > 10_000 and out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out["pdf"].stat().st_size > 1_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig1_weights.pdf", "fig1_weights.png"]  # no temp files left


def test_panels_have_the_papers_shapes():
    emb, labels = synthetic_batch()
    panels = dict(weight_panels(emb, labels))
    contrastive = panels["(a) contrastive, Eq. 6"]
    assert torch.allclose(contrastive.pos_weights, torch.ones_like(contrastive.pos_weights))
    assert torch.equal(contrastive.neg_weights, (contrastive.neg_sims > 0.5).double())   # a step at lambda
    triplet = panels["(b) triplet, Eq. 8"]
    assert set(torch.unique(triplet.pos_weights).tolist()) <= {0.0, 1.0}
    assert set(torch.unique(triplet.neg_weights).tolist()) <= {0.0, 1.0}
    vthm = panels["(f) RAW + VTHM, Eqs. 15-16"]
    full = panels["(e) RAW, all pairs, Eqs. 15-16"]
    assert (vthm.neg_weights == 0).sum() > (full.neg_weights == 0).sum()   # VTHM zeroes easy pairs
    # both sides of the similarity axis are populated
    assert contrastive.neg_sims.min() < -0.5 and contrastive.neg_sims.max() > 0.5
