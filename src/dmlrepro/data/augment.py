"""Set augmentations on padded batches: what "augmenting a pointset" means for the baselines.

WSSET's baselines built for images (Exemplar's instance augmentations, UDML-SS's rotations) are
run on documents without the paper saying how (TARGETS 000-§5, ambiguity 9). These are our
set analogues. Every function takes the padded batch of :func:`dmlrepro.data.pointsets.pad_batch`
(``x`` (b, L, d + 1), last column = word weight; ``mask`` (b, L), True on padding) and returns a
new one. Randomness comes from a ``torch.Generator`` (or, without one, the global CPU RNG); draws
are made on the generator's device and then moved, so a seed gives the same augmentation on CPU
and GPU. Padding stays zero and masked.

* :func:`word_dropout` (crop analogue): drop each word with probability ``p``, always keeping at
  least one per set (the one with the largest draw); dropped words become padding and the kept
  words are moved to the front in their original order, so padding stays a suffix.
* :func:`vector_noise` (colour-jitter analogue): isotropic Gaussian noise on the word vectors,
  scale relative to the batch's word-vector standard deviation (one number over all real
  entries). Isotropic, so it commutes in distribution with :class:`SetRotations`. Never on
  padding, never on the weight column.
* :func:`weight_jitter`: multiply every word's count by log-normal noise
  ``exp(sigma z - sigma^2 / 2)`` (mean 1, always positive), applied in count space whatever the
  weight feature (``count``, ``normalised`` shares re-normalised, ``log`` = log(1 + count)).
* :class:`SetRotations` (UDML-SS's image rotations): ``n`` fixed orthogonal matrices with
  determinant +1, the first the identity, applied to the word-vector columns of every element.
  Pretrained word vectors are anisotropic (a common mean direction, dominant components), so, as
  with natural images, the transform can be recognised from the rotated set; distances between
  the words of a set are unchanged.
* :class:`Augmenter` composes dropout, noise and jitter (in that order) from a config dict.

All element-wise operations act on each element independently with its own draw, so they are
permutation-equivariant: a permuted set with permuted draws gives the permuted result.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from dmlrepro import DmlReproError

WEIGHT_FEATURES = ("count", "normalised", "log")
AUGMENT_DEFAULTS: dict[str, float] = {
    "word_dropout": 0.0,   # probability of dropping each word
    "vector_noise": 0.0,   # noise std as a fraction of the batch's word-vector std
    "weight_jitter": 0.0,  # sigma of the log-normal multiplier of each word's count
}


def _check_batch(x: torch.Tensor, mask: torch.Tensor) -> None:
    if x.dim() != 3 or mask.shape != x.shape[:2] or mask.dtype != torch.bool:
        raise DmlReproError(f"expected x (b, L, d + 1) and a boolean mask (b, L); got x {tuple(x.shape)}, "
                            f"mask {tuple(mask.shape)} {mask.dtype}")


def _draw(kind: str, shape: tuple[int, ...], generator: torch.Generator | None, like: torch.Tensor) -> torch.Tensor:
    """Uniform or normal draws made on the generator's device, or on the CPU from the global RNG
    (which the trainer checkpoints), then moved: a seed gives the same draws on every device."""
    device = generator.device if generator is not None else torch.device("cpu")
    fn = torch.rand if kind == "uniform" else torch.randn
    return fn(shape, generator=generator, device=device, dtype=torch.float64).to(like.device, like.dtype)


# ------------------------------------------------------------------------------- word dropout
def word_dropout(x: torch.Tensor, mask: torch.Tensor, p: float,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop each real element with probability ``p``; keep at least one per non-empty set."""
    _check_batch(x, mask)
    if not 0.0 <= p < 1.0:
        raise DmlReproError(f"word_dropout must lie in [0, 1), got {p}")
    if p == 0.0:
        return x.clone(), mask.clone()
    return word_dropout_with_draws(x, mask, p, _draw("uniform", tuple(mask.shape), generator, x))


