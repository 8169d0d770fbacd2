# Cascade: the two commands a newcomer needs are `make demo` and `make test`.
# Everything installs into .venv with uv (pinned by uv.lock); uv itself is bootstrapped with the
# machine's Python into a cache outside the repo, so a fresh machine needs nothing else.

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
CASCADE_CACHE ?= $(HOME)/.cache/cascade
BOOTSTRAP := $(CASCADE_CACHE)/bootstrap-uv-$(UV_VERSION)
UV := $(shell command -v uv 2>/dev/null || echo $(BOOTSTRAP)/bin/uv)
PYTEST_ARGS ?=

.PHONY: help install test test-unit lint demo bench bench-pipeline clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BOOTSTRAP)/bin/uv:
	$(PYTHON) -m venv $(BOOTSTRAP)
	$(BOOTSTRAP)/bin/pip install --quiet uv==$(UV_VERSION)

.venv/.installed: uv.lock pyproject.toml | $(if $(shell command -v uv 2>/dev/null),,$(BOOTSTRAP)/bin/uv)
	$(UV) sync --frozen
	@touch $@

install: .venv/.installed ## Create .venv and install Cascade with its pinned dependencies

test: install ## Run every test (unit and integration: real HTTP, real Iceberg catalog)
	$(UV) run --frozen pytest $(PYTEST_ARGS)

test-unit: install ## Only the fast unit tests
	$(UV) run --frozen pytest -m "not integration" $(PYTEST_ARGS)

lint: install ## ruff and mypy
	$(UV) run --frozen ruff check src tests benchmarks
	$(UV) run --frozen ruff format --check src tests benchmarks
	$(UV) run --frozen mypy src
	$(UV) run --frozen lint-imports

demo: install ## Fake Nightscout → ingest → transform → metrics, all on this machine
	$(UV) run --frozen cascade demo

bench: install ## Ingest benchmark (BENCH_ARGS="--subject-years 2")
	$(UV) run --frozen python benchmarks/ingest.py $(BENCH_ARGS)
	$(UV) run --frozen python benchmarks/transform.py --sizes 1 5

bench-pipeline: install ## DuckDB and Trino side by side, 1 and 10 subject-years (needs `make stack-up`; WIPES the stack's Nessie main)
	$(UV) run --frozen python benchmarks/pipeline.py --yes-wipe-main $(BENCH_ARGS)

clean: ## Remove the local lake (.cascade) and caches of this checkout
	rm -rf .cascade .pytest_cache

# ---- the lakehouse services -------------------------------------------------------------------
# Local processes (development and CI, no Docker engine needed):
.PHONY: stack-up stack-down health up-core up-query up-all down clean-all fresh-start trino-shell

stack-up: install ## Start PostgreSQL, MinIO, Nessie and Trino as local processes (cascade stack up)
	$(UV) run --frozen cascade stack up

stack-down: install ## Stop the local processes started by stack-up
	$(UV) run --frozen cascade stack down

health: install ## Configuration and connectivity of the active profile, and the local stack's state
	$(UV) run --frozen cascade doctor; $(UV) run --frozen cascade stack status

# The same services from docker-compose (needs a Docker engine), by profile:
COMPOSE ?= docker compose

up-core: ## docker compose: postgres, minio and the bucket
	$(COMPOSE) --profile core up -d

up-query: ## docker compose: core + nessie and trino
	$(COMPOSE) --profile core --profile query up -d

up-all: ## docker compose: every service (core, query, bi)
	$(COMPOSE) --profile all up -d

down: ## docker compose: stop every service (volumes kept)
	$(COMPOSE) --profile all down

clean-all: ## docker compose: stop and delete every volume; also the local lake and stack state
	-$(COMPOSE) --profile all down -v
	-$(UV) run --frozen cascade stack down
	rm -rf .cascade

fresh-start: clean-all up-all ## docker compose: everything from scratch

trino-shell: ## docker compose: the Trino CLI on the iceberg catalog
	$(COMPOSE) exec trino trino --catalog iceberg
