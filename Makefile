# The two commands: `make run` and `make test`. Both bootstrap uv and the locked environment.
SHELL := /bin/bash
# uv from PATH, else a private copy in .tools/ (a venv, so PEP 668 system Pythons work too).
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= ./data
# Debian's postgresql-15 keeps initdb and pg_ctl here, off PATH; the tests look them up on PATH.
PG_BIN := /usr/lib/postgresql/15/bin
ifneq ($(wildcard $(PG_BIN)/initdb),)
export PATH := $(PATH):$(PG_BIN)
endif

.PHONY: run run-cluster test lint typecheck bootstrap migrate chaos system-deps

bootstrap:
	@command -v $(UV) >/dev/null 2>&1 || { python3 -m venv .tools && .tools/bin/pip install --quiet uv; }
	@$(UV) sync --locked --quiet

migrate: bootstrap
	@$(UV) run --locked realtimechat migrate --data-dir $(DATA_DIR)

run: migrate
	@$(UV) run --locked realtimechat serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

# Two API nodes and a worker on a local PostgreSQL and Redis, all in $(DATA_DIR)/cluster.
run-cluster: bootstrap
	@DATA_DIR=$(DATA_DIR) $(UV) run --locked python scripts/run_cluster.py

lint: bootstrap
	$(UV) run --locked ruff check src tests scripts clients
	$(UV) run --locked ruff format --check src tests scripts clients

typecheck: bootstrap
	$(UV) run --locked mypy

# chromium, redis-server, promtool and PostgreSQL 15: installed when missing and root, else named.
system-deps:
	@scripts/system_deps.sh

test: system-deps lint typecheck
	$(UV) run --locked pytest

# The chaos suite at full size (CI runs it smaller inside `make test`): two nodes, a worker,
# PostgreSQL and Redis broken in turn under load; prints the table, writes test-artifacts/chaos.json.
CHAOS_CLIENTS ?= 8
CHAOS_MESSAGES ?= 1000
chaos: bootstrap
	CHAOS_CLIENTS=$(CHAOS_CLIENTS) CHAOS_MESSAGES=$(CHAOS_MESSAGES) $(UV) run --locked pytest tests/chaos -s -q
