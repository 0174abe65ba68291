"""The production Dagster instance (dagster.postgres.yaml) on a real PostgreSQL server on
loopback: a new home made with ALPHAGEN_DAGSTER_STORAGE=postgres keeps its runs, events and
sensor state in PostgreSQL; `alphagen replay` of a sample day and a simulated minute of the
live session on the next day (the minute sensor's request, run as the minute job) both run
on it."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterRunStatus, SensorResult, build_sensor_context

from alphagen_core.persistence.store import Store
from alphagen_core.sim.sample import generate
from alphagen_core.sim.venues import SimVenues
from alphagen_dagster.instance import PROJECT_DIR, open_instance, storage_kind
from tests.postgres import PASSWORD, start_postgres

pytestmark = [pytest.mark.integration, pytest.mark.spare_cpu, pytest.mark.timeout(180)]
DAYS = (dt.date(2024, 11, 25), dt.date(2024, 11, 26))


@pytest.fixture(scope="module")
def postgres():
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


def test_replay_and_a_live_minute_on_a_postgres_instance(postgres, tmp_path, monkeypatch):
    postgres.create_database("dagster")
    generate(DAYS[0], DAYS[1], tmp_path / "flatfiles")
    home = tmp_path / "dagster_home"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ALPHAGEN_", "POLYGON_", "SCHWAB_"))},
           **postgres.env("dagster"), "ALPHAGEN_DAGSTER_STORAGE": "postgres", "DAGSTER_HOME": str(home),
           "ALPHAGEN_DUCKDB_PATH": str(tmp_path / "alphagen.duckdb"), "ALPHAGEN_CACHE_DIR": str(tmp_path / "cache"),
           "ALPHAGEN_CHART_DIR": str(tmp_path / "charts"), "FEATURE_ENABLE_CHART": "false"}
    done = subprocess.run([sys.executable, "-m", "alphagen_dagster.cli", "replay", "--start", str(DAYS[0]),
                           "--source", str(tmp_path / "flatfiles")],
                          cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 of 1 days replayed" in done.stdout

    # the home is a PostgreSQL one, and no secret was written into it
    assert "postgres:" in (home / "dagster.yaml").read_text()
    assert not (home / "history").exists()
    assert all(PASSWORD not in f.read_text(errors="ignore") for f in home.rglob("*.yaml"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with open_instance(home) as instance:
        assert storage_kind(instance) == "postgres"
        [run] = instance.get_runs()
        assert run.job_name == "replay" and run.status is DagsterRunStatus.SUCCESS
        partitions = {e.partition_key for e in instance.fetch_materializations(AssetKey("executions"), limit=10).records}
        assert str(DAYS[0]) in partitions
    with postgres.connect("dagster") as con, con.cursor() as cur:  # in PostgreSQL itself
        cur.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'")
        assert cur.fetchone()[0] == 1
        cur.execute("SELECT count(*) FROM event_logs WHERE asset_key IS NOT NULL")
        assert cur.fetchone()[0] > 0

    from alphagen_core.operations.settings import load_settings
    from alphagen_dagster.doctor import Context, Status, check_instance

    status, detail = check_instance(Context(load_settings(_env_file=None), home))
    assert status is Status.OK and detail.endswith("(postgres storage)")
    status, detail = check_instance(Context(load_settings(_env_file=None, alphagen_dagster_storage="sqlite"), home))
    assert status is Status.FAIL and "uses postgres storage but ALPHAGEN_DAGSTER_STORAGE=sqlite" in detail

    _a_live_minute(tmp_path, env, monkeypatch)


def _a_live_minute(tmp_path: Path, env: dict[str, str], monkeypatch) -> None:
    """The stand-ins serve the second day at 10:15; the minute sensor, evaluated on the
    PostgreSQL instance, requests the 10:14 minute, and the minute job runs on it."""
    from alphagen_dagster.jobs import minute_job
    from alphagen_dagster.resources import SettingsResource, StoreResource
    from alphagen_dagster.sensors import minute_sensor
    from alphagen_dagster.service import sim_env

    venues = SimVenues(day=DAYS[1], source=str(tmp_path / "flatfiles"), cache_dir=tmp_path / "cache", speed=1.0,
                       start=dt.time(10, 15, 3))
    with venues:
        live = {**sim_env(tmp_path / "live", venues), **{k: v for k, v in env.items() if k.startswith("ALPHAGEN_PG")},
                "DAGSTER_HOME": env["DAGSTER_HOME"], "ALPHAGEN_DUCKDB_PATH": env["ALPHAGEN_DUCKDB_PATH"]}
        for name, value in live.items():
            monkeypatch.setenv(name, value)
        with open_instance(Path(env["DAGSTER_HOME"])) as instance:
            requested = minute_sensor(build_sensor_context(instance=instance))
            assert isinstance(requested, SensorResult), requested
            [request] = requested.run_requests
            assert request.run_key == "minute-2024-11-26T10:14"
            started = time.monotonic()
            result = minute_job.execute_in_process(
                instance=instance, run_config=request.run_config, tags=request.tags,
                resources={"store": StoreResource(database=env["ALPHAGEN_DUCKDB_PATH"]), "settings": SettingsResource()})
            assert result.success and time.monotonic() - started < 60
            run = instance.get_run_by_id(result.run_id)
            assert run.job_name == "minute_job" and run.status is DagsterRunStatus.SUCCESS
            ticks = instance.fetch_materializations(AssetKey("normalized_ticks"), limit=50).records
            assert any(e.partition_key == str(DAYS[1]) and e.run_id == result.run_id for e in ticks)
    paper = Store(env["ALPHAGEN_DUCKDB_PATH"]).query(
        "SELECT max(period_start) AS last FROM normalized_ticks WHERE mode = 'paper' AND session_date = ?", [DAYS[1]])
    assert paper["last"][0].strftime("%H:%M") == "10:14"
