"""The Snakemake workflow: config validation, the paper's full DAG, lint, and a tiny real run."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import dry_run_train_commands

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile")]


def snakemake(workdir, *args, timeout=900):
    return subprocess.run(SNAKEMAKE + ["-d", str(workdir), *args], capture_output=True, text=True, timeout=timeout)


def job_counts(output: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", output, re.M)}


def repo_like_workdir(tmp_path: Path) -> Path:
    """A working directory that holds config/ like the repository root, so the Snakefile's embedded
    default (config/config.yaml, relative to the working directory) is found, as in a real run."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path


# `snakemake -n` per-rule job counts, recorded before a --configfile replaced the embedded default
# (config/config.yaml from the repository root: 140 jobs, unchanged). config/paper.yaml was 1061
# jobs from the root before (the default's method_scope, merged in, cut train_embedder to 84);
# these are its own 1277 jobs. Each config has one job more since: the claims step ("claims": 1).
# WSSET's jobs, unchanged by the image papers; the image foundation's are counted apart below.
DEFAULT_JOB_COUNTS = {
    "fetch_raw": 12, "build_pointsets": 4, "emd_shard": 7, "merge_emd": 3, "train_embedder": 42,
    "train_study_embedder": 40, "evaluate_wmd_knn": 6, "train_external_base": 1, "c_grid_figure": 1,
    "query_time": 1, "query_time_figure": 1, "small_data_figure": 1, "tables": 1, "training_curves": 1,
    "comparison_figures": 1, "html_report": 1, "all": 1, "claims": 1, "total": 125,
}
PAPER_JOB_COUNTS = {
    "fetch_raw": 17, "build_pointsets": 6, "bert_finetune": 15, "bert_study_finetune": 90, "emd_shard": 304,
    "merge_emd": 5, "train_embedder": 300, "train_study_embedder": 510, "evaluate_wmd_knn": 20,
    "train_external_base": 1, "c_grid_figure": 1, "query_time": 1, "query_time_figure": 1, "small_data_figure": 1,
    "tables": 1, "training_curves": 1, "comparison_figures": 1, "html_report": 1, "all": 1, "claims": 1,
    "train_budget_embedder": 40, "budget_figure": 1, "total": 1319,  # issue 18's budget study (2 x 2 x 2 x 5 runs)
}


def _image_sources(datasets: dict) -> set[str]:
    """Image datasets a paper block reads: its own and those its backbones are pretrained on."""
    return set(datasets) | {d["pretrain"]["dataset"] for d in datasets.values() if d.get("pretrain")}


def _imagenet_backbones(datasets: dict) -> set[str]:
    return {d["model"]["backbone"] for d in datasets.values() if d["model"].get("pretrained") is True}


