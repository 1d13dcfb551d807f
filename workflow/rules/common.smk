# What every paper shares: the config read and validated (each paper's block by its own schema, in
# workflow/rules/papers/<paper>_common.smk), how a job calls the package, where a configured paper's
# rules live, and the image datasets and ImageNet weights several papers read.
import json
import shlex
import sys
from pathlib import Path

import yaml

SRC = Path(workflow.basedir).parent / "src"
if str(SRC) not in sys.path:  # the rules call into the package (catalogs, method tables)
    sys.path.insert(0, str(SRC))

# Every job runs the package from this checkout: with --use-conda in the rule's env, otherwise
# with the interpreter that runs Snakemake (the project's virtualenv), whatever PATH says.
_USES_CONDA = "conda" in {str(m).lower() for m in workflow.deployment_settings.deployment_method}
PYTHON = "python" if _USES_CONDA else sys.executable
DMLREPRO = f'PYTHONPATH="{SRC}${{PYTHONPATH:+:$PYTHONPATH}}" {PYTHON} -m dmlrepro'


def check_moved_keys():
    """WSSET's keys were top level before it became a block like the other papers: name the move."""
    schemas = Path(workflow.basedir) / "schemas"
    shared = yaml.safe_load((schemas / "config.schema.yaml").read_text())["properties"]
    wsset = yaml.safe_load((schemas / "papers" / "wsset.schema.yaml").read_text())["properties"]
    for key in config:
        if key not in shared and key in wsset:
            raise WorkflowError(f"config: top-level '{key}' is WSSET's; move it under papers.wsset (config/README.md)")


check_moved_keys()
validate(config, "../schemas/config.schema.yaml")

IMAGE_FOLDERS = config.get("image_folders", {})  # users' own images, by name


def check_image_folders():
    from dmlrepro.data.images import IMAGE_DATASETS

    for name in IMAGE_FOLDERS:
        if name in IMAGE_DATASETS:
            raise WorkflowError(f"image_folders.{name}: the name of a catalogued dataset; choose another")


check_image_folders()

# What the rules of each configured paper add (workflow/rules/papers/<paper>.smk):
PAPER_TARGETS = []  # its tables (.md) and figures (.png): default targets, in the report as "<paper>: <name>"
REPORT = {"tables": [], "figures": [], "curves": []}  # shown in the report first, under their own names (WSSET's)
TARGETS = []  # other default targets, not in the report (WSSET's validation-search table)


def image_raw_inputs(dataset):
    from dmlrepro.data.images import IMAGE_DATASETS

    if dataset in IMAGE_FOLDERS:  # a user's folder: read in place, nothing to fetch
        return []
    if dataset not in IMAGE_DATASETS:
        raise WorkflowError(f"image dataset '{dataset}': neither catalogued ({', '.join(IMAGE_DATASETS)})"
                            " nor declared under image_folders")
    return [f"resources/raw/{relpath}" for relpath in IMAGE_DATASETS[dataset].raw_files]


def image_source_args(dataset):
    """image-prepare's source: the fetched raw files, or the user's folder with its layout."""
    folder = IMAGE_FOLDERS.get(dataset)
    if folder is None:
        return "--raw-root resources/raw"
    args = f"--folder {shlex.quote(folder['root'])} --layout {folder['layout']} --test-fraction {folder['test_fraction']}"
    return args + (f" --split-file {shlex.quote(folder['split_file'])}" if folder.get("split_file") else "")


def weights_name(relpath):
    from dmlrepro.models.images import WEIGHTS

    names = [w.name for w in WEIGHTS.values() if w.relpath == relpath]
    if not names:
        raise WorkflowError(f"no catalogued weights file {relpath}")
    return names[0]


def weights_path(backbone):
    """The ImageNet weights a backbone's `pretrained: true` reads, under resources/weights."""
    from dmlrepro.models.images import DEFAULT_WEIGHTS, WEIGHTS

    if backbone not in DEFAULT_WEIGHTS:
        raise WorkflowError(f"image backbone '{backbone}' has no catalogued ImageNet weights (pretrained: true)")
    return f"resources/weights/{WEIGHTS[DEFAULT_WEIGHTS[backbone]].relpath}"


def paper_rules(paper):
    """Where a configured paper's rules live (workflow/rules/papers/<paper>.smk for a built-in
    package, <dir>/rules.smk for an out-of-tree one declared under paper_plugins)."""
    plugin = config.get("paper_plugins", {}).get(paper)
    path = Path(plugin) / "rules.smk" if plugin else Path(workflow.basedir) / "rules" / "papers" / f"{paper}.smk"
    if not path.is_file():
        known = sorted(p.stem for p in (Path(workflow.basedir) / "rules" / "papers").glob("*.smk")
                       if not p.stem.endswith("_common"))
        raise WorkflowError(f"papers.{paper}: {path} does not exist (built-in papers: {', '.join(known)};"
                            " an out-of-tree paper needs paper_plugins.<name>: <its directory>)")
    return str(path.resolve())


# image papers whose pretrained backbones a later one reuses, in this order: one pretraining job
# for each distinct pretrain block, not one per paper
PRETRAIN_PROVIDERS = ("image_foundation", "unified_view", "pl_manifolds", "wasserstein")


def shared_pretrained(pretrain, paper):
    """results/<p>/<dataset>/pretrained.pt of the first configured paper p before ``paper`` in
    PRETRAIN_PROVIDERS that pretrains the same way; None when none does."""
    for provider in PRETRAIN_PROVIDERS[: PRETRAIN_PROVIDERS.index(paper)]:
        for dataset, cfg in config.get("papers", {}).get(provider, {}).get("datasets", {}).items():
            if cfg.get("pretrain") == pretrain:
                return f"results/{provider}/{dataset}/pretrained.pt"
    return None


def image_batch_jobs(argvs):
    """``dmlrepro batch --jobs`` for the image papers' batch_rows jobs: each run's arguments with the
    log its own job writes, logs/<its --out-dir>.log."""
    return json.dumps([{"argv": argv, "log": f"logs/{argv[argv.index('--out-dir') + 1]}.log"} for argv in argvs])
