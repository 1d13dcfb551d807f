"""The runs of paper 003 as declared settings: Table 1's two trained rows, Table 3's ablations and
Fig. 3's sensitivity grid.

A method is a mapping ``{objective: pl_manifold | stml, <parameters>}``. The paper's values
(Sec. 4.1) are :data:`OURS`; STML's are its public code's and README's (IMAGE-ANCHORS.md, 003):
σ 3, δ 1, 5 neighbours, an auxiliary head of 1024. ``config/config.yaml`` and ``config/paper.yaml``
list these specs (tested equal), so what a run did is readable in its config and its command line.

Table 3 (Appendix A): (1) − PL manifold = every piece fitted to all k nearest neighbours, without
the subset selection of Sec. 3.2; (2) − similarity = a binary similarity (1 inside the
neighbourhood, 0 outside) instead of Eq. 5; (3) both.

Fig. 3: one run per grid value, named ``fig3-<parameter>-<value>`` (``fig3-nab-<N_α>-<N_β>`` for
panel c), each Ours with that one parameter changed (:func:`figure3_runs`).
"""

from __future__ import annotations

from typing import Any

from dmlrepro import DmlReproError

__all__ = ["OURS", "STML", "METHODS", "TABLE1_ROWS", "TABLE3_ROWS", "ROW_LABELS", "FIGURE3_PARAMETERS",
           "figure3_runs", "run_method", "row_label"]

OURS: dict[str, Any] = {"objective": "pl_manifold", "n_alpha": 4.0, "n_beta": 0.5, "n_proxies": 100, "delta": 2.0,
                        "m": 3, "threshold": 0.9, "momentum": 0.999, "proxy_lr_mult": 100.0,
                        "subset_selection": True, "similarity": "manifold"}
STML: dict[str, Any] = {"objective": "stml", "sigma": 3.0, "delta": 1.0, "num_neighbors": 5, "aux_dim": 1024,
                        "momentum": 0.999}

METHODS: dict[str, dict[str, Any]] = {
    "ours": OURS,
    "stml": STML,
    "ours_no_pl": {**OURS, "subset_selection": False},
    "ours_no_sim": {**OURS, "similarity": "binary"},
    "ours_no_pl_no_sim": {**OURS, "subset_selection": False, "similarity": "binary"},
}
TABLE1_ROWS: tuple[str, ...] = ("ours", "stml")
TABLE3_ROWS: tuple[str, ...] = ("ours_no_pl", "ours_no_sim", "ours_no_pl_no_sim", "ours")
ROW_LABELS: dict[str, str] = {
    "initial": "Initial (pretrained, before training)", "ours": "Ours", "stml": "STML* (re-run)",
    "ours_no_pl": "(1) Ours − PL manifold", "ours_no_sim": "(2) Ours − similarity",
    "ours_no_pl_no_sim": "(3) Ours − PL manifold − similarity",
}

# Fig. 3's panels: grid key -> (the method parameters it sets, axis label)
FIGURE3_PARAMETERS: dict[str, tuple[tuple[str, ...], str]] = {
    "n_proxies": (("n_proxies",), "N_ρ"),
    "m": (("m",), "m"),
    "nab": (("n_alpha", "n_beta"), "N_α (one curve per N_β)"),
    "delta": (("delta",), "δ"),
}


def _fmt(v: Any) -> str:
    return f"{float(v):g}"


def figure3_runs(grid: dict[str, list] | None) -> dict[str, dict[str, Any]]:
    """``{run name: {parameter: value}}`` for a Fig. 3 grid ``{n_proxies: [...], m: [...], nab:
    [[N_α, N_β], ...], delta: [...]}`` (absent keys: no run). Values equal to Ours' are skipped:
    that point is the Ours run itself."""
    runs: dict[str, dict[str, Any]] = {}
    for key, values in (grid or {}).items():
        if key not in FIGURE3_PARAMETERS:
            raise DmlReproError(f"figure3: unknown grid key '{key}' ({' | '.join(FIGURE3_PARAMETERS)})")
        names = FIGURE3_PARAMETERS[key][0]
        for value in values:
            value = list(value) if isinstance(value, (list, tuple)) else [value]
            if len(value) != len(names):
                raise DmlReproError(f"figure3.{key}: {value} needs {len(names)} numbers ({', '.join(names)})")
            cast = [int(v) if n in ("n_proxies", "m") else float(v) for n, v in zip(names, value)]
            if all(OURS[n] == v for n, v in zip(names, cast)):
                continue
            runs[f"fig3-{key}-" + "-".join(_fmt(v) for v in cast)] = dict(zip(names, cast))
    return runs


def run_method(run: str, methods: dict[str, dict[str, Any]], grid: dict[str, list] | None = None) -> dict[str, Any]:
    """The method settings of run ``run``: a configured method, or a Fig. 3 point (Ours + one change)."""
    if run in methods:
        return dict(methods[run])
    points = figure3_runs(grid)
    if run in points:
        if "ours" not in methods:
            raise DmlReproError(f"run '{run}': Fig. 3 points change Ours, which the config does not list")
        return {**methods["ours"], **points[run]}
    raise DmlReproError(f"unknown run '{run}': neither a configured method nor a Fig. 3 point")


def row_label(row: str) -> str:
    return ROW_LABELS.get(row, row)