def image_paper_counts(cfg: dict) -> dict[str, int]:
    """The image papers' jobs a config implies (papers.image_foundation, .ssdml, .unified_view,
    .wasserstein, .pl_manifolds).
    Raw files, prepared datasets, ImageNet weights and a pretraining they share are one job each."""
    from dmlrepro.data.images import IMAGE_DATASETS
    papers = cfg.get("papers", {})
    counts: dict[str, int] = {}
    sources: set[str] = set()
    backbones: set[str] = set()
    foundation = (papers.get("image_foundation") or {}).get("datasets", {})
    if foundation:
        block = papers["image_foundation"]
        runs = len(foundation) * len(block["seeds"])
        batched = len(block.get("batch_rows", [])) * len(block["seeds"])  # batch_rows: a seed's methods in one job
        counts |= {"image_foundation_split": len(foundation), "image_foundation_initial": runs,
                   "image_foundation_train": (runs - batched) * len(block["methods"]),
                   "image_foundation_train_seed": batched,
                   "image_foundation_table": len(foundation),
                   "image_foundation_pretrain": sum(1 for d in foundation.values() if d.get("pretrain"))}
        sources |= _image_sources(foundation)
        backbones |= _imagenet_backbones(foundation)
    ssdml = papers.get("ssdml")
    if ssdml:
        runs = len(ssdml["datasets"]) * len(ssdml["seeds"])
        scoped = sum(len([d for d in ssdml["datasets"] if d in m.get("datasets", ssdml["datasets"])])
                     for m in ssdml["methods"].values())  # a method may name its datasets
        # batch_rows: a seed's runs of the methods on every batched dataset in one job, the others one job each
        batched = ssdml.get("batch_rows", [])
        in_batch = [m for m in ssdml["methods"].values() if set(batched) <= set(m.get("datasets", ssdml["datasets"]))]
        counts |= {"ssdml_split": len(ssdml["datasets"]), "ssdml_initial": runs,
                   "ssdml_train": (scoped - len(batched) * len(in_batch)) * len(ssdml["seeds"]),
                   "ssdml_train_seed": len(batched) * len(ssdml["seeds"]), "ssdml_tables": 1}
        if ssdml.get("figure2"):  # one alpha run per alpha (one seed), or one job for all (batch_rows); one figure
            alphas = len(ssdml["figure2"].get("alphas", range(30, 65, 5)))
            sweep = ssdml["figure2"]["dataset"] in batched
            counts |= {"ssdml_alpha": 0 if sweep else alphas, "ssdml_alpha_sweep": int(sweep), "ssdml_figure2": 1}
        if ssdml.get("tuning"):  # one run per grid point, one table
            counts |= {"ssdml_tune": sum(len(p) for p in ssdml["tuning"]["grid"].values()), "ssdml_tuning_table": 1}
        sources |= set(ssdml["datasets"])
        backbones |= _imagenet_backbones(ssdml["datasets"])
    uv = papers.get("unified_view")
    if uv:
        datasets = uv["datasets"]
        shared_pretrains = [d["pretrain"] for d in foundation.values() if d.get("pretrain")]
        def initial_key(d):  # what the Initial row depends on (the foundation's is reused when equal)
            protocol = {k: v for k, v in d["protocol"].items() if k not in ("val_fraction", "val_by")}
            model = {k: d["model"].get(k) for k in ("backbone", "pooling", "pretrained")}
            return d.get("pretrain"), protocol, model, list(d.get("recall_ks", [1, 2, 4, 8]))
        shared_initial = [(name, s) for name, d in datasets.items() for s in uv["seeds"] if name in foundation
                          and s in papers["image_foundation"]["seeds"] and initial_key(foundation[name]) == initial_key(d)]
        counts |= {"unified_view_split": len(datasets),
                   "unified_view_initial": len(datasets) * len(uv["seeds"]) - len(shared_initial),
                   # batch_rows: one job per dataset and seed for all its rows, else one per row
                   "unified_view_train": sum(len(uv["seeds"]) * len(uv["methods"]) for d in datasets
                                             if d not in uv.get("batch_rows", [])),
                   "unified_view_train_seed": sum(len(uv["seeds"]) for d in datasets if d in uv.get("batch_rows", [])),
                   "unified_view_table": len(datasets), "unified_view_claims": 1, "unified_view_figure1": 1,
                   "unified_view_pretrain": sum(1 for d in datasets.values()
                                                if d.get("pretrain") and d["pretrain"] not in shared_pretrains)}
        sources |= _image_sources(datasets)
        backbones |= _imagenet_backbones(datasets)
    wass = papers.get("wasserstein")
    if wass:
        datasets = wass["datasets"]
        # a pretraining the foundation, the unified view or the PL manifolds already run is reused
        shared_pretrains = [d["pretrain"] for p in ("image_foundation", "unified_view", "pl_manifolds")
                            for d in (papers.get(p) or {}).get("datasets", {}).values() if d.get("pretrain")]
        counts |= {"wasserstein_split": len(datasets),
                   "wasserstein_train": sum(len(wass["seeds"]) * len(wass["methods"]) for d in datasets
                                            if d not in wass.get("batch_rows", [])),
                   "wasserstein_train_seed": sum(len(wass["seeds"]) for d in datasets
                                                 if d in wass.get("batch_rows", [])),
                   "wasserstein_table": len(datasets), "wasserstein_claims": 1,
                   "wasserstein_pretrain": sum(1 for d in datasets.values()
                                               if d.get("pretrain") and d["pretrain"] not in shared_pretrains)}
    plm = papers.get("pl_manifolds")
    if plm:
        from dmlrepro.papers.pl_manifolds.methods import TABLE1_ROWS, TABLE3_ROWS, figure3_runs
        datasets, seeds = plm["datasets"], plm["seeds"]
        # a pretraining the foundation or the unified view already run is reused
        shared_pretrains = [d["pretrain"] for p in ("image_foundation", "unified_view")
                            for d in (papers.get(p) or {}).get("datasets", {}).values() if d.get("pretrain")]
        fig3 = plm.get("figure3", {})
        runs = 0
        for name, d in datasets.items():
            keys = {(dim, s, r) for dim in d["dims"] for s in seeds for r in TABLE1_ROWS}
            if d.get("table3_dim"):
                keys |= {(d["table3_dim"], s, r) for s in seeds for r in TABLE3_ROWS}
            if d.get("figure3_dim"):
                keys |= {(d["figure3_dim"], s, r) for s in fig3.get("seeds", seeds)
                         for r in [*figure3_runs(fig3.get("grid")), "ours"]}
            if name in plm.get("batch_rows", []):  # batch_rows: one job (its own rule) per seed for all its runs
                counts |= {f"pl_manifolds_train_{name}_seed{s}": 1 for s in {s for _, s, _ in keys}}
            else:
                runs += len(keys)
        counts |= {"pl_manifolds_split": len(datasets), "pl_manifolds_initial": len(datasets) * len(seeds),
                   "pl_manifolds_train": runs, "pl_manifolds_tables": 1,
                   "pl_manifolds_supervision": sum(1 for d in datasets.values() if d.get("table2")),
                   "pl_manifolds_pretrain": sum(1 for d in datasets.values()
                                                if d.get("pretrain") and d["pretrain"] not in shared_pretrains)}
        sources |= _image_sources(datasets)
        backbones |= _imagenet_backbones(datasets)
    counts |= {"prepare_images": len(sources), "fetch_weights": len(backbones),
               "fetch_raw": sum(len(IMAGE_DATASETS[s].raw_files) for s in sources)}
    return {k: v for k, v in counts.items() if v}


