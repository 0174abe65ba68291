"""The batching SQLite event log (alphagen_dagster/storage.py) against Dagster's own: same rows
in both shards, same asset records, and the batch really written in one transaction per shard."""

import logging
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    BackfillPolicy,
    DagsterEvent,
    DagsterEventType,
    DagsterInstance,
    DailyPartitionsDefinition,
    Definitions,
    EventLogEntry,
    EventRecordsFilter,
    MaterializeResult,
    MetadataValue,
    StaticPartitionsDefinition,
    asset,
    define_asset_job,
)

# Dagster internals, as in the storage under test (the only other module allowed them): its
# base class and the events it is fed here, built directly.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationPlanned,
)
from dagster._core.events import (
    AssetMaterializationPlannedData,
    EngineEventData,
    StepMaterializationData,
)
from dagster._core.storage.event_log import SqliteEventLogStorage

from alphagen_dagster.storage import BatchingSqliteEventLogStorage

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parent.parent
BATCH_ENV = "DAGSTER_EVENT_BATCH_SIZE"
DAYS = StaticPartitionsDefinition(["2024-12-09", "2024-12-10", "2024-12-11", "2024-12-12"])
PLANNED = DagsterEventType.ASSET_MATERIALIZATION_PLANNED
RUN_ID = "0f1e2d3c-0000-4000-8000-000000000001"


class CountingStorage(BatchingSqliteEventLogStorage):
    """The storage under test, noting the batches it gets and the shards each one connects to."""

    def __init__(self, *args, **kwargs):
        self.batches: list[tuple[int, list[str], int]] = []  # (events, shards connected, store_event calls)
        self._in_batch: tuple[list[str], list[int]] | None = None
        super().__init__(*args, **kwargs)

    def _connect(self, shard):
        if self._in_batch is not None:
            self._in_batch[0].append(shard)
        return super()._connect(shard)

    def store_event(self, event):
        if self._in_batch is not None:
            self._in_batch[1][0] += 1
        super().store_event(event)

    def store_event_batch(self, events):
        self._in_batch = ([], [0])
        try:
            super().store_event_batch(events)
        finally:
            shards, (singles,) = self._in_batch
            self._in_batch = None
            self.batches.append((len(events), shards, singles))


class FailingIndexStorage(CountingStorage):
    """The index shard fails once, at the third asset event of a batch."""

    failures_left = 1

    def _store_asset_event(self, conn, event, event_id):
        if event_id == 3 and self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("index shard failed")
        super()._store_asset_event(conn, event, event_id)


@pytest.fixture(autouse=True)
def _batch_env(monkeypatch):
    """Each test starts without DAGSTER_EVENT_BATCH_SIZE (loading the storage sets it) and with
    Dagster's default planned events (the CLI's replay changes them)."""
    monkeypatch.setenv(BATCH_ENV, "0")
    monkeypatch.delenv(BATCH_ENV)
    monkeypatch.delenv("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", raising=False)
    monkeypatch.delenv("DAGSTER_EMIT_PLANNED_EVENTS_INDIVIDUALLY", raising=False)


def _home(path: Path, **event_log_storage) -> Path:
    """A DAGSTER_HOME with the project's dagster.yaml, optionally another event log class."""
    path.mkdir()
    config = yaml.safe_load((PROJECT / "dagster.yaml").read_text())
    config["event_log_storage"].update(event_log_storage)
    (path / "dagster.yaml").write_text(yaml.safe_dump(config))
    return path


