# papers.wsset: config access and the paths WSSET's rules read and write (functions only). Its
# outputs live under results/wsset/: <dataset>/{pointsets,splits}.npz, emd.npy, split<k>/<method>/,
# the figure studies' runs, tables/, figures/, query_time/.
import re

from dmlrepro.data.catalog import DATASETS as CATALOG_DATASETS, RAW_FILES, STOP_WORDS_115, WORD_VECTORS, raw_files_for
from dmlrepro.data.text_corpora import USER_FORMATS
from dmlrepro.papers.wsset.methods import TRAINED_METHODS, method_spec, schedule_source, transfer_chain
from dmlrepro.papers.wsset.tuning import merge_train
from dmlrepro.papers.wsset.paper_values import dataset_label


WSSET = config["papers"]["wsset"]
validate(WSSET, "../../schemas/papers/wsset.schema.yaml")

WSSET_DATASETS = list(WSSET["datasets"])  # the rows of Tables I/II
# collections built (and EMD'd when needed) like datasets, never rows of the tables: Ours+Ext.'s
# external corpus, Fig. 5's timing gallery
WSSET_CORPORA = list(WSSET.get("corpora", {}))
WSSET_STUDIES = WSSET.get("studies", {})
WSSET_TUNING = WSSET.get("tuning", {})  # validation search of each method's lr x epochs (papers/wsset/tuning.smk)


def check_wsset_config():
    """What the schema cannot say: names that must refer to configured datasets or corpora."""
    for name, cfg in WSSET["datasets"].items():
        check_dataset_source(name, cfg)
        if cfg.get("external") and cfg["external"] not in WSSET_CORPORA:
            raise WorkflowError(f"papers.wsset.datasets.{name}.external: '{cfg['external']}' is not a key of corpora")
    if "ours_ext" in WSSET["methods"]:
        for d, _ in method_runs("ours_ext"):
            external_corpus(d)
    if "ours_ext" in WSSET_STUDIES.get("small_data", {}).get("methods", []):
        for d in WSSET_STUDIES["small_data"]["datasets"]:
            external_corpus(d)
    for method, scope in WSSET.get("method_scope", {}).items():
        for d in scope.get("datasets", []):
            if d not in WSSET_DATASETS:
                raise WorkflowError(f"papers.wsset.method_scope.{method}.datasets: unknown dataset '{d}' (configured: {WSSET_DATASETS})")
    for study, cfg in WSSET_STUDIES.items():
        allowed = WSSET_DATASETS + WSSET_CORPORA if study == "query_time" else WSSET_DATASETS
        for d in cfg.get("datasets", []) + ([cfg["dataset"]] if "dataset" in cfg else []):
            if d not in allowed:
                raise WorkflowError(f"papers.wsset.studies.{study}: unknown dataset '{d}' (configured: {allowed})")
        if study == "query_time" and dataset_cfg(cfg["dataset"]).get("source", "text") in USER_FORMATS:
            raise WorkflowError(f"papers.wsset.studies.query_time.dataset: '{cfg['dataset']}' is your own corpus; Fig. 5 times"
                                " queries on a catalogued corpus (time yours with dmlrepro search)")
        if cfg.get("model_from", WSSET_DATASETS[0]) not in WSSET_DATASETS:
            raise WorkflowError(f"papers.wsset.studies.{study}.model_from: unknown dataset '{cfg['model_from']}' (configured: {WSSET_DATASETS})")
    shared = set(study_points("small_data")) & set(study_points("c_grid"))
    if shared:
        raise WorkflowError(f"papers.wsset.studies: point key(s) {sorted(shared)} in both small_data.points and"
                            " c_grid.points; a key names one run directory, give each its own")
    for encoder, cfg in WSSET_STUDIES.get("budget", {}).get("encoders", {}).items():
        for d in (cfg or {}).get("datasets", []):
            if d not in WSSET_DATASETS:
                raise WorkflowError(f"papers.wsset.studies.budget.encoders.{encoder}.datasets: unknown dataset '{d}' (configured: {WSSET_DATASETS})")
    for name in WSSET_CORPORA:
        if name in WSSET_DATASETS:
            raise WorkflowError(f"papers.wsset.corpora.{name}: the name is also a dataset; give the corpus its own key")
    for method, params in WSSET.get("method_params", {}).items():
        for d in params.get("train_per_dataset", {}):
            if d not in WSSET_DATASETS:
                raise WorkflowError(f"papers.wsset.method_params.{method}.train_per_dataset: unknown dataset '{d}'"
                                    f" (configured: {WSSET_DATASETS})")
    for m in WSSET_TUNING.get("methods", []):
        if m not in TRAINED_METHODS or method_spec(m).schedule_of or method_spec(m).init_from:
            raise WorkflowError(f"papers.wsset.tuning.methods: '{m}' is not a trained method with a schedule of its own"
                                " (a transfer stage uses WSSET's)")
    for d in WSSET_TUNING.get("datasets", []):
        if d not in WSSET_DATASETS:
            raise WorkflowError(f"papers.wsset.tuning.datasets: unknown dataset '{d}' (configured: {WSSET_DATASETS})")
    for d in WSSET_TUNING.get("datasets", WSSET_DATASETS) if WSSET_TUNING else []:
        for k in WSSET_TUNING.get("splits", [0]):
            if k >= n_splits(d):
                raise WorkflowError(f"papers.wsset.tuning.splits: split {k} but datasets.{d} has {n_splits(d)}")


