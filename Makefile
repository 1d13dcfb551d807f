# Two commands for a fresh machine:
#   make run    install into .venv, run the embedded default workflow, build the reports
#   make test   install into .venv, run the test suite
VENV ?= .venv
PYTHON ?= python3
CORES ?= all
# torch and torchvision are pinned together (torch==2.14.1, torchvision==0.29.1). On a CPU-only machine point pip at PyTorch's CPU index to avoid the
# multi-GB CUDA wheel:  make run TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
SNAKEMAKE_ARGS ?=
# The Snakemake profile of `make run` (cores, retries, show-failed-logs, ...); profiles/slurm for a
# cluster. Passed as --workflow-profile so that it replaces profiles/default instead of being
# overridden by it key by key (Snakemake applies profiles/default implicitly otherwise).
PROFILE ?= profiles/default

PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run report test lint bench dry-run-paper clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

run: install
	$(VENV)/bin/snakemake --workflow-profile $(PROFILE) --cores $(CORES) $(SNAKEMAKE_ARGS)
	$(VENV)/bin/snakemake --cores 1 --report results/snakemake-report.html $(SNAKEMAKE_ARGS)
	@echo "Tables: results/wsset/tables/table1.md results/wsset/tables/table2.md; report: results/report.html"

test: install
	$(PY) -m pytest

bench: install
	cd benchmarks && for b in bench_*.py; do ../$(PY) $$b || exit 1; done

lint: install
	$(VENV)/bin/snakemake --lint

dry-run-paper: install
	$(VENV)/bin/snakemake -n --configfile config/paper.yaml

clean:
	rm -rf results logs resources benchmarks/logs .snakemake
