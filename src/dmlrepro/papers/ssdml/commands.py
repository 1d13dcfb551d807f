"""CLI commands of the SSDML paper package (one per workflow step); splits use ``image-split``."""

from __future__ import annotations

import argparse

from dmlrepro.io import json_argument


def _train(args: argparse.Namespace) -> None:
    from dmlrepro.papers.ssdml.run import train
    params = json_argument(args.params)
    train(args.dataset, args.raw_root, args.split, args.method, params["method"], params["model"], params["train"],
          args.seed, args.out_dir, args.recall_ks, device=args.device, tuning_point=args.tuning_point,
          init=args.init)


def _tuning_table(args: argparse.Namespace) -> None:
    from dmlrepro.papers.ssdml import report
    grid = json_argument(args.grid)
    notes = ["Validation R@1 (%) of each grid point: the selection score of the run's selected epoch, on the "
             "validation split of the tuning seed; the test split is not read. Chosen: the highest per method "
             "(ties to the earlier point); every point runs the same schedule (the same SGD budget).",
             "Ours' alpha also sets Ours w/o orth's (Table 4 compares the two at one alpha)."] + list(args.note)
    report.write_table(report.tuning_table(report.load_runs(args.metrics), grid), args.out_csv, args.out_md,
                       "SSDML: hyperparameters chosen on validation", notes)


def _initial(args: argparse.Namespace) -> None:
    from dmlrepro.papers.ssdml.run import initial
    initial(args.dataset, args.raw_root, args.split, json_argument(args.model), args.seed, args.out, args.recall_ks,
            device=args.device, method_cfg=json_argument(args.method), space=args.retrieval_space,
            train_cfg=json_argument(args.train), init=args.init)


def _tables(args: argparse.Namespace) -> None:
    from dmlrepro.papers.ssdml import claims, report
    from dmlrepro.reporting.claims import evaluate_claims, write_claims
    runs = report.load_runs(args.metrics)
    notes = list(report.NOTES) + report.space_notes(runs) + report.baseline_notes(runs) + list(args.note)
    report.write_table(report.table1(runs, args.datasets), args.table1_csv, args.table1_md,
                       "SSDML Table 1: comparison against the SSDML baselines", notes)
    report.write_table(report.table4(runs, args.datasets), args.table4_csv, args.table4_md,
                       "SSDML Table 4: without and with orthogonality on L", notes)
    titles = {2: "SSDML Table 2: against the SSDML baselines on fine-grained datasets",
              3: "SSDML Table 3: against deep unsupervised methods (quoted) on fine-grained datasets",
              5: "SSDML Table 5: against supervised baselines trained on the labelled images (CUB)"}
    for t, build in ((2, report.table2), (3, report.table3), (5, report.table5)):
        csv, md = getattr(args, f"table{t}_csv"), getattr(args, f"table{t}_md")
        if csv and md:
            report.write_table(build(runs, args.datasets), csv, md, titles[t], notes + list(report.FINE_GRAINED_NOTES))
    verdicts = evaluate_claims(claims.CLAIMS, claims.results_table(args.metrics), row_label=claims.row_label)
    write_claims(verdicts, args.claims_csv, args.claims_md, title="SSDML claims")


def _figure2(args: argparse.Namespace) -> None:
    from dmlrepro.papers.ssdml import figure2
    from dmlrepro.papers.ssdml.paper_values import DATASET_LABELS
    convergence = {"ours_no_orth": figure2.read_histories(args.histories_no_orth),
                   "ours": figure2.read_histories(args.histories_ours)}
    alpha = figure2.read_alpha_runs(args.alpha_metrics)
    embeddings, labels = figure2.test_embeddings(
        args.dataset, args.raw_root, args.split, {"ours_no_orth": args.model_no_orth, "ours": args.model_ours},
        json_argument(args.model), json_argument(args.method), args.seed, args.points, args.retrieval_space, args.device)
    figure2.plot_figure2(args.out, convergence, alpha, embeddings, labels, args.seed,
                         DATASET_LABELS.get(args.dataset, args.dataset), args.paper_alpha)


