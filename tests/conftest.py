"""Shared fixtures, and the rule of the test pyramid: every test is exactly one of

- ``unit``: one process, the code under test and files under tmp_path (a DuckDB file
  included); no socket, no subprocess, no Dagster instance, no dbt;
- ``integration``: real parts across a boundary: stand-in servers on loopback sockets, helper
  processes, Dagster instances and in-process runs, real dbt;
- ``e2e``: the product as a user runs it: the ``alphagen`` CLI, the Dagster daemon and
  webserver, a browser, simulated sessions.

A module says it once (``pytestmark = pytest.mark.unit``); a module that mixes layers marks
each test. ``make test-fast`` runs ``-m unit``.

The suite runs in parallel (pytest-xdist), so a test keeps everything it writes under its own
tmp_path, binds port 0 or takes ``free_port``, and never uses a fixed DAGSTER_HOME or DuckDB
file.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import clean_environ, free_port, venv_bin

LAYERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        layers = sorted({m.name for m in item.iter_markers() if m.name in LAYERS})
        if len(layers) != 1:
            wrong.append(f"  {item.nodeid}: {layers or 'none'}")
    _longest_first(config, items)
    if wrong:
        raise pytest.UsageError(
            "every test needs exactly one of the markers unit, integration, e2e (see tests/conftest.py):\n"
            + "\n".join(wrong[:20]) + (f"\n  ... and {len(wrong) - 20} more" if len(wrong) > 20 else ""))


def _longest_first(config: pytest.Config, items: list[pytest.Item]) -> None:
    """xdist hands out tests in this order (with --no-loadscope-reorder): e2e, integration,
    unit, and within a layer the longest timeout first, so the simulated sessions start at
    once instead of setting the suite's wall time at the end. Each worker is also sent a
    second test that waits behind its first: for the first N (one per worker), a unit test."""
    items.sort(key=lambda item: (LAYERS[::-1].index(_layer(item) or "unit"), -_timeout(item)))
    workers = config.getoption("numprocesses", None)
    if not isinstance(workers, int) or workers < 2:
        return
    first = items[:workers]
    waiting = [item for item in items[workers:] if _layer(item) == "unit"][:workers]
    chosen = {id(item) for item in waiting}
    items[:] = first + waiting + [item for item in items[workers:] if id(item) not in chosen]


def _timeout(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    return float(marker.args[0]) if marker and marker.args else 0.0


def _layer(item: pytest.Item) -> str | None:
    marker = next((m for m in item.iter_markers() if m.name in LAYERS), None)
    return marker.name if marker else None


@pytest.fixture
def port() -> int:
    """A free loopback port for a server the test starts."""
    return free_port()


@pytest.fixture
def clean_env() -> dict[str, str]:
    """The environment for a child process: none of the developer's project settings."""
    return clean_environ()


@pytest.fixture
def duckdb_path(tmp_path: Path) -> Path:
    """A DuckDB file of the test's own (not created)."""
    return tmp_path / "alphagen.duckdb"


AlphagenRunner = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def alphagen(tmp_path: Path) -> AlphagenRunner:
    """Run the installed `alphagen` CLI as a user would: a process of its own, a clean
    environment plus `env`, started in tmp_path (so no project .env is read), bounded by a
    timeout; returns the finished process (text output)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([venv_bin("alphagen"), *args], env=clean_environ(**(env or {})), cwd=tmp_path,
                              capture_output=True, text=True, timeout=timeout)

    return run