PAPER_DATASETS = ("bbcsport", "twitter", "amazon", "r8", "recipe")  # the catalogued rows of Tables I/II


def check_dataset_source(name, cfg):
    """A paper dataset is read from the catalog; your own corpus (tsv | folders | jsonl) from its path,
    under a name of its own."""
    if cfg.get("source", "text") in USER_FORMATS:
        if not cfg.get("path"):
            raise WorkflowError(f"papers.wsset.datasets.{name}: source {cfg['source']} needs path: <your corpus's file or folder>")
        if name in CATALOG_DATASETS or name in ("figures", "tables", "query_time"):
            raise WorkflowError(f"papers.wsset.datasets.{name}: the name of a catalogued dataset or of a results folder;"
                                " give your own corpus another name")
    elif name not in PAPER_DATASETS:
        raise WorkflowError(f"papers.wsset.datasets.{name}: not a dataset of the paper ({', '.join(PAPER_DATASETS)}); your own"
                            f" corpus needs source: {' | '.join(USER_FORMATS)} and path (docs/own-data.md)")
    elif cfg.get("path"):
        raise WorkflowError(f"papers.wsset.datasets.{name}.path: only your own corpus (source {' | '.join(USER_FORMATS)}) has a path")


def user_corpus_inputs(cfg):
    """What building your own corpus reads: its file or folder, the catalogued vectors and stop list
    (fetched into resources/raw) or your own files."""
    def own_or_raw(value):
        return f"resources/raw/{value}" if value in RAW_FILES else value

    inputs = [cfg["path"]]
    vectors = cfg.get("vectors", "glove50_subset")
    if vectors in WORD_VECTORS:
        relpath = WORD_VECTORS[vectors].relpath
        inputs += [f"resources/raw/{relpath}"] if relpath else []
    else:
        inputs.append(own_or_raw(vectors))
    stop = cfg.get("stop_words", "default")
    if stop:
        inputs.append(own_or_raw(STOP_WORDS_115 if stop == "default" else stop))
    return inputs


def dataset_cfg(dataset):
    return WSSET["datasets"].get(dataset) or WSSET["corpora"][dataset]


def build_cfg(dataset):
    """The keys that decide a dataset's pointsets and splits (others must not trigger a rebuild)."""
    return json.dumps({k: v for k, v in dataset_cfg(dataset).items() if k not in ("external", "emd_shards")},
                      sort_keys=True)


def catalog_name(dataset):
    return dataset_cfg(dataset).get("corpus", dataset)


def n_splits(dataset):
    return int(dataset_cfg(dataset).get("splits", {}).get("n", 5))


def n_shards(dataset):
    return int(dataset_cfg(dataset).get("emd_shards", WSSET.get("ot", {}).get("default_shards", 4)))