def wsset_batch_counts(wsset: dict) -> dict[str, int]:
    """papers.wsset.batch_runs: one job per split of Tables I/II (one rule per distinct set of runs,
    numbered in dataset and split order) and one per split of each figure study."""
    from dmlrepro.papers.wsset.methods import TRAINED_METHODS, transfer_chain
    sets: dict[tuple, int] = {}
    for ds, ds_cfg in wsset["datasets"].items():
        for split in range(ds_cfg["splits"]["n"]):
            scoped = [m for m in wsset["methods"] if m in TRAINED_METHODS
                      and ds in wsset.get("method_scope", {}).get(m, {}).get("datasets", [ds])
                      and split < wsset.get("method_scope", {}).get(m, {}).get("splits", ds_cfg["splits"]["n"])]
            runs = tuple(dict.fromkeys(stage for m in scoped for stage in transfer_chain(m)))
            if runs:
                sets[runs] = sets.get(runs, 0) + 1
    counts = {"train_split_batch" + (f"_{i}" if len(sets) > 1 else ""): n for i, n in enumerate(sets.values(), start=1)}
    studies = wsset.get("studies", {})
    if studies.get("small_data"):
        counts["train_small_data_batch"] = len(studies["small_data"]["datasets"]) * studies["small_data"].get("splits", 1)
    if studies.get("c_grid"):
        counts["train_c_grid_batch"] = studies["c_grid"].get("splits", 1)
    return counts


def with_image_papers(wsset_counts: dict[str, int], cfg: dict) -> dict[str, int]:
    """WSSET's counts (its runs batched where papers.wsset.batch_runs says) plus the image papers' jobs."""
    counts = dict(wsset_counts)
    wsset = cfg.get("papers", {}).get("wsset", {})
    if wsset.get("batch_runs"):
        counts["total"] -= counts.pop("train_embedder", 0) + counts.pop("train_study_embedder", 0)
        counts |= wsset_batch_counts(wsset)
        counts["total"] += sum(wsset_batch_counts(wsset).values())
    for rule, n in image_paper_counts(cfg).items():
        if not n:  # a rule with no job is not listed by snakemake
            continue
        counts[rule] = counts.get(rule, 0) + n
        counts["total"] += n
    return counts


QUICK_JOB_COUNTS = {
    "fetch_raw": 4, "build_pointsets": 2, "emd_shard": 6, "merge_emd": 2, "evaluate_wmd_knn": 6,
    "train_embedder": 18, "tables": 1, "training_curves": 1, "comparison_figures": 1, "html_report": 1, "all": 1,
    "claims": 1, "total": 44,
}


def expected_training_runs(cfg: dict) -> tuple[set[str], set[str]]:
    """Run directories a WSSET block implies: Table I/II runs (with transfer stages), and study runs."""
    from dmlrepro.papers.wsset.methods import TRAINED_METHODS, transfer_chain
    runs, studies = set(), set()
    for method in cfg["methods"]:
        if method not in TRAINED_METHODS:
            continue
        scope = cfg.get("method_scope", {}).get(method, {})
        for ds in scope.get("datasets", list(cfg["datasets"])):
            for split in range(scope.get("splits", cfg["datasets"][ds]["splits"]["n"])):
                runs |= {f"results/wsset/{ds}/split{split}/{m}" for m in transfer_chain(method)}
    small = cfg.get("studies", {}).get("small_data")
    if small:  # a study point's runs live in the directory named by its key
        for ds in small["datasets"]:
            for point in small["points"]:
                for split in range(small.get("splits", 1)):
                    studies |= {f"results/wsset/{ds}/{point}/split{split}/{m}" for method in small["methods"]
                                if method in TRAINED_METHODS for m in transfer_chain(method)}
    grid = cfg.get("studies", {}).get("c_grid")
    if grid:
        studies |= {f"results/wsset/{grid['dataset']}/{point}/split{s}/wsset" for point in grid["points"]
                    for s in range(grid.get("splits", 1))}
    return runs, studies


