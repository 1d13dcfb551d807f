"""Validation search of a method's training schedule (issue 18, part 2): the same grid for every
trained method of Table I, selected on validation kNN accuracy, never on test.

One job trains the grid of one method on one dataset (one interpreter start, the pointsets loaded
once). The grid is learning rates x epoch budgets. Each learning rate is trained once, for the
largest budget, with validation every epoch; a smaller budget ``e`` is read off the same run as
its best validation accuracy over epochs ``1..e``. That is exactly what a separate ``e``-epoch run
would select: the learning rate is constant (no schedule depends on the number of epochs), epoch
``t``'s batches are drawn from ``(seed, t)``, evaluation consumes no random numbers, and the
trainer keeps the *first* best epoch (``tests/test_wsset_tuning.py`` checks a short run against
the prefix of a long one). So every method pays ``len(lr) x max(epochs)`` epochs per tuning split
and gets ``len(lr) x len(epochs)`` grid points.

Selection: the highest validation kNN accuracy, averaged over the tuning splits; ties go to the
smaller budget, then to the learning rate nearest (in log scale) to the config's default, then to
the smaller learning rate. The runs see the split's fit and validation parts only
(``Splits.training_parts``); the test part is never read.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from dmlrepro import DmlReproError

log = logging.getLogger(__name__)

TUNABLE_KEYS = ("lr", "epochs")


def budget_scores(val_accuracy: Sequence[float], epochs: Iterable[int]) -> dict[int, tuple[float, int]]:
    """``{e: (best validation accuracy over epochs 1..e, its first epoch)}`` of one run's history
    (validation every epoch), what an ``e``-epoch run with ``selection: val_knn`` keeps."""
    out = {}
    for e in epochs:
        e = int(e)
        if e > len(val_accuracy):
            raise DmlReproError(f"tuning: budget of {e} epochs but the run has {len(val_accuracy)}")
        head = [float(v) for v in val_accuracy[:e]]
        best = max(head)
        out[e] = (best, head.index(best) + 1)
    return out


def select(points: Sequence[dict[str, Any]], default_lr: float) -> dict[str, Any]:
    """The grid point with the highest mean validation accuracy (ties: fewer epochs, then the lr
    nearest to ``default_lr`` in log scale, then the smaller lr). Reads ``val_accuracy`` only."""
    if not points:
        raise DmlReproError("tuning: empty grid")

    def key(p):
        # the log distance rounded: 1e-4 and 1e-2 are equally far from 1e-3 despite float rounding
        return (-float(p["val_accuracy"]), int(p["epochs"]),
                round(abs(math.log(float(p["lr"]) / float(default_lr))), 9), float(p["lr"]))

    return min(points, key=key)


def merge_train(train_cfg: dict[str, Any], override: dict[str, Any] | None) -> dict[str, Any]:
    """A method's schedule: ``config['train']`` with its ``method_params.<m>.train`` on top."""
    override = dict(override or {})
    unknown = sorted(set(override) - set(TUNABLE_KEYS))
    if unknown:
        raise DmlReproError(f"method_params.<method>.train: unknown key(s) {unknown} (allowed: {list(TUNABLE_KEYS)})")
    return {**train_cfg, **override}


