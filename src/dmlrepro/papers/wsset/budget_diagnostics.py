"""Why WSSET's loss sits at the margin, and how good its pseudo-labels are (issue 18, docs/wsset.md
"Training budget").

:func:`diagnose_run` trains one embedder as the workflow does (``trainer.train_embedder``, same
seed, same batches) and after every epoch re-mines that epoch's batches on the new embedding with
the method's own miner, recording the triplets' geometry:

- ``d_ap``, ``d_an``: mean squared distance anchor–positive / anchor–negative (embeddings are on
  the unit sphere: 0 to 4); ``w``: mean Eq. 3 weight of the negatives; ``gap`` = mean(w·d_an − d_ap);
- ``semi_hard``: share of anchors with a semi-hard negative (the rest fall back to the farthest);
  ``active``: share of triplets with a positive hinge (d_ap − w·d_an + margin > 0);
- ``spread``: mean squared distance between fit documents (0: collapsed to a point); ``top_share``:
  share of the embedding's variance on its first principal axis (1: collapsed to a line);
- ``pos_label_agree``: share of anchors whose in-batch EMD-nearest positive has the anchor's label
  (the pseudo-label precision), ``neg_label_agree``: share whose mined negative has it (a false
  negative), ``w_neg_same`` / ``w_neg_other``: mean weight of same-label / other-label negatives.

Labels are read here only to score the pseudo-labels; training never sees them.
:func:`pseudo_label_quality` gives the epoch-free numbers: leave-one-out EMD 1-NN label agreement
over the fit documents, its in-batch version, and the correlation of −EMD with the same-label indicator.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from dmlrepro.evaluation.supervision_quality import pair_correlation
from dmlrepro.io import atomic_path

__all__ = ["pseudo_label_quality", "triplet_geometry", "diagnose_run"]


def _batches(fit: np.ndarray, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches of ``epoch`` as the trainer draws them (a shuffled pass from (seed, epoch))."""
    rng = np.random.default_rng([seed, epoch])
    order = fit[rng.permutation(len(fit))]
    return [b for b in (order[s:s + batch_size] for s in range(0, len(order), batch_size)) if len(b) >= 3]


def pseudo_label_quality(emd: np.ndarray, labels: np.ndarray, fit: np.ndarray, batch_size: int = 64,
                         seed: int = 0, epochs: int = 20) -> dict[str, float]:
    """How often WSSET's positive (the EMD-nearest document) shares the anchor's label: over the whole
    fit set (leave-one-out EMD 1-NN) and within the training batches of ``epochs`` epochs."""
    fit = np.asarray(fit, np.int64)
    sub = np.asarray(emd[np.ix_(fit, fit)], dtype=np.float64)
    y = np.asarray(labels)[fit]
    masked = sub + np.diag(np.full(len(fit), np.inf))
    agree_all = float(np.mean(y[masked.argmin(1)] == y))
    hits = total = 0
    for epoch in range(1, epochs + 1):
        for b in _batches(fit, batch_size, seed, epoch):
            d = np.asarray(emd[np.ix_(b, b)], dtype=np.float64) + np.diag(np.full(len(b), np.inf))
            lab = np.asarray(labels)[b]
            hits += int(np.sum(lab[d.argmin(1)] == lab))
            total += len(b)
    return {"emd_1nn_label_agreement_fit": 100.0 * agree_all, "in_batch_positive_label_agreement": 100.0 * hits / total,
            "emd_same_label_correlation": pair_correlation(-sub, y)}


