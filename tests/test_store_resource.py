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

HELD_S = 1.6
# get_connection's attempts after a failed one: sleeps of 0.1, 0.2, 0.4, 0.8, 1.6 s ... (dagster's
# backoff), so a file freed after HELD_S is opened no sooner than the sum of the sleeps past it.
LIBRARY_EARLIEST_S = 0.1 + 0.2 + 0.4 + 0.8 + 1.6


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


def _wait_to_open(open_file) -> float:
    started = time.monotonic()
    with open_file() as con:
        con.execute("SELECT 1")
    return time.monotonic() - started


def test_a_locked_file_is_opened_a_poll_after_it_is_freed_where_get_connection_sleeps_on(duckdb_path: Path):
    resource = StoreResource(database=str(duckdb_path))
    resource.store().ensure_schema()

    holder = hold_duckdb_lock(duckdb_path, HELD_S)
    ours = _wait_to_open(resource.store().connect)
    holder.wait(timeout=30)
    holder = hold_duckdb_lock(duckdb_path, HELD_S)
    library = _wait_to_open(resource.get_connection)
    holder.wait(timeout=30)

    assert HELD_S * 0.8 < ours < LIBRARY_EARLIEST_S - 0.5, ours  # polled at most ~0.15 s apart
    assert library >= LIBRARY_EARLIEST_S, library


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
