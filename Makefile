# The README's two commands: `make demo` and `make test`. Both set up .venv from the lock.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# dbt's environment of its own (dbt_pnl/requirements.lock), linked as $(BIN)/dbt: the Dagster
# processes import dagster-dbt without dbt-core (ARCHITECTURE.md, "dbt in an environment of its own").
DBT_VENV := .venv-dbt
SETUP_LOCK := .venv.lock
# Every Python process of both venvs starts with the garbage collector's thresholds it sets
# (ARCHITECTURE.md, "The garbage collector's first generation at 10,000").
GC_PTH := deploy/alphagen-gc.pth
# pytest-xdist workers: much of the suite waits on processes (CLI replays, the Dagster daemon,
# dbt), so a 2-core machine runs more workers than cores. Each test module goes whole to one
# worker (loadfile: its module fixtures are built once), slowest modules first (the order
# tests/conftest.py gives them; --no-loadscope-reorder keeps it). scripts/test.sh runs the
# simulated sessions one at a time with only the spare_cpu modules and the unit tests beside
# them, on idle CPU, and the rest after them on one worker more.
TEST_WORKERS ?= 3
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

.PHONY: setup demo test test-fast bench ui clean

$(STAMP): requirements.lock dbt_pnl/requirements.lock pyproject.toml $(GC_PTH)
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.8
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python requirements.lock
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/uv venv --quiet --allow-existing --python $(BIN)/python $(DBT_VENV)
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(DBT_VENV)/bin/python dbt_pnl/requirements.lock
	ln -sfn ../../$(DBT_VENV)/bin/dbt $(BIN)/dbt
	for py in $(BIN)/python $(DBT_VENV)/bin/python; do \
	  cp $(GC_PTH) "$$($$py -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"; done
	$(BIN)/python -c 'from alphagen_dagster.dbt import prepare_manifest; prepare_manifest()'
	touch $@

# The project's own bytecode, brought up to date each time (only changed modules compile): where
# PYTHONDONTWRITEBYTECODE is set (as on these machines), Python would otherwise compile them
# anew in every process: every minute run, CLI command and dbt worker (BENCHMARKS.md, "the
# suite's CPU by kind of process").
# One setup at a time in a folder (`make demo` in one terminal, `make test` in another): a second
# one waits, then finds the venvs made.
setup:
	@flock -n $(SETUP_LOCK) true || echo "another make setup is running in this folder: waiting for it to end"
	@flock $(SETUP_LOCK) sh -c '$(MAKE) --no-print-directory -q $(STAMP) || $(MAKE) --no-print-directory $(STAMP)'
	$(BIN)/python -m compileall -q -j 0 alphagen_core alphagen_dagster

demo: setup
	$(BIN)/alphagen demo

test: setup
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-postgresql.sh
	TEST_WORKERS=$(TEST_WORKERS) bash scripts/test.sh

test-fast: setup
	$(PYTEST) -m unit

bench: setup
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/bench_live.py
	$(BIN)/python benchmarks/bench_year.py
	$(BIN)/python benchmarks/bench_contention.py
	$(BIN)/python benchmarks/bench_sweep.py

ui: setup
	bash scripts/ui.sh

clean:
	rm -rf data .dagster_home dbt_pnl/target dbt_pnl/logs
