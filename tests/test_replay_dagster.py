"""The replay job, run in process with Dagster against sample flat files, a real DuckDB file,
real dbt and (for S3) moto's real S3 server on loopback."""

from __future__ import annotations

import base64
import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, Definitions

from alphagen_core.adapters.polygon.flatfiles import options_key, stocks_key
from alphagen_core.domain.calendar import NY
from alphagen_core.operations.variants import VariantError, variant_settings
from alphagen_core.persistence.store import RowMeta, Store
from alphagen_core.persistence.tables import META_COLUMNS, SOURCES, TABLES
from alphagen_core.sim.sample import generate
from alphagen_dagster.assets import replay_tables
from alphagen_dagster.dbt import PERFORMANCE_SUMMARY, dbt_pnl_models, dbt_resource
from alphagen_dagster.jobs import replay_job
from alphagen_dagster.resources import (
    FlatFilesResource,
    SettingsResource,
    StoreResource,
)

pytestmark = [pytest.mark.integration, pytest.mark.spare_cpu]

NORMAL, EARLY, CORRUPT = dt.date(2024, 11, 27), dt.date(2024, 11, 29), dt.date(2024, 11, 26)
REPLAY_ONLY = [AssetKey(t) for t in SOURCES]  # the replay step's assets: the eight and versions
# The service's clock: inside a session's live window the dbt step builds one model per dbt
# invocation, outside it one `dbt build`.
# a trading day's live window; no session job has started in the tests' cache folders
INSIDE_LIVE_WINDOW = "2024-12-02T10:00:00"
SECRETS = {
    "POLYGON_S3_ACCESS_KEY": "SENTINELACCESSKEY0042",
    "POLYGON_S3_SECRET_KEY": "sentinel-s3-secret-0042",
    "POLYGON_API_KEY": "sentinel-polygon-key-0042",
    "SCHWAB_API_KEY": "sentinel-schwab-key-0042",
    "SCHWAB_API_SECRET": "sentinel-schwab-secret-0042",
    "SCHWAB_ACCOUNT_ID": "990042",
}


def run_replay(db: Path, source: str, cache: Path, start: dt.date, end: dt.date, *, with_dbt: bool = True,
               selection: list[AssetKey] | None = None, run_config: dict | None = None):
    defs = Definitions(
        assets=[replay_tables, dbt_pnl_models],
        jobs=[replay_job],
        resources={
            "store": StoreResource(database=str(db)),
            "flatfiles": FlatFilesResource(source=source, cache_dir=str(cache)),
            "settings": SettingsResource(),
            "dbt": dbt_resource(),
        },
    )
    instance = DagsterInstance.ephemeral()
    result = defs.resolve_job_def("replay").execute_in_process(
        instance=instance,
        raise_on_error=False,
        asset_selection=selection or (None if with_dbt else REPLAY_ONLY),
        run_config=run_config,
        tags={"dagster/asset_partition_range_start": start.isoformat(),
              "dagster/asset_partition_range_end": end.isoformat()},
    )
    LOG_MESSAGES[result.run_id] = [entry.user_message for entry in instance.all_logs(result.run_id)]
    return result


# Each run's log messages (the steps' context.log lines among them), by run id.
LOG_MESSAGES: dict[str, list[str]] = {}


def content(store: Store, table: str, day: dt.date, mode: str = "replay") -> pl.DataFrame:
    """A table's latest rows for a day, without the audit columns (version, run, time)."""
    return store.latest(table, mode, day).drop(*META_COLUMNS)


