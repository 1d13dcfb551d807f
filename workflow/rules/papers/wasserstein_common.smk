# papers.wasserstein (paper 002, Wasserstein DML): config access and the paths its rules read and
# write (functions only).

WASSERSTEIN = config["papers"]["wasserstein"]
validate(WASSERSTEIN, "../../schemas/papers/wasserstein.schema.yaml")

WASS_ROOT = "results/wasserstein"
WASS_SEEDS = WASSERSTEIN["seeds"]
WASS_ROWS = list(WASSERSTEIN["methods"])
WASS_BATCHED = WASSERSTEIN.get("batch_rows", [])


def wass_cfg(dataset):
    return WASSERSTEIN["datasets"][dataset]


def wass_raw(dataset):
    return f"resources/images/{dataset}.json"


def wass_init(dataset):
    """What a run starts from: a backbone pretrained on another dataset (the foundation's when it is
    the same), the catalog's ImageNet weights, or nothing."""
    cfg = wass_cfg(dataset)
    if cfg.get("pretrain"):
        return shared_pretrained(cfg["pretrain"], "wasserstein") or f"{WASS_ROOT}/{dataset}/pretrained.pt"
    if cfg["model"].get("pretrained") is True:
        return weights_path(cfg["model"]["backbone"])
    return cfg["model"].get("pretrained") or []


def wass_ks(dataset):
    return " ".join(str(k) for k in wass_cfg(dataset).get("recall_ks", [1, 4]))


def wass_device(dataset):
    return wass_cfg(dataset)["train"].get("device", "cpu")


def wass_resource(dataset, key, default):
    return wass_cfg(dataset).get("resources", {}).get(key, default)


def _merged(base, override):
    return {k: _merged(base.get(k, {}), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
            for k, v in {**base, **override}.items()}


def wass_method(dataset, row):
    """The row's spec, with the dataset's ``method_overrides`` for it merged in."""
    return _merged(WASSERSTEIN["methods"][row], wass_cfg(dataset).get("method_overrides", {}).get(row, {}))


def wass_params(dataset, row):
    """The JSON a run reads: the row's spec and the dataset's model, schedule, Sinkhorn and evaluation."""
    cfg = wass_cfg(dataset)
    return json.dumps({"method": wass_method(dataset, row), "model": cfg["model"], "train": cfg["train"],
                       "sinkhorn": cfg.get("sinkhorn", {}), "evaluation": cfg.get("evaluation", {})},
                      sort_keys=True)


def wass_run_dir(dataset, seed, row):
    return f"{WASS_ROOT}/{dataset}/seed{seed}/{row}"


def wass_train_argv(dataset, seed, row, split, init):
    """One run's ``dmlrepro`` arguments (its own job, or one of a seed's batch)."""
    return (["wass-train", "--dataset", dataset, "--raw-root", "resources/images", "--split", split,
             "--seed", str(seed), "--method", row, "--params", wass_params(dataset, row)]
            + (["--init", init] if init else []) + ["--recall-ks", *wass_ks(dataset).split(),
            "--device", wass_device(dataset), "--out-dir", wass_run_dir(dataset, seed, row)])


def wass_metrics(dataset):
    """Every run of ``dataset``: the configured rows x seeds."""
    return [f"{WASS_ROOT}/{dataset}/seed{s}/{row}/metrics.json" for row in WASSERSTEIN["methods"] for s in WASS_SEEDS]


def wass_all_metrics():
    return [path for dataset in WASSERSTEIN["datasets"] for path in wass_metrics(dataset)]


def wass_targets():
    tables = [f"{WASS_ROOT}/tables/table1_{d}.md" for d in WASSERSTEIN["datasets"]]
    return tables + [f"{WASS_ROOT}/tables/claims.md"]


def wass_data_note(dataset):
    cfg = wass_cfg(dataset)
    pre, p, t, m = cfg.get("pretrain"), cfg["protocol"], cfg["train"], cfg["model"]
    origin = (f"{pre['backbone']} pretrained with labels on {pre['dataset']}" if pre else
              f"{m['backbone']}, {'ImageNet weights' if m.get('pretrained') else 'random init'}")
    classes = (f"classes {p['train_classes']} train, {p['test_classes']} test" if p.get("train_classes")
               else f"the {p.get('protocol', 'zero_shot')} split")
    fit = f", {t['fit_per_class']} fit images per class" if t.get("fit_per_class") else ""
    clouds = f"clouds from {m.get('cloud_layer') or 'the last map'}, {m.get('embedding_dim', 128)}-D points"
    sk = cfg.get("sinkhorn", {})
    schedule = (f"{t.get('epochs', 5)} epochs x {t.get('iterations', 100)} batches of {t.get('batch_size', 112)}"
                f" ({t.get('m', 2)} per class), adam lr {t.get('lr', 1e-4):g}")
    return (f"Data: {dataset}: {classes}{fit}; {origin}; {clouds}; Sinkhorn blur {sk.get('blur', 0.05)},"
            f" scaling {sk.get('scaling', 0.9)}, p {sk.get('p', 2)}; {schedule}")
