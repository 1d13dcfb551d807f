# papers.ssdml: config access and the paths its rules read and write (functions only).
import shlex


SSDML = config["papers"]["ssdml"]
validate(SSDML, "../../schemas/papers/ssdml.schema.yaml")

SSDML_ROOT = "results/ssdml"
SSDML_SEEDS = SSDML["seeds"]
SSDML_BATCHED = SSDML.get("batch_rows", [])


def ssdml_cfg(dataset):
    return SSDML["datasets"][dataset]


def ssdml_raw(dataset):
    return f"resources/images/{dataset}.json"


def ssdml_ks(dataset):
    return " ".join(str(k) for k in ssdml_cfg(dataset).get("recall_ks", [1, 2, 4, 8]))


def ssdml_device(dataset):
    return ssdml_cfg(dataset)["train"].get("device", "cpu")


def ssdml_resource(dataset, key, default):
    return ssdml_cfg(dataset).get("resources", {}).get(key, default)


def ssdml_split_protocol(dataset):
    """same_class (MNIST, Fashion-MNIST, CIFAR-10: the dataset's test images) or zero_shot (CUB, Cars: the
    dataset's test classes); validation = a stratified share of each training class (val_by images)."""
    p = ssdml_cfg(dataset).get("protocol", {})
    return {"protocol": p.get("protocol", "same_class"), "val_fraction": p.get("val_fraction", 0.15),
            "val_by": "images"}


def ssdml_init(dataset):
    """The ImageNet weights file of a pretrained backbone (model.pretrained), else nothing."""
    model = ssdml_cfg(dataset).get("model", {})
    return [weights_path(model["backbone"])] if model.get("pretrained") else []


def ssdml_init_arg(dataset):
    files = ssdml_init(dataset)
    return f"--init {files[0]}" if files else ""


def ssdml_params(dataset, method):
    """The run's JSON: the dataset's method settings with the method's own (orthogonal, metric_step,
    params) on top."""
    cfg = ssdml_cfg(dataset)
    own = {k: v for k, v in SSDML["methods"][method].items() if k != "datasets"}
    return {"method": {**cfg.get("method", {}), **own}, "model": cfg.get("model", {}), "train": cfg["train"]}


def ssdml_method_datasets(method):
    return [d for d in SSDML["datasets"] if d in SSDML["methods"][method].get("datasets", SSDML["datasets"])]


def ssdml_batch_methods():
    """The methods a batched seed trains in one job: those on every batch_rows dataset (a method
    scoped to fewer datasets keeps one job per run there)."""
    return [m for m in SSDML["methods"] if all(d in ssdml_method_datasets(m) for d in SSDML_BATCHED)]


def ssdml_split(dataset, seed):
    return f"{SSDML_ROOT}/{dataset}/splits/seed{seed}.json"


def ssdml_train_argv(dataset, seed, method, params, out_dir):
    """One run's ``dmlrepro ssdml-train`` arguments (its own job, or one of a batch)."""
    return (["ssdml-train", "--dataset", dataset, "--raw-root", "resources/images", "--split", ssdml_split(dataset, seed),
             "--seed", str(seed), "--method", method, "--params", json.dumps(params, sort_keys=True),
             "--recall-ks", *ssdml_ks(dataset).split(), "--device", ssdml_device(dataset)]
            + ssdml_init_arg(dataset).split() + ["--out-dir", out_dir])


def ssdml_run_argv(dataset, seed, method):
    """A Table 1 run's arguments."""
    return ssdml_train_argv(dataset, seed, method, ssdml_params(dataset, method), ssdml_run_dir(dataset, seed, method))


def ssdml_alpha_argv(dataset, seed, alpha):
    """Figure 2's α run's arguments: Ours with α replaced (ssdml_alpha_params)."""
    return ssdml_train_argv(dataset, seed, "ours", ssdml_alpha_params(dataset, alpha),
                            f"{SSDML_ROOT}/{dataset}/seed{seed}/alpha/{alpha}")


def ssdml_metrics():
    out = []
    for d in SSDML["datasets"]:
        out += [f"{SSDML_ROOT}/{d}/seed{s}/initial.json" for s in SSDML_SEEDS]
        out += [f"{SSDML_ROOT}/{d}/seed{s}/{m}/metrics.json" for m in SSDML["methods"] for s in SSDML_SEEDS
                if d in ssdml_method_datasets(m)]
    return out


def ssdml_run_dir(dataset, seed, method):
    return f"{SSDML_ROOT}/{dataset}/seed{seed}/{method}"


def ssdml_run_file(dataset, seed, method, name):
    return f"{ssdml_run_dir(dataset, seed, method)}/{name}"


def ssdml_figure2():
    """papers.ssdml.figure2 (absent: no Figure 2), with its defaults."""
    fig = SSDML.get("figure2")
    if not fig:
        return None
    return {"alphas": list(range(30, 65, 5)), "train": {}, "tsne_points": 2000, **fig}


def ssdml_alpha_params(dataset, alpha):
    """An α run: Table 1's w/ orth settings with α replaced and figure2.train on top of the schedule."""
    params = ssdml_params(dataset, "ours")
    params["method"]["alpha_deg"] = float(alpha)
    params["train"] = {**params["train"], **ssdml_figure2()["train"]}
    return params


def ssdml_alphas():
    return [f"{a:g}" for a in ssdml_figure2()["alphas"]]


def ssdml_alpha_metrics():
    fig = ssdml_figure2()
    return [f"{SSDML_ROOT}/{fig['dataset']}/seed{fig['seed']}/alpha/{a}/metrics.json" for a in ssdml_alphas()]


def ssdml_tuning():
    """papers.ssdml.tuning (absent: no tuning stage): the validation grid per method."""
    tuning = SSDML.get("tuning")
    if not tuning:
        return None
    unknown = sorted(set(tuning["grid"]) - set(SSDML["methods"]))
    if unknown:
        raise ValueError(f"papers.ssdml.tuning.grid: {', '.join(unknown)} not in papers.ssdml.methods")
    return tuning


def ssdml_tuning_params(method, point):
    """A grid point's run: the method's Table-1 settings on the tuning dataset with the point's overrides
    (keys of the method block; ``params`` merged into the method's own)."""
    tuning = ssdml_tuning()
    params = ssdml_params(tuning["dataset"], method)
    for key, value in tuning["grid"][method][int(point)].items():
        if key == "params":
            params["method"]["params"] = {**params["method"].get("params", {}), **value}
        else:
            params["method"][key] = value
    return params


def ssdml_tuning_dir():
    tuning = ssdml_tuning()
    return f"{SSDML_ROOT}/tuning/{tuning['dataset']}/seed{tuning['seed']}"


def ssdml_tuning_metrics():
    tuning = ssdml_tuning()
    return [f"{ssdml_tuning_dir()}/{m}/point{i}/metrics.json" for m, points in tuning["grid"].items()
            for i in range(len(points))]


def ssdml_fine_grained():
    """Whether Tables 2, 3 and 5 are configured (a fine-grained dataset: CUB-200-2011, Cars-196)."""
    return any(d in ("cub200", "cars196") for d in SSDML["datasets"])


def ssdml_targets():
    out = [f"{SSDML_ROOT}/tables/{name}.md" for name in ("table1", "table4", "claims")]
    if ssdml_fine_grained():
        out += [f"{SSDML_ROOT}/tables/table{t}.md" for t in (2, 3, 5)]
    if ssdml_figure2():
        out.append(f"{SSDML_ROOT}/figures/figure2.png")
    if ssdml_tuning():
        out.append(f"{SSDML_ROOT}/tables/tuning.md")
    return out