def test_paper_config_builds_the_full_dag(tmp_path):
    res = snakemake(repo_like_workdir(tmp_path), "-n", "--configfile", "config/paper.yaml")
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    wsset = cfg["papers"]["wsset"]
    datasets = list(wsset["datasets"])
    assert set(datasets) == {"bbcsport", "twitter", "recipe", "amazon"}
    counts = job_counts(res.stdout)
    # nothing of the embedded default (its method_scope) merged in
    assert counts == with_image_papers(PAPER_JOB_COUNTS, cfg)
    runs, studies = expected_training_runs(wsset)
    assert counts["train_embedder"] == len(runs) and counts["train_study_embedder"] == len(studies)
    assert counts["evaluate_wmd_knn"] == len(datasets) * 5
    assert counts["emd_shard"] == sum(d["emd_shards"] for d in (wsset["datasets"] | wsset["corpora"]).values()
                                      if "emd_shards" in d)
    assert counts["bert_finetune"] == 3 * 5  # not on Recipe (no raw text)
    small = wsset["studies"]["small_data"]  # Fig. 4's dashed BERT line on the same subsamples
    assert counts["bert_study_finetune"] == len(small["datasets"]) * len(small["points"]) * small["splits"]
    assert "results/wsset/twitter/spc10/split4/bert_base/metrics.json" in res.stdout
    for run in runs | studies:
        assert f"{run}/model.pt" in res.stdout, run
    trained = [m for m in wsset["methods"] if m not in ("wmd_knn", "bert_base")]
    for ds in datasets:  # every dataset x split x method appears
        for split in range(5):
            for method in trained:
                assert f"results/wsset/{ds}/split{split}/{method}/metrics.json" in res.stdout
            assert f"results/wsset/{ds}/split{split}/wmd_knn/metrics.json" in res.stdout
            if ds != "recipe":
                assert f"results/wsset/{ds}/split{split}/bert_base/metrics.json" in res.stdout
        assert f"kusner-mat/{'recipe2' if ds == 'recipe' else ds}-emd_tr_te_split.mat" in res.stdout
    assert "kaggle/consumer-reviews-of-amazon-products.zip" in res.stdout  # Ours+Ext.'s corpus
    for fig in ("fig4_small_data", "fig5_query_time", "fig6_c_grid"):
        assert f"results/wsset/figures/{fig}.png" in res.stdout
    # the seven image datasets: downloads (URL + checksum in the catalog), training, evaluation
    from dmlrepro.data.images import IMAGE_DATASETS
    image = cfg["papers"]["image_foundation"]
    assert set(image["datasets"]) == set(IMAGE_DATASETS)
    for name, spec in IMAGE_DATASETS.items():
        for relpath in spec.raw_files:
            assert f"resources/raw/{relpath}" in res.stdout, relpath
        for seed in image["seeds"]:
            for method in image["methods"]:
                assert f"results/image_foundation/{name}/seed{seed}/{method}/metrics.json" in res.stdout
        assert f"results/image_foundation/tables/{name}.md" in res.stdout
    assert "resources/weights/imagenet/resnet50-19c8e357.pth" in res.stdout
    # SSDML: every row of Tables 1-5 on MNIST, Fashion-MNIST, CIFAR-10 (1, 4), CUB and Cars (2, 3, 5), 5 seeds
    ssdml = cfg["papers"]["ssdml"]
    assert set(ssdml["datasets"]) == {"mnist", "fashion_mnist", "cifar10", "cub200", "cars196"}
    assert len(ssdml["seeds"]) == 5 and "not_yet_supported" not in ssdml
    rows = {"mnist": ("ours", "ours_no_orth", "deep_lrml", "deep_seraph", "deep_isdml", "deep_apllr", "deep_apit"),
            "cub200": ("ours", "deep_lrml", "deep_seraph", "deep_isdml", "deep_apllr", "deep_apit", "triplet", "angular"),
            "cars196": ("ours", "deep_lrml", "deep_seraph", "deep_isdml", "deep_apllr", "deep_apit")}
    rows["fashion_mnist"] = rows["cifar10"] = rows["mnist"]
    for name in ssdml["datasets"]:
        for seed in ssdml["seeds"]:
            assert f"results/ssdml/{name}/seed{seed}/initial.json" in res.stdout
            for method in rows[name]:
                assert f"results/ssdml/{name}/seed{seed}/{method}/metrics.json" in res.stdout, (name, method)
    for table in ("table1", "table2", "table3", "table4", "table5"):
        assert f"results/ssdml/tables/{table}.md" in res.stdout
    # paper 004: every Table 1 row x dataset x seed, its tables, claims and Figure 1
    from dmlrepro.papers.unified_view.methods import ROWS
    uv = cfg["papers"]["unified_view"]
    assert set(uv["datasets"]) == {"cub200", "cars196", "sop", "inshop"} and list(uv["methods"]) == list(ROWS)
    for name in uv["datasets"]:
        for seed in uv["seeds"]:
            for row in ROWS:
                assert f"results/unified_view/{name}/seed{seed}/{row}/metrics.json" in res.stdout, (name, seed, row)
            assert f"results/unified_view/{name}/seed{seed}/initial.json" in res.stdout, (name, seed)
        assert f"results/unified_view/tables/table1_{name}.md" in res.stdout
    assert counts["unified_view_train"] == 4 * 3 * 7 and counts["unified_view_initial"] == 4 * 3
    # the paper's settings reach the run's command line (Sec. 6; batch 80 from the official code)
    jobs = re.split(r"\n(?=(?:local)?rule \w+:)", res.stdout)  # one block per planned job, in any order
    cub = next(j for j in jobs if j.startswith("rule unified_view_train:") and "--dataset cub200" in j)
    for setting in ('"backbone": "bn_inception"', '"embedding_dim": 512', '"lr": 1e-05', '"batch_size": 80',
                    '"m": 5', '"beta": 50.0', '--recall-ks 1 2 4 8 16 32'):
        assert setting in cub, setting
    assert "results/unified_view/tables/claims.md" in res.stdout
    assert "results/unified_view/figures/figure1_pair_weights.png" in res.stdout
    assert "resources/weights/imagenet/bn_inception-52deb4733.pth" in res.stdout
    # paper 002: a dataset's method_overrides reach its runs only (Roth's SOP Histogram has 11 nodes)
    hist = {d: next(j for j in jobs if j.startswith("rule wasserstein_train:") and f"--dataset {d}" in j
                    and "--method histogram" in j) for d in ("cub200", "sop")}
    assert '"n_bins": 10' in hist["sop"] and '"n_bins": 64' in hist["cub200"]
    # paper 003: Table 1 (Ours, STML* at 128 and 512) on CUB, Cars, SOP; Table 3 on CUB 512; Fig. 3 on CUB 128
    from dmlrepro.papers.pl_manifolds.methods import TABLE3_ROWS, figure3_runs
    plm = cfg["papers"]["pl_manifolds"]
    for name in ("cub200", "cars196", "sop"):
        for seed in plm["seeds"]:
            for dim in (128, 512):
                for row in ("ours", "stml"):
                    assert f"results/pl_manifolds/{name}/d{dim}/seed{seed}/{row}/metrics.json" in res.stdout
        assert f"results/pl_manifolds/{name}/table2.json" in res.stdout
    for seed in plm["seeds"]:
        for row in TABLE3_ROWS:
            assert f"results/pl_manifolds/cub200/d512/seed{seed}/{row}/metrics.json" in res.stdout
        for point in figure3_runs(plm["figure3"]["grid"]):
            assert f"results/pl_manifolds/cub200/d128/seed{seed}/{point}/metrics.json" in res.stdout
    assert "results/pl_manifolds/figures/figure3.png" in res.stdout
    assert "resources/weights/imagenet/googlenet.h5" in res.stdout


