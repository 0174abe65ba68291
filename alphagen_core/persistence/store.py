"""The append-only DuckDB store: the eight tables and `versions` (their contract is `tables.py`), and the one
module through which the project's code uses the database file (dbt reads and writes it on its own).

Rules this module enforces:
- Rows are only inserted. Each table has a natural key within (mode, session_date, version);
  an insert skips the rows whose key the version already has (an anti-join, in the same
  transaction), so writing the same key twice in a version is a no-op, a retried run is
  harmless, and a new replay appends under a new version. The key is not a DuckDB PRIMARY KEY:
  its index made inserts 2-3x slower, and the file lock already admits a single writer.
- DuckDB lets one process hold the file at a time (readers included), so every use opens a
  short-lived connection, retries on the lock with jittered backoff, and closes at once.
  Opening the file is the one part a caller may supply (`Opener`: the Dagster side opens it
  with dagster-duckdb's resource); the lock wait, the session settings and the transactions
  stay here.
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import polars as pl
import structlog

from alphagen_core.operations.variants import BASE
from alphagen_core.persistence.rows import to_frame
from alphagen_core.persistence.tables import ALL_TABLES, Table

log = structlog.get_logger(__name__)

NY_TZ = "America/New_York"
# DuckDB's buffer pool defaults to 80% of the machine's memory and keeps the pages it has read:
# a replay holds one connection for its whole range, so a year's replay grew by the pages of
# every day it wrote (BENCHMARKS.md, "Year replay"). Evicted pages are read again from the file.
MEMORY_LIMIT = "256MB"
# Lock waits poll at most this far apart: another writer holds the file for a fraction of a
# second (a replayed day's commit), and a longer sleep would overshoot the moment it is free.
_MAX_LOCK_POLL_S = 0.1
# File timestamps come from the kernel's coarse clock, at most a tick (10 ms) behind the time:
# a file last written this long before a look cannot be written after the look and keep its
# timestamp.
_SETTLED_S = 0.1

T = TypeVar("T")


@dataclass(frozen=True)
class RowMeta:
    """The audit columns every row carries."""

    mode: str
    session_date: dt.date
    version: str
    run_id: str
    written_at: dt.datetime | None = None

    def columns(self) -> dict[str, Any]:
        written_at = self.written_at or dt.datetime.now(dt.UTC)
        return {
            "mode": self.mode,
            "session_date": self.session_date,
            "version": self.version,
            "run_id": self.run_id,
            "written_at": written_at,
        }


# Every run writes normalized_ticks, so the newest of a variant's versions there is the latest
# of its (mode, variant, session_date); a version without a versions row is base.
_LATEST_VERSION = f"""SELECT max(t.version) FROM normalized_ticks AS t
    LEFT JOIN versions AS v USING (mode, session_date, version)
    WHERE t.mode = ? AND t.session_date = ? AND coalesce(v.variant, '{BASE}') = ?"""


class StoreLockedError(RuntimeError):
    pass


class StoreOpenError(RuntimeError):
    """The DuckDB file cannot be opened for a reason other than another process's lock: not a
    DuckDB file, a directory, no permission, a full disk. The message names the file."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc`, or an exception it was raised from, is a full disk (DuckDB reports it
    as an IOException whose text carries the OS message, not as an OSError)."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "errno", None) == errno.ENOSPC or "No space left on device" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_lock_error(exc: duckdb.Error) -> bool:
    text = str(exc)
    return "lock" in text.lower() and ("Could not set lock" in text or "Conflicting lock" in text)


# One attempt to open the database file (read_only or not); raises duckdb.Error when another
# process holds its lock. Store.connect waits for the lock around it.
Opener = Callable[[bool], duckdb.DuckDBPyConnection]


