"""The append-only DuckDB store (the spec's tables and "DuckDB admits one writing process"), on real
DuckDB files in tmp_path, plus a static check that no code anywhere changes or removes rows.

Versions here look like the replay versions alphagen_dagster writes (creation time, then the
run id), which sort in creation order.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import asdict
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import polars as pl
import pytest

from alphagen_core.domain.models import ControlEvent, TradingState
from alphagen_core.persistence.rows import bar_rows, broker_position_rows, quote_rows
from alphagen_core.persistence.store import (
    RowMeta,
    Store,
    StoreLockedError,
    StoreOpenError,
    UnchangedReads,
)
from alphagen_core.persistence.tables import META_COLUMNS, TABLES
from tests.builders import at, make_engine
from tests.processes import hold_duckdb_lock
from tests.test_engine_handbuilt import CONFIG, DAY, slices

REPO = Path(__file__).resolve().parents[1]
NY = ZoneInfo("America/New_York")
V1 = "20240301T120000000000-aaaaaaaa"
V2 = "20240302T090000000000-bbbbbbbb"

SPEC_TABLES = {  # table -> key fields the spec's table list names (at least)
    "equity_bars": {"est_timestamp", "open", "high", "low", "close", "volume", "bar_vwap", "day_vwap"},
    "option_quotes": {"est_timestamp", "option_symbol", "strike", "right", "expiry", "bid", "ask", "last"},
    "broker_positions": {"est_timestamp", "symbol", "quantity", "avg_price"},
    "normalized_ticks": {"period_start", "vwap", "ma9", "underlying_price", "held_bid", "held_ask"},
    "position_state": {"est_timestamp", "symbol", "net_quantity", "avg_price", "unrealized_pnl"},
    "signals": {"est_timestamp", "signal_type", "option_symbol", "rationale", "cooldown_until", "acted", "slice_id"},
    "trade_intents": {"est_timestamp", "action", "qty", "limit_price", "stop_loss", "take_profit", "reason", "signal_id"},
    "executions": {"est_timestamp", "order_id", "status", "fill_price", "qty", "fees", "pnl_contrib", "intent_id"},
}


# ---- helpers ---------------------------------------------------------------------------


def meta(version: str = V1, run_id: str = "run-1", day: dt.date = DAY, mode: str = "replay") -> RowMeta:
    return RowMeta(mode, day, version, run_id)


def count(store: Store, table: str, where: str = "") -> int:
    return store.query(f"SELECT count(*) AS n FROM {table} {where}")["n"][0]


def handbuilt_session():
    """The outputs of the hand-built session (tests/test_engine_handbuilt.py), per table."""
    engine = make_engine(DAY, "10:30", CONFIG)
    feed = slices()
    ticks, positions, signals, intents, executions, broker = [], [], [], [], [], []
    for s in feed:
        out = engine.on_slice(s)
        ticks.append(out.tick)
        positions.append(out.position)
        signals += out.signals
        intents += out.intents
        executions += out.executions
        broker += broker_position_rows(out.broker_positions, s.bar.start, "paper")
    bars = bar_rows((s.bar for s in feed), "test")
    quotes = quote_rows([q for s in feed[:3] for q in s.quotes.values()], "aggregate", "test")
    return {
        "equity_bars": bars, "option_quotes": quotes, "broker_positions": broker,
        "normalized_ticks": ticks, "position_state": positions, "signals": signals,
        "trade_intents": intents, "executions": executions,
    }


@pytest.fixture(scope="module")
def session_rows():
    return handbuilt_session()


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(tmp_path / "alphagen.duckdb", lock_timeout_s=30)


# ---- polling: a read is answered again only while nothing was written --------------------


def _set_mtime(path: Path, seconds_from_now: float) -> None:
    """Date the file and its WAL as if last written `seconds_from_now` (negative: long ago;
    positive: a write the clock says happens about now, however slowly the test runs)."""
    for p in (path, path.with_name(f"{path.name}.wal")):
        if p.exists():
            then = time.time() + seconds_from_now
            os.utime(p, (then, then))


@pytest.mark.unit
def test_a_polled_read_is_reused_only_while_the_file_is_unchanged_since_a_settled_look(store):
    reads = UnchangedReads(store)
    meta = RowMeta("paper", DAY, "control", "run-1")
    calls = []

    def count() -> int:
        calls.append(1)
        return store.query("SELECT count(*) AS n FROM control_events")["n"][0]

    store.ensure_schema()
    for written in range(1, 31):  # each write comes at once after a reused read: never missed
        _set_mtime(store.path, -60)
        assert reads.read("n", count) == written - 1
        before = len(calls)
        assert reads.read("n", count) == written - 1 and len(calls) == before  # settled: reused
        store.write({"control_events": [ControlEvent(at(DAY, "10:00") + dt.timedelta(seconds=written),
                                                     TradingState.HALTED, "t", "test")]}, meta)
        assert reads.read("n", count) == written and len(calls) == before + 1
    _set_mtime(store.path, 10)  # written "now": a look this close to a write is not trusted
    reads.read("n", count)
    before = len(calls)
    assert reads.read("n", count) == 30 and len(calls) == before + 1
    other = UnchangedReads(store)  # names are cached apart, and per reader
    assert other.read("n", count) == 30 and reads.read("m", count) == 30


# ---- schema and round trip -------------------------------------------------------------


@pytest.mark.unit
def test_schema_has_the_eight_tables_with_the_shared_columns(store):
    store.ensure_schema()
    store.ensure_schema()  # idempotent
    columns = store.query(
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns"
    )
    assert set(columns["table_name"]) == set(SPEC_TABLES) | {"versions", "control_events"}
    assert set(SPEC_TABLES) == set(TABLES)
    for table, fields in SPEC_TABLES.items():
        rows = columns.filter(pl.col("table_name") == table)
        types = dict(zip(rows["column_name"], rows["data_type"]))
        nullable = dict(zip(rows["column_name"], rows["is_nullable"]))
        assert set(META_COLUMNS) == {"mode", "session_date", "version", "run_id", "written_at"}
        for col in META_COLUMNS:
            assert col in types and nullable[col] == "NO", (table, col)
        assert types["session_date"] == "DATE" and types["written_at"] == "TIMESTAMP WITH TIME ZONE"
        assert fields <= set(types), (table, fields - set(types))
        # every timestamp is time-zone aware
        assert {col: typ for col, typ in types.items() if "TIMESTAMP" in typ and typ != "TIMESTAMP WITH TIME ZONE"} == {}
    # the natural key of every table exists and is never NULL
    for table, spec in TABLES.items():
        rows = columns.filter(pl.col("table_name") == table)
        nullable = dict(zip(rows["column_name"], rows["is_nullable"]))
        assert all(nullable[k] == "NO" for k in spec.key), table


@pytest.mark.unit
def test_dataclass_rows_read_back_with_new_york_timestamps(store, session_rows):
    added = store.write(session_rows, meta())
    assert added == {t: len(rows) for t, rows in session_rows.items()}
    for table, rows in session_rows.items():
        frame = store.latest(table, "replay", DAY)
        assert frame.height == len(rows), table
        stamps = {name: dtype.time_zone for name, dtype in frame.schema.items() if isinstance(dtype, pl.Datetime)}
        assert "written_at" in stamps and set(stamps.values()) == {"America/New_York"}, (table, stamps)
    signals = store.latest("signals", "replay", DAY)
    first = session_rows["signals"][0]
    got = signals.row(0, named=True)
    assert got["est_timestamp"] == first.est_timestamp == at(DAY, "09:44")
    assert got["est_timestamp"].tzinfo.key == "America/New_York"
    assert got["est_timestamp"].utcoffset() == dt.timedelta(hours=-5)  # EST in February
    assert got["signal_type"] == "bullish" and got["acted"] is True  # enums stored by value
    assert (got["mode"], got["session_date"], got["version"], got["run_id"]) == ("replay", DAY, V1, "run-1")
    assert got["written_at"].tzinfo is not None
    executions = store.latest("executions", "replay", DAY)
    expected = sorted(session_rows["executions"], key=lambda e: e.execution_id)
    assert executions["execution_id"].to_list() == [e.execution_id for e in expected]
    assert executions["est_timestamp"].to_list() == [e.est_timestamp for e in expected]
    assert executions["pnl_contrib"].to_list() == [e.pnl_contrib for e in expected]
    assert executions["action"].to_list() == [e.action.value for e in expected]
    ticks = store.latest("normalized_ticks", "replay", DAY)
    assert ticks["period_start"].to_list() == [t.period_start for t in session_rows["normalized_ticks"]]
    # summer time reads back as EDT
    summer = dt.date(2024, 6, 14)
    store.insert("normalized_ticks", session_rows["normalized_ticks"][:1], meta(day=summer))
    store.insert("signals", [{**asdict(first), "est_timestamp": dt.datetime(2024, 6, 14, 9, 44, tzinfo=NY),
                              "signal_type": "bullish"}], meta(day=summer))
    edt = store.latest("signals", "replay", summer)["est_timestamp"][0]
    assert edt.utcoffset() == dt.timedelta(hours=-4) and (edt.hour, edt.minute) == (9, 44)


# ---- idempotency and versions ----------------------------------------------------------


@pytest.mark.unit
def test_same_minute_twice_in_a_version_adds_nothing(store, session_rows):
    minute = {t: rows[:2] for t, rows in session_rows.items()}
    first = store.write(minute, meta(run_id="run-1"))
    assert all(n > 0 for n in first.values())
    before = {t: count(store, t) for t in TABLES}
    # a retried run (another run id, another written_at) writes the same minute again
    again = store.write(minute, meta(run_id="run-retry"))
    assert again == {t: 0 for t in TABLES}
    assert {t: count(store, t) for t in TABLES} == before
    assert store.insert("signals", session_rows["signals"][:1], meta(run_id="run-3")) == 0
    assert count(store, "signals", "WHERE run_id <> 'run-1'") == 0  # the first write stands
    # a batch of old and new rows adds only the new ones; duplicates inside one batch count once
    batch = session_rows["trade_intents"][:4] + session_rows["trade_intents"][2:4]
    assert store.insert("trade_intents", batch, meta()) == len(session_rows["trade_intents"][2:4])
    assert count(store, "trade_intents") == 4


@pytest.mark.unit
def test_new_version_appends_and_latest_reads_only_the_newest(store, session_rows):
    store.write(session_rows, meta(V1))
    # the newer replay of the same day: ticks and signals, but no trades at all
    v2 = {"normalized_ticks": session_rows["normalized_ticks"][:5], "signals": session_rows["signals"][:1],
          "executions": []}
    added = store.write(v2, meta(V2, run_id="run-2"))
    assert added == {"normalized_ticks": 5, "signals": 1, "executions": 0}
    assert count(store, "normalized_ticks") == len(session_rows["normalized_ticks"]) + 5  # appended
    assert count(store, "signals", f"WHERE version = '{V1}'") == len(session_rows["signals"])
    assert store.latest_version("replay", DAY) == V2
    ticks = store.latest("normalized_ticks", "replay", DAY)
    assert ticks.height == 5 and set(ticks["version"]) == {V2}
    signals = store.latest("signals", "replay", DAY)
    assert signals.height == 1 and set(signals["version"]) == {V2}
    # tables with no row in the newest version read as empty, not as the older version
    for table in ("executions", "trade_intents", "position_state"):
        assert store.latest(table, "replay", DAY).height == 0, table
    # other days and modes keep their own latest version
    other_day = dt.date(2024, 2, 13)
    store.write({"normalized_ticks": session_rows["normalized_ticks"][:2],
                 "executions": session_rows["executions"][:1]}, meta(V1, day=other_day))
    assert store.latest_version("replay", other_day) == V1
    assert store.latest("executions", "replay", other_day).height == 1
    assert store.latest("executions", "paper", DAY).height == 0
    assert store.latest_version("paper", DAY) is None


@pytest.mark.unit
def test_latest_is_per_variant_and_a_version_without_a_versions_row_is_base(store, session_rows):
    ticks = session_rows["normalized_ticks"]
    store.write({"normalized_ticks": ticks[:3]}, meta(V1))  # no versions row: written before they were
    store.write({"normalized_ticks": ticks[:4], "versions": [{"variant": "sl3", "settings": "{}",
                                                              "code_version": "test"}]}, meta(V2))
    assert store.latest_version("replay", DAY) == V1
    assert store.latest("normalized_ticks", "replay", DAY).height == 3
    assert store.latest_version("replay", DAY, "sl3") == V2
    assert store.latest("normalized_ticks", "replay", DAY, "sl3").height == 4
    assert store.latest_version("replay", DAY, "other") is None


@pytest.mark.unit
def test_write_of_several_tables_is_all_or_nothing(store, session_rows):
    good = session_rows["signals"]
    bad = to_bad_frame(session_rows["trade_intents"])
    with pytest.raises(duckdb.ConstraintException, match="NOT NULL"):
        store.write({"signals": good, "trade_intents": bad}, meta())
    assert count(store, "signals") == 0  # the first table got nothing
    assert count(store, "trade_intents") == 0
    # an unknown table is refused before anything is written, too
    with pytest.raises(KeyError):
        store.write({"signals": good, "no_such_table": good}, meta())
    assert count(store, "signals") == 0
    # and the same batch, made valid, goes in whole
    assert store.write({"signals": good, "trade_intents": session_rows["trade_intents"]}, meta()) == {
        "signals": len(good), "trade_intents": len(session_rows["trade_intents"]),
    }


def to_bad_frame(intents) -> pl.DataFrame:
    """The intents with a NULL in a NOT NULL column (reason) in the last row."""
    rows = [{**asdict(i), "action": i.action.value} for i in intents]
    rows[-1]["reason"] = None
    return pl.DataFrame(rows, infer_schema_length=None)


# ---- locking: two processes, one file --------------------------------------------------

WORKER = textwrap.dedent(
    """
    import datetime as dt, sys, time
    from pathlib import Path
    from zoneinfo import ZoneInfo
    import duckdb
    from alphagen_core.persistence.store import RowMeta, Store

    path, who, batches, per, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5])
    conflicts = 0

    def counting_open(read_only):  # the plain open, counting the lock conflicts met
        global conflicts
        try:
            return duckdb.connect(path, read_only=read_only)
        except duckdb.IOException as exc:
            conflicts += "lock" in str(exc)
            raise

    store = Store(path, lock_timeout_s=120, opener=counting_open)
    meta = RowMeta("replay", dt.date(2024, 2, 12), "v1", "run-" + who)
    t0 = dt.datetime(2024, 2, 12, 9, 30, tzinfo=ZoneInfo("America/New_York"))
    print("ready", flush=True)
    while not go.exists():  # start together
        time.sleep(0.005)
    started = time.time()
    added = 0
    for b in range(batches):
        rows = [
            dict(symbol="QQQ-" + who, est_timestamp=t0 + dt.timedelta(minutes=b * per + i), open=1.0,
                 high=1.0, low=1.0, close=1.0, volume=1.0, bar_vwap=None, day_vwap=None,
                 transactions=None, source="test")
            for i in range(per)
        ]
        added += store.insert("equity_bars", rows, meta)
    print(added, conflicts, started, time.time())
    """
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


@pytest.mark.integration
def test_two_processes_insert_concurrently_without_losing_rows(tmp_path):
    db, go = tmp_path / "shared.duckdb", tmp_path / "go"
    batches, per = 40, 5
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(db), who, str(batches), str(per), str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        )
        for who in "AB"
    ]
    for w in workers:  # both have imported everything and wait at the start line
        assert w.stdout.readline().strip() == "ready", w.stderr.read()
    go.touch()
    results = [w.communicate(timeout=240) for w in workers]
    reports = []
    for w, (out, err) in zip(workers, results):
        assert w.returncode == 0, err
        added, conflicts, started, ended = out.split()
        assert int(added) == batches * per
        reports.append((int(conflicts), float(started), float(ended)))
    (c_a, s_a, e_a), (c_b, s_b, e_b) = reports
    assert s_a < e_b and s_b < e_a, "the two writers did not run at the same time"
    assert c_a + c_b > 0, "no lock conflict: the retry was never exercised"
    store = Store(db)
    assert count(store, "equity_bars") == 2 * batches * per
    per_run = store.query("SELECT run_id, count(*) AS n FROM equity_bars GROUP BY run_id ORDER BY run_id")
    assert per_run.rows() == [("run-A", batches * per), ("run-B", batches * per)]


@pytest.mark.unit
def test_a_new_file_appears_whole_never_half_written(tmp_path):
    """DuckDB creates a file empty and writes its headers after; another process opening it in
    between fails with "not a valid DuckDB database file" (seen once in CI with two writers).
    The store makes the file elsewhere and links it into place, so it is never seen empty."""
    path = tmp_path / "fresh.duckdb"
    sizes: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            with contextlib.suppress(FileNotFoundError):
                sizes.append(path.stat().st_size)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with Store(path).connect():
            pass
    finally:
        done.set()
        watcher.join()
    sizes.append(path.stat().st_size)
    header = 3 * 4096  # DuckDB's file header and its two database headers
    assert min(sizes) >= header, sorted(set(sizes))
    assert [p.name for p in tmp_path.iterdir()] == ["fresh.duckdb"]  # no private file left behind


@pytest.mark.integration
def test_lock_held_longer_than_timeout_raises_clear_error(tmp_path, session_rows):
    db = tmp_path / "held.duckdb"
    Store(db).ensure_schema()
    holder = hold_duckdb_lock(db, 30)
    try:
        store = Store(db, lock_timeout_s=0.5)
        started = time.monotonic()
        with pytest.raises(StoreLockedError) as caught:
            store.insert("signals", session_rows["signals"], meta())
        waited = time.monotonic() - started
        message = str(caught.value)
        assert str(db) in message and "locked by another process" in message and "0.5s" in message
        assert 0.5 <= waited < 5, waited  # it retried until the timeout, then gave up
        with pytest.raises(StoreLockedError):
            store.query("SELECT 1")
    finally:
        holder.kill()
        holder.wait()
    assert Store(db).insert("signals", session_rows["signals"], meta()) == len(session_rows["signals"])


@pytest.mark.integration
def test_lock_held_shorter_than_timeout_is_waited_out(tmp_path, session_rows):
    db = tmp_path / "busy.duckdb"
    Store(db).ensure_schema()
    holder = hold_duckdb_lock(db, 1.5)
    try:
        started = time.monotonic()
        added = Store(db, lock_timeout_s=30).insert("signals", session_rows["signals"], meta())
        assert added == len(session_rows["signals"])
        assert time.monotonic() - started > 0.5  # it did have to wait for the holder
    finally:
        holder.wait(timeout=30)


# ---- static check: no statement ever changes or removes a row --------------------------

FORBIDDEN = [
    re.compile(p, re.IGNORECASE | re.DOTALL)
    for p in (
        r"\bUPDATE\s+[\w.\"{}]+\s+SET\b",
        r"\bDELETE\s+FROM\b",
        r"\bTRUNCATE\b",
        r"\bDROP\s+TABLE\b",
        r"\bINSERT\s+OR\s+REPLACE\b",
        r"\bREPLACE\s+INTO\b",
        r"\bON\s+CONFLICT\b.*\bDO\s+UPDATE\b",
        r"\bMERGE\s+INTO\b",
        r"\bCREATE\s+OR\s+REPLACE\s+TABLE\b",
        r"incremental_strategy\s*[=:]\s*['\"]?(delete\+insert|merge|microbatch)",
    )
]
# In a string that is a SQL statement, any UPDATE or DELETE at all.
SQL_STATEMENT = re.compile(
    r"^\s*(SELECT|WITH|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|TRUNCATE|MERGE|COPY|ATTACH|BEGIN|COMMIT|SET)\b",
    re.IGNORECASE,
)
UPDATE_OR_DELETE = re.compile(r"\b(UPDATE|DELETE)\s", re.IGNORECASE)
SCANNED = ("alphagen_core", "alphagen_dagster", "dbt_pnl")


def python_strings(source: str) -> list[str]:
    """Every string literal of a module (f-strings with {} for their fields), docstrings excepted."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    parts_of_fstrings = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            out.append("".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values))
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings and id(node) not in parts_of_fstrings
        ):
            out.append(node.value)
    return out


