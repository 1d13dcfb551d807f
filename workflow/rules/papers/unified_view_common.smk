# papers.unified_view (paper 004, RAW + VTHM): config access and the paths its rules read and write
# (functions only).

UNIFIED_VIEW = config["papers"]["unified_view"]
validate(UNIFIED_VIEW, "../../schemas/papers/unified_view.schema.yaml")

UV_ROOT = "results/unified_view"
UV_SEEDS = UNIFIED_VIEW["seeds"]
UV_FIGURE1 = f"{UV_ROOT}/figures/figure1_pair_weights.png"
UV_ROWS = list(UNIFIED_VIEW["methods"])
UV_BATCHED = UNIFIED_VIEW.get("batch_rows", [])


def uv_cfg(dataset):
    return UNIFIED_VIEW["datasets"][dataset]


def uv_raw(dataset):
    return f"resources/images/{dataset}.json"


def uv_init(dataset):
    """What a run starts from: a backbone pretrained on another dataset (the foundation's when it is
    the same), the catalog's ImageNet weights, or nothing."""
    cfg = uv_cfg(dataset)
    if cfg.get("pretrain"):
        return shared_pretrained(cfg["pretrain"], "unified_view") or f"{UV_ROOT}/{dataset}/pretrained.pt"
    if cfg["model"].get("pretrained") is True:
        return weights_path(cfg["model"]["backbone"])
    return cfg["model"].get("pretrained") or []


def _uv_initial_key(cfg):
    """What the Initial row's numbers depend on: the backbone and its pretraining, the test part of
    the split (not the validation carve-out), the Ks."""
    protocol = {k: v for k, v in cfg["protocol"].items() if k not in ("val_fraction", "val_by")}
    model = {k: cfg["model"].get(k) for k in ("backbone", "pooling", "pretrained")}
    return (cfg.get("pretrain"), protocol, model, list(cfg.get("recall_ks", [1, 2, 4, 8])))


def uv_initial(dataset, seed):
    """The Initial row of ``dataset`` and ``seed``: the image foundation's when it measures the same
    thing (same pretrained backbone, same test part, same Ks, same seed), else our own."""
    foundation = config["papers"].get("image_foundation", {})
    cfg = foundation.get("datasets", {}).get(dataset)
    if cfg and int(seed) in foundation.get("seeds", []) and _uv_initial_key(cfg) == _uv_initial_key(uv_cfg(dataset)):
        return f"results/image_foundation/{dataset}/seed{seed}/initial.json"
    return f"{UV_ROOT}/{dataset}/seed{seed}/initial.json"


def uv_ks(dataset):
    return " ".join(str(k) for k in uv_cfg(dataset).get("recall_ks", [1, 2, 4, 8]))


def uv_device(dataset):
    return uv_cfg(dataset)["train"].get("device", "cpu")


def uv_resource(dataset, key, default):
    return uv_cfg(dataset).get("resources", {}).get(key, default)


def uv_run_dir(dataset, seed, row):
    return f"{UV_ROOT}/{dataset}/seed{seed}/{row}"


def uv_train_argv(dataset, seed, row, split, init):
    """One Table 1 run's ``dmlrepro`` arguments (its own job, or one of a seed's batch)."""
    cfg = uv_cfg(dataset)
    spec = {"method": UNIFIED_VIEW["methods"][row], "model": cfg["model"], "train": cfg["train"]}
    return (["image-train", "--dataset", dataset, "--raw-root", "resources/images", "--split", split,
             "--seed", str(seed), "--method", row, "--params", json.dumps(spec, sort_keys=True)]
            + (["--init", init] if init else []) + ["--recall-ks", *uv_ks(dataset).split(),
            "--device", uv_device(dataset), "--out-dir", uv_run_dir(dataset, seed, row)])


def uv_metrics(dataset):
    """Every run of ``dataset``: Table 1's configured rows x seeds."""
    return [f"{UV_ROOT}/{dataset}/seed{s}/{row}/metrics.json" for row in UNIFIED_VIEW["methods"] for s in UV_SEEDS]


def uv_table_inputs(dataset):
    """Table 1's inputs: the Initial row per seed, then the runs."""
    return [uv_initial(dataset, s) for s in UV_SEEDS] + uv_metrics(dataset)


def uv_all_metrics():
    """The claims' inputs: every run of every dataset (the Initial row is in no claim)."""
    return [path for dataset in UNIFIED_VIEW["datasets"] for path in uv_metrics(dataset)]


def uv_targets():
    tables = [f"{UV_ROOT}/tables/table1_{d}.md" for d in UNIFIED_VIEW["datasets"]]
    return tables + [f"{UV_ROOT}/tables/claims.md", UV_FIGURE1]


def uv_data_note(dataset):
    cfg = uv_cfg(dataset)
    pre, p, t = cfg.get("pretrain"), cfg["protocol"], cfg["train"]
    origin = (f"{pre['backbone']} pretrained with labels on {pre['dataset']}" if pre else
              f"{cfg['model']['backbone']}, {'ImageNet weights' if cfg['model'].get('pretrained') else 'random init'}")
    classes = (f"classes {p['train_classes']} train, {p['test_classes']} test" if p.get("train_classes")
               else f"the {p.get('protocol', 'zero_shot')} split")
    schedule = (f"{t.get('epochs', 5)} epochs x {t.get('iterations', 100)} batches of {t.get('batch_size', 64)}"
                f" ({t.get('m', 4)} per class), {t.get('optimizer', 'adam')} lr {t.get('lr', 1e-4):g}")
    return f"{dataset}: {classes}; {origin}; {schedule}"