class Store:
    def __init__(self, path: str | Path, *, lock_timeout_s: float = 120.0, opener: Opener | None = None) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self._open = opener or self._open_file
        self._schema_ready = False

    def _open_file(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.path), read_only=read_only)

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; waits for another process's lock with backoff."""
        if read_only and not self.path.exists():
            raise FileNotFoundError(f"no DuckDB file at {self.path}: run a replay first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            _create_file(self.path)
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.02
        while True:
            try:
                con = self._open(read_only)
                break
            except duckdb.Error as exc:
                if not _is_lock_error(exc):
                    raise StoreOpenError(f"cannot open the DuckDB file {self.path}: {exc}") from exc
                if time.monotonic() >= deadline:
                    raise StoreLockedError(
                        f"{self.path} stayed locked by another process for "
                        f"{self.lock_timeout_s:g}s"
                    ) from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, _MAX_LOCK_POLL_S)
        try:
            con.execute(f"SET TimeZone = '{NY_TZ}'")
            con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
            yield con
        finally:
            con.close()

    def ensure_schema(self, con: duckdb.DuckDBPyConnection | None = None) -> None:
        """Create the tables once per Store object (nothing ever drops them), so a process
        that polls the file (the session trader) does not run DDL on every read."""
        if self._schema_ready:
            return
        if con is None:
            with self.connect() as own:
                self.ensure_schema(own)
            return
        for table in ALL_TABLES.values():
            con.execute(table.ddl)
        _add_new_columns(con)
        self._schema_ready = True

    def insert(self, table: str, rows: pl.DataFrame | Sequence[Any], meta: RowMeta) -> int:
        """Insert rows (dataclasses, dicts or a DataFrame); returns how many were new."""
        return self.write({table: rows}, meta)[table]

    def write(
        self, batches: dict[str, pl.DataFrame | Sequence[Any]], meta: RowMeta
    ) -> dict[str, int]:
        """Insert several tables' rows in one transaction: all of them or none."""
        frames = {t: to_frame(rows) for t, rows in batches.items()}
        with self.connect() as con:
            self.ensure_schema(con)
            con.execute("BEGIN TRANSACTION")
            try:
                added = {t: _insert_new(con, ALL_TABLES[t], f, meta) for t, f in frames.items()}
                con.execute("COMMIT")
            except BaseException:
                # After a failed COMMIT (a full disk) DuckDB has already ended the transaction:
                # ROLLBACK then fails with "no transaction is active" and would hide the cause.
                with suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
        return added

    def query(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        with self.connect() as con:
            self.ensure_schema(con)
            return con.sql(sql, params=params).pl() if params else con.sql(sql).pl()

    def latest_version(self, mode: str, session_date: dt.date, variant: str = BASE) -> str | None:
        frame = self.query(f"SELECT ({_LATEST_VERSION}) AS v", [mode, session_date, variant])
        return frame["v"][0] if frame.height else None

    def latest(self, table: str, mode: str, session_date: dt.date, variant: str = BASE) -> pl.DataFrame:
        """The rows of the latest version of the variant for (mode, session_date), ordered by
        natural key.

        The latest version is taken from normalized_ticks, which every run writes, so a table
        with no rows in that version (no trades today) reads as empty, not as an older one.
        """
        spec = ALL_TABLES[table]
        order = ", ".join(f'"{k}"' for k in spec.key)
        return self.query(
            f"""SELECT * FROM {spec.name}
                WHERE mode = ? AND session_date = ? AND version = ({_LATEST_VERSION})
                ORDER BY {order}""",
            [mode, session_date, mode, session_date, variant],
        )


@dataclass(frozen=True)
class FileStamp:
    """What every committed write changes: the mtime, size and inode of the DuckDB file and of
    its write-ahead log (None for one that is not there). `settled`: neither was written in the
    _SETTLED_S before the look, so any write after it changes the stamp."""

    files: tuple[tuple[int, int, int] | None, ...]
    settled: bool


def _file_stamp(path: Path) -> FileStamp:
    now = time.time_ns()
    files = tuple(_stat(p) for p in (path, path.with_name(f"{path.name}.wal")))
    newest = max((f[0] for f in files if f is not None), default=0)
    return FileStamp(files, now - newest >= _SETTLED_S * 1e9)


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class UnchangedReads:
    """A poller's reads, each answered from its last result while the file is unchanged since a
    settled look taken before that result was read: opening DuckDB costs CPU even for an
    unchanged file, and a session trader polls several times a second all day (BENCHMARKS.md,
    "Sixteenth session")."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._last: dict[str, tuple[FileStamp, Any]] = {}

    def read(self, name: str, read: Callable[[], T]) -> T:
        stamp = _file_stamp(self.store.path)
        last = self._last.get(name)
        if last is not None and last[0].settled and last[0].files == stamp.files:
            return last[1]
        value = read()
        self._last[name] = (stamp, value)
        return value


def _create_file(path: Path) -> None:
    """Create an empty database file so that no other process ever sees it half-written.

    DuckDB writes a new file's headers after creating it; a second process opening the path
    in between fails with "exists, but it is not a valid DuckDB database file" (two writers
    starting on a fresh file). So the file is made under a private name and hard-linked into
    place, which fails harmlessly when another process got there first.
    """
    private = path.with_name(f".{path.name}.{os.getpid()}.{random.getrandbits(32):08x}.new")
    try:
        duckdb.connect(str(private)).close()
        # FileExistsError: another process made it first. Any other OSError: a filesystem
        # without hard links, where DuckDB then creates the file in place.
        with suppress(OSError):
            os.link(private, path)
    finally:
        private.unlink(missing_ok=True)
        Path(f"{private}.wal").unlink(missing_ok=True)


def _add_new_columns(con: duckdb.DuckDBPyConnection) -> None:
    """The columns added after their table was first released, so that a file written by an
    older version takes them on first use (its old rows read NULL there)."""
    have = set(con.execute("SELECT table_name, column_name FROM duckdb_columns()").fetchall())
    for table in ALL_TABLES.values():
        for column in table.columns:
            if column.added_later and (table.name, column.name) not in have:
                con.execute(f"ALTER TABLE {table.name} ADD COLUMN {column.ddl}")


def _insert_new(con: duckdb.DuckDBPyConnection, spec: Table, frame: pl.DataFrame, meta: RowMeta) -> int:
    if frame.is_empty():
        return 0
    frame = frame.with_columns(
        pl.lit(value).alias(name) for name, value in meta.columns().items()
    ).unique(subset=list(spec.key), keep="first", maintain_order=True)
    keys = ", ".join(f'"{k}"' for k in spec.key)
    con.register("_incoming", frame.to_arrow())  # an Arrow table scans faster than a polars frame
    # No try/finally around the unregister: when the insert fails (a NOT NULL column left
    # empty, say) the transaction is aborted and unregistering would raise "Current
    # transaction is aborted", hiding the real error. The caller rolls back and closes the
    # connection, which drops the view anyway.
    added = con.execute(
        f"""INSERT INTO {spec.name} BY NAME
            SELECT i.* FROM _incoming AS i ANTI JOIN (
                SELECT {keys} FROM {spec.name}
                WHERE mode = ? AND session_date = ? AND version = ?
            ) AS existing USING ({keys})""",
        [meta.mode, meta.session_date, meta.version],
    ).fetchone()
    con.unregister("_incoming")
    return int(added[0]) if added else 0