def register(sub: argparse._SubParsersAction) -> None:
    def common(s):
        s.add_argument("--dataset", required=True)
        s.add_argument("--raw-root", required=True)
        s.add_argument("--device", default="cpu")
        s.add_argument("--split", required=True, help="split JSON written by image-split")
        s.add_argument("--seed", type=int, required=True)
        s.add_argument("--recall-ks", type=int, nargs="+", default=[1, 2, 4, 8])
        s.add_argument("--init", default=None, help="ImageNet weights of a pretrained backbone (model.pretrained)")

    s = sub.add_parser("ssdml-train", help="SSDML: one Algorithm-1 run (w/ or w/o orth)")
    common(s)
    s.add_argument("--method", required=True)
    s.add_argument("--params", required=True, help="JSON with keys method, model, train")
    s.add_argument("--out-dir", required=True)
    s.add_argument("--tuning-point", type=int, default=None, help="the run is this point of the tuning grid")
    s.set_defaults(func=_train)

    s = sub.add_parser("ssdml-initial", help="SSDML: the Initial row (the randomly initialised network)")
    common(s)
    s.add_argument("--model", required=True, help="JSON: the model config")
    s.add_argument("--method", default="{}", help="JSON: the method config (metric_dim: the initial L's l)")
    s.add_argument("--retrieval-space", default="after_L", choices=["after_L", "before_L"])
    s.add_argument("--train", default="{}", help="JSON: the train config (pretrain, labels_per_class)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=_initial)

    s = sub.add_parser("ssdml-figure2", help="SSDML: Figure 2 (convergence, sensitivity to alpha, t-SNE)")
    common(s)
    s.add_argument("--histories-ours", nargs="+", required=True, help="history.csv of the w/ orth runs")
    s.add_argument("--histories-no-orth", nargs="+", required=True, help="history.csv of the w/o orth runs")
    s.add_argument("--alpha-metrics", nargs="+", required=True, help="metrics.json of the alpha runs")
    s.add_argument("--model-ours", required=True, help="model.pt of the seed's w/ orth run")
    s.add_argument("--model-no-orth", required=True, help="model.pt of the seed's w/o orth run")
    s.add_argument("--model", default="{}", help="JSON: the model config")
    s.add_argument("--method", default="{}", help="JSON: the method config (metric_dim)")
    s.add_argument("--retrieval-space", default="after_L", choices=["after_L", "before_L"])
    s.add_argument("--points", type=int, default=2000, help="test images in the t-SNE")
    s.add_argument("--paper-alpha", type=float, default=None)
    s.add_argument("--out", required=True, help="PNG (a PDF is written beside)")
    s.set_defaults(func=_figure2)

    s = sub.add_parser("ssdml-tables", help="SSDML: Tables 1 and 4 and the claims")
    s.add_argument("--metrics", nargs="+", required=True)
    s.add_argument("--datasets", nargs="+", required=True)
    s.add_argument("--note", action="append", default=[])
    for name in ("table1-csv", "table1-md", "table4-csv", "table4-md", "claims-csv", "claims-md"):
        s.add_argument(f"--{name}", required=True)
    for name in ("table2-csv", "table2-md", "table3-csv", "table3-md", "table5-csv", "table5-md"):
        s.add_argument(f"--{name}", default=None, help="the fine-grained tables (CUB, Cars), when configured")
    s.set_defaults(func=_tables)

    s = sub.add_parser("ssdml-tuning-table", help="SSDML: the validation grid of each method and the chosen values")
    s.add_argument("--metrics", nargs="+", required=True, help="metrics.json of the grid's runs")
    s.add_argument("--grid", required=True, help="JSON: method -> list of points (overrides of its method block)")
    s.add_argument("--note", action="append", default=[])
    s.add_argument("--out-csv", required=True)
    s.add_argument("--out-md", required=True)
    s.set_defaults(func=_tuning_table)