def _plain_home(path: Path) -> Path:
    """A DAGSTER_HOME with Dagster's default storage (`storage: sqlite` under the home)."""
    path.mkdir()
    (path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return path


@asset(partitions_def=DAYS, backfill_policy=BackfillPolicy.single_run())
def quotes(context: AssetExecutionContext) -> None:
    for day in context.partition_keys:
        context.add_asset_metadata({"day": day, "rows": len(day) + int(day[-2:])}, partition_key=day)


@asset(partitions_def=DAYS, backfill_policy=BackfillPolicy.single_run(), deps=[quotes])
def pnl(context: AssetExecutionContext) -> None:
    for day in context.partition_keys:
        context.add_asset_metadata({"pnl": float(day[-2:]) / 4}, partition_key=day)


DEFS = Definitions(assets=[quotes, pnl], jobs=[define_asset_job("days", [quotes, pnl])])


def _run_days(instance: DagsterInstance) -> None:
    result = DEFS.resolve_job_def("days").execute_in_process(
        instance=instance,
        run_id=RUN_ID,
        tags={"dagster/asset_partition_range_start": "2024-12-10", "dagster/asset_partition_range_end": "2024-12-12"},
    )
    assert result.success


def _asset_state(instance: DagsterInstance) -> dict:
    """What Dagster reads back about the run's assets, without timestamps."""
    state = {}
    for key in (AssetKey("quotes"), AssetKey("pnl")):
        records = instance.fetch_materializations(key, limit=100).records
        (asset_record,) = instance.get_asset_records([key])
        latest = asset_record.asset_entry.last_materialization_record
        state[key] = {
            "materializations": [
                (r.storage_id, r.run_id, r.partition_key, dict(r.asset_materialization.metadata)) for r in records
            ],
            "planned": [
                (r.storage_id, r.event_log_entry.dagster_event.partition)
                for r in instance.event_log_storage.get_event_records(EventRecordsFilter(PLANNED, asset_key=key))
            ],
            "asset_record": (latest.storage_id, latest.partition_key, asset_record.asset_entry.last_run_id),
            "by_partition": instance.get_latest_storage_id_by_partition(key, DagsterEventType.ASSET_MATERIALIZATION),
            "materialized": instance.get_materialized_partitions(key),
            "tags": sorted(sorted(t.items()) for t in instance.event_log_storage.get_event_tags_for_asset(key)),
        }
    state["run_events"] = [
        (e.dagster_event_type, e.dagster_event.partition if e.is_dagster_event else None)
        for e in instance.all_logs(RUN_ID)
        if e.dagster_event_type in {DagsterEventType.ASSET_MATERIALIZATION, PLANNED}
    ]
    return state


def test_the_project_instance_uses_the_batching_storage_at_the_default_paths(tmp_path):
    home = _home(tmp_path / "home")
    with DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        assert type(storage) is BatchingSqliteEventLogStorage
        assert os.environ[BATCH_ENV] == "1000"  # loading the instance turned batching on
        # Dagster's `storage: sqlite` layout, whatever the working directory
        assert Path(storage.path_for_shard("index")) == home / "history" / "runs" / "index.db"
        assert Path(instance.run_storage._conn_string.split("///")[-1]) == home / "history" / "runs.db"
        assert (home / "schedules" / "schedules.db").exists()


def test_an_existing_home_keeps_its_history(tmp_path):
    home = _plain_home(tmp_path / "home")
    with DagsterInstance.from_config(str(home)) as instance:
        _run_days(instance)
        before = _asset_state(instance)
    shutil.copyfile(PROJECT / "dagster.yaml", home / "dagster.yaml")
    with DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.event_log_storage) is BatchingSqliteEventLogStorage
        assert [r.dagster_run.run_id for r in instance.get_run_records()] == [RUN_ID]
        assert _asset_state(instance) == before


