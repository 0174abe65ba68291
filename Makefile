# The README's two commands: `make demo` and `make test`. Both set up .venv from the lock.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast bench ui clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	cd dbt_pnl && ALPHAGEN_DUCKDB_PATH=/tmp/alphagen-dbt-parse.duckdb ../$(BIN)/dbt parse --quiet --profiles-dir .
	touch $@

setup: $(STAMP)

demo: setup
	$(BIN)/alphagen demo

test: setup
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-postgresql.sh
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

bench: setup
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/bench_live.py
	$(BIN)/python benchmarks/bench_year.py
	$(BIN)/python benchmarks/bench_contention.py

ui: setup
	bash scripts/ui.sh

clean:
	rm -rf data .dagster_home dbt_pnl/target dbt_pnl/logs
