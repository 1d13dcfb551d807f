"""CLI steps of paper 004. Its runs use the image foundation's generic steps (``image-split``,
``image-pretrain``, ``image-train`` with a Table 1 row's loss and miner); these are its own."""

from __future__ import annotations

import argparse


def _table(args: argparse.Namespace) -> None:
    from dmlrepro.papers.unified_view.report import raw_vthm_recall_table, table1, table1_title, write_table1
    df = table1(args.metrics, args.dataset, args.recall_ks, args.data_note)
    recall = raw_vthm_recall_table(args.metrics, args.dataset, args.recall_ks)
    write_table1(df, recall, args.csv, args.md, table1_title(args.dataset), args.note)


def _claims(args: argparse.Namespace) -> None:
    from dmlrepro.papers.unified_view.claims import results_frame
    from dmlrepro.papers.unified_view.report import claims_table, write_claims_table
    datasets = sorted(set(results_frame(args.metrics)["dataset"]))
    write_claims_table(claims_table(args.metrics), args.csv, args.md, datasets)


def _figure1(args: argparse.Namespace) -> None:
    from dmlrepro.papers.unified_view.report import figure1
    figure1(args.out)


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("uv-table", help="paper 004: Table 1 on one dataset (mean ± std over seeds)")
    s.add_argument("--dataset", required=True)
    s.add_argument("--metrics", nargs="+", required=True, help="metrics.json of the dataset's runs")
    s.add_argument("--recall-ks", type=int, nargs="+", default=[1, 2, 4, 8])
    s.add_argument("--data-note", required=True)
    s.add_argument("--note", action="append", default=[])
    s.add_argument("--csv", required=True)
    s.add_argument("--md", required=True)
    s.set_defaults(func=_table)

    s = sub.add_parser("uv-claims", help="paper 004: its Table 1 claims checked on the runs")
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--csv", required=True)
    s.add_argument("--md", required=True)
    s.set_defaults(func=_claims)

    s = sub.add_parser("uv-figure1", help="paper 004: Figure 1, pair weight vs. cosine similarity")
    s.add_argument("--out", required=True, help=".png (a .pdf is written beside it)")
    s.set_defaults(func=_figure1)
