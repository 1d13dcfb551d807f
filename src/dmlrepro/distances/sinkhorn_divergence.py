"""Images as point clouds, compared by the debiased Sinkhorn divergence (Paper 002, Eqs. 3-4).

The paper ("An Optimal Transport Approach to Deep Metric Learning", Dou, Luo, Yang, AAAI 2022
student abstract) replaces the Euclidean distance of the contrastive and triplet losses by
``d_w(x, y) = W_1(x, y)`` between images, approximated by a Sinkhorn divergence, but never says
what the *measure* of an image is. Decisions taken here (they are the reproduction's, not the
paper's):

* **The measure of an image** is the uniform measure over the spatial cells of the backbone's
  last feature map, each cell projected to the embedding dimension: a ``feature_map(x)`` of shape
  ``(b, C, h, w)`` goes through a linear 1x1 projection to ``(b, D, h, w)``, which is read as a
  cloud of ``P = h * w`` points in ``R^D`` with weights ``1 / P`` (:func:`clouds_from_feature_map`),
  each point optionally L2-normalised (default: yes, so all points lie on the unit sphere and
  the cloud diameter is at most 2). The projection itself belongs to the model's head.
* **The divergence** is the debiased Sinkhorn divergence of Eq. 4,
  ``S_eps(a, b) = OT_eps(a, b) - 1/2 OT_eps(a, a) - 1/2 OT_eps(b, b)``, where ``OT_eps`` is the
  full entropic objective of Eq. 3, ``min_pi <pi, C> + eps KL(pi | a x b)``, **entropic term
  included**. That is what Eq. 3 writes and what geomloss computes (its dual value).
  POT's ``ot.bregman.empirical_sinkhorn_divergence`` is a different function: it drops the KL
  term and combines the linear costs ``<pi*, C>`` of the three plans. We do not use it.
* **Ground cost, geomloss's convention**: ``C(x, y) = ||x - y||^2 / 2`` for ``p = 2`` (the
  default) and ``C(x, y) = ||x - y||`` for ``p = 1``, with ``eps = blur ** p``. As ``eps -> 0``,
  ``S_eps -> OT_0``, which is ``W_2^2 / 2`` for ``p = 2`` (not ``W_2``) and ``W_1`` for ``p = 1``.
  The values are in the units of the cost. Eq. 3 has cost ``||x - y||^p`` and weight ``eta``.
  For ``p = 2`` the paper's ``SD_{2,eta}`` is therefore ``2 * S_eps`` with ``eps = eta / 2``.
  Only the scale changes, and a loss margin absorbs it. The paper writes ``d_w = W_1``, but the
  decision here is ``p = 2``: smooth gradients, and the cost that geomloss optimises best.
  ``p = 1`` is available.
* **Solver**: geomloss ``SamplesLoss("sinkhorn", debias=True, backend="tensorized")`` on batches
  of pair problems ``(B, P, D)``. It runs eps-scaling (annealing from ``diameter ** p`` down to
  ``blur ** p``, by a factor ``scaling ** p`` per iteration), so the number of iterations is
  ``~ log(diameter / blur) / log(1 / scaling)`` and ``scaling`` sets the accuracy. Its gradients
  are the envelope-theorem gradients, exact at convergence. The ``diameter`` of the annealing is
  fixed **once for the whole call** (geomloss's own bounding-box bound over all points, or the
  value given). Otherwise each chunk would get its own schedule, and a pair's value would
  depend on the other pairs batched with it. With it fixed, chunked = unchunked.
* **Pairs, chunked**: all ``n * m`` pairs of two sets of clouds, or the ``n (n - 1) / 2`` pairs
  ``i < j`` of one set, mirrored, with an exact-zero diagonal (``S_eps(a, a) = 0``). At most
  ``max_pairs`` problems go to one geomloss call, which bounds the forward's working memory
  (about ``4 * max_pairs * P^2`` cost entries). The autograd graph still keeps the last
  iteration of every chunk.

:class:`SinkhornDivergenceDistance` makes this a pytorch-metric-learning distance, so PML's
losses and miners use it unchanged. PML distances receive 2-D embeddings, so a cloud travels
flattened: the row of an image is its ``(P, D)`` cloud in point-major order
(:func:`flatten_clouds`), and the distance reshapes it with its known ``point_dim = D``.
"""

