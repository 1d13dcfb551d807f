"""Similarities, proxies and losses of the piecewise-linear-manifold method (Bhatnagar & Ahuja,
CPAL 2024, Sec. 3.3–3.6, Eqs. 2–9).

Similarity of two points (Sec. 3.3), from the momentum encoder's embeddings ``f`` and the pieces
``P_j`` (orthonormal bases, :mod:`dmlrepro.miners.pl_manifold`):

    o(i, j) = ||(I − U_j U_jᵀ)(f_i − f_j)||,  p(i, j) = ||U_jᵀ (f_i − f_j)||
    α = 1 / (1 + o/2)^{N_α}   (Eq. 3),   β = 1 / (1 + p)^{N_β}   (Eq. 4)
    s'(i, j) = α(i, j) · β(i, j)   (Eq. 2, a product),   s(i, j) = (s'(i, j) + s'(j, i)) / 2   (Eq. 5)

A proxy ρ_j with its m orthonormal vectors Ψ_j replaces f_j and P_j (Sec. 3.5):
``s(x_i, ρ_j) = (s'(x_i, ρ_j) + s'(ρ_j, x_i)) / 2`` with s'(x_i, ρ_j) measured against Ψ_j and
s'(ρ_j, x_i) against P_i.

Losses, plain sums as printed (δ = 2, g = the student's embeddings f_θ):

    L_point = Σ_i Σ_{j≠i} (δ (1 − s(i, j)) − ||g_i − g_j||)²                    (Eq. 6)
    L_proxy = Σ_i Σ_j (δ (1 − s(x_i, ρ_j)) − ||g_i − ρ_j||)²                    (Eq. 7)
    L_neigh = Σ_i Σ_j Σ_k (s(x_i, ρ_j) − cos θ_{k,j,i})²,  cos θ_{k,j,i} = ||U_iᵀ ψ_{k,j}|| / ||ψ_{k,j}||   (Eq. 8)
    L = L_point + L_proxy + L_neigh                                              (Eq. 9)

Update rules (Sec. 3.6.4: θ only from L_point and L_proxy; ρ, Ψ only from L_proxy and L_neigh)
follow from where each quantity comes from, and the code makes them explicit: the teacher's
embeddings and pieces are detached; the student's embeddings appear only in L_point and L_proxy
(distances); the proxies appear only in L_proxy and L_neigh. So one backward of L sends
θ ← ∂(L_point + L_proxy)/∂θ and (ρ, Ψ) ← ∂(L_proxy + L_neigh)/∂(ρ, Ψ) (tested).

Decisions (TARGETS 003-§5.4–5.6):

* o and p are the normal and in-plane lengths of ``f_i − f_j`` w.r.t. the piece at the *second*
  argument (the point whose neighbourhood is used), as Eq. 3's text says; p is not clipped (β
  stays in (0, 1] for any p ≥ 0).
* In L_proxy the similarity s(x_i, ρ_j) is *not* detached: Ψ enters L_proxy only through s, and
  the paper says Ψ is updated by L_proxy. In L_neigh, s(x_i, ρ_j) is the target that the angles
  of Ψ_j are pulled towards ("align proxy neighbourhoods with those of points most similar to
  them"), so it is detached by default (``detach_neighbourhood_target``); set it False to let
  L_neigh move ρ and Ψ through s as well.
* cos θ between a vector and a subspace is the norm of its projection over its length; it is
  divided by ||ψ|| so it is a cosine even between two re-orthonormalisations.
* Proxies: ``N_ρ`` points with m vectors each, initialised on the unit sphere / as random
  orthonormal frames (a seeded generator), or from data (:meth:`PLManifoldLoss.init_proxies_`).
  After every optimiser step :meth:`PLManifoldLoss.retract_proxies_` puts Ψ_j back on the Stiefel
  manifold by QR (signs fixed so that diag(R) > 0, the retraction closest to the current frame) and
  ρ_j back on the unit sphere (the embeddings are unit vectors and δ = 2 is the sphere's
  diameter; the paper does not say whether proxies are normalised). A Hook calls it
  (:class:`dmlrepro.training.pl_manifold.ProxyRetraction`). Why not
  ``torch.nn.utils.parametrizations.orthogonal``: it changes the optimisation variable (Adam
  would step a matrix-exponential/Cayley/Householder parameter, not the vectors the paper says
  are learned with lr × 100), and its lazy re-parametrisation hides the frame from the state dict;
  a QR retraction after a plain Euclidean step keeps the paper's update and costs one batched QR
  of (N_ρ, d, m).
"""

