# papers.image_foundation: config access and the paths its rules read and write (functions only).

IMAGE_FOUNDATION = config["papers"]["image_foundation"]
validate(IMAGE_FOUNDATION, "../../schemas/papers/image_foundation.schema.yaml")

IF_ROOT = "results/image_foundation"
IF_SEEDS = IMAGE_FOUNDATION["seeds"]
IF_METHODS = list(IMAGE_FOUNDATION["methods"])
IF_BATCHED = IMAGE_FOUNDATION.get("batch_rows", [])


def if_cfg(dataset):
    return IMAGE_FOUNDATION["datasets"][dataset]


def if_raw(dataset):
    return f"resources/images/{dataset}.json"


def if_init(dataset):
    """What a run starts from: the backbone pretrained on another dataset, catalog weights, or nothing."""
    cfg = if_cfg(dataset)
    if cfg.get("pretrain"):
        return f"{IF_ROOT}/{dataset}/pretrained.pt"
    if cfg["model"].get("pretrained") is True:
        return weights_path(cfg["model"]["backbone"])
    return cfg["model"].get("pretrained") or []


def if_ks(dataset):
    return " ".join(str(k) for k in if_cfg(dataset).get("recall_ks", [1, 2, 4, 8]))


def if_device(dataset):
    return if_cfg(dataset)["train"].get("device", "cpu")


def if_resource(dataset, key, default):
    return if_cfg(dataset).get("resources", {}).get(key, default)


def if_run_dir(dataset, seed, method):
    return f"{IF_ROOT}/{dataset}/seed{seed}/{method}"


def if_train_argv(dataset, seed, method):
    """One run's ``dmlrepro image-train`` arguments (its own job, or one of a seed's batch)."""
    cfg, init = if_cfg(dataset), if_init(dataset)
    spec = {"method": IMAGE_FOUNDATION["methods"][method], "model": cfg["model"], "train": cfg["train"]}
    return (["image-train", "--dataset", dataset, "--raw-root", "resources/images", "--split",
             f"{IF_ROOT}/{dataset}/splits/seed{seed}.json", "--seed", str(seed), "--method", method,
             "--params", json.dumps(spec, sort_keys=True)] + (["--init", init] if init else [])
            + ["--recall-ks", *if_ks(dataset).split(), "--device", if_device(dataset),
               "--out-dir", if_run_dir(dataset, seed, method)])


def if_metrics(dataset):
    runs = [f"{IF_ROOT}/{dataset}/seed{s}/{m}/metrics.json" for m in IMAGE_FOUNDATION["methods"] for s in IF_SEEDS]
    return [f"{IF_ROOT}/{dataset}/seed{s}/initial.json" for s in IF_SEEDS] + runs


def if_histories(dataset):
    return [p.replace("metrics.json", "history.csv") for p in if_metrics(dataset) if p.endswith("metrics.json")]


def if_targets():
    return [f"{IF_ROOT}/{kind}/{d}{ext}" for d in IMAGE_FOUNDATION["datasets"]
            for kind, ext in (("tables", ".md"), ("figures", "_curves.png"))]


def if_data_note(dataset):
    cfg = if_cfg(dataset)
    pre, p = cfg.get("pretrain"), cfg["protocol"]
    origin = (f"{pre['backbone']} pretrained with labels on {pre['dataset']}" if pre else
              f"{cfg['model']['backbone']}, {'ImageNet weights' if cfg['model'].get('pretrained') else 'random init'}")
    classes = (f"classes {p['train_classes']} train, {p['test_classes']} test" if p.get("train_classes")
               else f"the {p.get('protocol', 'zero_shot')} split")
    return f"{dataset}: {classes}; {origin}"


def if_table_notes(dataset):
    """The table's dataset-specific notes, as --note arguments."""
    cfg = if_cfg(dataset)
    if dataset in IMAGE_FOLDERS:
        notes = [f"Your own images (image_folders.{dataset}): no paper value to compare with."]
    elif dataset in ("mnist", "fashion_mnist"):
        notes = ["MNIST-family rows are the offline stand-in: a check of method, not comparable to any paper number."]
    else:
        notes = []
    initial = "pretrained" if cfg.get("pretrain") or cfg["model"].get("pretrained") else "randomly initialised"
    notes.append(f"Initial: one {initial} backbone shared by every seed, so its spread comes only from the clustering seed.")
    return " ".join(f"--note {shlex.quote(n)}" for n in notes)
