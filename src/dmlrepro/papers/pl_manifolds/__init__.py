"""Piecewise-linear manifolds for unsupervised deep metric learning (Bhatnagar & Ahuja, CPAL 2024).

The method (nearest-neighbour batches, momentum encoder, piecewise-linear manifold, proxies,
Eqs. 6–9) and STML, the baseline the paper re-ran, as objectives and hooks of the shared trainer
(:mod:`.run`); their declared settings and Table 3's ablations (:mod:`.methods`); Table 2's
supervision quality (:func:`dmlrepro.evaluation.supervision_quality.supervision_quality`); Tables
1–3, Fig. 3 and the claims beside the paper's values (:mod:`.report`, :mod:`.paper_values`,
:mod:`.claims`). See ``docs/pl-manifolds.md``.
"""
