"""Dagster's SQLite event log, writing a batch of asset events in two transactions.

A 20-day replay writes 160 partition materializations (one per asset and day). Dagster's SQLite
event log commits each event on its own: once in the run's shard, once in the index shard, each
commit opening and closing a connection. Dagster hands the per-partition materializations of one
asset output to `store_event_batch` when DAGSTER_EVENT_BATCH_SIZE > 0, but its SQLite storage
then stores them one by one; this one writes the batch with one transaction per shard.

It reproduces what `SqliteEventLogStorage.store_event` does for an asset event, with these
internals of the pinned dagster (1.13.27): `prepare_insert_event`, `run_connection`,
`index_transaction`, `_store_asset_event_tags` and `_store_asset_event`.

`shards_held_open` keeps a run's SQLite shards open while it runs (`path_for_shard`,
`run_connection` and `index_connection` of the same storage).

It also plans each asset check of a run once. Dagster 1.13.27 plans every check of a
partition-range run once per partition of the run (`DagsterRun.partitions_subset`), whatever
the check's own partitions, while a range run's check result names no partition: the planned
rows stayed PLANNED for ever (a year's replay: 33 checks x 252 days = 8,316 rows, 139 MB of
event log). No check of this project is partitioned, so one
planned row per check and run is the truth, and the result then completes it.

The project's one module with Dagster internals: the measured gain and the upgrade risk are in
ARCHITECTURE.md ("One run per range"); tests/test_event_log_storage.py compares it with
Dagster's own storage.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence

from dagster import DagsterEventType, DagsterInvariantViolationError, EventLogEntry
from dagster._core.events import ASSET_EVENTS
from dagster._core.instance.types import MayHaveInstanceWeakref
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.sqlalchemy_compat import db_result
from dagster_shared.record import replace

# Dagster reads it at every event; one asset output's partitions (a replay's days) are one batch.
EVENT_BATCH_SIZE = "1000"


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """SqliteEventLogStorage whose `store_event_batch` writes the asset events of one run with one
    run-shard and one index-shard transaction. Loading it turns Dagster's event batching on in
    the process (unless DAGSTER_EVENT_BATCH_SIZE is set). A relative `base_dir` is relative to
    the instance's directory (DAGSTER_HOME), known once the instance registers itself."""

    def __init__(self, base_dir: str, inst_data=None):
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)
        self._relative_dir = None if os.path.isabs(base_dir) else base_dir
        if self._relative_dir is None:
            super().__init__(base_dir, inst_data)
        else:  # the minimum Dagster may touch before register_instance
            self._inst_data, self._obs = inst_data, None
            MayHaveInstanceWeakref.__init__(self)

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> BatchingSqliteEventLogStorage:
        return cls(inst_data=inst_data, **config_value)

    def register_instance(self, instance) -> None:
        if self._relative_dir is not None:
            base_dir, self._relative_dir = os.path.join(instance.root_directory, self._relative_dir), None
            super().__init__(base_dir, self._inst_data)
        super().register_instance(instance)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        if len({e.run_id for e in events}) != 1 or not all(
            e.is_dagster_event and e.dagster_event_type in ASSET_EVENTS for e in events
        ):  # e.g. a run's planned assets and checks, which come as one batch: Dagster's way
            super().store_event_batch(events)  # one by one
            return
        self._store_asset_events(list(events))

    def store_asset_check_event(self, event: EventLogEntry, event_id: int | None) -> None:
        if event.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED:
            planned = event.dagster_event.event_specific_data
            if planned.partitions_subset is not None:
                unpartitioned = replace(planned, partitions_subset=None)
                event = event._replace(dagster_event=event.dagster_event._replace(event_specific_data=unpartitioned))
        super().store_asset_check_event(event, event_id)

    def _store_asset_events(self, events: list[EventLogEntry]) -> None:
        inserts = [self.prepare_insert_event(e) for e in events]
        with self.run_connection(events[0].run_id) as conn:
            for insert in inserts:
                conn.execute(insert)
        # Mirrored in the cross-run index, as store_event does. Should that fail, each event is
        # mirrored on its own: raising would make Dagster store the whole batch again, event by
        # event, and the run's shard would hold its rows twice.
        try:
            self._mirror_in_index(events, inserts)
        except Exception:
            for event, insert in zip(events, inserts):
                self._mirror_in_index([event], [insert])

    def _mirror_in_index(self, events: list[EventLogEntry], inserts: list) -> None:
        with self.index_transaction() as conn:
            event_ids = []
            for insert in inserts:
                with db_result(conn, insert) as result:
                    event_ids.append(result.inserted_primary_key[0])
            if None in event_ids:
                raise DagsterInvariantViolationError("Cannot store asset event tags for null event id.")
            self._store_asset_event_tags(conn, events, event_ids)
            for event, event_id in zip(events, event_ids):
                self._store_asset_event(conn, event, event_id)


@contextlib.contextmanager
def shards_held_open(instance, run_id: str) -> Iterator[None]:
    """Keep one idle connection to the run's SQLite event-log shard and to the index shard.

    Dagster's SQLite event log opens and closes a connection per write (several per event). In
    WAL mode, closing the *last* connection to a database checkpoints it and resets the WAL, so
    every event paid for a checkpoint; with another connection open, a close is just a close
    (3x cheaper per write here, about 4 s of a 20-day replay). Other storages (no shard files):
    nothing to do.
    """
    storage = instance.event_log_storage
    if not hasattr(storage, "path_for_shard"):
        yield
        return
    for shard in (storage.run_connection(run_id), storage.index_connection()):
        with shard:  # creates the shard (in WAL mode) before it is held; one at a time: not reentrant
            pass
    held = [sqlite3.connect(storage.path_for_shard(shard)) for shard in (run_id, "index")]
    try:
        for con in held:
            con.execute("SELECT count(*) FROM sqlite_master").fetchall()  # joins the WAL
        yield
    finally:
        for con in held:
            con.close()
