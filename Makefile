# The two commands: `make run` and `make test`. Both bootstrap uv and the locked environment.
SHELL := /bin/bash
# uv from PATH, else a private copy in .tools/ (a venv, so PEP 668 system Pythons work too).
UV ?= $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= ./data

.PHONY: run test lint typecheck bootstrap migrate

bootstrap:
	@command -v $(UV) >/dev/null 2>&1 || { python3 -m venv .tools && .tools/bin/pip install --quiet uv; }
	@$(UV) sync --locked --quiet

migrate: bootstrap
	@$(UV) run --locked realtimechat migrate --data-dir $(DATA_DIR)

run: migrate
	@$(UV) run --locked realtimechat serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)

lint: bootstrap
	$(UV) run --locked ruff check src tests
	$(UV) run --locked ruff format --check src tests

typecheck: bootstrap
	$(UV) run --locked mypy

test: lint typecheck
	$(UV) run --locked pytest