@torch.no_grad()
def triplet_geometry(emb: np.ndarray, emd: np.ndarray, labels: np.ndarray, batches: list[np.ndarray],
                     miner, margin: float) -> dict[str, float]:
    """The mined triplets' distances, weights and labels over ``batches`` (rows of ``emb``, ``emd``
    and ``labels`` are documents); see the module docstring."""
    rec: dict[str, list[np.ndarray]] = {k: [] for k in ("d_ap", "d_an", "w", "pos", "neg")}
    for b in batches:
        e = torch.from_numpy(np.asarray(emb[b], dtype=np.float64))
        t = miner(e, torch.from_numpy(np.asarray(emd[np.ix_(b, b)], dtype=np.float64)))
        a, p, n = t.anchors.numpy(), t.positives.numpy(), t.negatives.numpy()
        sq = ((e[:, None] - e[None]) ** 2).sum(-1).numpy()
        lab = np.asarray(labels)[b]
        rec["d_ap"].append(sq[a, p])
        rec["d_an"].append(sq[a, n])
        rec["w"].append(t.weights.double().numpy())
        rec["pos"].append(lab[p] == lab[a])
        rec["neg"].append(lab[n] == lab[a])
    d_ap, d_an, w, pos, neg = (np.concatenate(rec[k]) for k in ("d_ap", "d_an", "w", "pos", "neg"))
    everyone = np.concatenate(batches)
    x = np.asarray(emb[everyone], dtype=np.float64)
    centred = x - x.mean(0)
    var = np.linalg.svd(centred, compute_uv=False) ** 2
    return {"d_ap": float(d_ap.mean()), "d_an": float(d_an.mean()), "w": float(w.mean()),
            "gap": float(np.mean(w * d_an - d_ap)), "semi_hard": float(np.mean(d_an > d_ap)),
            "active": float(np.mean(d_ap - w * d_an + margin > 0)),
            "hinge": float(np.mean(np.maximum(d_ap - w * d_an + margin, 0.0))),
            "spread": float(2.0 * centred.var(0).sum() * len(x) / max(len(x) - 1, 1)),
            "top_share": float(var[0] / var.sum()) if var.sum() > 0 else 1.0,
            "pos_label_agree": float(pos.mean()), "neg_label_agree": float(neg.mean()),
            "w_neg_same": float(w[neg].mean()) if neg.any() else float("nan"),
            "w_neg_other": float(w[~neg].mean()) if (~neg).any() else float("nan")}


def diagnose_run(ps, emd: np.ndarray, fit: np.ndarray, val: np.ndarray, method: str, method_params: dict[str, Any],
                 model_cfg: dict[str, Any], train_cfg: dict[str, Any], out_dir: str | os.PathLike,
                 seed: int = 0, monitor: tuple[np.ndarray, np.ndarray] | None = None,
                 progress_csv: str | os.PathLike | None = None) -> pd.DataFrame:
    """Train as the workflow does and record :func:`triplet_geometry` after every epoch (on that
    epoch's batches); returns the history joined with the geometry, one row per epoch, and
    rewrites ``progress_csv`` (if given) after every epoch."""
    from dmlrepro.papers.wsset.emd_triplets import EMDTripletMiner
    from dmlrepro.papers.wsset.methods import method_spec
    from dmlrepro.papers.wsset.trainer import build_model, embed, train_embedder
    from dmlrepro.training.loop import rng_state, set_rng_state
    out_dir = Path(out_dir)
    weighting = "emd" if method == "wsset" else "none"
    miner = EMDTripletMiner(weighting, c=float(method_params.get("c", 7.0)),
                            variant=method_params.get("variant", "paper"))
    margin = float(method_params.get("margin", 0.1))
    batch_size = int(train_cfg.get("batch_size", 64))
    fit = np.asarray(fit, np.int64)
    arch = method_spec(method).architecture
    rows = []

    def after(epoch: int) -> None:
        state = torch.load(out_dir / "checkpoint" / "last.pt", weights_only=False, map_location="cpu")["model"]
        rng = rng_state()  # building a model draws initial weights: the run's random stream must not move
        model = build_model(ps.dim + 1, model_cfg, arch)
        set_rng_state(rng)
        model.load_state_dict(state)
        emb = np.zeros((len(ps), model.embedding_dim), dtype=np.float32)
        emb[fit] = embed(model, ps, fit, weight_feature=model_cfg.get("weight_feature", "count"))
        rows.append({"epoch": epoch, **triplet_geometry(emb, emd, ps.labels, _batches(fit, batch_size, seed, epoch),
                                                        miner, margin)})
        if progress_csv is not None:  # what a run stopped early has shown so far (history from the checkpoint)
            with atomic_path(progress_csv, suffix=".csv") as tmp:
                (pd.DataFrame(torch.load(out_dir / "checkpoint" / "last.pt", weights_only=False)["history"])
                 .merge(pd.DataFrame(rows), on="epoch").to_csv(tmp, index=False, float_format="%.5f"))

    result = train_embedder(ps, emd, fit, val, method, method_params, model_cfg, train_cfg, out_dir, seed=seed,
                            on_epoch_end=after, monitor=monitor)
    return pd.DataFrame(result.history).merge(pd.DataFrame(rows), on="epoch")