def test_default_config_targets_table_rows_and_figures(tmp_path):
    res = snakemake(repo_like_workdir(tmp_path), "-n", "--configfile", "config/config.yaml")
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    counts = job_counts(res.stdout)
    assert counts == with_image_papers(DEFAULT_JOB_COUNTS, cfg)
    runs, studies = expected_training_runs(cfg["papers"]["wsset"])
    commands = dry_run_train_commands(res.stdout)  # batch_runs: each run one command of its split's batch
    bases = {f"results/wsset/{d['external']}/external_base" for d in cfg["papers"]["wsset"]["datasets"].values()}
    assert set(commands) == runs | studies | bases
    assert counts["evaluate_wmd_knn"] == 2 * 3 and "bert_finetune" not in counts
    for run in runs | studies:
        assert f"{run}/metrics.json" in res.stdout, run
    for fig in ("fig4_small_data", "fig5_query_time", "fig6_c_grid"):
        assert f"results/wsset/figures/{fig}.png" in res.stdout
    # the claims step reads every Table I/II run and the Fig. 4/6 study runs, each study run with its
    # point's setting looked up by key in the config (the manifest), nothing parsed from its path
    wsset = cfg["papers"]["wsset"]
    claims_job = res.stdout.split("rule claims:", 1)[1].split("\n\n", 1)[0]
    assert "results/wsset/tables/claims.md" in claims_job
    manifests = {name: json.loads(m) for name, m in re.findall(r"--(small-data|c-grid)-runs '(\[.*?\])'", claims_job)}
    small, grid = wsset["studies"]["small_data"], wsset["studies"]["c_grid"]
    assert {(r["point"], r["setting"]) for r in manifests["small-data"]} == {
        (p, v["samples_per_class"]) for p, v in small["points"].items()}
    assert {(r["point"], r["setting"]) for r in manifests["c-grid"]} == {(p, v["c"]) for p, v in grid["points"].items()}
    assert [r["metrics"] for r in manifests["small-data"]] == [
        f"results/wsset/{d}/{p}/split{s}/{m}/metrics.json" for d in small["datasets"] for p in small["points"]
        for s in range(small["splits"]) for m in small["methods"]]
    assert {r["metrics"] for r in manifests["c-grid"]} <= {f"{run}/metrics.json" for run in studies}
    for r in manifests["small-data"]:  # the trainer and the data note read the same setting
        argv = commands[r["metrics"].removesuffix("/metrics.json")]["argv"]
        assert argv[argv.index("--samples-per-class") + 1] == str(r["setting"])
        assert argv[-1].endswith(f"{r['setting']} train documents per class on average")
    c7 = commands["results/wsset/twitter/c7/split0/wsset"]["argv"]
    assert json.loads(c7[c7.index("--params") + 1])["method_params"]["c"] == 7.0 and c7[-1] == "--data-note=c = 7"
    # paper 004 on the stand-ins: 7 rows x 3 seeds x {Fashion-MNIST, MNIST}; Fashion-MNIST from the image
    # foundation's pretrained LeNet and Initial rows (one pretraining), MNIST from its own (Fashion-MNIST)
    # ... each seed's seven rows in one job (batch_rows), each row with its own --out-dir and log
    assert counts["unified_view_train_seed"] == 6 and "unified_view_train" not in counts
    assert counts["unified_view_pretrain"] == 1
    assert counts["unified_view_initial"] == 3 and counts["image_foundation_pretrain"] == 1
    uv_jobs = res.stdout.split("rule unified_view_train_seed:")[1:]
    assert all(j.count("--out-dir") == 7 and j.count("/seed") >= 7 for j in (u.split("\n\n", 1)[0] for u in uv_jobs))
    assert any("results/image_foundation/fashion_mnist/pretrained.pt" in j.split("\n\n", 1)[0] for j in uv_jobs)
    assert any("results/unified_view/mnist/pretrained.pt" in j.split("\n\n", 1)[0] for j in uv_jobs)
    table_job = res.stdout.split("rule unified_view_table:", 1)[1].split("\n\n", 1)[0]
    assert "initial.json" in table_job
    # SSDML, the PL manifolds and the foundation batch a seed's runs too (batch_rows), each run with its
    # own --out-dir and log; Figure 2's seven alpha runs are one more batch
    def jobs(rule):
        return [j.split("\n\n", 1)[0] for j in res.stdout.split(f"rule {rule}:")[1:]]
    assert [j.count("--out-dir") for j in jobs("ssdml_train_seed")] == [7] * 6 and "ssdml_train" not in counts
    sweep = jobs("ssdml_alpha_sweep")
    assert len(sweep) == 1 and sweep[0].count("--out-dir") == 7 and '"alpha_deg\\": 30.0' in sweep[0]
    assert "logs/results/ssdml/mnist/seed0/alpha/60.log" in sweep[0]
    assert jobs("pl_manifolds_train_fashion_mnist_seed0")[0].count("--out-dir") == 10  # Tables 1, 3 and Fig. 3
    assert jobs("pl_manifolds_train_mnist_seed2")[0].count("--out-dir") == 2 and "pl_manifolds_train" not in counts
    assert [j.count("--out-dir") for j in jobs("image_foundation_train_seed")] == [2] * 3


