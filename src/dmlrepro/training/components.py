"""A method is declared, not coded: its loss, miner, distance and reducer are resolved by name.

Names resolve in pytorch-metric-learning's namespace first (``losses``, ``miners``,
``distances``, ``reducers``), then in dmlrepro's own rooms of the same name, so a method the
library already has is a config block and a new loss is one file. A spec is either a name or a
mapping ``{name: ..., <constructor arguments>}``; the arguments ``distance``, ``reducer`` and
``embedding_regularizer`` may themselves be specs::

    loss: {name: TripletMarginLoss, margin: 0.2, distance: {name: LpDistance, power: 2}}
    miner: {name: TripletMarginMiner, margin: 0.2, type_of_triplets: semihard}
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import Any

from dmlrepro import DmlReproError

KINDS = ("losses", "miners", "distances", "reducers")
_SINGULAR = {"losses": "loss", "miners": "miner", "distances": "distance", "reducers": "reducer",
             "regularizers": "regularizer"}
_NESTED = {"distance": "distances", "reducer": "reducers", "embedding_regularizer": "regularizers"}


def resolve(kind: str, name: str) -> type:
    """The class called ``name`` in pytorch-metric-learning's ``kind`` module, else in ours."""
    if kind not in KINDS + ("regularizers",):
        raise DmlReproError(f"unknown component kind '{kind}' ({' | '.join(KINDS)})")
    for module in _modules(kind):
        found = getattr(module, name, None)
        if inspect.isclass(found):
            return found
    raise DmlReproError(f"unknown {_SINGULAR[kind]} '{name}': neither pytorch_metric_learning.{kind} "
                        f"nor dmlrepro.{kind} has it")


def _modules(kind: str):
    """PML's module of that kind, then dmlrepro's package and each of its modules (one file a loss)."""
    for name in (f"pytorch_metric_learning.{kind}", f"dmlrepro.{kind}"):
        try:
            package = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        yield package
        if name.startswith("dmlrepro.") and hasattr(package, "__path__"):
            for info in pkgutil.iter_modules(package.__path__):
                yield importlib.import_module(f"{name}.{info.name}")


def build(kind: str, spec: str | dict[str, Any] | None, **extra: Any) -> Any:
    """An instance from a spec (see the module docstring); ``extra`` arguments are added (e.g.
    ``num_classes`` and ``embedding_size`` for proxy losses). ``None`` builds nothing."""
    if spec is None:
        return None
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or "name" not in spec:
        raise DmlReproError(f"a {_SINGULAR[kind]} spec needs a 'name' key, got {spec!r}")
    params = {k: v for k, v in spec.items() if k != "name"}
    for key, nested_kind in _NESTED.items():
        if isinstance(params.get(key), (str, dict)):
            params[key] = build(nested_kind, params[key])
    cls = resolve(kind, spec["name"])
    accepted = inspect.signature(cls.__init__).parameters
    # only arguments the class names itself: PML's **kwargs end in a base class that refuses them
    params.update({k: v for k, v in extra.items() if k in accepted and k not in params})
    try:
        return cls(**params)
    except TypeError as exc:
        raise DmlReproError(f"{_SINGULAR[kind]} '{spec['name']}': bad parameters {sorted(params)}: {exc}") from exc
