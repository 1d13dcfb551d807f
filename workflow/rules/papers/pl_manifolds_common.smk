# papers.pl_manifolds (paper 003, piecewise-linear manifolds, unsupervised): config access and the
# paths its rules read and write (functions only).
import shlex

from dmlrepro.papers.pl_manifolds.methods import TABLE1_ROWS, TABLE3_ROWS, figure3_runs, run_method  # noqa: E402

PL_MANIFOLDS = config["papers"]["pl_manifolds"]
validate(PL_MANIFOLDS, "../../schemas/papers/pl_manifolds.schema.yaml")

PLM_ROOT = "results/pl_manifolds"
PLM_SEEDS = PL_MANIFOLDS["seeds"]
PLM_FIGURE3 = PL_MANIFOLDS.get("figure3", {})
PLM_GRID = PLM_FIGURE3.get("grid", {})
PLM_BATCHED = PL_MANIFOLDS.get("batch_rows", [])


def plm_cfg(dataset):
    return PL_MANIFOLDS["datasets"][dataset]


def plm_raw(dataset):
    return f"resources/images/{dataset}.json"


def plm_init(dataset):
    """What a run starts from: a backbone pretrained on another dataset (the foundation's when it is
    the same), the catalog's ImageNet weights, or nothing."""
    cfg = plm_cfg(dataset)
    if cfg.get("pretrain"):
        return shared_pretrained(cfg["pretrain"], "pl_manifolds") or f"{PLM_ROOT}/{dataset}/pretrained.pt"
    if cfg["model"].get("pretrained") is True:
        return weights_path(cfg["model"]["backbone"])
    return cfg["model"].get("pretrained") or []


def plm_ks(dataset):
    return [int(k) for k in plm_cfg(dataset).get("recall_ks", [1, 2, 4, 8])]


def plm_device(dataset):
    return plm_cfg(dataset)["train"].get("device", "cpu")


def plm_resource(dataset, key, default):
    return plm_cfg(dataset).get("resources", {}).get(key, default)


def plm_runs(dataset):
    """(dim, seed, run) of every training run on ``dataset``: Table 1's rows at each dimension,
    Table 3's ablations at ``table3_dim``, Fig. 3's points at ``figure3_dim`` (its own seeds)."""
    cfg = plm_cfg(dataset)
    runs = {(dim, s, row) for dim in cfg["dims"] for s in PLM_SEEDS for row in TABLE1_ROWS if row in PL_MANIFOLDS["methods"]}
    if cfg.get("table3_dim"):
        runs |= {(cfg["table3_dim"], s, row) for s in PLM_SEEDS for row in TABLE3_ROWS if row in PL_MANIFOLDS["methods"]}
    if cfg.get("figure3_dim"):
        seeds = PLM_FIGURE3.get("seeds", PLM_SEEDS)
        runs |= {(cfg["figure3_dim"], s, name) for s in seeds for name in [*figure3_runs(PLM_GRID), "ours"]}
    return sorted(runs)


def plm_params(dataset, dim, run):
    cfg = plm_cfg(dataset)
    return {"method": run_method(run, PL_MANIFOLDS["methods"], PLM_GRID),
            "model": {**cfg["model"], "embedding_dim": int(dim)}, "train": cfg["train"]}


def plm_run_dir(dataset, dim, seed, run):
    return f"{PLM_ROOT}/{dataset}/d{dim}/seed{seed}/{run}"


def plm_train_argv(dataset, dim, seed, run):
    """One run's ``dmlrepro pl-train`` arguments (its own job, or one of a seed's batch)."""
    init = plm_init(dataset)
    return (["pl-train", "--dataset", dataset, "--raw-root", "resources/images", "--split",
             f"{PLM_ROOT}/{dataset}/splits/seed{seed}.json", "--seed", str(seed), "--run", run,
             "--params", json.dumps(plm_params(dataset, dim, run), sort_keys=True)] + (["--init", init] if init else [])
            + ["--recall-ks", *map(str, plm_ks(dataset)), "--device", plm_device(dataset),
               "--out-dir", plm_run_dir(dataset, dim, seed, run)])


def plm_batches():
    """(dataset, seed, [(dim, run), ...]) of each batch_rows job: every run of that seed."""
    return [(d, s, [(dim, run) for dim, seed, run in plm_runs(d) if seed == s])
            for d in PLM_BATCHED for s in sorted({seed for _, seed, _ in plm_runs(d)})]


def plm_metrics():
    return [f"{PLM_ROOT}/{d}/d{dim}/seed{s}/{run}/metrics.json" for d in PL_MANIFOLDS["datasets"]
            for dim, s, run in plm_runs(d)]


def plm_initial():
    return [f"{PLM_ROOT}/{d}/seed{s}/initial.json" for d in PL_MANIFOLDS["datasets"] for s in PLM_SEEDS]


def plm_supervision():
    return [f"{PLM_ROOT}/{d}/table2.json" for d, cfg in PL_MANIFOLDS["datasets"].items() if cfg.get("table2")]


def plm_run_names():
    return sorted({run for d in PL_MANIFOLDS["datasets"] for _, _, run in plm_runs(d)})


def plm_targets():
    return [f"{PLM_ROOT}/tables/{name}.md" for name in ("table1", "table2", "table3", "claims")] + [
        f"{PLM_ROOT}/figures/figure3.png"]


def plm_data_note(dataset):
    cfg = plm_cfg(dataset)
    pre, p, t = cfg.get("pretrain"), cfg["protocol"], cfg["train"]
    origin = (f"{pre['backbone']} pretrained with labels on {pre['dataset']}" if pre else
              f"{cfg['model']['backbone']}, {'ImageNet weights' if cfg['model'].get('pretrained') else 'random init'}")
    classes = (f"classes {p['train_classes']} train, {p['test_classes']} test" if p.get("train_classes")
               else f"the {p.get('protocol', 'zero_shot')} split")
    fit = f"{t['fit_subsample']} training images" if t.get("fit_subsample") else "all training images"
    schedule = (f"{fit}, {t.get('epochs', 5)} epochs of nearest-neighbour batches of {t.get('batch_size', 100)} images"
                f" x {t.get('views', 2)} views, adam lr {t.get('lr', 5e-4):g}")
    return f"{dataset}: {classes}; {origin}; {schedule}"


def plm_notes():
    return " ".join(f"--note {shlex.quote(n)}" for n in PL_MANIFOLDS.get("notes", []))