def test_a_partition_range_run_records_the_same_as_dagsters_storage_in_one_write_per_shard(tmp_path, monkeypatch):
    monkeypatch.setenv(BATCH_ENV, "0")  # Dagster's own path, event by event
    with DagsterInstance.from_config(str(_plain_home(tmp_path / "plain"))) as instance:
        assert type(instance.event_log_storage) is SqliteEventLogStorage
        _run_days(instance)
        expected = _asset_state(instance)
    monkeypatch.delenv(BATCH_ENV)
    home = _home(tmp_path / "batched", module=__name__, **{"class": "CountingStorage"})
    with DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        assert isinstance(storage, CountingStorage)
        _run_days(instance)
        assert _asset_state(instance) == expected
        # the 6 planned (3 days x 2 assets), then each asset's 3 materializations: one write per shard
        assert sorted(storage.batches) == [(3, [RUN_ID, "index"], 0)] * 2 + [(6, [RUN_ID, "index"], 0)]
    assert len(expected[AssetKey("pnl")]["materializations"]) == 3
    by_day = {day: metadata for _, _, day, metadata in expected[AssetKey("quotes")]["materializations"]}
    assert by_day["2024-12-12"] == {"day": MetadataValue.text("2024-12-12"), "rows": MetadataValue.int(22)}


T0 = 1_733_700_000.0


def _entry(run_id: str, event_type: DagsterEventType | None, data=None, n: int = 0) -> EventLogEntry:
    dagster_event = (
        None if event_type is None else DagsterEvent(event_type.value, "days", event_specific_data=data, step_key="s")
    )
    return EventLogEntry(error_info=None, level=logging.INFO, user_message=f"m{n}", run_id=run_id,
                         timestamp=T0 + n, step_key="s", job_name="days", dagster_event=dagster_event)


def _materialization(run_id: str, key: str, day: str, n: int) -> EventLogEntry:
    tags = {"dagster/data_version": f"v{n}", "other": "x"}  # the first is indexed
    mat = AssetMaterialization(key, partition=day, metadata={"n": n}, tags=tags)
    return _entry(run_id, DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(mat), n)


def _planned(run_id: str, key: str, day: str, n: int) -> EventLogEntry:
    data = AssetMaterializationPlannedData(AssetKey(key), partition=day)
    return _entry(run_id, DagsterEventType.ASSET_MATERIALIZATION_PLANNED, data, n)


BATCHES = {
    "materializations": [[_materialization(RUN_ID, key, f"2024-12-{d:02}", 10 * i + d) for d in range(1, 21)]
                         for i, key in enumerate(["quotes", "pnl", "quotes"])],
    "planned": [[_planned(RUN_ID, key, f"2024-12-{d:02}", d) for key in ("a", "b") for d in (1, 2, 3)]],
    "planned with a check": [[_planned(RUN_ID, "a", "2024-12-01", 1),
                              _entry(RUN_ID, DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED,
                                     AssetCheckEvaluationPlanned(asset_key=AssetKey("a"), check_name="rows"), 2),
                              _planned(RUN_ID, "b", "2024-12-01", 3)]],
    "run events": [[_entry(RUN_ID, DagsterEventType.RUN_START, None, 1),
                    _entry(RUN_ID, DagsterEventType.ENGINE_EVENT, EngineEventData(), 2),
                    _entry(RUN_ID, None, None, 3),
                    _materialization(RUN_ID, "quotes", "2024-12-01", 4)]],
    "two runs": [[_materialization(RUN_ID, "quotes", "2024-12-01", 1),
                  _materialization("0f1e2d3c-0000-4000-8000-000000000002", "quotes", "2024-12-02", 2)]],
}
FAST = {"materializations", "planned"}  # batches of asset events of one run


