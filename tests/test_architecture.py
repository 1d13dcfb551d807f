"""The rooms' import order (docs/architecture.md): an import only points down, and no shared room
imports a paper package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dmlrepro"
# bottom to top; distances, miners, losses and reducers are one layer
RANK = {"io": 0, "data": 1, "ot": 2, "models": 3, "distances": 4, "miners": 4, "losses": 4, "reducers": 4,
        "training": 5, "evaluation": 6, "reporting": 7, "papers": 8, "cli": 9}


def _room(module: str) -> str | None:
    """``dmlrepro.losses.triplet`` -> ``losses``; the package root and ``__main__`` have no room."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def _imports(path: Path) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dmlrepro"):
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names if a.name.startswith("dmlrepro"))
    return out


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield "dmlrepro." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts), path


def test_the_room_table_knows_every_room():
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    rooms |= {p.stem for p in PACKAGE.glob("*.py") if not p.stem.startswith("__")}
    assert rooms <= set(RANK), sorted(rooms - set(RANK))


@pytest.mark.parametrize("module,path", list(_modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_point_down(module, path):
    mine = _room(module)
    if mine is None:
        return
    upward = [m for m in _imports(path) if _room(m) is not None and RANK[_room(m)] > RANK[mine]]
    assert not upward, f"{module} ({mine}) imports a higher room: {upward}"


def test_no_module_outside_the_wsset_package_imports_it():
    offenders = [(module, m) for module, path in _modules() if not module.startswith("dmlrepro.papers.wsset")
                 for m in _imports(path) if m.startswith("dmlrepro.papers.wsset")]
    assert not offenders
