"""Paper 002, "An Optimal Transport Approach to Deep Metric Learning" (Dou, Luo, Yang, AAAI 2022
student abstract): W-triplet and W-contrastive on a Sinkhorn divergence between per-image point
clouds, the WCRAIG coreset, and Table 1's ten losses.

- ``methods``: Table 1's ten rows (and W-triplet + WCRAIG) as declarative specs.
- ``run``: one run through the shared trainer (point-cloud embedder, WCRAIG hook, evaluation).
- ``paper_values``: Table 1 as printed (TARGETS.md 002-§1), with its probable copy errors.
- ``claims``: the paper's Table 1 claims as :class:`~dmlrepro.reporting.claims.ClaimSpec`.
- ``report``: Table 1 per dataset, the coreset table, the claims table.
- ``commands``: the CLI steps ``wass-train``, ``wass-table``, ``wass-claims``.

The distance, the losses and the coreset live in the shared rooms
(``distances/sinkhorn_divergence.py``, ``losses/wasserstein.py``, ``miners/coreset.py``).
"""