def _dump(storage: SqliteEventLogStorage, shards: list[str]) -> dict:
    """Every row of every table of the shards, less the columns SQLite stamps at insert time."""
    stamped = {"create_timestamp", "update_timestamp", "migration_completed"}
    dump = {}
    for shard in shards:
        with sqlite3.connect(storage.path_for_shard(shard)) as con:
            tables = [t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                cur = con.execute(f"SELECT * FROM {table} ORDER BY rowid")
                keep = [i for i, c in enumerate(cur.description) if c[0] not in stamped]
                dump[shard, table] = [tuple(row[i] for i in keep) for row in cur.fetchall()]
    return dump


def _stored_both_ways(tmp_path: Path, name: str) -> CountingStorage:
    """The batches of `name` stored by Dagster's storage event by event and by ours in
    batches: the same rows in every shard. Returns ours, with its notes."""
    plain = SqliteEventLogStorage(str(tmp_path / "plain"))
    batched = CountingStorage(str(tmp_path / "batched"))
    for batch in BATCHES[name]:
        for event in batch:
            plain.store_event(event)
        batched.store_event_batch(batch)
    shards = sorted({e.run_id for batch in BATCHES[name] for e in batch}) + ["index"]
    expected = _dump(plain, shards)
    assert _dump(batched, shards) == expected
    assert expected["index", "event_logs"]  # asset and run-status events are mirrored in the index
    return batched


@pytest.mark.parametrize("name", sorted(FAST))
def test_a_batch_of_one_runs_asset_events_writes_dagsters_rows_in_one_write_per_shard(tmp_path, name):
    batched = _stored_both_ways(tmp_path, name)
    assert batched.batches == [(len(batch), [RUN_ID, "index"], 0) for batch in BATCHES[name]]


@pytest.mark.parametrize("name", sorted(set(BATCHES) - FAST))
def test_any_other_batch_takes_dagsters_path_event_by_event(tmp_path, name):
    batched = _stored_both_ways(tmp_path, name)
    assert [(size, singles) for size, _, singles in batched.batches] == [(len(b), len(b)) for b in BATCHES[name]]


def test_a_failed_index_write_is_mirrored_event_by_event_and_writes_nothing_twice(tmp_path):
    """Raising would make Dagster store the batch again event by event, doubling the run
    shard's rows; a failed index transaction is rolled back and redone event by event instead."""
    batch = BATCHES["materializations"][0]
    plain = SqliteEventLogStorage(str(tmp_path / "plain"))
    failing = FailingIndexStorage(str(tmp_path / "failing"))
    for event in batch:
        plain.store_event(event)
    failing.store_event_batch(batch)
    assert failing.failures_left == 0
    assert _dump(failing, [RUN_ID, "index"]) == _dump(plain, [RUN_ID, "index"])


@asset(partitions_def=DailyPartitionsDefinition("2024-12-01"), backfill_policy=BackfillPolicy.single_run(),
       check_specs=[AssetCheckSpec("rows_positive", asset="checked")])
def checked(context: AssetExecutionContext):
    yield MaterializeResult(check_results=[AssetCheckResult(check_name="rows_positive", passed=True)])


CHECKED = Definitions(assets=[checked], jobs=[define_asset_job("checked_days", [checked])])


def _check_rows(instance: DagsterInstance) -> list[tuple[str, str | None]]:
    with sqlite3.connect(instance.event_log_storage.path_for_shard("index")) as con:
        return con.execute("SELECT execution_status, partition FROM asset_check_executions ORDER BY id").fetchall()


@pytest.mark.parametrize(("storage", "expected"), [
    # the upstream behaviour this storage corrects; if it changes, drop the override
    ("dagster", [("PLANNED", "2024-12-10"), ("PLANNED", "2024-12-11"), ("PLANNED", "2024-12-12"), ("SUCCEEDED", None)]),
    ("ours", [("SUCCEEDED", None)]),
])
def test_a_range_run_plans_each_unpartitioned_check_once_and_resolves_it(tmp_path, storage, expected):
    """On time-window partitions (the run then stores its partition subset), Dagster's own
    storage plans the check once per day of the range and leaves those rows PLANNED (the
    result names no partition); ours plans it once and the result completes it."""
    home = _plain_home(tmp_path / "home") if storage == "dagster" else _home(tmp_path / "home")
    with DagsterInstance.from_config(str(home)) as instance:
        result = CHECKED.resolve_job_def("checked_days").execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": "2024-12-10", "dagster/asset_partition_range_end": "2024-12-12"},
        )
        assert result.success
        rows = _check_rows(instance)
    assert sorted(rows, key=str) == expected