def raw_inputs(wildcards):
    cfg = dataset_cfg(wildcards.dataset)
    if cfg.get("source", "text") in USER_FORMATS:
        return user_corpus_inputs(cfg)
    relpaths = raw_files_for(catalog_name(wildcards.dataset), cfg.get("source", "text"),
                             cfg.get("vectors", "glove50_subset"), cfg.get("stop_words", "default"))
    return [f"resources/raw/{p}" for p in relpaths]


def bert_raw_inputs(wildcards):
    """BERT reads the dataset's raw text, whatever source the pointsets came from."""
    if dataset_cfg(wildcards.dataset).get("source", "text") in USER_FORMATS:
        return [dataset_cfg(wildcards.dataset)["path"]]
    return [f"resources/raw/{p}" for p in raw_files_for(catalog_name(wildcards.dataset), "text", None, None)]


def emd_shards(wildcards):
    n = n_shards(wildcards.dataset)
    return [f"results/wsset/{wildcards.dataset}/emd/shard_{s}_of_{n}.npz" for s in range(n)]


# ------------------------------------------------------------------------ methods and runs
def is_trained(method):
    return method in TRAINED_METHODS


def architecture_cfg(method):
    arch = method_spec(method).architecture
    if arch == "self_attention":
        return WSSET["model"]
    cfg = dict(WSSET.get("baseline_models", {}).get(arch, {}))
    cfg.setdefault("weight_feature", WSSET["model"].get("weight_feature", "count"))
    return cfg


def method_train_cfg(method, dataset=None):
    """``config['train']`` with the method's ``method_params.<m>.train`` (lr, epochs) on top, then
    its ``train_per_dataset.<dataset>`` (a choice made on that dataset's validation part); a
    transfer stage without its own takes its schedule source's (WSSET's, methods.py)."""
    params = WSSET.get("method_params", {})
    own = params.get(method, {})
    source = own if ("train" in own or "train_per_dataset" in own) else params.get(schedule_source(method), {})
    cfg = merge_train(WSSET["train"], source.get("train"))
    return merge_train(cfg, source.get("train_per_dataset", {}).get(dataset)) if dataset else cfg


def study_method_params(method, point=""):
    """The method's parameters; at a Fig. 6 point, WSSET's c is the point's."""
    # the schedule overrides are the trainer's train config, not parameters of the method
    params = {k: v for k, v in WSSET.get("method_params", {}).get(method, {}).items()
              if k not in ("train", "train_per_dataset")}
    if point and point_study(point) == "c_grid":
        params["c"] = float(point_setting(point))
    return params


def train_params(wildcards):
    return json.dumps({"method_params": study_method_params(wildcards.method, wildcards.get("point", "")),
                       "model": architecture_cfg(wildcards.method),
                       "train": method_train_cfg(wildcards.method, wildcards.dataset)},
                      sort_keys=True)


def schedule_overrides():
    """Table methods whose runs do not train with ``config['train']`` as is, for the tables' notes:
    {method: {lr, epochs}} from method_params.<m>.train, or the search's file under tuning.apply."""
    out = {}
    for m in WSSET["methods"]:
        if not is_trained(m):
            continue
        if any(tuned_result(d, m) for d, _ in method_runs(m)):
            out[m] = f"validation search, results/wsset/<dataset>/tuning/{schedule_source(m)}.json"
            continue
        diffs = {}
        for d in dict.fromkeys(d for d, _ in method_runs(m)):
            cfg = method_train_cfg(m, d)
            diffs[d] = {k: cfg[k] for k in ("lr", "epochs") if cfg.get(k) != WSSET["train"].get(k)}
        if len({json.dumps(v, sort_keys=True) for v in diffs.values()}) > 1:  # chosen per dataset
            out[m] = " / ".join(f"{dataset_label(d)}: " + (", ".join(f"{k} {v:g}" for k, v in sorted(diff.items())) or "default")
                                for d, diff in diffs.items())
        elif diffs and next(iter(diffs.values())):
            out[m] = next(iter(diffs.values()))
    return out


def tuning_runs():
    """(dataset, method) pairs of the validation search: each tuned method on each tuning dataset
    in its scope."""
    for m in WSSET_TUNING.get("methods", []):
        scoped = {d for d, _ in method_runs(m)}
        for d in WSSET_TUNING.get("datasets", WSSET_DATASETS):
            if d in scoped:
                yield d, m


