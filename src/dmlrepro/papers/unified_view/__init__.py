"""Paper 004, "A unified view of deep metric learning via gradient analysis" (RAW + VTHM).

Table 1 (the ablation: seven weighting x mining rows, R@1) run through the image foundation's
generic machinery (``dmlrepro.papers.image_foundation.run``: split, pretraining, one metric-learning
run per row and seed, selection on validation); Figure 1 (pair weight against cosine similarity) from
the losses' own gradients; the paper's Table 1 claims checked on our runs.

- ``methods``: the seven rows as declarative loss/miner specs (the config's ``methods`` block).
- ``paper_values``: the paper's Tables 1-3, as printed (TARGETS.md 004-§1).
- ``claims``: the paper's Table 1 claims as :class:`~dmlrepro.reporting.claims.ClaimSpec`.
- ``report``: Table 1 per dataset (mean ± std over seeds), the claims table, Figure 1.
- ``commands``: the CLI steps ``uv-table``, ``uv-claims``, ``uv-figure1``.

The default config runs the rows on the zero-shot Fashion-MNIST stand-in (a check of method:
never beside the paper's numbers); ``config/paper.yaml`` on CUB-200-2011, Cars-196, SOP and In-shop.
"""