from __future__ import annotations

import math

import torch
from geomloss import SamplesLoss
from pytorch_metric_learning.distances import BaseDistance

from dmlrepro import DmlReproError

DEFAULT_BLUR = 0.05        # eps = blur ** p; for unit-norm points costs lie in [0, 2] (p = 2)
DEFAULT_SCALING = 0.9      # about 40 annealing iterations for diameter 2, blur 0.05
DEFAULT_MAX_PAIRS = 2048   # pair problems per geomloss call
GROUND_EXPONENTS = (1, 2)  # geomloss's built-in costs ||x - y|| and ||x - y||^2 / 2
BACKENDS = ("tensorized", "online")   # both take batches of problems; "online" needs pykeops


# ------------------------------------------------------------------------------------ clouds
def clouds_from_feature_map(feature_map: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """``(b, D, h, w)`` projected feature map -> ``(b, h * w, D)`` clouds, one point per cell
    (row-major over ``h, w``), each point L2-normalised when ``normalize``."""
    if feature_map.ndim != 4:
        raise DmlReproError(f"feature_map must be (b, D, h, w), got shape {tuple(feature_map.shape)}")
    clouds = feature_map.flatten(2).transpose(1, 2)
    return torch.nn.functional.normalize(clouds, dim=-1) if normalize else clouds


def flatten_clouds(clouds: torch.Tensor) -> torch.Tensor:
    """``(n, P, D)`` clouds -> ``(n, P * D)`` rows (point-major), the form PML passes around."""
    if clouds.ndim != 3:
        raise DmlReproError(f"clouds must be (n, P, D), got shape {tuple(clouds.shape)}")
    return clouds.reshape(len(clouds), -1)


def unflatten_clouds(rows: torch.Tensor, point_dim: int) -> torch.Tensor:
    """``(n, P * D)`` rows -> ``(n, P, D)`` clouds, with ``D = point_dim``."""
    if rows.ndim != 2 or point_dim < 1 or rows.shape[1] % point_dim:
        raise DmlReproError(f"embedding rows of shape {tuple(rows.shape)} are not clouds of "
                            f"point_dim={point_dim} (row length must be a multiple of it)")
    return rows.reshape(len(rows), -1, point_dim)


def cloud_diameter(*clouds: torch.Tensor) -> float:
    """Geomloss's upper bound on the distance between any two points of all ``clouds`` (the
    diagonal of their common bounding box): the start of the eps-scaling annealing."""
    points = torch.cat([c.detach().reshape(-1, c.shape[-1]) for c in clouds])
    return float((points.max(0).values - points.min(0).values).norm())


# ------------------------------------------------------------------------------------ divergences
def _check(clouds: torch.Tensor, name: str) -> None:
    if clouds.ndim != 3 or clouds.shape[1] < 1 or clouds.shape[2] < 1:
        raise DmlReproError(f"{name} must be (n, P, D) point clouds, got shape {tuple(clouds.shape)}")


def _solver(blur: float, p: int, scaling: float, debias: bool, backend: str, diameter: float) -> SamplesLoss:
    if not (blur > 0 and math.isfinite(blur)):
        raise DmlReproError(f"sinkhorn divergence: blur must be a positive number, got {blur}")
    if not 0 < scaling < 1:
        raise DmlReproError(f"sinkhorn divergence: scaling must be in (0, 1), got {scaling}")
    if p not in GROUND_EXPONENTS:
        raise DmlReproError(f"sinkhorn divergence: p must be 1 or 2 (geomloss's costs), got {p}")
    if backend not in BACKENDS:
        raise DmlReproError(f"sinkhorn divergence: backend must be one of {BACKENDS}, got '{backend}'")
    # a zero diameter (all points equal) would give log(0) in geomloss's schedule
    return SamplesLoss("sinkhorn", p=p, blur=blur, scaling=scaling, debias=debias, backend=backend,
                       diameter=max(diameter, blur))


def _solve_pairs(solver: SamplesLoss, clouds_x: torch.Tensor, clouds_y: torch.Tensor, rows: torch.Tensor,
                 cols: torch.Tensor, max_pairs: int) -> torch.Tensor:
    """Divergences of the pairs ``(clouds_x[rows[k]], clouds_y[cols[k]])``, ``max_pairs`` per call."""
    if max_pairs < 1:
        raise DmlReproError(f"sinkhorn divergence: max_pairs must be >= 1, got {max_pairs}")
    values = [solver(clouds_x[rows[s:s + max_pairs]], clouds_y[cols[s:s + max_pairs]])
              for s in range(0, len(rows), max_pairs)]
    if not values:
        return clouds_x.new_zeros(0)
    return torch.cat(values)


def paired_sinkhorn_divergence(clouds_x: torch.Tensor, clouds_y: torch.Tensor, *, blur: float = DEFAULT_BLUR,
                               p: int = 2, scaling: float = DEFAULT_SCALING, debias: bool = True,
                               backend: str = "tensorized", diameter: float | None = None,
                               max_pairs: int = DEFAULT_MAX_PAIRS) -> torch.Tensor:
    """``S_eps(clouds_x[k], clouds_y[k])`` for each ``k``: ``(B,)``, differentiable.

    ``clouds_x`` ``(B, P, D)``, ``clouds_y`` ``(B, Q, D)``, uniform weights. ``debias=False``
    gives the biased entropic cost ``OT_eps`` (Eq. 3) instead of Eq. 4. ``diameter``: start of
    the annealing, by default the bounding-box bound of all the points (see the module docstring).
    """
    _check(clouds_x, "clouds_x")
    _check(clouds_y, "clouds_y")
    if len(clouds_x) != len(clouds_y) or clouds_x.shape[2] != clouds_y.shape[2]:
        raise DmlReproError(f"paired clouds must have equal counts and dimensions, got shapes "
                            f"{tuple(clouds_x.shape)} and {tuple(clouds_y.shape)}")
    diameter = cloud_diameter(clouds_x, clouds_y) if diameter is None else float(diameter)
    solver = _solver(blur, p, scaling, debias, backend, diameter)
    index = torch.arange(len(clouds_x), device=clouds_x.device)
    return _solve_pairs(solver, clouds_x, clouds_y, index, index, max_pairs)


def pairwise_sinkhorn_divergence(clouds_x: torch.Tensor, clouds_y: torch.Tensor | None = None, *,
                                 blur: float = DEFAULT_BLUR, p: int = 2, scaling: float = DEFAULT_SCALING,
                                 debias: bool = True, backend: str = "tensorized",
                                 diameter: float | None = None, max_pairs: int = DEFAULT_MAX_PAIRS) -> torch.Tensor:
    """The ``(n, m)`` matrix of ``S_eps(clouds_x[i], clouds_y[j])`` (Eq. 4), differentiable.

    ``clouds_x`` ``(n, P, D)``; ``clouds_y`` ``(m, Q, D)`` or ``None`` for the ``(n, n)`` matrix
    of ``clouds_x`` with itself. In that case only the pairs ``i < j`` are solved: the result is
    exactly symmetric, with an exact-zero diagonal. Uniform weights on the points; cost, ``blur``,
    ``p``, ``scaling``, ``diameter`` and the chunking by ``max_pairs`` as in the module docstring.
    For 112 images of 49 points that is 6,216 problems (12,544 with an explicit ``clouds_y``).
    """
    _check(clouds_x, "clouds_x")
    if clouds_y is not None:
        _check(clouds_y, "clouds_y")
        if clouds_y.shape[2] != clouds_x.shape[2]:
            raise DmlReproError(f"clouds_x and clouds_y differ in point dimension: {tuple(clouds_x.shape)} "
                                f"vs {tuple(clouds_y.shape)}")
    if diameter is None:
        diameter = cloud_diameter(clouds_x) if clouds_y is None else cloud_diameter(clouds_x, clouds_y)
    solver = _solver(blur, p, scaling, debias, backend, float(diameter))
    n, dev = len(clouds_x), clouds_x.device
    if clouds_y is None:
        rows, cols = torch.triu_indices(n, n, 1, device=dev)
        values = _solve_pairs(solver, clouds_x, clouds_x, rows, cols, max_pairs)
        out = values.new_zeros(n, n)
        out[rows, cols] = values
        out[cols, rows] = values
        return out
    m = len(clouds_y)
    rows = torch.arange(n, device=dev).repeat_interleave(m)
    cols = torch.arange(m, device=dev).repeat(n)
    return _solve_pairs(solver, clouds_x, clouds_y, rows, cols, max_pairs).reshape(n, m)


# ------------------------------------------------------------------------------------ PML distance
class SinkhornDivergenceDistance(BaseDistance):
    """pytorch-metric-learning distance: debiased Sinkhorn divergence between flattened clouds.

    Embedding rows are ``(P * D)`` flattened clouds (:func:`flatten_clouds`), with
    ``D = point_dim``. Each row is reshaped to ``(P, D)``, each point is L2-normalised when
    ``normalize_points`` (PML's own ``normalize_embeddings`` would normalise the whole row, so it
    is off), and the matrix comes from :func:`pairwise_sinkhorn_divergence`. When PML passes the
    batch as its own reference (``ref_emb is query_emb``, the usual case), only the pairs
    ``i < j`` are solved. A larger value means farther apart (``is_inverted=False``).

    ``p`` is the ground-cost exponent (1 or 2, geomloss's convention). PML's ``power`` must stay 1.
    """

    def __init__(self, point_dim: int, *, blur: float = DEFAULT_BLUR, p: int = 2,
                 scaling: float = DEFAULT_SCALING, normalize_points: bool = True, debias: bool = True,
                 backend: str = "tensorized", diameter: float | None = None,
                 max_pairs: int = DEFAULT_MAX_PAIRS, **kwargs):
        for key in ("normalize_embeddings", "is_inverted"):
            if kwargs.pop(key, False):
                raise DmlReproError(f"SinkhornDivergenceDistance: {key}=True is not supported "
                                    "(points are normalised one by one; a larger divergence is farther)")
        if kwargs.get("power", 1) != 1:
            raise DmlReproError(f"SinkhornDivergenceDistance: power must be 1, got {kwargs['power']}")
        if int(point_dim) < 1:
            raise DmlReproError(f"SinkhornDivergenceDistance: point_dim must be >= 1, got {point_dim}")
        _solver(blur, p, scaling, debias, backend, 1.0)   # validate the options now
        super().__init__(normalize_embeddings=False, p=p, is_inverted=False, **kwargs)
        self.point_dim = int(point_dim)
        self.blur, self.scaling, self.debias, self.backend = float(blur), float(scaling), bool(debias), backend
        self.normalize_points = bool(normalize_points)
        self.diameter = None if diameter is None else float(diameter)
        self.max_pairs = int(max_pairs)

    def clouds(self, rows: torch.Tensor) -> torch.Tensor:
        """Flattened rows -> ``(n, P, D)`` clouds, points normalised when ``normalize_points``."""
        clouds = unflatten_clouds(rows, self.point_dim)
        return torch.nn.functional.normalize(clouds, dim=-1) if self.normalize_points else clouds

    def _options(self) -> dict:
        return dict(blur=self.blur, p=self.p, scaling=self.scaling, debias=self.debias, backend=self.backend,
                    diameter=self.diameter, max_pairs=self.max_pairs)

    def compute_mat(self, query_emb: torch.Tensor, ref_emb: torch.Tensor | None) -> torch.Tensor:
        query = self.clouds(query_emb)
        if ref_emb is None or ref_emb is query_emb:
            return pairwise_sinkhorn_divergence(query, None, **self._options())
        return pairwise_sinkhorn_divergence(query, self.clouds(ref_emb), **self._options())

    def pairwise_distance(self, query_emb: torch.Tensor, ref_emb: torch.Tensor) -> torch.Tensor:
        """Row-by-row divergences ``S_eps(query[k], ref[k])``: ``(B,)``."""
        return paired_sinkhorn_divergence(self.clouds(query_emb), self.clouds(ref_emb), **self._options())