def run_search(ps, splits, emd, method: str, method_params: dict[str, Any], model_cfg: dict[str, Any],
               train_cfg: dict[str, Any], grid: dict[str, Sequence[Any]], tuning_splits: Sequence[int],
               work_dir: str | Path, dataset: str = "") -> dict[str, Any]:
    """Train ``method`` at every learning rate of ``grid['lr']`` for ``max(grid['epochs'])`` epochs
    on each tuning split's fit part, score every (lr, epochs) point on the split's validation part,
    and choose one. ``work_dir`` holds each run's checkpoint (an interrupted search resumes)."""
    from dmlrepro.papers.wsset.methods import method_spec
    from dmlrepro.papers.wsset.trainer import train_embedder

    spec = method_spec(method)
    if spec.init_from or spec.external_init:
        raise DmlReproError(f"tuning: '{method}' is a transfer stage; it inherits the schedule of its base method")
    lrs = [float(x) for x in grid.get("lr", [train_cfg.get("lr", 1e-3)])]
    budgets = sorted({int(x) for x in grid.get("epochs", [train_cfg.get("epochs", 5)])})
    if not lrs or not budgets:
        raise DmlReproError("tuning.grid: lr and epochs need at least one value each")
    if train_cfg.get("selection", "val_knn") != "val_knn":
        raise DmlReproError("tuning needs train.selection: val_knn (the search selects on validation)")
    seed0 = int(train_cfg.get("seed", 0))
    runs, seconds = [], {}
    for k in tuning_splits:
        k = int(k)
        if k >= len(splits.train):
            raise DmlReproError(f"tuning.splits: split {k} requested, the splits file holds {len(splits.train)}")
        fit, val, _ = splits.training_parts(ps.labels, k)
        if len(val) == 0:
            raise DmlReproError(f"tuning: split {k} has no validation part (splits.val_size is 0)")
        for lr in lrs:
            cfg = {**train_cfg, "lr": lr, "epochs": budgets[-1], "eval_every": 1, "selection": "val_knn"}
            t0 = time.perf_counter()
            result = train_embedder(ps, emd, fit, val, method, method_params, model_cfg, cfg,
                                    Path(work_dir) / f"split{k}" / f"lr{lr:g}", seed=seed0 + k)
            seconds[(k, lr)] = time.perf_counter() - t0
            curve = [float(r["val_accuracy"]) for r in result.history]
            runs.append({"split": k, "lr": lr, "val_accuracy": curve, "loss": [float(r["loss"]) for r in result.history],
                         "seconds": round(seconds[(k, lr)], 2)})
            log.info("tuning %s %s split %d lr %g: best validation %.2f at epoch %d (%.0f s)", dataset, method, k, lr,
                     max(curve), curve.index(max(curve)) + 1, seconds[(k, lr)])
    points = []
    for lr in lrs:
        scores = [budget_scores(r["val_accuracy"], budgets) for r in runs if r["lr"] == lr]
        for e in budgets:
            per_split = [s[e][0] for s in scores]
            points.append({"lr": lr, "epochs": e, "val_accuracy": float(np.mean(per_split)),
                           "per_split": per_split, "best_epoch": [s[e][1] for s in scores]})
    chosen = select(points, float(train_cfg.get("lr", 1e-3)))
    # still improving: the chosen point's best epoch is the largest budget's last epoch
    at_edge = chosen["epochs"] == budgets[-1] and any(b == budgets[-1] for b in chosen["best_epoch"])
    return {"dataset": dataset, "method": method, "splits": [int(k) for k in tuning_splits],
            "grid": {"lr": lrs, "epochs": budgets}, "selection": "validation kNN accuracy (mean over tuning splits)",
            "default": {"lr": float(train_cfg.get("lr", 1e-3)), "epochs": int(train_cfg.get("epochs", 5))},
            "points": points, "chosen": {"lr": chosen["lr"], "epochs": chosen["epochs"]},
            "chosen_val_accuracy": chosen["val_accuracy"], "best_at_last_epoch": bool(at_edge), "runs": runs,
            "seconds": round(sum(seconds.values()), 1)}


def read_chosen(path: str | Path) -> dict[str, Any]:
    """The ``{lr, epochs}`` a search chose (``results/wsset/<dataset>/tuning/<method>.json``)."""
    import json
    path = Path(path)
    if not path.exists():
        raise DmlReproError(f"tuning result not found: {path}")
    chosen = json.loads(path.read_text()).get("chosen")
    if not isinstance(chosen, dict) or set(chosen) != set(TUNABLE_KEYS):
        raise DmlReproError(f"{path}: key 'chosen' must hold lr and epochs")
    return {"lr": float(chosen["lr"]), "epochs": int(chosen["epochs"])}


def tuning_table(results: Sequence[dict[str, Any]]) -> str:
    """Markdown: one row per (dataset, method), one column per grid point (mean validation kNN
    accuracy), the chosen point in bold, then the choice, the default's score and the search's wall time."""
    if not results:
        return "No tuning results.\n"
    from dmlrepro.papers.wsset.paper_values import DATASET_LABELS, METHOD_ORDER, METHODS
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    results = sorted(results, key=lambda r: (r["dataset"], order.get(r["method"], len(order)), r["method"]))
    grid = results[0]["grid"]
    cols = [(lr, e) for lr in grid["lr"] for e in grid["epochs"]]
    head = ["Dataset", "Method"] + [f"lr {lr:g}, {e} ep" for lr, e in cols] + ["chosen", "default's val", "wall s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for res in results:
        by = {(p["lr"], p["epochs"]): p for p in res["points"]}
        ch = (res["chosen"]["lr"], res["chosen"]["epochs"])
        cells = []
        for c in cols:
            p = by.get(c)
            text = "–" if p is None else f"{p['val_accuracy']:.2f}"
            cells.append(f"**{text}**" if c == ch else text)
        d = by.get((res["default"]["lr"], res["default"]["epochs"]))
        edge = " (best at last epoch)" if res.get("best_at_last_epoch") else ""
        lines.append("| " + " | ".join([DATASET_LABELS.get(res["dataset"], res["dataset"]),
                                        METHODS[res["method"]].label if res["method"] in METHODS else res["method"]] + cells +
                                       [f"lr {ch[0]:g}, {ch[1]} ep{edge}", "–" if d is None else f"{d['val_accuracy']:.2f}",
                                        f"{res['seconds']:.0f}"]) + " |")
    splits = sorted({k for r in results for k in r["splits"]})
    lines += ["", f"Validation kNN accuracy (weighted {{k}}-NN of the validation part against the fit part) of split(s) "
              f"{', '.join(map(str, splits))}, mean over those splits; the test part is never read. An e-epoch point "
              "is the best validation epoch ≤ e of the longest run at that lr (the same as an e-epoch run: constant lr). "
              "Bold: the chosen point (ties: fewer epochs, then the lr nearest the default). wall s: the row's whole "
              "search (one thread; more than its CPU time on a shared machine)."]
    return "\n".join(lines).replace("{k}", "10") + "\n"