def test_quick_config_is_the_self_supervised_core(tmp_path):
    # from a directory where the embedded default exists: the given file must replace it, not merge
    res = snakemake(repo_like_workdir(tmp_path), "-n", "--configfile", "config/quick.yaml")
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    assert counts == QUICK_JOB_COUNTS  # no figure studies, no transfer stage, no external corpus
    assert counts["train_embedder"] == 2 * 3 * 3 and counts["evaluate_wmd_knn"] == 2 * 3
    quick_all = yaml.safe_load((REPO / "config" / "quick.yaml").read_text())
    quick = quick_all["papers"]["wsset"]
    assert list(quick_all["papers"]) == ["wsset"]  # WSSET only: no image paper
    planned = set(re.findall(r"results/wsset/(\w+)/split(\d+)/(\w+)/metrics\.json", res.stdout))
    assert planned == {(d, str(s), m) for d in quick["datasets"] for s in range(3) for m in quick["methods"]}
    assert not re.search(r"results/wsset/\w+/(spc|c)[0-9.]+/", res.stdout) and "amazon" not in res.stdout
    # a whole config (not merged over the default), so it must not drift from the default's settings
    default_all = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    default = default_all["papers"]["wsset"]
    assert quick_all["data"] == default_all["data"]
    for key in ("model", "train", "evaluation", "ot"):
        assert quick[key] == default[key], key
    for name, dataset in quick["datasets"].items():
        assert dataset == {k: v for k, v in default["datasets"][name].items() if k != "external"}, name
    assert quick["method_params"] == {m: default["method_params"][m] for m in quick["method_params"]}


def test_no_arguments_run_the_embedded_default_and_config_overrides_apply(tmp_path):
    workdir = repo_like_workdir(tmp_path)
    res = snakemake(workdir, "-n")
    assert res.returncode == 0, res.stderr
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert job_counts(res.stdout) == with_image_papers(DEFAULT_JOB_COUNTS, default)
    # --config without --configfile: merged over the embedded default (its studies stay)
    res = snakemake(workdir, "-n", "--config", "papers={wsset: {methods: [wmd_knn, wsset]}}")
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    assert counts["train_split_batch"] == 2 * 3 and counts["train_small_data_batch"] == counts["train_c_grid_batch"] == 2
    # ... and over a --configfile
    res = snakemake(workdir, "-n", "--configfile", "config/quick.yaml", "--config", "papers={wsset: {methods: [wsset]}}")
    assert res.returncode == 0, res.stderr
    counts = job_counts(res.stdout)
    assert counts["train_embedder"] == 2 * 3 and "train_study_embedder" not in counts
    assert "evaluate_wmd_knn" not in counts


def test_workflow_lint_is_clean():
    res = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert "Congratulations, your workflow is in a good condition!" in res.stdout + res.stderr, res.stdout


WSSET_BLOCK = {"datasets": {"bbcsport": {"source": "text"}}, "methods": ["wsset"], "model": {}, "train": {},
               "evaluation": {}}


def write_config(path: Path, wsset: dict | None = None, **top) -> Path:
    """A config of a small WSSET block (``wsset``: its keys replaced) and the top-level keys ``top``; a
    ``papers`` given there replaces the papers, WSSET's block included."""
    cfg = {"papers": {"wsset": {**WSSET_BLOCK, **(wsset or {})}}, **top}
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("override,named", [
    ({"train": {"epohcs": 3}}, "epohcs"),  # papers.wsset.<key> replaced
    ({"baseline_models": {"deepsets": {"phi_dim": [8]}}}, "phi_dim"),
    ({"method_scope": {"wsset": {"datasets": ["twiter"]}}}, "twiter"),
    ({"datasets": {"bbcsport": {"source": "text", "external": "nowhere"}}}, "nowhere"),
    ({"studies": {"c_grid": {"dataset": "recipe", "points": {"c7": {"c": 7}}}}}, "recipe"),
    ({"studies": {"c_grid": {"dataset": "bbcsport", "points": {"split0": {"c": 7}}}}}, "split0"),
    ({"studies": {"c_grid": {"dataset": "bbcsport", "points": {"c7": {"c": 7}}},
                  "small_data": {"datasets": ["bbcsport"], "methods": ["wsset"],
                                 "points": {"c7": {"samples_per_class": 5}}}}}, "['c7'] in both"),
    ({"ot": {"engine": "sinkhorm"}}, "sinkhorm"),
    ({"ot": {"engine": "sinkhorn", "sinkhorn": {"regularisation": 0.1}}}, "regularisation"),
    ({"datasets": {"bbcsprot": {}}}, "bbcsprot"),
    ({"methods": ["wsset", "magic"]}, "magic"),
    ({"datasets": {"bbcsport": {"source": "pdf"}}}, "pdf"),
])
def test_bad_config_is_an_error_naming_the_key_or_value(tmp_path, override, named):
    res = snakemake(tmp_path, "-n", "--configfile", str(write_config(tmp_path / "c.yaml", wsset=override)))
    assert res.returncode != 0
    assert named in res.stdout + res.stderr