from __future__ import annotations

import torch
from torch import nn

from dmlrepro import DmlReproError
from dmlrepro.miners.pl_manifold import piecewise_linear_manifold

SIMILARITIES = ("manifold", "binary")


def directed_components(x: torch.Tensor, y: torch.Tensor, bases_y: torch.Tensor,
                        chunk_elements: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor]:
    """(o, p), each (a, b): normal and in-plane lengths of ``x_i − y_j`` w.r.t. the orthonormal
    basis ``bases_y[j]`` (b, d, m). Differentiable in all three arguments; the (a, b, d)
    differences are built in row chunks of about ``chunk_elements`` numbers."""
    if x.ndim != 2 or y.ndim != 2 or bases_y.ndim != 3 or bases_y.shape[:2] != y.shape or x.shape[1] != y.shape[1]:
        raise DmlReproError(f"directed_components: need x (a, d), y (b, d), bases (b, d, m); got "
                            f"{tuple(x.shape)}, {tuple(y.shape)}, {tuple(bases_y.shape)}")
    rows = max(1, chunk_elements // max(1, y.shape[0] * y.shape[1]))
    o_parts, p_parts = [], []
    for start in range(0, x.shape[0], rows):
        diff = x[start:start + rows, None, :] - y[None, :, :]             # (c, b, d)
        coef = torch.einsum("cbd,bdm->cbm", diff, bases_y)                # in-plane coordinates
        normal = diff - torch.einsum("cbm,bdm->cbd", coef, bases_y)
        o_parts.append(torch.linalg.vector_norm(normal, dim=-1))
        p_parts.append(torch.linalg.vector_norm(coef, dim=-1))
    return torch.cat(o_parts), torch.cat(p_parts)


def directed_similarity(o: torch.Tensor, p: torch.Tensor, n_alpha: float = 4.0, n_beta: float = 0.5) -> torch.Tensor:
    """s' = α · β (Eqs. 2–4): ``(1 + o/2)^{−N_α} · (1 + p)^{−N_β}``."""
    return (1.0 + 0.5 * o).pow(-float(n_alpha)) * (1.0 + p).pow(-float(n_beta))


def point_similarity(teacher: torch.Tensor, bases: torch.Tensor, n_alpha: float = 4.0,
                     n_beta: float = 0.5) -> torch.Tensor:
    """s(i, j) of Eq. 5 for all pairs of a batch, (n, n), symmetric; ``s'(i, j)`` uses P_j."""
    o, p = directed_components(teacher, teacher, bases)       # [i, j]: f_i − f_j against P_j
    s_dir = directed_similarity(o, p, n_alpha, n_beta)
    return 0.5 * (s_dir + s_dir.T)


def proxy_similarity(teacher: torch.Tensor, bases: torch.Tensor, proxies: torch.Tensor,
                     proxy_bases: torch.Tensor, n_alpha: float = 4.0, n_beta: float = 0.5) -> torch.Tensor:
    """s(x_i, ρ_j) (Sec. 3.5), (n, N_ρ): the mean of s'(x_i, ρ_j) (against Ψ_j) and s'(ρ_j, x_i)
    (against P_i)."""
    o_xp, p_xp = directed_components(teacher, proxies, proxy_bases)   # [i, j]: f_i − ρ_j against Ψ_j
    o_px, p_px = directed_components(proxies, teacher, bases)         # [j, i]: ρ_j − f_i against P_i
    return 0.5 * (directed_similarity(o_xp, p_xp, n_alpha, n_beta) + directed_similarity(o_px, p_px, n_alpha, n_beta).T)


def binary_point_similarity(members: torch.Tensor) -> torch.Tensor:
    """The ablation "Ours − similarity" (Table 3): s'(i, j) = 1 if i ∈ X_j else 0, symmetrised as
    Eq. 5, so s(i, j) ∈ {0, 1/2, 1}; ``members`` (n, n) bool marks X_i in row i."""
    m = members.to(torch.get_default_dtype())
    return 0.5 * (m + m.T)


def binary_proxy_similarity(teacher: torch.Tensor, proxies: torch.Tensor, size: int) -> torch.Tensor:
    """Binary proxy–point similarity, (n, N_ρ): 1 if x_i is one of the ``size`` batch points nearest
    to ρ_j, else 0. A proxy has no selected member set, so its neighbourhood is the plain
    k-nearest one, as large as a point's candidate set (the paper does not define this case)."""
    size = min(int(size), teacher.shape[0])
    nearest = torch.cdist(proxies.detach(), teacher).topk(size, dim=1, largest=False).indices   # (N_ρ, size)
    out = torch.zeros(proxies.shape[0], teacher.shape[0], dtype=teacher.dtype, device=teacher.device)
    return out.scatter_(1, nearest, 1.0).T


def subspace_cosines(bases: torch.Tensor, proxy_bases: torch.Tensor) -> torch.Tensor:
    """cos θ_{k,j,i} as an (n, N_ρ, m) tensor [i, j, k]: ``||U_iᵀ ψ_{k,j}|| / ||ψ_{k,j}||``."""
    proj = torch.einsum("idm,jdk->ijmk", bases, proxy_bases)            # U_iᵀ ψ_{k,j}
    return torch.linalg.vector_norm(proj, dim=2) / torch.linalg.vector_norm(proxy_bases, dim=1)[None]


def pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (|a|, |b|), with a zero (not NaN) gradient at coincident points."""
    return torch.linalg.vector_norm(a[:, None, :] - b[None, :, :], dim=-1)


def random_frames(n: int, d: int, m: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n, d, m) random orthonormal frames (QR of a Gaussian, sign-fixed: Haar on the Stiefel manifold)."""
    return orthonormalise(torch.randn(n, d, m, generator=generator))


def orthonormalise(frames: torch.Tensor) -> torch.Tensor:
    """QR retraction of (…, d, m) frames: Q with the signs that make diag(R) positive, so a frame
    that is already orthonormal is returned unchanged (up to rounding)."""
    q, r = torch.linalg.qr(frames)
    signs = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    signs = torch.where(signs == 0, torch.ones_like(signs), signs)
    return q * signs[..., None, :]


class PLManifoldLoss(nn.Module):
    """Eqs. 6–9 with learnable proxies; ``forward(student, teacher, bases=None)`` returns a dict
    ``{"loss", "point", "proxy", "neighbourhood"}`` (see the module docstring).

    ``student`` (n, d): f_θ of the batch (the student's, L2-normalised by the model);
    ``teacher`` (n, d): f_φ of the same images (momentum encoder); ``bases`` (n, d, m): the pieces
    P_i; when None they are built from ``teacher`` with :func:`piecewise_linear_manifold`
    (``m``, ``threshold``, ``n_neighbours``, ``centred``). Defaults are the paper's (Sec. 4.1):
    N_α 4, N_β 0.5, N_ρ 100, δ 2, m 3, T 0.9.

    Table 3's ablations: ``subset_selection=False`` fits each piece to all k neighbours ("− PL
    manifold"); ``similarity="binary"`` replaces Eq. 5 by 1 inside the neighbourhood and 0 outside
    (:func:`binary_point_similarity`, :func:`binary_proxy_similarity`; "− similarity").
    """

    def __init__(self, embedding_dim: int, n_proxies: int = 100, m: int = 3, n_alpha: float = 4.0,
                 n_beta: float = 0.5, delta: float = 2.0, threshold: float = 0.9,
                 n_neighbours: int | None = None, centred: bool = False,
                 detach_neighbourhood_target: bool = True, unit_proxies: bool = True, seed: int = 0,
                 subset_selection: bool = True, similarity: str = "manifold"):
        super().__init__()
        if similarity not in SIMILARITIES:
            raise DmlReproError(f"PLManifoldLoss: unknown similarity '{similarity}' ({' | '.join(SIMILARITIES)})")
        self.subset_selection, self.similarity = bool(subset_selection), similarity
        if int(n_proxies) < 0 or not 1 <= int(m) <= int(embedding_dim):
            raise DmlReproError(f"PLManifoldLoss: need n_proxies >= 0 and 1 <= m <= embedding_dim, "
                                f"got n_proxies={n_proxies}, m={m}, embedding_dim={embedding_dim}")
        if float(n_alpha) < 0 or float(n_beta) < 0 or float(delta) <= 0:
            raise DmlReproError(f"PLManifoldLoss: need n_alpha, n_beta >= 0 and delta > 0, "
                                f"got {n_alpha}, {n_beta}, {delta}")
        self.m, self.n_alpha, self.n_beta, self.delta = int(m), float(n_alpha), float(n_beta), float(delta)
        self.threshold, self.n_neighbours, self.centred = float(threshold), n_neighbours, bool(centred)
        self.detach_neighbourhood_target, self.unit_proxies = bool(detach_neighbourhood_target), bool(unit_proxies)
        gen = torch.Generator().manual_seed(int(seed))
        points = torch.randn(int(n_proxies), int(embedding_dim), generator=gen)
        self.proxies = nn.Parameter(nn.functional.normalize(points, dim=1) if unit_proxies else points)
        self.proxy_bases = nn.Parameter(random_frames(int(n_proxies), int(embedding_dim), self.m, gen))

    def proxy_parameters(self) -> list[nn.Parameter]:
        """ρ and Ψ, for their own optimiser group (the paper: lr × 100)."""
        return [self.proxies, self.proxy_bases]

    @torch.no_grad()
    def init_proxies_(self, points: torch.Tensor, bases: torch.Tensor | None = None) -> None:
        """Place the proxies at ``points`` (N_ρ, d) with frames ``bases`` (N_ρ, d, m) (e.g. teacher
        embeddings of random training images and their pieces); frames are re-orthonormalised."""
        if points.shape != self.proxies.shape or (bases is not None and bases.shape != self.proxy_bases.shape):
            raise DmlReproError(f"init_proxies_: expected points {tuple(self.proxies.shape)} and bases "
                                f"{tuple(self.proxy_bases.shape)}")
        self.proxies.copy_(points)
        if bases is not None:
            self.proxy_bases.copy_(bases)
        self.retract_proxies_()

    @torch.no_grad()
    def retract_proxies_(self) -> None:
        """After an optimiser step: Ψ_j ← QR-orthonormalised Ψ_j; ρ_j ← ρ_j / ||ρ_j|| if ``unit_proxies``."""
        self.proxy_bases.copy_(orthonormalise(self.proxy_bases))
        if self.unit_proxies:
            self.proxies.copy_(nn.functional.normalize(self.proxies, dim=1))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, bases: torch.Tensor | None = None,
                members: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if student.ndim != 2 or student.shape != teacher.shape or student.shape[1] != self.proxies.shape[1]:
            raise DmlReproError(f"PLManifoldLoss: student and teacher must both be (n, {self.proxies.shape[1]}), "
                                f"got {tuple(student.shape)} and {tuple(teacher.shape)}")
        teacher = teacher.detach()
        if bases is None:
            pieces = piecewise_linear_manifold(teacher, self.m, self.threshold, self.n_neighbours, self.centred,
                                               select=self.subset_selection)
            bases, members = pieces.bases, pieces.members
        if self.similarity == "binary" and members is None:
            raise DmlReproError("PLManifoldLoss: the binary similarity needs the pieces' members")
        if bases.shape != (*teacher.shape, self.m):
            raise DmlReproError(f"PLManifoldLoss: bases must be (n, d, m={self.m}), got {tuple(bases.shape)}")
        bases = bases.detach().to(teacher.dtype)
        n = student.shape[0]
        off_diagonal = ~torch.eye(n, dtype=torch.bool, device=student.device)
        binary = self.similarity == "binary"
        s_points = (binary_point_similarity(members).to(teacher) if binary
                    else point_similarity(teacher, bases, self.n_alpha, self.n_beta))
        point = (self.delta * (1 - s_points) - pairwise_distances(student, student))[off_diagonal].pow(2).sum()
        if self.proxies.shape[0] == 0:
            zero = student.sum() * 0
            return {"loss": point, "point": point, "proxy": zero, "neighbourhood": zero}
        if binary:
            size = n if self.n_neighbours is None else int(self.n_neighbours) + 1
            s_proxies = binary_proxy_similarity(teacher, self.proxies, size)
        else:
            s_proxies = proxy_similarity(teacher, bases, self.proxies, self.proxy_bases, self.n_alpha, self.n_beta)
        proxy = (self.delta * (1 - s_proxies) - pairwise_distances(student, self.proxies)).pow(2).sum()
        target = s_proxies.detach() if self.detach_neighbourhood_target else s_proxies
        neighbourhood = (target[..., None] - subspace_cosines(bases, self.proxy_bases)).pow(2).sum()
        return {"loss": point + proxy + neighbourhood, "point": point, "proxy": proxy, "neighbourhood": neighbourhood}
