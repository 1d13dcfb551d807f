"""A paper plugs in without editing the workflow or the package: the toy paper under
tests/fixtures/toy_paper (one method, one published value, one claim) runs end to end from its
config block alone."""
import json
import re
from pathlib import Path

import yaml

from test_workflow import REPO, job_counts, snakemake, write_config

TOY_DIR = Path(__file__).parent / "fixtures" / "toy_paper"
TOY_BLOCK = {"seeds": [0, 1, 2], "methods": ["class_mean_projection", "initial"], "n_per_class": 100, "noise_dims": 20}


def toy_config(tmp_path: Path, **block) -> Path:
    return write_config(tmp_path / "c.yaml", papers={"toy_paper": {**TOY_BLOCK, **block}},
                        paper_plugins={"toy_paper": str(TOY_DIR)})


def test_toy_paper_runs_end_to_end_from_its_config_block(tmp_path):
    cfg = toy_config(tmp_path)
    dry = snakemake(tmp_path, "-n", "--configfile", str(cfg))
    assert dry.returncode == 0, dry.stderr[-2000:]
    counts = job_counts(dry.stdout)
    assert counts["toy_run"] == 6 and counts["toy_table"] == 1  # in `rule all` through PAPER_TARGETS
    res = snakemake(tmp_path, "--cores", "1", "results/toy_paper/tables/table1.md", "results/toy_paper/tables/claims.md",
                    "--configfile", str(cfg))
    assert res.returncode == 0, res.stderr[-2000:]
    runs = [json.loads((tmp_path / f"results/toy_paper/{m}/seed{s}.json").read_text())
            for m in TOY_BLOCK["methods"] for s in TOY_BLOCK["seeds"]]
    assert all(0.0 <= r["R@1"] <= 100.0 for r in runs)
    table = (tmp_path / "results/toy_paper/tables/table1.md").read_text()
    assert re.search(r"\| Class-mean projection +\| [\d.]+ ± [\d.]+ +\| 90\.0 +\|", table), table
    claims = (tmp_path / "results/toy_paper/tables/claims.md").read_text()
    # the noise dimensions swamp the raw features' neighbours; the projection drops them
    assert "beats_initial" in claims and re.search(r"\| holds +\|", claims), claims


def test_a_paper_without_a_package_is_named_in_a_one_line_error(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", papers={"toy_papr": {}})
    res = snakemake(tmp_path, "-n", "--configfile", str(cfg))
    assert res.returncode != 0 and re.search(r"papers.toy_papr: .*toy_papr.smk does not exist", res.stdout + res.stderr)


def test_the_toy_block_is_validated_by_the_papers_own_schema(tmp_path):
    cfg = toy_config(tmp_path, seeds=[0])  # the toy schema asks for two seeds at least (a std)
    res = snakemake(tmp_path, "-n", "--configfile", str(cfg))
    assert res.returncode != 0 and "seeds" in res.stdout + res.stderr


def test_built_in_papers_are_found_by_directory():
    from dmlrepro.papers import command_modules
    packages = sorted(p.name for p in (REPO / "src/dmlrepro/papers").iterdir() if (p / "commands.py").exists())
    assert command_modules() == [f"dmlrepro.papers.{p}.commands" for p in packages]
    rules = {p.stem for p in (REPO / "workflow/rules/papers").glob("*.smk") if not p.stem.endswith("_common")}
    assert set(packages) <= rules  # WSSET's too: workflow/rules/papers/wsset.smk
    assert yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())["properties"]["papers"][
        "additionalProperties"] == {"type": "object"}