@pytest.fixture(scope="module")
def flatfiles(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flatfiles")
    generate(CORRUPT, EARLY, root)
    return root


@pytest.fixture(scope="module")
def replayed(tmp_path_factory, flatfiles):
    tmp = tmp_path_factory.mktemp("replay")
    mp = pytest.MonkeyPatch()
    mp.setenv("ALPHAGEN_CHART_DIR", str(tmp / "charts"))
    mp.setenv("ALPHAGEN_SIM_START", INSIDE_LIVE_WINDOW)
    mp.setenv("ALPHAGEN_CACHE_DIR", str(tmp / "cache"))
    db = tmp / "alphagen.duckdb"
    first = run_replay(db, str(flatfiles), tmp / "cache", NORMAL, EARLY)
    store = Store(db)
    snapshot = {(t, d): content(store, t, d) for t in TABLES for d in (NORMAL, EARLY)}
    second = run_replay(db, str(flatfiles), tmp / "cache", NORMAL, EARLY)
    yield first, second, store, snapshot, tmp
    mp.undo()


def test_replay_fills_all_eight_tables_and_links_them(replayed):
    first, _, store, _, _ = replayed
    assert first.success
    for day in (NORMAL, EARLY):
        for table in TABLES:
            assert store.latest(table, "replay", day).height > 0, (table, day)
        ticks = set(store.latest("normalized_ticks", "replay", day)["slice_id"])
        signals = store.latest("signals", "replay", day)
        intents = store.latest("trade_intents", "replay", day)
        executions = store.latest("executions", "replay", day)
        assert set(signals["slice_id"]) <= ticks
        assert set(intents["signal_id"].drop_nulls()) <= set(signals["signal_id"])
        assert set(executions["intent_id"]) <= set(intents["intent_id"])
        assert executions.filter(pl.col("status") == "FILLED").height >= 2


def test_dbt_daily_pnl_equals_sum_of_executions_to_the_cent(replayed):
    _, _, store, _, _ = replayed
    daily = store.query("SELECT trade_date, realized_pnl, trades FROM daily_pnl WHERE mode = 'replay' ORDER BY trade_date")
    assert daily["trade_date"].to_list() == [NORMAL, EARLY]
    for row in daily.iter_rows(named=True):
        execs = store.latest("executions", "replay", row["trade_date"])
        assert float(row["realized_pnl"]) == pytest.approx(round(execs["pnl_contrib"].sum(), 2), abs=0.001)
        assert row["trades"] == execs.filter(pl.col("exit_reason").is_not_null()).height


def test_replaying_again_appends_a_new_version_with_identical_figures(replayed):
    first, second, store, snapshot, _ = replayed
    assert second.success
    versions = store.query("SELECT DISTINCT version, run_id FROM executions ORDER BY version")
    assert versions.height == 2 and set(versions["run_id"]) == {first.run_id, second.run_id}
    for (table, day), before in snapshot.items():
        assert content(store, table, day).equals(before), (table, day)
    counts = store.query("SELECT version, count(*) AS n FROM normalized_ticks GROUP BY version")
    assert counts["n"].n_unique() == 1  # nothing overwritten: both versions complete


def test_early_close_day_trades_nothing_after_1255_and_ends_flat(replayed):
    _, _, store, _, _ = replayed
    execs = store.latest("executions", "replay", EARLY)
    cutoff = dt.datetime(2024, 11, 29, 12, 55, tzinfo=NY)
    assert not execs.is_empty() and execs.filter(pl.col("est_timestamp") >= cutoff).is_empty()
    positions = store.latest("position_state", "replay", EARLY)
    assert positions["est_timestamp"].max() == dt.datetime(2024, 11, 29, 12, 59, tzinfo=NY)
    assert positions.sort("est_timestamp")["net_quantity"][-1] == 0
    assert positions.filter(pl.col("est_timestamp") >= cutoff)["net_quantity"].abs().max() == 0


def test_replay_writes_a_chart_per_day_and_reports_checks(replayed):
    first, _, store, _, tmp = replayed
    assert sorted(p.name for p in (tmp / "charts").glob("*.png")) == ["2024-11-27.png", "2024-11-29.png",
                                                                      "performance.png"]
    # each day's partition carries its own figures: its chart, its rows, its P/L
    meta = {(e.asset_key.path[-1], e.partition): e.step_materialization_data.materialization.metadata
            for e in first.all_events if e.event_type_value == "ASSET_MATERIALIZATION" and e.partition}
    for day in (NORMAL, EARLY):
        png = base64.b64encode((tmp / "charts" / f"{day}.png").read_bytes()).decode()
        assert png in meta[("normalized_ticks", str(day))]["chart"].value
        assert meta[("option_quotes", str(day))]["rows"].value > 1000
        execs = store.latest("executions", "replay", day)
        assert meta[("executions", str(day))]["realized_pnl"].value == pytest.approx(execs["pnl_contrib"].sum(), abs=0.01)
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
              for e in first.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks["flat_at_flatten_time"] and checks["every_execution_linked_to_an_intent"]
    assert checks["indicators_defined_from_9th_bar"] and checks["no_missing_minutes"]
    # dbt's tests arrive as Dagster asset checks, the cross-check of daily_pnl included
    assert checks["assert_daily_pnl_matches_executions"]
    assert all(checks.values()), [name for name, ok in checks.items() if not ok]
    assert {c.name for c in dbt_pnl_models.check_keys} <= set(checks)
    materialized = {e.asset_key for e in first.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert set(dbt_pnl_models.keys) <= materialized


def test_performance_summary_is_materialized_with_its_figures_and_chart_before_its_checks(replayed):
    first, _, store, _, tmp = replayed
    events = [e for e in first.all_events if e.asset_key == PERFORMANCE_SUMMARY or (
        e.event_type_value == "ASSET_CHECK_EVALUATION" and e.asset_check_evaluation_data.asset_key == PERFORMANCE_SUMMARY)]
    # held back until dbt let go of the file, then given in order: the materialization, its two checks
    assert [e.event_type_value for e in events] == ["ASSET_MATERIALIZATION", *["ASSET_CHECK_EVALUATION"] * 2]
    meta = events[0].step_materialization_data.materialization.metadata
    png = tmp / "charts" / "performance.png"
    assert meta["equity_curve_png"].value == str(png.resolve())
    assert base64.b64encode(png.read_bytes()).decode() in meta["equity_curve_chart"].value
    summary = store.query("SELECT * FROM performance_summary").row(0, named=True)
    table = meta["performance"].value.splitlines()
    assert table[0] == "| figure | replay/base |"
    assert f"| total_pnl | {summary['total_pnl']:,.2f} |" in table
    assert f"| exits: reversal | {summary['exits_reversal']} |" in table
    assert "invocation_id" in meta  # dagster-dbt's own metadata kept


def test_a_subset_of_the_dbt_models_builds_only_those_models_and_their_tests(replayed, tmp_path):
    _, _, store, _, tmp = replayed
    db = tmp_path / "copy.duckdb"
    shutil.copyfile(store.path, db)
    result = run_replay(db, str(tmp / "unused"), tmp_path / "cache", NORMAL, NORMAL, selection=[AssetKey("daily_pnl")])
    assert result.success
    materialized = [e.asset_key for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    assert materialized == [AssetKey("daily_pnl")]
    checks = {e.asset_check_evaluation_data.asset_check_key for e in result.all_events
              if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert checks == {k for k in dbt_pnl_models.check_keys if k.asset_key == AssetKey("daily_pnl")}
    assert len(checks) == 4


def test_the_dbt_step_builds_in_the_dbt_worker_the_replay_step_started(replayed):
    first, second, _, _, _ = replayed
    for result in (first, second):
        assert any(m.startswith("dbt build: 1 build(s), one for the whole selection, in the dbt worker started "
                                "with the run") for m in LOG_MESSAGES[result.run_id])


def test_while_a_live_session_may_write_each_dbt_model_is_built_by_a_dbt_invocation_of_its_own(
        replayed, tmp_path, monkeypatch):
    from alphagen_core.application.lease import SessionLease, session_dir

    first, _, store, _, tmp = replayed
    no_session = {e.step_materialization_data.materialization.metadata["invocation_id"].value
                  for e in first.all_events
                  if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key in dbt_pnl_models.keys}
    assert len(no_session) == 1  # inside the window too, the replay's one `dbt build`
    monkeypatch.setenv("ALPHAGEN_SIM_START", INSIDE_LIVE_WINDOW)
    monkeypatch.setenv("ALPHAGEN_CACHE_DIR", str(tmp_path / "cache"))
    # the day's session job started on this cache folder (and is still up, holding its lease)
    lease = SessionLease(session_dir(tmp_path / "cache"), INSIDE_LIVE_WINDOW[:10], "a-session-run")
    db = tmp_path / "copy.duckdb"
    shutil.copyfile(store.path, db)
    # three models, one a parent of the others, and a test over two of them (relationships of
    # stg_executions to stg_trade_intents); the order of all of them is model_steps' unit test's
    selected = [AssetKey(["staging", m]) for m in ("stg_latest_versions", "stg_trade_intents", "stg_executions")]
    with lease:
        result = run_replay(db, str(tmp / "unused"), tmp_path / "cache", NORMAL, NORMAL, selection=selected)
    assert result.success
    invocations = {e.asset_key: e.step_materialization_data.materialization.metadata["invocation_id"].value
                   for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert set(invocations) == set(selected)
    assert len(set(invocations.values())) == len(invocations)
    # no replay step in this run, so no dbt worker: each build is a dbt process of its own
    assert any(m.startswith("dbt build: 3 build(s), one per model") and ", in new dbt processes;" in m
               for m in LOG_MESSAGES[result.run_id])
    checks = [e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    expected = {k for k in dbt_pnl_models.check_keys if k.asset_key in selected}
    assert any(k.name.startswith("relationships_stg_executions") for k in expected)
    assert {c.asset_check_key for c in checks} == expected and all(c.passed for c in checks)


def test_a_failing_dbt_test_is_a_failed_asset_check_and_fails_the_step(replayed, tmp_path):
    """dbt's results arrive as Dagster events: a failing dbt test is a failed asset check and
    a failed step, named in the error; the models downstream of it are not materialized."""
    _, _, store, _, tmp = replayed
    db = tmp_path / "orphan.duckdb"
    shutil.copyfile(store.path, db)
    broken = Store(db)
    version = broken.latest_version("replay", NORMAL)
    row = broken.latest("executions", "replay", NORMAL).drop(*META_COLUMNS).row(0, named=True)
    orphan = {**row, "execution_id": "orphan-1", "intent_id": "no-such-intent"}
    broken.write({"executions": [orphan]}, RowMeta("replay", NORMAL, version, "test-orphan"))
    result = run_replay(db, str(tmp / "unused"), tmp_path / "cache", NORMAL, NORMAL,
                        selection=list(dbt_pnl_models.keys))
    assert not result.success
    checks = {e.asset_check_evaluation_data.check_name: e.asset_check_evaluation_data.passed
              for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    failed = [name for name, ok in checks.items() if not ok]
    assert len(failed) == 1 and failed[0].startswith("relationships_stg_executions_intent_id"), checks
    assert len(checks) > 10  # the tests that ran before dbt skipped what depends on the failure
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "relationships_stg_executions_intent_id" in str(failure.event_specific_data.error)
    materialized = {e.asset_key.path[-1] for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert "stg_executions" in materialized and "daily_pnl" not in materialized  # `dbt build` skips it


def test_corrupt_options_file_fails_the_day_naming_the_file_and_writes_nothing(tmp_path, flatfiles):
    root = tmp_path / "flatfiles"
    shutil.copytree(flatfiles, root)
    bad = root / options_key(CORRUPT)
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2])  # truncated mid-stream
    db = tmp_path / "alphagen.duckdb"
    result = run_replay(db, str(root), tmp_path / "cache", CORRUPT, CORRUPT, with_dbt=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert options_key(CORRUPT) in failure.event_specific_data.error.message
    assert not db.exists()  # a range that replays nothing leaves nothing behind


@pytest.mark.parametrize("overrides", [{"POLYGON_API_KEY": SECRETS["POLYGON_API_KEY"]},
                                       {"RISK_STOP_LOSS_MULTIPLE": "0.5"}])
def test_a_variant_that_cannot_run_fails_the_run_with_the_clis_message(tmp_path, flatfiles, overrides):
    db = tmp_path / "alphagen.duckdb"
    config = {"ops": {"replay_tables": {"config": {"variant": "x", "settings": overrides}}}}
    result = run_replay(db, str(flatfiles), tmp_path / "cache", NORMAL, NORMAL, run_config=config)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    with pytest.raises(VariantError) as cli_refusal:  # what `alphagen replay --variant x --set ...` says
        variant_settings("x", overrides)
    assert failure.event_specific_data.user_failure_data.description == str(cli_refusal.value)
    assert SECRETS["POLYGON_API_KEY"] not in str(failure.event_specific_data)
    assert not db.exists()


def test_replay_from_s3_equals_local_folder_and_keeps_secrets_out(tmp_path, flatfiles, replayed, monkeypatch):
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=SECRETS["POLYGON_S3_ACCESS_KEY"],
                          aws_secret_access_key=SECRETS["POLYGON_S3_SECRET_KEY"], region_name="us-east-1")
        s3.create_bucket(Bucket="flatfiles")
        for key in (stocks_key(NORMAL), options_key(NORMAL)):
            s3.upload_file(str(flatfiles / key), "flatfiles", key)
        monkeypatch.setenv("POLYGON_S3_ENDPOINT", endpoint)
        for name, value in SECRETS.items():  # every secret setting, as sentinels
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("ALPHAGEN_CHART_DIR", str(tmp_path / "charts"))
        db = tmp_path / "s3.duckdb"
        result = run_replay(db, "s3", tmp_path / "cache", NORMAL, NORMAL, with_dbt=True)
        assert result.success
    finally:
        server.stop()
    # Secrets never reach the tables, the Dagster event log or the run's metadata.
    stored = db.read_bytes()
    events = "\n".join(repr(e) for e in result.all_events)
    for value in SECRETS.values():
        assert value.encode() not in stored
        assert value not in events
    _, _, local_store, _, _ = replayed
    s3_store = Store(db)
    for table in TABLES:
        local, remote = content(local_store, table, NORMAL), content(s3_store, table, NORMAL)
        if "source" in local.columns:
            local, remote = local.drop("source"), remote.drop("source")
        assert remote.equals(local), table


def _locked_for_another_process(db: Path) -> bool:
    import subprocess
    import sys

    probe = f"import duckdb\ntry:\n duckdb.connect({str(db)!r}).close()\nexcept duckdb.Error:\n print('locked')"
    return "locked" in subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60).stdout


@pytest.mark.parametrize(("clock_at", "session_started", "held"),
                         [("10:00", True, False), ("10:00", False, True), ("20:00", True, True)])
def test_a_replay_holds_the_duckdb_file_between_days_only_while_no_live_session_writes(
        tmp_path, clock_at, session_started, held):
    """Released between days inside a live window once that day's session job has started on
    the replay's cache folder (the service trades on this machine); held otherwise."""
    import contextlib

    from alphagen_core.application.lease import (
        SessionLease,
        live_writers_at,
        session_dir,
    )
    from alphagen_core.domain.clock import SimClock
    from alphagen_dagster.assets import _OnFirstWrite

    day = dt.date(2024, 12, 2)
    if session_started:
        SessionLease(session_dir(tmp_path / "cache"), day.isoformat(), "a-session-run").release()
    db = Store(tmp_path / "alphagen.duckdb")
    db.ensure_schema()
    clock = SimClock(dt.datetime.combine(day, dt.time.fromisoformat(clock_at), tzinfo=NY), speed=1)
    with contextlib.ExitStack() as stack:
        _OnFirstWrite(stack, db, False, lambda: live_writers_at(tmp_path / "cache", clock.now())).store()
        assert _locked_for_another_process(db.path) is held  # between two days' writes
    assert not _locked_for_another_process(db.path)
