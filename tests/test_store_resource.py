"""The Dagster side reaches the DuckDB file through dagster-duckdb's DuckDBResource
(`resources.StoreResource`), whose Store waits for the lock itself; and the two behaviours of
the library's own `get_connection` that decided it (an upgrade that changes them is noticed
here)."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import pytest
from dagster_duckdb import DuckDBResource

from alphagen_core.operations.settings import get_settings
from alphagen_dagster.resources import StoreResource, default_resources
from tests.processes import hold_duckdb_lock

pytestmark = pytest.mark.integration

# get_connection sleeps 0.1, 0.2, 0.4, 0.8, 1.6 s ... between attempts (dagster's backoff): its
# fifth attempt comes at 1.5 s plus what the failed attempts took, the sixth at 3.1 s or later.
# A file freed between the two is opened at the sixth.
HELD_S = 2.2


def test_the_code_locations_store_resource_is_dagster_duckdbs_resource_on_the_settings_file(duckdb_path, monkeypatch):
    monkeypatch.setenv("ALPHAGEN_DUCKDB_PATH", str(duckdb_path))
    get_settings.cache_clear()
    try:
        resource = default_resources()["store"]
    finally:
        get_settings.cache_clear()
    assert isinstance(resource, DuckDBResource)
    assert resource.database == str(duckdb_path.resolve())
    assert resource.store().path == duckdb_path.resolve()


def test_the_store_opens_the_file_with_the_resources_connection_config(duckdb_path):
    store = StoreResource(database=str(duckdb_path), connection_config={"threads": 1}).store()
    store.ensure_schema()
    with store.connect() as con:
        assert con.execute("SELECT current_setting('threads')").fetchone() == (1,)
        # the Store's own session settings still apply on top of it
        assert con.execute("SELECT current_setting('TimeZone')").fetchone() == ("America/New_York",)
    with store.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM executions").fetchone() == (0,)


def _open_behind_a_holder(db: Path, open_file, released: Path) -> tuple[float, float]:
    """Seconds from when another process holds `db` for HELD_S until `open_file()` has it, and
    how long after the holder let go that was."""
    holder = hold_duckdb_lock(db, HELD_S, released)
    started = time.monotonic()
    with open_file() as con:
        con.execute("SELECT 1")
    opened_at, waited = time.time(), time.monotonic() - started
    holder.wait(timeout=30)
    return waited, opened_at - float(released.read_text())


def test_a_locked_file_is_opened_once_another_process_frees_it(tmp_path, duckdb_path):
    """The Store waits out another process's lock and then opens the file. How soon after the
    release, against the library's `get_connection` backoff, is a benchmark
    (`benchmarks/bench_duckdb_resource.py`), not a test: it depends on the machine's load."""
    resource = StoreResource(database=str(duckdb_path))
    resource.store().ensure_schema()

    waited, late = _open_behind_a_holder(duckdb_path, resource.store().connect, tmp_path / "released")
    assert waited > HELD_S * 0.8, (waited, late)  # it did wait for the holder
    assert late >= 0, (waited, late)  # and opened only after the release


def test_a_block_that_raises_closes_the_stores_connection_but_not_get_connections(duckdb_path: Path):
    resource = StoreResource(database=str(duckdb_path))
    with pytest.raises(ZeroDivisionError), resource.store().connect() as ours:
        raise ZeroDivisionError
    with pytest.raises(duckdb.ConnectionException, match="closed"):
        ours.execute("SELECT 1")
    with pytest.raises(ZeroDivisionError), resource.get_connection() as library:
        raise ZeroDivisionError
    assert library.execute("SELECT 1").fetchone() == (1,)  # still open, holding the file's lock
    library.close()
