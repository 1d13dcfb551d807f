"""CLI steps of paper 002. Splits and the pretrained stand-in backbone come from the image
foundation's steps (``image-split``, ``image-pretrain``); these are the paper's own."""

from __future__ import annotations

import argparse

from dmlrepro import DmlReproError
from dmlrepro.io import json_argument


def _train(args: argparse.Namespace) -> None:
    from dmlrepro.papers.wasserstein.run import train
    p = json_argument(args.params)
    missing = {"method", "model", "train"} - set(p)
    if missing:
        raise DmlReproError(f"--params: missing key(s) {sorted(missing)}")
    train(args.dataset, args.raw_root, args.split, args.method, p["method"], p["model"], p["train"], args.init,
          args.seed, args.out_dir, args.recall_ks, sinkhorn=p.get("sinkhorn"), evaluation=p.get("evaluation"),
          device=args.device)


def _tables(args: argparse.Namespace) -> None:
    from dmlrepro.papers.wasserstein import report
    runs = report.load_runs(args.metrics, args.dataset)
    notes = [args.data_note] + list(args.note)
    report.write_tables(report.table1(runs, args.dataset), report.coreset_table(runs, args.dataset), args.csv,
                        args.md, args.coreset_csv, report.table1_title(args.dataset), notes,
                        reading=report.reading_table(runs, args.dataset))


def _claims(args: argparse.Namespace) -> None:
    from dmlrepro.papers.wasserstein import report
    datasets = sorted({r["dataset"] for r in report.load_runs(args.metrics)})
    report.write_claims_table(report.claims_table(args.metrics), args.csv, args.md, datasets)


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("wass-train", help="paper 002: one Table 1 run (W-rows on point clouds, baselines pooled)")
    s.add_argument("--dataset", required=True)
    s.add_argument("--raw-root", required=True)
    s.add_argument("--split", required=True, help="split JSON written by image-split")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--method", required=True)
    s.add_argument("--params", required=True, help="JSON with keys method, model, train, sinkhorn, evaluation")
    s.add_argument("--init", default=None, help="pretrained backbone (.pt) to start from")
    s.add_argument("--recall-ks", type=int, nargs="+", default=[1, 2, 4, 8])
    s.add_argument("--device", default="cpu")
    s.add_argument("--out-dir", required=True)
    s.set_defaults(func=_train)

    s = sub.add_parser("wass-table", help="paper 002: Table 1 and the WCRAIG table on one dataset")
    s.add_argument("--dataset", required=True)
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--data-note", required=True)
    s.add_argument("--note", action="append", default=[])
    s.add_argument("--csv", required=True)
    s.add_argument("--md", required=True)
    s.add_argument("--coreset-csv", required=True)
    s.set_defaults(func=_tables)

    s = sub.add_parser("wass-claims", help="paper 002: its Table 1 claims checked on the runs")
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--csv", required=True)
    s.add_argument("--md", required=True)
    s.set_defaults(func=_claims)