def sql_text(source: str) -> str:
    """A .sql file (dbt model, macro) without its comments, Jinja comments included."""
    source = re.sub(r"\{#.*?#\}", " ", source, flags=re.DOTALL)
    source = re.sub(r"/\*.*?\*/", " ", source, flags=re.DOTALL)
    return re.sub(r"--[^\n]*", " ", source)


def violations(name: str, source: str) -> list[str]:
    if name.endswith(".py"):
        texts = python_strings(source)
        statements = [t for t in texts if SQL_STATEMENT.match(t)]
    elif name.endswith(".sql"):
        texts = statements = [sql_text(source)]
    else:  # yaml: hooks and model configs
        texts, statements = [re.sub(r"(?m)#.*$", " ", source)], []
    found = [f"{name}: {p.pattern} in {t[:80]!r}" for t in texts for p in FORBIDDEN if p.search(t)]
    found += [f"{name}: UPDATE/DELETE in {t[:80]!r}" for t in statements if UPDATE_OR_DELETE.search(t)]
    return found


def project_files() -> list[Path]:
    files = []
    for top in SCANNED:
        root = REPO / top
        if root.is_dir():
            files += [
                p for p in sorted(root.rglob("*"))
                if p.suffix in {".py", ".sql", ".yml", ".yaml"}
                and not {"target", "logs", "dbt_packages", "__pycache__"} & set(p.relative_to(root).parts)
            ]
    return files