@pytest.mark.parametrize("key", ["methods", "datasets", "train", "studies", "ot"])
def test_a_top_level_wsset_key_names_its_new_place(tmp_path, key):
    """WSSET's keys moved under papers.wsset: the old layout is a one-line error saying where to."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({key: WSSET_BLOCK.get(key, {}), "papers": {"wsset": WSSET_BLOCK}}))
    res = snakemake(tmp_path, "-n", "--configfile", str(cfg))
    assert res.returncode != 0
    assert f"config: top-level '{key}' is WSSET's; move it under papers.wsset (config/README.md)" in res.stdout + res.stderr


def test_a_config_without_the_wsset_block_plans_no_wsset_job(tmp_path):
    """`rule all` is built from the configured papers: the default without papers.wsset is the image papers'
    jobs, the shared report and nothing of WSSET's."""
    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    del default["papers"]["wsset"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(default))
    res = snakemake(tmp_path, "-n", "-p", "--configfile", str(tmp_path / "c.yaml"))
    assert res.returncode == 0, res.stderr
    expected = image_paper_counts(default) | {"html_report": 1, "all": 1}
    assert job_counts(res.stdout) == expected | {"total": sum(expected.values())}
    assert "results/wsset" not in res.stdout and re.search(r"report --tables +--figures +--paper-outputs results/", res.stdout)


def test_failed_job_prints_its_one_line_error_on_the_console(tmp_path):
    """A job that fails (a raw file with neither mirror nor download) writes the CLI's one-line
    DmlReproError to its log, and the profile's show-failed-logs puts that log on the console."""
    cfg = write_config(tmp_path / "c.yaml", data={"mirror": str(tmp_path / "no-mirror"), "allow_download": False})
    relpath = "wmd-text/bbcsport/bbcsport-fulltext.zip"
    res = snakemake(tmp_path, f"resources/raw/{relpath}", "--workflow-profile", str(REPO / "profiles" / "default"),
                    "--cores", "1", "--retries", "0", "--configfile", str(cfg), timeout=300)
    assert res.returncode != 0
    errors = [line for line in (tmp_path / "logs" / "fetch" / f"{relpath}.log").read_text().splitlines()
              if " ERROR dmlrepro: " in line]
    assert len(errors) == 1 and relpath in errors[0], errors
    assert errors[0].split(" ERROR dmlrepro: ", 1)[1] in res.stdout + res.stderr


def test_every_shell_rule_sends_stderr_to_its_log():
    """Where the one-line error of a failed job lands: each rule's command ends in > {log} 2>&1."""
    for smk in sorted((REPO / "workflow" / "rules").rglob("*.smk")):
        for block in re.split(r"\n(?=rule |use rule )", smk.read_text())[1:]:
            if "    shell:" in block:
                command = block.split("    shell:", 1)[1]
                assert re.search(r"> \{log(:q)?\} 2>&1\"", command), (smk.name, block.splitlines()[0])


def test_profiles_show_failed_logs_and_make_run_names_its_profile():
    for profile in ("default", "slurm"):
        assert yaml.safe_load((REPO / "profiles" / profile / "config.yaml").read_text())["show-failed-logs"] is True
    makefile = (REPO / "Makefile").read_text()
    assert "PROFILE ?= profiles/default" in makefile
    run_recipe = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "snakemake --workflow-profile $(PROFILE) " in run_recipe


TINY_WSSET = {
    "datasets": {
        "bbcsport": {"source": "text", "max_documents": 40, "splits": {"n": 2, "seed": 0}, "emd_shards": 2,
                     "external": "reviews"},
        "twitter": {"source": "text", "stop_words": None, "empty_documents": "drop", "max_documents": 60,
                    "splits": {"n": 2, "seed": 0}, "emd_shards": 1},
    },
    "corpora": {
        "reviews": {"corpus": "amazon", "max_documents": 30, "empty_documents": "drop", "emd_shards": 1},
        "gallery": {"corpus": "amazon", "max_documents": 25, "empty_documents": "drop"},
    },
    "methods": ["wmd_knn", "wsset", "sset", "approx_emd", "deepsets_tl", "ours_int", "ours_ext"],
    "method_scope": {m: {"datasets": ["bbcsport"], "splits": 1} for m in ("deepsets_tl", "ours_int", "ours_ext")},
    "baseline_models": {"deepsets": {"phi_dims": [16], "head_dims": [16, 8]}},
    "model": {"layers": 1, "heads": 7, "ff_dim": 16, "dropout": 0.1, "head_dims": [16, 8], "d_model": 14},
    "train": {"epochs": 2, "batch_size": 16, "lr": 1.0e-3, "knn_k": 3, "device": "cpu", "threads": 1},
    "evaluation": {"knn_k": 3, "recall_ks": {"bbcsport": [5, 15], "twitter": [3, 6]}},
    "studies": {
        "small_data": {"datasets": ["twitter"], "points": {"spc6": {"samples_per_class": 6}},
                       "methods": ["selfattn_tl", "ours_int"]},
        "c_grid": {"dataset": "twitter", "points": {"c7": {"c": 7}, "c30": {"c": 30}}},
        "query_time": {"dataset": "gallery", "model_from": "bbcsport", "n_queries": 2},
    },
}
TINY = {
    "data": {"mirror": None, "allow_download": False},
    "papers": {"wsset": TINY_WSSET, "image_foundation": {
        "seeds": [0],
        "methods": {"multi_similarity": {"loss": {"name": "MultiSimilarityLoss"},
                                         "miner": {"name": "MultiSimilarityMiner"}}},
        "datasets": {"fashion_mnist": {
            "protocol": {"protocol": "zero_shot", "train_classes": [0, 1, 2, 3, 4], "test_classes": [5, 6, 7, 8, 9],
                         "val_by": "images"},
            "pretrain": {"dataset": "mnist", "backbone": "lenet_ssdml", "epochs": 1, "iterations": 3, "batch_size": 32},
            "model": {"backbone": "lenet_ssdml", "embedding_dim": 16},
            "train": {"epochs": 2, "iterations": 3, "batch_size": 20, "m": 4}}},
    }},
}


