# driftwatch: the two commands that matter are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | sha256sum | cut -c1-12)
# This machine's pip config points at local mirrors that may be empty; their warnings are noise.
# include/ holds the domain package; Airflow gets the same path from the stack environment.
export PYTHONPATH := $(CURDIR)/include:$(CURDIR)/plugins
PIP_QUIET := 2>&1 | { grep -v "^WARNING: Location 'file:" || true; }

.PHONY: help install demo stop status test lint test-unit test-dags test-integration test-browser reliability test-distributed bench bench-fleet lock clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (set PYTHON=/path/to/python3.11)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing pinned requirements into $(VENV) (about 2 minutes the first time)..."
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt $(PIP_QUIET)
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e . $(PIP_QUIET)
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP)  ## Create the venv and install the pinned requirements (no-op when up to date)

demo: install  ## Start the embedded stack, seed the scenario and run the pipeline over it
	@$(PY) -m devstack.demo

stop:  ## Stop every process the embedded stack started
	@if [ -x $(PY) ]; then $(PY) -m devstack.stack stop; else echo "nothing to stop (no venv)"; fi

status: install  ## Show the embedded stack's services, URLs and login
	@$(PY) -m devstack.stack status

lint: install  ## Ruff, including Airflow's AIR rules
	@$(VENV)/bin/ruff check dags plugins include devstack tests bench
	@$(VENV)/bin/ruff format --check dags plugins include devstack tests bench

test-unit: install  ## Unit tests of include/ (no network)
	@$(PY) -m pytest tests/unit -q

test-dags: install  ## DAG integrity and parse-time tests
	@$(PY) -m pytest tests/dags -q

test-integration: install  ## dag.test() against moto S3 and the SMTP sink on loopback
	@$(PY) -m pytest tests/integration -q

test-browser: install  ## Playwright in Debian's Chromium (apt-installed when missing) against a private stack (~5 min)
	@$(PY) -m pytest tests/browser -q

# The reliability family plus the integration tests its table reuses (the promotion race, the tampered artifact).
RELIABILITY_REUSED := tests/integration/test_retrain_dag.py \
	tests/integration/test_registry.py::test_tampered_model_is_refused_before_unpickling

reliability: install  ## Hostile batches, failing services, reruns and security; regenerates docs/reliability.md
	@DRIFTWATCH_RELIABILITY_DOC=docs/reliability.md $(PY) -m pytest tests/reliability $(RELIABILITY_REUSED) -q

test: install lint  ## Lint, unit, DAG-integrity (compose file included), integration and browser tests
	@$(PY) -m pytest tests -q --ignore=tests/distributed

test-distributed: install  ## Real distributed run: CeleryExecutor, 2 Celery workers, local PostgreSQL + Redis (2-5 min)
	@$(PY) -m pytest tests/distributed -q

bench: install  ## Drift and monitor-stage benchmark vs Evidently's DataDriftPreset at 100k/1M/5M rows, CBPE and shadow-scoring cost at 1M (about 12 min)
	@$(PY) -m bench.bench_drift --sizes 100000,1000000,5000000 --out bench-results.json
	@$(PY) -m bench.bench_estimation --rows 1000000
	@$(PY) -m bench.bench_shadow --rows 1000000

bench-fleet: install  ## 20 models through monitor_fleet (dynamic task mapping) on 1 and 2 Celery workers; needs PostgreSQL + Redis
	@$(PY) -m bench.bench_fleet --models 20 --rows 20000 --workers 1,2 --concurrency 2 --out bench-fleet-results.json

lock:  ## Re-pin requirements.txt from requirements.in in a fresh venv
	@rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	@.lock-venv/bin/pip install --quiet -r requirements.in $(PIP_QUIET)
	@{ head -2 requirements.txt; .lock-venv/bin/pip freeze --exclude-editable | grep -v '^pip=='; } > requirements.txt.new
	@mv requirements.txt.new requirements.txt && rm -rf .lock-venv

clean: stop  ## Stop the stack and delete its state folder (generated secrets included)
	@rm -rf .state
