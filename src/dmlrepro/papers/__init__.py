"""Papers as plug-ins: each subpackage holds what is specific to one paper (its methods, published
values, claims, tables and figures, commands). Shared rooms below it never import from here.

A paper is found by its directory: every subpackage of ``dmlrepro.papers`` that has a ``commands``
module registers its steps with the CLI (``commands.register(subparsers)``), so adding a paper edits
no list here. Out-of-tree papers (a package outside ``src/``, see ``paper_plugins`` in
``config/README.md``) bring their own rules and call their own entry point instead.
"""
from __future__ import annotations

import pkgutil


def command_modules() -> list[str]:
    """The ``commands`` modules of the built-in paper packages, in name order."""
    modules = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.ispkg:
            names = {m.name for m in pkgutil.iter_modules([f"{p}/{info.name}" for p in __path__])}
            if "commands" in names:
                modules.append(f"{__name__}.{info.name}.commands")
    return modules