def tuning_results():
    return [f"results/wsset/{d}/tuning/{m}.json" for d, m in tuning_runs()]


def tuned_result(dataset, method):
    """The search result a run reads its lr and epochs from (``tuning.apply``), or None."""
    source = schedule_source(method)
    if WSSET_TUNING.get("apply") and (dataset, source) in set(tuning_runs()):
        return f"results/wsset/{dataset}/tuning/{source}.json"
    return None


def external_corpus(dataset):
    corpus = dataset_cfg(dataset).get("external")
    if corpus is None:
        raise WorkflowError(f"dataset '{dataset}': Ours+Ext. needs 'external: <corpus>' (a key of corpora)")
    return corpus


def run_base(wildcards):
    point = wildcards.get("point")
    if point:
        return f"results/wsset/{wildcards.dataset}/{point}/split{wildcards.split}"
    return f"results/wsset/{wildcards.dataset}/split{wildcards.split}"


def train_inputs(wildcards):
    """Pointsets and splits; the EMD matrix for EMD-based methods; the model a transfer stage starts from."""
    spec = method_spec(wildcards.method)
    inputs = {"pointsets": f"results/wsset/{wildcards.dataset}/pointsets.npz",
              "splits": f"results/wsset/{wildcards.dataset}/splits.npz"}
    if spec.uses_emd:
        inputs["emd"] = f"results/wsset/{wildcards.dataset}/emd.npy"
    if spec.init_from:
        inputs["init"] = f"{run_base(wildcards)}/{spec.init_from}/model.pt"
    if spec.external_init:
        inputs["init"] = f"results/wsset/{external_corpus(wildcards.dataset)}/external_base/model.pt"
    if tuned_result(wildcards.dataset, wildcards.method):
        inputs["tuned"] = tuned_result(wildcards.dataset, wildcards.method)
    return inputs


def train_flags(wildcards, input):
    flags = []
    if "emd" in input.keys():
        flags.append(f"--emd {input.emd}")
    if "init" in input.keys():
        flags.append(f"--init-model {input.init}")
    if "tuned" in input.keys():
        flags.append(f"--tuned {input.tuned}")
    flags.append(study_flags(wildcards))
    return " ".join(flags)


def study_flags(wildcards):
    """The command-line flag of a Fig. 4 point (its samples per class), for the trainer and for BERT alike."""
    point = wildcards.get("point", "")
    return f"--samples-per-class {point_setting(point)}" if point and point_study(point) == "small_data" else ""


def data_note(wildcards):
    """What a row used beyond its dataset: the external corpus of Ours+Ext., the study setting."""
    notes = []
    method = wildcards.get("method", "bert_base")
    if method in TRAINED_METHODS and any(method_spec(m).external_init for m in transfer_chain(method)):
        corpus = external_corpus(wildcards.dataset)
        cfg = dataset_cfg(corpus)
        size = f", {cfg['max_documents']} documents" if cfg.get("max_documents") else ""
        notes.append(f"external corpus: {catalog_name(corpus)}{size}")
    point = wildcards.get("point", "")
    if point and point_study(point) == "small_data":
        notes.append(f"{point_setting(point)} train documents per class on average")
    elif point:
        notes.append(f"c = {point_setting(point):g}")
    return "; ".join(notes)


def recall_ks(wildcards):
    return WSSET["evaluation"].get("recall_ks", {}).get(wildcards.dataset, [1, 5, 10])


def method_runs(method):
    """(dataset, split) pairs of a Table I/II method; ``method_scope`` may restrict them."""
    scope = WSSET.get("method_scope", {}).get(method, {})
    for d in scope.get("datasets", WSSET_DATASETS):
        for s in range(min(int(scope.get("splits", n_splits(d))), n_splits(d))):
            yield d, s


def run_dirs():
    return [f"results/wsset/{d}/split{s}/{m}" for m in WSSET["methods"] for d, s in method_runs(m)]


# ------------------------------------------ figure studies (Figs. 4 and 6): override grids by key
# studies.<study>.points maps a key (the name of the point's run directory) to its setting; a
# point's setting is looked up by its key, never parsed from a path.
STUDY_SETTING = {"small_data": "samples_per_class", "c_grid": "c"}  # the x axis of Figs. 4 and 6


