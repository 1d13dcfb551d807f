"""CLI commands of the WSSET paper package (Tables I/II, Figs. 4 to 6): one per workflow step.

``train`` (one set embedder on one split, evaluated in the same job), ``tune`` (one method's
validation search of lr x epochs) and ``tuning-table``, ``bert`` (the BERT_BASE
rows), ``evaluate`` (WMD kNN, or saved embeddings), ``query-time`` (Fig. 5), ``tables``,
``figures``, ``study`` (Figs. 4 and 6), ``budget`` (the training-budget study, issue 18) and ``claims``. The shared steps (fetch, pointsets, EMD
shards, the HTML report) stay in :mod:`dmlrepro.cli`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from dmlrepro import DmlReproError
from dmlrepro.io import json_argument as _json_arg
from dmlrepro.papers.wsset.run import evaluate_run

__all__ = ["register", "figure_captions", "embed_run", "search_run"]

log = logging.getLogger("dmlrepro")


def figure_captions() -> dict[str, str]:
    """The HTML report's caption of each WSSET figure (file stem -> the paper's claim it shows)."""
    from dmlrepro.papers.wsset.report import FIGURE_CAPTIONS
    return FIGURE_CAPTIONS


# ------------------------------------------------------------------------------------ your own documents
def embed_run(args: argparse.Namespace):
    """``dmlrepro embed`` on a WSSET run: (embeddings, info for the .json), or None for another kind of run."""
    from dmlrepro.papers.wsset.search import TextRun, embed_documents, is_text_run
    if not is_text_run(args.model):
        return None
    run = TextRun(args.model, args.raw_root)
    docs = run.documents(args.input, args.format)
    return embed_documents(run, docs), {"model": str(args.model), "ids": docs.ids, "labels": docs.labels}


def search_run(args: argparse.Namespace):
    """``dmlrepro search`` on a WSSET run: (hits, query ids, gallery ids, gallery labels), or None."""
    from dmlrepro.papers.wsset.search import TextRun, is_text_run, search_documents
    if not is_text_run(args.model):
        return None
    run = TextRun(args.model, args.raw_root)
    gallery, query = run.documents(args.gallery, args.format), run.documents(args.query, args.format)
    hits = search_documents(run, query, gallery, args.k, exact_wmd=args.exact_wmd)
    return hits, query.ids, gallery.ids, gallery.labels


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


def _train(args: argparse.Namespace) -> None:
    from dmlrepro.data.pointsets import Pointsets
    from dmlrepro.data.splits import Splits
    from dmlrepro.papers.wsset.trainer import embed, load_model, save_embeddings, train_embedder
    params = _json_arg(args.params)
    _set_threads(args.threads)
    ps = Pointsets.load(args.pointsets)
    train_cfg = dict(params["train"])
    if args.tuned:  # tuning.apply: the schedule a validation search chose for this method
        from dmlrepro.papers.wsset.tuning import read_chosen
        train_cfg.update(read_chosen(args.tuned))
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
    # train.monitor_test (the budget study): the test kNN accuracy of every evaluation, recorded only
    monitor = (labelled, splits.test[args.split]) if train_cfg.get("monitor_test") and not args.all_documents else None
    result = train_embedder(ps, emd, fit, val, args.method, params.get("method_params", {}), params["model"],
                            train_cfg, args.out_dir, seed=seed, init_model=args.init_model, monitor=monitor)
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


def _tune(args: argparse.Namespace) -> None:
    from dmlrepro.data.pointsets import Pointsets
    from dmlrepro.data.splits import Splits
    from dmlrepro.io import write_json
    from dmlrepro.papers.wsset.tuning import run_search
    params = _json_arg(args.params)
    _set_threads(args.threads)
    ps = Pointsets.load(args.pointsets)
    train_cfg = dict(params["train"])
    train_cfg["device"] = str(_device(train_cfg.get("device", "cpu")))
    emd = np.load(args.emd, mmap_mode="r") if args.emd else None
    result = run_search(ps, Splits.load(args.splits), emd, args.method, params.get("method_params", {}),
                        params["model"], train_cfg, _json_arg(args.grid), args.tuning_splits, args.work_dir,
                        dataset=args.dataset)
    write_json(args.out, result)
    log.info("tuning %s %s: chose lr %g, %d epochs (validation kNN accuracy %.2f) in %.0f s", args.dataset,
             args.method, result["chosen"]["lr"], result["chosen"]["epochs"], result["chosen_val_accuracy"],
             result["seconds"])


def _tuning_table(args: argparse.Namespace) -> None:
    import json

    from dmlrepro.io import write_text
    from dmlrepro.papers.wsset.tuning import tuning_table
    write_text(args.out, tuning_table([json.loads(Path(p).read_text()) for p in args.results]))


def _bert(args: argparse.Namespace) -> None:
    from types import SimpleNamespace

    from dmlrepro.data.build import read_raw_documents
    from dmlrepro.data.pointsets import Pointsets
    from dmlrepro.data.splits import Splits, make_splits
    from dmlrepro.io import save_npy, write_json
    from dmlrepro.papers.wsset.bert import finetune_bert
    params = _json_arg(args.params)
    ps = Pointsets.load(args.pointsets)
    if ps.meta.get("own_corpus"):  # your own corpus: read from where its pointsets were built
        from dmlrepro.data.build import read_own_corpus
        docs = read_own_corpus(ps.meta["own_corpus"])
    else:
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
def _evaluate(args: argparse.Namespace) -> None:
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


def _query_time(args: argparse.Namespace) -> None:
    from dmlrepro.data.build import read_raw_documents
    from dmlrepro.data.pointsets import Pointsets
    from dmlrepro.papers.wsset.query_time import QueryPreprocessor, run_query_time, write_query_time
    from dmlrepro.papers.wsset.trainer import load_model
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
def _tables(args: argparse.Namespace) -> None:
    from dmlrepro.papers.wsset.report import write_tables
    write_tables(args.metrics, args.out_dir, _json_arg(args.config) if args.config else {})


def _figures(args: argparse.Namespace) -> None:
    import pandas as pd
    from dmlrepro.papers.wsset.figures import plot_paper_comparison, plot_recall_curves
    from dmlrepro.reporting.figures import plot_training_curve
    if args.query_time:
        from dmlrepro.papers.wsset.query_time_figure import plot_query_time
        plot_query_time(args.query_time, args.query_time_summary, args.query_time_out)
        return
    if args.history:
        if len(args.history) != len(args.out or []):
            raise DmlReproError(f"figures: {len(args.history)} --history files but {len(args.out or [])} --out paths")
        for history, out in zip(args.history, args.out):
            run = Path(history).parent  # results/wsset/<dataset>/split<k>/<method>
            plot_training_curve(history, out, f"{run.parts[-3]} {run.name} {run.parts[-2]}")
        return
    plot_paper_comparison(pd.read_csv(args.table1), args.comparison_out)
    plot_recall_curves(pd.read_csv(args.table2), args.recall_out)


def _study_runs(value: str, option: str) -> list:
    """A figure study's manifest: a JSON list of {point, setting, metrics}, one per run."""
    runs = _json_arg(value)
    if not isinstance(runs, list):
        raise DmlReproError(f"{option} must be a JSON list of {{point, setting, metrics}}, one per run")
    return runs


