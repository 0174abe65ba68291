"""The dbt worker process: its protocol, its errors, and that it never outlives its parent's
interest (real dbt, real processes)."""

from __future__ import annotations

import pytest

from alphagen_dagster import dbt_process

pytestmark = pytest.mark.integration


def test_a_worker_nobody_asks_exits_on_eof(tmp_path):
    worker = dbt_process.DbtProcess(str(tmp_path / "unused.duckdb"), tmp_path / "cache")
    worker.close()
    assert worker._proc.returncode == 0
    assert not (tmp_path / "unused.duckdb").exists()  # parsing never opens the DuckDB file


def test_a_dbt_error_comes_back_as_the_build_errors_not_a_hang(tmp_path):
    worker = dbt_process.DbtProcess("relative/path.duckdb", tmp_path / "cache")  # the profile refuses it
    messages = list(worker.build([[]]))
    assert messages[0]["parsed"] is False
    done = messages[-1]
    assert done["done"] is False
    assert any("must be an absolute path" in e for e in done["errors"]), done["errors"]
    assert worker._proc.returncode == 0


def test_start_then_take_hands_over_the_same_waiting_worker(tmp_path):
    db = str(tmp_path / "a.duckdb")
    dbt_process.start(db, tmp_path / "cache")
    dbt_process.start(db, tmp_path / "cache")  # idempotent
    first = dbt_process.take(db, tmp_path / "cache")
    second = dbt_process.take(db, tmp_path / "cache")  # nothing waiting any more: a new one
    try:
        assert first is not second and first.target == second.target
    finally:
        first.close()
        second.close()
