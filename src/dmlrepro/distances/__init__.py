"""Distances that pytorch-metric-learning lacks, as ``BaseDistance`` subclasses
(:mod:`dmlrepro.distances.sinkhorn_divergence`: images as point clouds, debiased Sinkhorn divergence)."""
