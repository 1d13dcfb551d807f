"""CLI commands of the image foundation's stand-in (one per workflow step)."""

from __future__ import annotations

import argparse

from dmlrepro.io import json_argument as _json


def _split(args: argparse.Namespace) -> None:
    from dmlrepro.papers.image_foundation.run import make_splits
    make_splits(args.dataset, args.raw_root, _json(args.protocol), args.seeds, args.out)


def _pretrain(args: argparse.Namespace) -> None:
    from dmlrepro.papers.image_foundation.run import pretrain
    pretrain(args.dataset, args.raw_root, _json(args.params), args.out, seed=args.seed, device=args.device)


def _train(args: argparse.Namespace) -> None:
    from dmlrepro.papers.image_foundation.run import train
    params = _json(args.params)
    train(args.dataset, args.raw_root, args.split, args.method, params["method"], params["model"], params["train"],
          args.init, args.seed, args.out_dir, args.recall_ks, device=args.device)


def _initial(args: argparse.Namespace) -> None:
    from dmlrepro.papers.image_foundation.run import initial
    initial(args.dataset, args.raw_root, args.split, _json(args.model), args.init, args.seed, args.out,
            args.recall_ks, device=args.device)


def _table(args: argparse.Namespace) -> None:
    from dmlrepro.papers.image_foundation.report import curves_figure, stand_in_table, write_table
    df = stand_in_table(args.metrics, args.recall_ks, args.data_note)
    write_table(df, args.csv, args.md, args.note)
    if args.histories:
        curves_figure(args.histories, args.figure)


def register(sub: argparse._SubParsersAction) -> None:
    def common(s, split=True):
        s.add_argument("--dataset", required=True)
        s.add_argument("--raw-root", required=True)
        s.add_argument("--device", default="cpu")
        if split:
            s.add_argument("--split", required=True, help="split JSON written by image-split")
            s.add_argument("--seed", type=int, required=True)
            s.add_argument("--recall-ks", type=int, nargs="+", default=[1, 2, 4, 8])

    s = sub.add_parser("image-split", help="image dataset: fit/val/test rows per seed")
    common(s, split=False)
    s.add_argument("--protocol", required=True, help="JSON: protocol, train_classes, test_classes, val_fraction, val_by")
    s.add_argument("--seeds", type=int, nargs="+", required=True)
    s.add_argument("--out", nargs="+", required=True, help="one split JSON per seed")
    s.set_defaults(func=_split)

    s = sub.add_parser("image-pretrain", help="supervised softmax pretraining of an image backbone")
    common(s, split=False)
    s.add_argument("--params", required=True, help="JSON: backbone, epochs, batch_size, lr, ...")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.set_defaults(func=_pretrain)

    s = sub.add_parser("image-train", help="one image metric-learning run (loss + miner by name)")
    common(s)
    s.add_argument("--method", required=True)
    s.add_argument("--params", required=True, help="JSON with keys method, model, train")
    s.add_argument("--init", help="pretrained backbone (image-pretrain output)")
    s.add_argument("--out-dir", required=True)
    s.set_defaults(func=_train)

    s = sub.add_parser("image-initial", help="the Initial row: pretrained features before metric learning")
    common(s)
    s.add_argument("--model", required=True, help="JSON: the model config")
    s.add_argument("--init", help="pretrained backbone (image-pretrain output)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_initial)

    s = sub.add_parser("image-table", help="the stand-in's table and training-curve figure")
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--histories", nargs="*", default=[])
    s.add_argument("--recall-ks", type=int, nargs="+", default=[1, 2, 4, 8])
    s.add_argument("--data-note", required=True)
    s.add_argument("--note", action="append", default=[])
    s.add_argument("--csv", required=True)
    s.add_argument("--md", required=True)
    s.add_argument("--figure")
    s.set_defaults(func=_table)