@pytest.mark.slow
def test_tiny_end_to_end_run_produces_tables_figures_and_report(tmp_path, shared_data):
    cfg = json.loads(json.dumps(TINY))
    cfg["data"]["mirror"] = str(shared_data)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    res = snakemake(tmp_path, "--cores", "2", "--configfile", str(tmp_path / "c.yaml"))
    assert res.returncode == 0, res.stderr[-3000:]
    table1 = (tmp_path / "results/wsset/tables/table1.md").read_text()
    for label in ("WMD", "Ours (WSSET)", "SSET", "Approx.EMD"):
        for dataset in ("BBCSport", "Twitter"):
            assert re.search(rf"\| {re.escape(label)}\s.*\| {dataset} ", table1), (label, dataset)
    for label in ("DeepSets+TL", "Ours+Int.", "Ours+Ext."):
        assert re.search(rf"\| {re.escape(label)}\s.*\| BBCSport ", table1), label
    assert re.search(r"\| BERT_BASE .*\| needs download", table1)  # kept visible, not run
    assert "| 95.0 " in table1 and "| 96.36 " in table1  # the paper's column
    assert "external corpus: amazon, 30 documents" in table1
    for m in ("wmd_knn", "wsset", "sset", "approx_emd"):
        rec = json.loads((tmp_path / f"results/wsset/bbcsport/split1/{m}/metrics.json").read_text())
        assert 0 <= rec["knn_accuracy"] <= 100 and set(rec["recall_at"]) == {"5", "15"}
    assert (tmp_path / "results/wsset/figures/curves/twitter_split0_wsset.png").stat().st_size > 1000
    for fig in ("fig4_small_data", "fig5_query_time", "fig6_c_grid"):
        assert (tmp_path / f"results/wsset/figures/{fig}.png").stat().st_size > 1000
    small = (tmp_path / "results/wsset/tables/fig4_small_data.csv").read_text()
    for m in ("selfattn_tl", "ours_int"):  # kNN labels only from the 6-per-class subsample, the same for both
        rec = json.loads((tmp_path / f"results/wsset/twitter/spc6/split0/{m}/metrics.json").read_text())
        assert rec["n_train"] == 6 * 3, rec["n_train"]
    assert "twitter,ours_int,6.0000,knn_accuracy" in small and "twitter,selfattn_tl,6.0000,knn_accuracy" in small
    grid = (tmp_path / "results/wsset/tables/fig6_c_grid.csv").read_text()
    assert "twitter,wsset,7.0000,R@3" in grid and "twitter,wsset,30.0000,R@6" in grid
    timing = json.loads((tmp_path / "results/wsset/query_time/gallery.json").read_text())
    assert timing["n_queries"] == 2 and timing["speedup_distance"]["classic_emd"] > 0
    html = (tmp_path / "results/report.html").read_text()
    assert "Ours (WSSET)" in html and "data:image/png;base64" in html and "905.9" in html
    # the raw files came from the mirror and were verified
    assert (tmp_path / "resources/raw/wmd-text/bbcsport/bbcsport-fulltext.zip").exists()
    # the image foundation's stand-in: table with the Initial row and the test-selection column, figure, report
    image_table = (tmp_path / "results/image_foundation/tables/fashion_mnist.md").read_text()
    assert "Initial (no metric learning)" in image_table and "Multi-Similarity" in image_table
    assert "R@1 if selected on test (inflated)" in image_table
    assert (tmp_path / "results/image_foundation/figures/fashion_mnist_curves.png").stat().st_size > 1000
    assert "image_foundation: fashion mnist" in html


def test_ssdml_tuning_overlay_and_fine_grained_jobs(tmp_path):
    """SSDML: the validation grid (config/ssdml_tuning.yaml merged over the default) is one run per point
    on the tuning seed plus a table; the paper config's CUB/Cars runs use R-MAC on the ImageNet GoogLeNet."""
    work = repo_like_workdir(tmp_path)
    res = snakemake(work, "-n", "-p", "results/ssdml/tables/tuning.md",
                    "--configfile", "config/config.yaml", "config/ssdml_tuning.yaml")
    assert res.returncode == 0, res.stderr
    grid = yaml.safe_load((REPO / "config" / "ssdml_tuning.yaml").read_text())["papers"]["ssdml"]["tuning"]
    counts = job_counts(res.stdout)
    assert counts["ssdml_tune"] == sum(len(p) for p in grid["grid"].values()) and counts["ssdml_tuning_table"] == 1
    for method, points in grid["grid"].items():
        for i in range(len(points)):
            assert f"results/ssdml/tuning/mnist/seed0/{method}/point{i}/metrics.json" in res.stdout
    assert "--tuning-point 2" in res.stdout and '"lam": 10.0' in res.stdout
    res = snakemake(work, "-n", "-p", "results/ssdml/cub200/seed0/ours/metrics.json",
                    "results/ssdml/cars196/seed1/deep_apit/metrics.json", "results/ssdml/cub200/seed0/angular/metrics.json",
                    "--configfile", "config/paper.yaml")
    assert res.returncode == 0, res.stderr
    train = [j for j in res.stdout.split("rule ssdml_train:")[1:]]
    assert len(train) == 3
    for job in train:
        assert '"pooling": "rmac"' in job and "--init resources/weights/" in job and '"k": 50' in job
    assert '"supervised_loss": {"name": "AngularLoss"}' in res.stdout
    assert '"protocol": "zero_shot"' in res.stdout