def study_points(study):
    return (WSSET_STUDIES.get(study) or {}).get("points", {})


def point_study(point):
    """The figure study whose grid holds ``point``."""
    for study in STUDY_SETTING:
        if point in study_points(study):
            return study
    raise WorkflowError(f"papers.wsset.studies: no study point '{point}' (small_data.points, c_grid.points)")


def point_setting(point):
    """A study point's setting (samples per class, or c), by its key."""
    study = point_study(point)
    return study_points(study)[point][STUDY_SETTING[study]]


def point_pattern(*studies):
    """The `point` wildcard of these studies' runs: exactly their keys."""
    return "|".join(re.escape(p) for study in studies for p in study_points(study)) or "no-study-point"


def study_runs(study):
    """(point, run directory) of a figure study's runs (Fig. 4: small data; Fig. 6: c grid)."""
    cfg = WSSET_STUDIES.get(study)
    if not cfg or study not in STUDY_SETTING:
        return []
    if study == "small_data":
        return [(p, f"results/wsset/{d}/{p}/split{s}/{m}") for d in cfg["datasets"] for p in cfg["points"]
                for s in range(cfg.get("splits", 1)) for m in cfg["methods"]]
    return [(p, f"results/wsset/{cfg['dataset']}/{p}/split{s}/wsset") for p in cfg["points"]
            for s in range(cfg.get("splits", 1))]


def study_manifest(study):
    """The study and claims commands' runs of a figure study: each run's metrics with its point and
    setting, by name (as the budget study's manifest)."""
    return json.dumps([{"point": p, "setting": point_setting(p), "metrics": f"{r}/metrics.json"}
                       for p, r in study_runs(study)])


# ------------------------------------------------- training-budget study (papers/wsset/studies.py)
def budget_runs():
    from dmlrepro.papers.wsset.studies import budget_runs as runs

    study = WSSET_STUDIES.get("budget")
    return runs(study, {d: n_splits(d) for d in study["datasets"]}) if study else []


def budget_train_params(wildcards):
    """train_params with the encoder's model overrides (by its key) and the largest budget."""
    from dmlrepro.papers.wsset.studies import budget_train, encoder_model

    params = json.loads(train_params(wildcards))
    params["model"] = encoder_model(params["model"], WSSET_STUDIES["budget"], wildcards.encoder)
    params["train"] = budget_train(params["train"], WSSET_STUDIES["budget"], wildcards.encoder, wildcards.dataset)
    return json.dumps(params, sort_keys=True)


def budget_manifest(wildcards=None):
    """The budget command's --runs: each run's setting and budgets by name, not from its path."""
    from dmlrepro.papers.wsset.studies import encoder_epochs

    return json.dumps([{"dataset": r.dataset, "method": r.method, "encoder": r.encoder, "split": r.split,
                        "budgets": encoder_epochs(WSSET_STUDIES["budget"], r.encoder, r.dataset),
                        "history": f"{r.run_dir}/history.csv", "metrics": f"{r.run_dir}/metrics.json"}
                       for r in budget_runs()])


def budget_wmd_metrics():
    return sorted({f"results/wsset/{r.dataset}/split{r.split}/wmd_knn/metrics.json" for r in budget_runs()})


def all_metrics(wildcards=None):
    return [f"{r}/metrics.json" for r in run_dirs()]


def study_metrics(study):
    return [f"{r}/metrics.json" for _, r in study_runs(study)]


def study_figures():
    """The figures of the studies the config asks for (Figs. 4, 5, 6)."""
    figures = {"small_data": "results/wsset/figures/fig4_small_data.png", "c_grid": "results/wsset/figures/fig6_c_grid.png",
               "query_time": "results/wsset/figures/fig5_query_time.png", "budget": "results/wsset/figures/budget.png"}
    return [figures[s] for s in WSSET_STUDIES if s in figures]


def learned_run_dirs():
    return [r for r in run_dirs() if is_trained(r.rsplit("/", 1)[1])]


def all_curves(wildcards=None):
    return [f"results/wsset/figures/curves/{'_'.join(run.split('/')[2:])}.png" for run in learned_run_dirs()]


check_wsset_config()
