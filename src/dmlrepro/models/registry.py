"""Every set encoder behind one constructor, so one trainer can use any of them.

All encoders share the ``SetEncoder`` interface: ``forward(x, padding_mask) -> (b, F)``
L2-normalised embeddings, ``embedding_dim`` = F (the last of ``head_dims``), ``set_features``
(the pooled vector before the head) and ``reset_head()``. The config keys of an architecture
are its constructor's keyword arguments, and their defaults are the constructor's defaults
(``default_config``), so the two cannot drift apart.
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from dmlrepro import DmlReproError
from dmlrepro.models.deepsets import DeepSetsEncoder
from dmlrepro.models.dspn import DSPNEncoder
from dmlrepro.models.repset import RepSetEncoder
from dmlrepro.models.set_transformer import SetTransformerEmbedder, count_parameters

ENCODERS: dict[str, type[nn.Module]] = {
    "self_attention": SetTransformerEmbedder,  # WSSET's encoder (Sec. IV-C)
    "deepsets": DeepSetsEncoder,
    "repset": RepSetEncoder,
    "dspn": DSPNEncoder,
}
ARCHITECTURES = tuple(ENCODERS)

__all__ = ["ARCHITECTURES", "ENCODERS", "build_encoder", "count_parameters", "default_config"]


def _encoder_class(architecture: str) -> type[nn.Module]:
    if architecture not in ENCODERS:
        raise DmlReproError(f"unknown model architecture {architecture!r}; choose one of {list(ARCHITECTURES)}")
    return ENCODERS[architecture]


def default_config(architecture: str) -> dict[str, Any]:
    """Every config key of ``architecture`` with its default value."""
    parameters = inspect.signature(_encoder_class(architecture).__init__).parameters
    return {name: p.default for name, p in parameters.items() if name not in ("self", "input_dim")}


def build_encoder(architecture: str, input_dim: int, cfg: dict[str, Any] | None = None) -> nn.Module:
    """The ``architecture`` encoder for elements of ``input_dim`` features, configured by ``cfg``
    (missing keys take their defaults; an unknown key is an error that names it)."""
    defaults = default_config(architecture)
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise DmlReproError(f"unknown model setting(s) {unknown} for architecture {architecture!r}; "
                            f"known settings: {sorted(defaults)}")
    settings = {**defaults, **cfg}
    for key in ("head_dims", "phi_dims"):  # YAML gives lists
        if key in settings and isinstance(settings[key], list):
            settings[key] = tuple(settings[key])
    try:
        return ENCODERS[architecture](int(input_dim), **settings)
    except ValueError as exc:  # the constructors name the offending model.<key>
        raise DmlReproError(f"architecture {architecture!r}: {exc}") from exc