@pytest.mark.unit
def test_scanner_catches_what_it_must():
    bad_py = textwrap.dedent(
        '''
        """Rows are only inserted: no UPDATE, no DELETE anywhere."""
        def purge(con, table):
            """Never DELETE FROM anything."""
            con.execute("delete from signals where version = ?")
            con.execute(f"UPDATE {table} SET acted = true")
            con.execute("INSERT INTO t SELECT * FROM s ON CONFLICT (k) DO UPDATE SET v = excluded.v")
            con.execute("insert or replace into t select 1")
        '''
    )
    found = violations("bad.py", bad_py)
    assert len([f for f in found if "UPDATE/DELETE" in f]) == 3  # the docstrings do not count
    assert any("DO\\s+UPDATE" in f for f in found) and any("INSERT\\s+OR\\s+REPLACE" in f for f in found)
    assert violations("ok.py", '"""no UPDATE, no DELETE"""\nx = "SELECT * FROM t"\n') == []
    assert violations("m.sql", "-- never delete\nselect 1 from t") == []
    assert violations("m.sql", "{{ config(pre_hook='delete from t') }} select 1")
    assert violations("m.sql", "{{ config(materialized='incremental', incremental_strategy='delete+insert') }}")
    assert violations("p.yml", "models:\n  +post_hook: truncate table signals\n")


