# papers.wsset: config access and the paths WSSET's rules read and write (functions only). Its
# outputs live under results/wsset/: <dataset>/{pointsets,splits}.npz, emd.npy, split<k>/<method>/,
# the figure studies' runs, tables/, figures/, query_time/.
import collections
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


def study_flags(wildcards):
    """The command-line flag of a Fig. 4 point (its samples per class), for BERT (a run: train_argv)."""
    return " ".join(samples_flag(wildcards.get("point", "")))


def samples_flag(point):
    """A Fig. 4 point's samples per class, as command-line arguments (none elsewhere)."""
    return ["--samples-per-class", f"{point_setting(point)}"] if point and point_study(point) == "small_data" else []


def data_note(wildcards):
    """BERT's row note (a trained run's: run_note)."""
    return note(wildcards.dataset, wildcards.get("method", "bert_base"), wildcards.get("point", ""))


def note(dataset, method, point=""):
    """What a row used beyond its dataset: the external corpus of Ours+Ext., the study setting."""
    notes = []
    if method in TRAINED_METHODS and any(method_spec(m).external_init for m in transfer_chain(method)):
        corpus = external_corpus(dataset)
        cfg = dataset_cfg(corpus)
        size = f", {cfg['max_documents']} documents" if cfg.get("max_documents") else ""
        notes.append(f"external corpus: {catalog_name(corpus)}{size}")
    if point and point_study(point) == "small_data":
        notes.append(f"{point_setting(point)} train documents per class on average")
    elif point:
        notes.append(f"c = {point_setting(point):g}")
    return "; ".join(notes)


def recall_ks(wildcards):
    return dataset_recall_ks(wildcards.dataset)


def dataset_recall_ks(dataset):
    return WSSET["evaluation"].get("recall_ks", {}).get(dataset, [1, 5, 10])


# --------------------------------------------------------------- one trained run and its command
# A trained run is (dataset, split, method) of Tables I/II, at a figure study's point (Figs. 4 and 6:
# `point`, its key) or of a training-budget encoder (`encoder`). Its inputs, directory, log and
# `dmlrepro train` arguments come from the functions below only, whether the run is a job of its own
# (train.smk: train_embedder and the rules that reuse it) or one command of a batch (batch_runs).
WssetRun = collections.namedtuple("WssetRun", ["dataset", "split", "method", "point", "encoder"], defaults=["", ""])


def run_of(wildcards):
    """The run a job of train_embedder (or of a rule reusing it) trains, from its wildcards."""
    return WssetRun(wildcards.dataset, int(wildcards.split), wildcards.method, wildcards.get("point", ""),
                    wildcards.get("encoder", ""))


def split_dir(dataset, split, point=""):
    """The directory of one split's runs: results/wsset/<dataset>[/<point>]/split<k>."""
    return f"results/wsset/{dataset}/{point}/split{split}" if point else f"results/wsset/{dataset}/split{split}"


def run_dir(run):
    if run.encoder:
        return f"results/wsset/{run.dataset}/budget/{run.encoder}/split{run.split}/{run.method}"
    return f"{split_dir(run.dataset, run.split, run.point)}/{run.method}"


def run_log(run):
    """logs/ mirrors results/wsset/: logs/<dataset>[/<point> | /budget/<encoder>]/split<k>/<method>/train.log."""
    return f"logs/{run_dir(run).removeprefix('results/wsset/')}/train.log"


def run_outputs(run):
    return {name: f"{run_dir(run)}/{file}" for name, file in RUN_FILES.items()}


RUN_FILES = {"model": "model.pt", "history": "history.csv", "embeddings": "embeddings.npy", "metrics": "metrics.json"}


def run_inputs(run):
    """Pointsets and splits; the EMD matrix for EMD-based methods; the model a transfer stage starts
    from (a budget run's: the Table I/II run of its split); a validation search's choice (tuning.apply)."""
    spec = method_spec(run.method)
    inputs = {"pointsets": f"results/wsset/{run.dataset}/pointsets.npz",
              "splits": f"results/wsset/{run.dataset}/splits.npz"}
    if spec.uses_emd:
        inputs["emd"] = f"results/wsset/{run.dataset}/emd.npy"
    if spec.init_from:
        inputs["init"] = f"{split_dir(run.dataset, run.split, run.point)}/{spec.init_from}/model.pt"
    if spec.external_init:
        inputs["init"] = f"results/wsset/{external_corpus(run.dataset)}/external_base/model.pt"
    if tuned_result(run.dataset, run.method):
        inputs["tuned"] = tuned_result(run.dataset, run.method)
    return inputs


def train_params(run):
    """The run's --params: the method's parameters (at a Fig. 6 point, its c), encoder and schedule; a
    budget run's encoder overrides (by its key) and largest budget on top."""
    params = {"method_params": study_method_params(run.method, run.point), "model": architecture_cfg(run.method),
              "train": method_train_cfg(run.method, run.dataset)}
    if run.encoder:
        from dmlrepro.papers.wsset.studies import budget_train, encoder_model

        params["model"] = encoder_model(params["model"], WSSET_STUDIES["budget"], run.encoder)
        params["train"] = budget_train(params["train"], WSSET_STUDIES["budget"], run.encoder, run.dataset)
    return json.dumps(params, sort_keys=True)


def run_note(run):
    return f"budget study, encoder {run.encoder}" if run.encoder else note(run.dataset, run.method, run.point)