def _study(args: argparse.Namespace) -> None:
    from dmlrepro.papers.wsset.study_figures import plot_c_grid, plot_small_data, study_frame, summarise, write_summary
    summary = summarise(study_frame(_study_runs(args.runs, "study --runs")))
    write_summary(summary, args.summary_out)
    (plot_small_data if args.kind == "small_data" else plot_c_grid)(summary, args.figure_out)


def _budget(args: argparse.Namespace) -> None:
    from dmlrepro.papers.wsset.studies import write_budget_study
    runs = _json_arg(args.runs)
    if not isinstance(runs, list):
        raise DmlReproError("budget: --runs must be a JSON list of runs")
    summary = write_budget_study(runs, args.wmd, args.per_split_out, args.summary_out, args.figure_out,
                                 args.claims_csv, args.claims_md)
    log.info("budget study: %d runs, %d summary rows", len(runs), len(summary))


def _budget_diagnose(args: argparse.Namespace) -> None:
    from dmlrepro.data.pointsets import Pointsets
    from dmlrepro.data.splits import Splits
    from dmlrepro.io import write_json
    from dmlrepro.papers.wsset.budget_diagnostics import diagnose_run, pseudo_label_quality
    params = _json_arg(args.params)
    _set_threads(args.threads)
    ps, splits = Pointsets.load(args.pointsets), Splits.load(args.splits)
    emd = np.load(args.emd, mmap_mode="r")
    train_cfg = dict(params["train"])
    seed = int(train_cfg.get("seed", 0)) + args.split
    fit, val, labelled = splits.training_parts(ps.labels, args.split)
    quality = pseudo_label_quality(emd, ps.labels, fit, int(train_cfg.get("batch_size", 64)), seed)
    write_json(Path(args.out_dir) / "pseudo_labels.json", quality)
    frame = diagnose_run(ps, emd, fit, val, args.method, params.get("method_params", {}), params["model"], train_cfg,
                         args.out_dir, seed=seed, monitor=(labelled, splits.test[args.split]),
                         progress_csv=Path(args.out_dir) / "diagnostics_progress.csv")
    frame.to_csv(Path(args.out_dir) / "diagnostics.csv", index=False, float_format="%.5f")
    log.info("pseudo-labels: %s", quality)


