"""CLI commands of the PL-manifold paper package (one per workflow step). Splits use ``image-split``,
pretraining ``image-pretrain`` and the Initial row ``image-initial`` (the image foundation's)."""

from __future__ import annotations

import argparse

from dmlrepro.io import json_argument

OUTPUTS = ("table1", "table1_csv", "table2", "table2_csv", "table3", "table3_csv", "figure3", "figure3_csv",
           "claims", "claims_csv")


def _train(args: argparse.Namespace) -> None:
    from dmlrepro.papers.pl_manifolds.run import train
    params = json_argument(args.params)
    train(args.dataset, args.raw_root, args.split, args.run, params["method"], params["model"], params["train"],
          args.init, args.seed, args.out_dir, args.recall_ks, device=args.device)


def _supervision(args: argparse.Namespace) -> None:
    from dmlrepro.papers.pl_manifolds.run import supervision
    params = json_argument(args.params)
    supervision(args.dataset, args.raw_root, args.split, params["model"], params["table2"], args.init, args.seed,
                args.out, device=args.device)


def _tables(args: argparse.Namespace) -> None:
    from dmlrepro.papers.pl_manifolds.report import write_all
    ks = {d: [int(k) for k in v] for d, v in json_argument(args.recall_ks).items()}
    write_all(args.metrics, args.initial, args.supervision, recall_ks=ks, data_notes=json_argument(args.data_notes),
              grid=json_argument(args.figure3_grid), out={k: getattr(args, k) for k in OUTPUTS}, notes=args.note)


def register(sub: argparse._SubParsersAction) -> None:
    def common(s):
        s.add_argument("--dataset", required=True)
        s.add_argument("--raw-root", required=True)
        s.add_argument("--split", required=True, help="split JSON written by image-split")
        s.add_argument("--seed", type=int, required=True)
        s.add_argument("--init", default=None, help="pretrained backbone (image-pretrain) or weights file")
        s.add_argument("--device", default="cpu")
        s.add_argument("--params", required=True)

    s = sub.add_parser("pl-train", help="PL manifolds: one unsupervised run (Ours, an ablation, a Fig. 3 point, STML)")
    common(s)
    s.add_argument("--run", required=True, help="the run's name (a method or a Fig. 3 point)")
    s.add_argument("--recall-ks", type=int, nargs="+", default=[1, 2, 4, 8])
    s.add_argument("--out-dir", required=True)
    s.set_defaults(func=_train)

    s = sub.add_parser("pl-supervision", help="PL manifolds: Table 2 (purity, correlation) on pretrained embeddings")
    common(s)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_supervision)

    s = sub.add_parser("pl-tables", help="PL manifolds: Tables 1-3, Fig. 3 and the claims")
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--initial", nargs="*", default=[])
    s.add_argument("--supervision", nargs="*", default=[])
    s.add_argument("--recall-ks", required=True, help="JSON: dataset -> Ks")
    s.add_argument("--data-notes", required=True, help="JSON: dataset -> note")
    s.add_argument("--figure3-grid", default="null", help="JSON: the Fig. 3 grid")
    s.add_argument("--note", action="append", default=[])
    for name in OUTPUTS:
        s.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True)
    s.set_defaults(func=_tables)