def train_argv(run, threads):
    """The run's `dmlrepro train` arguments: it trains, then scores itself on its test split."""
    inputs, out_dir = run_inputs(run), run_dir(run)
    options = {"emd": "--emd", "init": "--init-model", "tuned": "--tuned"}
    flags = [arg for key, option in options.items() if key in inputs for arg in (option, inputs[key])]
    return ["train", "--dataset", run.dataset, "--method", run.method, "--split", str(run.split),
            "--pointsets", inputs["pointsets"], "--splits", inputs["splits"], *flags, *samples_flag(run.point),
            "--params", train_params(run), "--out-dir", out_dir, "--threads", str(threads),
            "--metrics-out", run_outputs(run)["metrics"], "--recall-ks", *map(str, dataset_recall_ks(run.dataset)),
            "--knn-k", str(WSSET["evaluation"].get("knn_k", 10)), f"--data-note={run_note(run)}"]


def method_runs(method):
    """(dataset, split) pairs of a Table I/II method; ``method_scope`` may restrict them."""
    scope = WSSET.get("method_scope", {}).get(method, {})
    for d in scope.get("datasets", WSSET_DATASETS):
        for s in range(min(int(scope.get("splits", n_splits(d))), n_splits(d))):
            yield d, s


def run_dirs():
    return [f"results/wsset/{d}/split{s}/{m}" for m in WSSET["methods"] for d, s in method_runs(m)]


# ---------------------------------------------- batched runs (papers.wsset.batch_runs, train.smk)
# With batch_runs, the trained runs of one split of Tables I/II are one job, and so are the runs of
# one split of a figure study (all its points and methods): `dmlrepro batch` runs their commands
# (train_argv, each with its own log) in one interpreter, so torch, PML, scikit-learn and torch's
# compiler are imported once per batch instead of once per run (docs/workflow.md). A batch rule is
# one set of runs per split: Tables I/II get one rule per distinct set (method_scope makes the sets
# differ between splits), named by its wildcard, `{dataset_split}` (e.g. bbcsport/split0); a study's
# batches share one rule, `{dataset}` x `{split}`.
BatchRule = collections.namedtuple("BatchRule", ["name", "single_rule", "where", "dirs", "constraints", "batches"])


def with_bases(dataset, split, methods, point=""):
    """The runs of ``methods`` on one split, each transfer stage after the run it starts from
    (ours_int after wsset, ours_ext after wsset_ext)."""
    runs = []
    for method in methods:
        for stage in transfer_chain(method):  # earliest first
            if WssetRun(dataset, split, stage, point) not in runs:
                runs.append(WssetRun(dataset, split, stage, point))
    return runs


def table_batches():
    """{(dataset, split): its Table I/II runs, bases first}, datasets and splits in config order."""
    scoped = {m: set(method_runs(m)) for m in WSSET["methods"] if is_trained(m)}
    batches = {}
    for d in WSSET_DATASETS:
        for s in range(n_splits(d)):
            methods = [m for m in scoped if (d, s) in scoped[m]]
            if methods:
                batches[(d, s)] = with_bases(d, s, methods)
    return batches


def study_batches(study):
    """{(dataset, split): the runs of a figure study on that split, every point and method}."""
    cfg = WSSET_STUDIES.get(study)
    if not cfg:
        return {}
    methods = [m for m in cfg["methods"] if is_trained(m)] if study == "small_data" else ["wsset"]  # Fig. 6: WSSET's c
    datasets = cfg["datasets"] if study == "small_data" else [cfg["dataset"]]
    return {(d, s): [run for p in cfg.get("points", {}) for run in with_bases(d, s, methods, p)]
            for d in datasets for s in range(cfg.get("splits", 1))}


def batch_rules():
    """The rules of batch_runs (none without it)."""
    if not WSSET.get("batch_runs"):
        return []
    by_methods = {}  # Tables I/II: one rule per distinct set of runs
    for (d, s), runs in table_batches().items():
        by_methods.setdefault(tuple(r.method for r in runs), {})[(f"{d}/split{s}",)] = runs
    rules = [BatchRule("train_split_batch" + (f"_{i}" if len(by_methods) > 1 else ""), "train_embedder",
                       "{dataset_split}", [f"results/wsset/{{dataset_split}}/{m}" for m in methods],
                       {"dataset_split": "|".join(re.escape(key) for (key,) in batches)}, batches)
                 for i, (methods, batches) in enumerate(by_methods.items(), start=1)]
    for study in STUDY_SETTING:
        batches = {(d, str(s)): runs for (d, s), runs in study_batches(study).items() if runs}
        if batches:
            first = next(iter(batches.values()))
            rules.append(BatchRule(f"train_{study}_batch", "train_study_embedder", f"{{dataset}}/{study}/split{{split}}",
                                   [run_dir(WssetRun("{dataset}", "{split}", r.method, r.point)) for r in first],
                                   {"dataset": "|".join(re.escape(d) for d, _ in batches),
                                    "split": "|".join(sorted({s for _, s in batches}))}, batches))
    return rules


def batch_of(rule, wildcards):
    return rule.batches[tuple(wildcards[w] for w in rule.constraints)]


def batch_inputs(rule):
    """A batch rule's input function: its runs' inputs but what the batch itself trains."""
    def inputs(wildcards):
        runs = batch_of(rule, wildcards)
        own = {f"{run_dir(r)}/model.pt" for r in runs}
        return [f for f in dict.fromkeys(f for r in runs for f in run_inputs(r).values()) if f not in own]
    return inputs


def batch_jobs(rule):
    """A batch rule's --jobs: each run's train_argv and log, in the batch's order (bases first)."""
    def jobs(wildcards, threads):
        return json.dumps([{"argv": train_argv(r, threads), "log": run_log(r)} for r in batch_of(rule, wildcards)])
    return jobs


def batch_outputs(rule):
    return {name: [f"{d}/{file}" for d in rule.dirs] for name, file in RUN_FILES.items()}


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