def word_dropout_with_draws(x: torch.Tensor, mask: torch.Tensor, p: float,
                            draws: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`word_dropout` given one uniform draw per element (b, L): drop where ``draw < p``."""
    real = ~mask
    keep = real & (draws >= p)
    # a set that lost every word keeps the one with the largest draw (the "least dropped")
    best = torch.where(real, draws, torch.full_like(draws, -1.0)).argmax(dim=1)
    lost_all = real.any(dim=1) & ~keep.any(dim=1)
    keep[lost_all, best[lost_all]] = True
    # stable sort puts kept elements first in their original order: padding stays a suffix
    order = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices
    keep = keep.gather(1, order)
    out = x.gather(1, order.unsqueeze(-1).expand_as(x)) * keep.unsqueeze(-1).to(x.dtype)
    return out, ~keep


# ------------------------------------------------------------------------------- vector noise
def word_vector_std(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Standard deviation of all real word-vector entries of the batch (weights excluded)."""
    values = x[..., :-1][~mask]
    if values.numel() < 2:
        return torch.zeros((), dtype=x.dtype, device=x.device)
    return values.std()


def vector_noise(x: torch.Tensor, mask: torch.Tensor, scale: float,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Add N(0, (scale * batch word-vector std)^2) to every real word-vector entry."""
    _check_batch(x, mask)
    if scale < 0:
        raise DmlReproError(f"vector_noise must be >= 0, got {scale}")
    if scale == 0.0:
        return x.clone(), mask.clone()
    z = _draw("normal", tuple(x.shape[:2]) + (x.shape[2] - 1,), generator, x)
    return vector_noise_with_draws(x, mask, scale, z), mask.clone()


def vector_noise_with_draws(x: torch.Tensor, mask: torch.Tensor, scale: float, z: torch.Tensor) -> torch.Tensor:
    """:func:`vector_noise` given standard normal draws ``z`` (b, L, d)."""
    sigma = scale * word_vector_std(x, mask)
    out = x.clone()
    out[..., :-1] = x[..., :-1] + sigma * z * (~mask).unsqueeze(-1).to(x.dtype)
    return out


# ------------------------------------------------------------------------------- weight jitter
def weight_jitter(x: torch.Tensor, mask: torch.Tensor, sigma: float, generator: torch.Generator | None = None,
                  weight_feature: str = "count") -> tuple[torch.Tensor, torch.Tensor]:
    """Multiply each real word's count by ``exp(sigma z - sigma^2 / 2)``, z ~ N(0, 1)."""
    _check_batch(x, mask)
    if sigma < 0:
        raise DmlReproError(f"weight_jitter must be >= 0, got {sigma}")
    if weight_feature not in WEIGHT_FEATURES:
        raise DmlReproError(f"unknown weight_feature '{weight_feature}' ({' | '.join(WEIGHT_FEATURES)})")
    if sigma == 0.0:
        return x.clone(), mask.clone()
    z = _draw("normal", tuple(mask.shape), generator, x)
    return weight_jitter_with_draws(x, mask, sigma, z, weight_feature), mask.clone()


def weight_jitter_with_draws(x: torch.Tensor, mask: torch.Tensor, sigma: float, z: torch.Tensor,
                             weight_feature: str = "count") -> torch.Tensor:
    factor = torch.exp(sigma * z - 0.5 * sigma ** 2)
    w = x[..., -1]
    if weight_feature == "log":  # the column holds log(1 + count): jitter the count
        jittered = torch.log1p(torch.expm1(w) * factor)
    else:
        jittered = w * factor
    jittered = jittered.masked_fill(mask, 0.0)
    if weight_feature == "normalised":
        jittered = jittered / jittered.sum(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    out = x.clone()
    out[..., -1] = jittered
    return out


def renormalise_shares(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Make the weight column of every set sum to one again (after dropping words)."""
    out = x.clone()
    w = out[..., -1].masked_fill(mask, 0.0)
    out[..., -1] = w / w.sum(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return out


# ------------------------------------------------------------------------------- rotations
class SetRotations(torch.nn.Module):
    """``n`` fixed rotations of the word-vector space; the first is the identity.

    The others are Haar-random orthogonal matrices (QR of a Gaussian matrix with the signs of
    R's diagonal fixed), with one column flipped where needed so that the determinant is +1.
    They are drawn once from ``seed`` in float64 and kept as a buffer (they move with ``.to()``
    and are saved in the state dict). Each set is transformed as a whole: ``x[..., :d] @ Q^T``.
    """

    def __init__(self, dim: int, n: int = 4, seed: int = 0):
        super().__init__()
        if int(n) < 2:
            raise DmlReproError(f"rotation prediction needs at least 2 transforms, got n={n}")
        if int(dim) < 2:
            raise DmlReproError(f"rotations need word vectors of dimension >= 2, got dim={dim}")
        self.dim, self.n = int(dim), int(n)
        gen = torch.Generator().manual_seed(int(seed))
        mats = [torch.eye(self.dim, dtype=torch.float64)]
        for _ in range(self.n - 1):
            q, r = torch.linalg.qr(torch.randn(self.dim, self.dim, generator=gen, dtype=torch.float64))
            q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
            if torch.linalg.det(q) < 0:
                q[:, 0] = -q[:, 0]
            mats.append(q)
        self.register_buffer("matrices", torch.stack(mats))

    def _check(self, x: torch.Tensor, mask: torch.Tensor) -> None:
        _check_batch(x, mask)
        if x.shape[-1] != self.dim + 1:
            raise DmlReproError(f"SetRotations(dim={self.dim}) expects x with {self.dim + 1} features "
                                f"(word vector + weight), got {x.shape[-1]}")

    def apply(self, x: torch.Tensor, mask: torch.Tensor, transform: torch.Tensor) -> torch.Tensor:
        """Transform set ``i`` with rotation ``transform[i]``; the weight column is untouched."""
        self._check(x, mask)
        transform = torch.as_tensor(transform, device=x.device).long().reshape(-1)
        if transform.numel() != x.shape[0] or (transform.numel() and
                                               (int(transform.min()) < 0 or int(transform.max()) >= self.n)):
            raise DmlReproError(f"need one transform index in [0, {self.n}) per set")
        q = self.matrices.to(device=x.device, dtype=x.dtype)[transform]          # (b, d, d)
        out = x.clone()
        out[..., :-1] = torch.einsum("bld,bkd->blk", x[..., :-1], q)
        # exact zeros on padding, whatever the rounding
        return out.masked_fill(mask.unsqueeze(-1), 0.0)

    def forward(self, x: torch.Tensor, mask: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A uniformly random transform per set: ``(transformed x, transform index (b,))``."""
        self._check(x, mask)
        device = generator.device if generator is not None else torch.device("cpu")
        transform = torch.randint(self.n, (x.shape[0],), generator=generator, device=device).to(x.device)
        return self.apply(x, mask, transform), transform

    def all_transforms(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every set under every transform, set-major (row ``i * n + t`` = set i, transform t),
        as UDML-SS rotates each sampled image by 0, 90, 180 and 270 degrees:
        ``(x (b n, L, d + 1), mask (b n, L), transform index (b n,))``."""
        self._check(x, mask)
        transform = torch.arange(self.n, device=x.device).repeat(x.shape[0])
        xr = x.repeat_interleave(self.n, dim=0)
        mr = mask.repeat_interleave(self.n, dim=0)
        return self.apply(xr, mr, transform), mr, transform


# ------------------------------------------------------------------------------- composition
class Augmenter:
    """Word dropout, then vector noise, then weight jitter, from a config dict.

    Keys (all optional): ``word_dropout`` (probability, default 0), ``vector_noise`` (fraction of
    the batch's word-vector std, default 0), ``weight_jitter`` (log-normal sigma, default 0).
    ``weight_feature`` says what the input's last column holds (``pad_batch``'s argument), so
    that jitter acts on counts and ``normalised`` shares still sum to one after dropout.
    """

    def __init__(self, config: Mapping[str, Any] | None = None, weight_feature: str = "count"):
        config = dict(config or {})
        unknown = sorted(set(config) - set(AUGMENT_DEFAULTS))
        if unknown:
            raise DmlReproError(f"unknown augmentation key(s) {', '.join(repr(k) for k in unknown)}; "
                                f"known: {', '.join(AUGMENT_DEFAULTS)}")
        if weight_feature not in WEIGHT_FEATURES:
            raise DmlReproError(f"unknown weight_feature '{weight_feature}' ({' | '.join(WEIGHT_FEATURES)})")
        values = {**AUGMENT_DEFAULTS, **config}
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise DmlReproError(f"augmentation '{key}' must be a number, got {value!r}")
        if not 0.0 <= values["word_dropout"] < 1.0:
            raise DmlReproError(f"augmentation 'word_dropout' must lie in [0, 1), got {values['word_dropout']}")
        for key in ("vector_noise", "weight_jitter"):
            if values[key] < 0:
                raise DmlReproError(f"augmentation '{key}' must be >= 0, got {values[key]}")
        self.word_dropout = float(values["word_dropout"])
        self.vector_noise = float(values["vector_noise"])
        self.weight_jitter = float(values["weight_jitter"])
        self.weight_feature = weight_feature

    @property
    def config(self) -> dict[str, float]:
        return {"word_dropout": self.word_dropout, "vector_noise": self.vector_noise,
                "weight_jitter": self.weight_jitter}

    def __call__(self, x: torch.Tensor, mask: torch.Tensor,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        _check_batch(x, mask)
        x, mask = word_dropout(x, mask, self.word_dropout, generator)
        if self.word_dropout > 0 and self.weight_feature == "normalised":
            x = renormalise_shares(x, mask)
        x, mask = vector_noise(x, mask, self.vector_noise, generator)
        x, mask = weight_jitter(x, mask, self.weight_jitter, generator, self.weight_feature)
        return x, mask