@pytest.mark.unit
def test_no_sql_changes_or_removes_rows():
    files = project_files()
    assert any(p.name == "store.py" for p in files) and any(p.suffix == ".sql" for p in files)
    # the store's own statements are seen by the scanner
    store_sql = [t for t in python_strings((REPO / "alphagen_core/persistence/store.py").read_text()) if SQL_STATEMENT.match(t)]
    assert any(t.startswith("INSERT INTO {} BY NAME") for t in store_sql)
    found = [v for p in files for v in violations(str(p.relative_to(REPO)), p.read_text())]
    assert found == []


@pytest.mark.unit
def test_a_file_duckdb_cannot_open_is_named_with_duckdbs_reason(tmp_path):
    """Not a lock to wait for: the error names the file at once and keeps DuckDB's own as its
    cause (a full disk is recognised through it); the file is not touched."""
    path = tmp_path / "alphagen.duckdb"
    path.write_text("not a database\n")
    started = time.monotonic()
    with pytest.raises(StoreOpenError, match=f"cannot open the DuckDB file {re.escape(str(path))}: .*not a valid "
                       "DuckDB database file") as raised:
        Store(path, lock_timeout_s=30).query("SELECT 1")
    assert time.monotonic() - started < 10  # no lock wait
    assert isinstance(raised.value.__cause__, duckdb.IOException)
    assert path.read_text() == "not a database\n"
