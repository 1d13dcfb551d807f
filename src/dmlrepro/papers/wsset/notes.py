"""The known protocol and data differences between a run and the paper, printed under every table."""

from __future__ import annotations

from typing import Any

from dmlrepro.papers.wsset.paper_values import DATASETS, METHODS, dataset_label


def method_label(method: str) -> str:
    return METHODS[method].label if method in METHODS else method


def protocol_notes(records: list[dict[str, Any]], config: dict[str, Any]) -> list[str]:
    """Plain-language notes for a reader comparing our columns with the paper's."""
    notes: list[str] = []
    sources = sorted({r.get("data_source", "") for r in records if r.get("data_source")})
    if any("rebuilt from raw text" in s for s in sources):
        notes.append("Data: pointsets rebuilt from raw text with GloVe 6B 50-d vectors (the paper used "
                     "word2vec GoogleNews 300-d via Kusner's .mat files, which cannot be downloaded offline). "
                     "GloVe keeps words word2vec lacks ('a', 'and', 'of'), so documents hold more words "
                     "(BBCSport 143 vs 117 unique words on average).")
        notes.append("Splits: new seeded stratified 70/30 train/test splits, not Kusner's; a stratified "
                     "share of each train part is held out as validation for model selection.")
    model = config.get("model", {})
    train = config.get("train", {})
    if train and (train.get("epochs", 1000) < 1000 or model.get("layers", 5) < 5):
        notes.append(f"Schedule: {train.get('epochs')} epochs, lr {train.get('lr')}, encoder with "
                     f"{model.get('layers')} layer(s), width {model.get('d_model') or 'input'}, FF {model.get('ff_dim')}, "
                     f"head {model.get('head_dims')} (paper: 1,000 epochs, lr 1e-5, 5 layers, FF 1,000, head "
                     "512-256-64). Learned rows are expected below the paper's under this short schedule.")
    schedules = config.get("schedules", {})
    if schedules:  # method_params.<m>.train, or tuning.apply (docs/wsset.md, "Tuned schedules")
        def text(s):
            return s if isinstance(s, str) else ", ".join(f"{k} {v:g}" for k, v in sorted(s.items()))
        notes.append("Per-method schedules chosen on validation (results/wsset/tables/tuning.md, docs/wsset.md): "
                     + "; ".join(f"{method_label(m)}: {text(s)}" for m, s in schedules.items())
                     + f". Other learned rows: {train.get('epochs')} epochs, lr {train.get('lr')}.")
    notes.append("kNN accuracy: distance-weighted 10-NN (weights 1/d), gallery = the whole train part, "
                 "queries = the test part. The paper's code used leave-one-out kNN inside the test split.")
    notes.append("Recall@K: information-retrieval recall (same-class documents among the top K / all other "
                 "same-class documents), each test document querying the rest of the test split; the paper "
                 "does not define it, its numbers imply this reading (see docs/wsset.md).")
    notes.append("Ours ± std: mean and sample standard deviation over splits; the paper reports single numbers.")
    notes += task_notes(records)
    return notes


def task_notes(records: list[dict[str, Any]]) -> list[str]:
    """Why some rows have no paper value: their task is not the paper's (record key ``task_note``,
    e.g. Amazon relabelled by sentiment) or their dataset is not one of the paper's."""
    notes = []
    differs: dict[str, set[str]] = {}
    for r in records:
        if r.get("task_note"):
            differs.setdefault(r["dataset"], set()).add(str(r["task_note"]))
    for dataset in sorted(differs):
        notes.append(f"{dataset_label(dataset)}: no paper value (\"–\"): not the paper's task "
                     f"({'; '.join(sorted(differs[dataset]))}), so the paper's numbers do not compare.")
    others = sorted({r["dataset"] for r in records if r.get("dataset") not in DATASETS} - set(differs))
    if others:
        notes.append(f"{', '.join(others)}: not a dataset of the paper, so no paper value (\"–\").")
    return notes
