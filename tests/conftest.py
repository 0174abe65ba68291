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

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.processes import clean_environ, free_port, venv_bin

LAYERS = ("unit", "integration", "e2e")
SESSIONS = "tests/sessions/"
START_AFTER = "ALPHAGEN_TESTS_START_AFTER"
START_AFTER_WAIT_S = 3600.0  # two simulated sessions at most (each times out at 900 s), and more
# The order `make test` starts the modules in (their figures: BENCHMARKS.md, "Test suite"),
# longest first. xdist starts each worker on two modules, handing them out in this order worker
# by worker, twice: so in the part held until the sessions end (4 workers) the four modules
# after test_doctor.py come shortest first, and the longest module's worker gets the shortest.
SLOWEST_FIRST = (
    "tests/test_ui.py",
    "tests/test_replay_cli_failures.py",
    "tests/test_replay_cli.py",
    "tests/test_replay_dagster.py",
    "tests/test_variants.py",
    "tests/test_dbt_pnl.py",
    "tests/test_dbt_worker.py",
    "tests/live/test_doctor.py",
    "tests/test_event_log_storage.py",
    "tests/test_operations_units.py",  # mostly waiting (timeouts, reconnects)
    "tests/adapters/test_polygon_adapter.py",  # mostly waiting
    "tests/test_replay_cli_refusals.py",
    "tests/test_postgres_instance.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wrong = []
    for item in items:
        layers = sorted({m.name for m in item.iter_markers() if m.name in LAYERS})
        if len(layers) != 1:
            wrong.append(f"  {item.nodeid}: {layers or 'none'}")
        # `make test` runs the sessions from their folder alone (scripts/test.sh)
        if item.get_closest_marker("simulated_session") and not item.nodeid.startswith(SESSIONS):
            wrong.append(f"  {item.nodeid}: a simulated_session outside {SESSIONS}")
    _slowest_modules_first(items)
    if wrong:
        raise pytest.UsageError(
            "every test needs exactly one of the markers unit, integration, e2e, and a simulated session "
            "lives in tests/sessions/ (see tests/conftest.py):\n"
            + "\n".join(wrong[:20]) + (f"\n  ... and {len(wrong) - 20} more" if len(wrong) > 20 else ""))


def pytest_collection_finish(session: pytest.Session) -> None:
    """`make test` starts the tests that are neither spare_cpu nor unit while the simulated
    sessions still run, so that their collection uses the CPU the sessions leave idle, and holds
    them here until the sessions have ended: scripts/test.sh then creates the file START_AFTER
    names."""
    start_after = os.environ.get(START_AFTER)
    if not start_after:
        return
    deadline = time.monotonic() + START_AFTER_WAIT_S
    while not Path(start_after).exists():
        if time.monotonic() > deadline:
            raise pytest.UsageError(f"{start_after} did not appear within {START_AFTER_WAIT_S:g} s")
        time.sleep(0.2)


def _slowest_modules_first(items: list[pytest.Item]) -> None:
    """`make test` hands each module whole to one xdist worker (--dist loadfile), so that its
    module fixtures (replays, dbt builds, Dagster homes) are built once, and sends the modules
    out in the order of their first test here (--no-loadscope-reorder): SLOWEST_FIRST in its
    order, then the rest, end to end before integration before unit. A module's tests keep
    their order."""
    rank = {path: i for i, path in enumerate(SLOWEST_FIRST)}
    module_rank: dict[str, tuple[int, int]] = {}
    for item in items:
        module_rank.setdefault(_module(item), (rank.get(_module(item), len(rank)),
                                               LAYERS[::-1].index(_layer(item) or "unit")))
    items.sort(key=lambda item: module_rank[_module(item)])


def _module(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[0]


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