def _claims(args: argparse.Namespace) -> None:
    from dmlrepro.papers.wsset.report import check_claims
    claims = check_claims(args.metrics, _study_runs(args.small_data_runs, "--small-data-runs"),
                          _study_runs(args.c_grid_runs, "--c-grid-runs"), args.claims, args.csv_out, args.md_out)
    log.info("claims: %s", claims["verdict"].value_counts().to_dict())


def _add_run_arguments(s: argparse.ArgumentParser) -> None:
    """What names one run: dataset, method, split, and the dataset's pointset and split files."""
    s.add_argument("--dataset", required=True)
    s.add_argument("--method", required=True)
    s.add_argument("--split", type=int, required=True)
    s.add_argument("--pointsets", required=True)
    s.add_argument("--splits", required=True)


def register(sub) -> None:
    """Add WSSET's commands to the CLI's subparsers."""
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
    s.add_argument("--tuned", help="a validation search's result (tuning JSON): its chosen lr and epochs")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(func=_train)

    s = sub.add_parser("tune", help="validation search of one method's lr x epochs grid (tuning JSON)")
    s.add_argument("--dataset", required=True)
    s.add_argument("--method", required=True)
    s.add_argument("--pointsets", required=True)
    s.add_argument("--splits", required=True)
    s.add_argument("--emd", help="the dataset's WMD matrix (EMD-based methods)")
    s.add_argument("--tuning-splits", type=int, nargs="+", default=[0], help="splits whose validation part selects")
    s.add_argument("--grid", required=True, help='JSON {"lr": [...], "epochs": [...]}')
    s.add_argument("--params", required=True, help="JSON with keys method_params, model, train")
    s.add_argument("--work-dir", required=True, help="the grid runs' checkpoints and models (resumable)")
    s.add_argument("--out", required=True)
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(func=_tune)

    s = sub.add_parser("tuning-table", help="the tuning grids of all methods as one markdown table")
    s.add_argument("--results", nargs="+", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_tuning_table)

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
    s.set_defaults(func=_bert)

    s = sub.add_parser("evaluate", help="kNN accuracy and Recall@K of one run")
    _add_run_arguments(s)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--embeddings")
    g.add_argument("--emd")
    s.add_argument("--recall-ks", nargs="+", required=True)
    s.add_argument("--knn-k", type=int, default=10)
    s.add_argument("--data-note", default="", help="appended to the row's data description (e.g. external corpus)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_evaluate)

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
    s.set_defaults(func=_query_time)

    s = sub.add_parser("tables", help="Tables I and II with the paper's values")
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--out-dir", required=True)
    s.add_argument("--config", help="the run's config as JSON (for the notes)")
    s.set_defaults(func=_tables)

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
    s.set_defaults(func=_figures)

    s = sub.add_parser("study", help="Fig. 4 (small_data) or Fig. 6 (c_grid): summary table and figure")
    s.add_argument("--kind", choices=("small_data", "c_grid"), required=True)
    s.add_argument("--runs", required=True,
                   help="JSON list, one object per run: point (its key), setting (samples per class or c), metrics")
    s.add_argument("--summary-out", required=True)
    s.add_argument("--figure-out", required=True)
    s.set_defaults(func=_study)

    s = sub.add_parser("budget", help="training-budget study: kNN accuracy against epochs and encoder, WMD line, claims")
    s.add_argument("--runs", required=True,
                   help="JSON list, one object per run: dataset, method, encoder, split, budgets, history (, metrics)")
    s.add_argument("--wmd", nargs="+", required=True, help="metrics.json of the wmd_knn runs on the same splits")
    s.add_argument("--per-split-out", required=True)
    s.add_argument("--summary-out", required=True)
    s.add_argument("--figure-out", required=True)
    s.add_argument("--claims-csv", required=True)
    s.add_argument("--claims-md", required=True)
    s.set_defaults(func=_budget)

    s = sub.add_parser("budget-diagnose", help="budget study: triplet geometry per epoch and pseudo-label quality of one run")
    _add_run_arguments(s)
    s.add_argument("--emd", required=True)
    s.add_argument("--params", required=True, help="JSON with keys method_params, model, train (monitor_test on)")
    s.add_argument("--out-dir", required=True, help="the run, diagnostics.csv and pseudo_labels.json go here")
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(func=_budget_diagnose)

    s = sub.add_parser("claims", help="a paper's claims checked on the runs: both sides' mean ± std and a verdict")
    s.add_argument("--metrics", nargs="*", default=[], help="metrics.json of the Tables I/II runs")
    s.add_argument("--small-data-runs", default="[]", help="the Fig. 4 runs: JSON list of {point, setting, metrics}")
    s.add_argument("--c-grid-runs", default="[]", help="the Fig. 6 runs: JSON list of {point, setting, metrics}")
    s.add_argument("--claims", default="dmlrepro.papers.wsset.claims:CLAIMS", help="module:list of ClaimSpec")
    s.add_argument("--csv-out", required=True)
    s.add_argument("--md-out", required=True)
    s.set_defaults(func=_claims)
