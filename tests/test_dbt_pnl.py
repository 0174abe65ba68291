"""dbt_pnl end to end: real `dbt build` (through DbtCliResource, as the dbt step runs it) on a
real DuckDB file written through alphagen_core.persistence.store, then the marts read back and
checked against figures computed by hand.

Scenarios (one `dbt build` each):
- good data: two replay versions of 2024-02-12 (the older one, written later, must be
  ignored), a paper session the same day, and a replay day without trades; the build runs
  while another process-level connection holds the DuckDB lock, so the profile's connect
  retries are exercised.
- broken data: an execution whose intent does not exist -> `dbt build` fails.
- a relative ALPHAGEN_DUCKDB_PATH is refused before anything is created.
- a file from before the versions table: the store adds it, and the build reads its days as base.
Every run sends target/ and logs to the tmp dir; the test checks that dbt_pnl/ is untouched.
"""

from __future__ import annotations

import datetime as dt
import inspect
import logging
import math
import shutil
import statistics
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest
from dagster_dbt import DbtCliInvocation, DbtCliResource

from alphagen_core.persistence.store import RowMeta, Store
from alphagen_core.persistence.tables import TABLES
from alphagen_dagster.dbt import (
    DBT_PROJECT_DIR,
    dbt_project,
    dbt_resource,
    duckdb_path_for_dbt,
    manifest,
    run_dbt,
)

pytestmark = [pytest.mark.integration, pytest.mark.spare_cpu]

PROJECT = DBT_PROJECT_DIR
NY = ZoneInfo("America/New_York")

DAY1 = dt.date(2024, 2, 12)
DAY2 = dt.date(2024, 2, 13)
V_OLD = "replay-2024-03-01T10:00:00"
V_NEW = "replay-2024-03-02T10:00:00"  # max(version): the one readers must use
PUT = "O:QQQ240212P00430000"
CALL = "O:QQQ240212C00432000"


def at(day: dt.date, hh: int, mm: int, ss: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=NY)


def tick(day: dt.date, hh: int, mm: int, slice_id: str) -> dict:
    return {
        "slice_id": slice_id,
        "period_start": at(day, hh, mm),
        "underlying_price": 430.1,
        "vwap": 430.0,
        "ma9": 430.2,
        "vwap_source": "typical",
        "side": 1,
        "quotes_in_slice": 2,
        "held_symbol": None,
        "held_bid": None,
        "held_ask": None,
        "stale": False,
    }


def signal(day: dt.date, signal_id: str, ts: dt.datetime, kind: str, symbol: str) -> dict:
    return {
        "signal_id": signal_id,
        "slice_id": f"{day}-{ts:%H%M}",
        "est_timestamp": ts,
        "signal_type": kind,
        "option_symbol": symbol,
        "underlying_price": 430.1,
        "vwap": 430.0,
        "ma9": 430.2,
        "rationale": f"MA9 crossed {'above' if kind == 'bullish' else 'below'} VWAP",
        "cooldown_until": ts + dt.timedelta(seconds=30),
        "acted": True,
        "drop_reason": None,
    }


def intent(
    intent_id: str, signal_id: str, ts: dt.datetime, action: str, symbol: str, qty: int, px: float
) -> dict:
    return {
        "intent_id": intent_id,
        "signal_id": signal_id,
        "est_timestamp": ts,
        "action": action,
        "option_symbol": symbol,
        "qty": qty,
        "limit_price": px,
        "stop_loss": None,
        "take_profit": None,
        "reason": "entry" if action == "SELL_TO_OPEN" else "exit",
    }


def execution(
    execution_id: str,
    intent_id: str,
    position_id: str,
    ts: dt.datetime,
    symbol: str,
    action: str,
    status: str,
    qty: int,
    price: float | None,
    fees: float,
    pnl: float,
    exit_reason: str | None = None,
) -> dict:
    return {
        "execution_id": execution_id,
        "intent_id": intent_id,
        "position_id": position_id,
        "order_id": f"ord-{intent_id}",
        "est_timestamp": ts,
        "option_symbol": symbol,
        "action": action,
        "status": status,
        "fill_price": price,
        "qty": qty,
        "fees": fees,
        "pnl_contrib": pnl,
        "exit_reason": exit_reason,
    }


def round_trip(
    day: dt.date,
    position_id: str,
    symbol: str,
    signal_id: str,
    qty: int,
    credit: float,
    debit: float,
    fees_each: float,
    entry_ts: dt.datetime,
    exit_ts: dt.datetime,
    reason: str,
) -> tuple[list[dict], list[dict]]:
    """Intents and executions of one round trip, pnl_contrib computed as the engine does
    (in floats, so the marts' rounding to cents is exercised)."""
    entry_intent, exit_intent = f"{position_id}-in", f"{position_id}-out"
    intents = [
        intent(entry_intent, signal_id, entry_ts, "SELL_TO_OPEN", symbol, qty, credit),
        intent(exit_intent, signal_id, exit_ts, "BUY_TO_CLOSE", symbol, qty, debit),
    ]
    executions = [
        execution(f"{position_id}-e0", entry_intent, position_id, entry_ts, symbol,
                  "SELL_TO_OPEN", "SUBMITTED", qty, None, 0.0, 0.0),
        execution(f"{position_id}-e1", entry_intent, position_id, entry_ts + dt.timedelta(seconds=2),
                  symbol, "SELL_TO_OPEN", "FILLED", qty, credit, fees_each, -fees_each),
        execution(f"{position_id}-e2", exit_intent, position_id, exit_ts, symbol,
                  "BUY_TO_CLOSE", "FILLED", qty, debit, fees_each,
                  (credit - debit) * 100 * qty - fees_each, reason),
    ]
    return intents, executions


def write_good_data(store: Store) -> None:
    # --- replay 2024-02-12, latest version: a win, a loss, a rejected order -------------
    s1 = signal(DAY1, "s1", at(DAY1, 10, 5), "bullish", PUT)
    s2 = signal(DAY1, "s2", at(DAY1, 11, 2), "bearish", CALL)
    s3 = signal(DAY1, "s3", at(DAY1, 14, 0), "bullish", PUT)
    # win: 25 @ 1.23 credit, bought back @ 0.61 on the target; fees 16.53 each side
    #   exit pnl_contrib = (1.23 - 0.61) * 100 * 25 - 16.53 = 1533.47; trade = 1516.94
    i1, x1 = round_trip(DAY1, "p1", PUT, "s1", 25, 1.23, 0.61, 16.53,
                        at(DAY1, 10, 6, 0), at(DAY1, 10, 48, 2), "take_profit")
    # loss: 10 @ 0.87 credit, bought back @ 1.74 on the stop; fees 6.61 each side
    #   exit pnl_contrib = (0.87 - 1.74) * 100 * 10 - 6.61 = -876.61; trade = -883.22
    i2, x2 = round_trip(DAY1, "p2", CALL, "s2", 10, 0.87, 1.74, 6.61,
                        at(DAY1, 11, 3, 0), at(DAY1, 11, 16, 32), "stop_loss")
    rejected_intent = intent("p3-in", "s3", at(DAY1, 14, 1), "SELL_TO_OPEN", PUT, 25, 1.10)
    rejected = execution("p3-e0", "p3-in", "p3", at(DAY1, 14, 1, 1), PUT, "SELL_TO_OPEN",
                         "REJECTED", 25, None, 0.0, 0.0)
    store.write(
        {
            "normalized_ticks": [tick(DAY1, 10, m, f"{DAY1}-10{m:02d}") for m in range(5)],
            "signals": [s1, s2, s3],
            "trade_intents": [*i1, *i2, rejected_intent],
            "executions": [*x1, *x2, rejected],
        },
        RowMeta("replay", DAY1, V_NEW, "run-new", at(DAY1, 18, 0)),
    )

    # --- replay 2024-02-12, OLDER version written AFTER the new one: must be ignored ------
    # (max(version) decides, not written_at). Different numbers and an extra position p9.
    o1, y1 = round_trip(DAY1, "p1", PUT, "s1", 25, 2.00, 0.10, 1.00,
                        at(DAY1, 10, 6), at(DAY1, 10, 30), "take_profit")
    o9, y9 = round_trip(DAY1, "p9", CALL, "s2", 5, 1.00, 3.00, 1.00,
                        at(DAY1, 12, 0), at(DAY1, 12, 5), "stop_loss")
    store.write(
        {
            "normalized_ticks": [tick(DAY1, 10, m, f"{DAY1}-10{m:02d}") for m in range(7)],
            "signals": [s1, s2],
            "trade_intents": [*o1, *o9],
            "executions": [*y1, *y9],
        },
        RowMeta("replay", DAY1, V_OLD, "run-old", at(DAY1, 19, 0)),
    )

    # --- paper 2024-02-12: the same position_id as the replay, kept apart by mode ----------
    #   5 @ 2.00 credit, flattened @ 2.00 at the close; fees 3.31 each side -> trade = -6.62
    ps = signal(DAY1, "s1", at(DAY1, 15, 0), "bullish", PUT)
    pi, px = round_trip(DAY1, "p1", PUT, "s1", 5, 2.00, 2.00, 3.31,
                        at(DAY1, 15, 1), at(DAY1, 15, 55), "close")
    store.write(
        {
            "normalized_ticks": [tick(DAY1, 15, m, f"{DAY1}-15{m:02d}") for m in range(3)],
            "signals": [ps],
            "trade_intents": pi,
            "executions": px,
        },
        RowMeta("paper", DAY1, "2024-02-12", "run-paper", at(DAY1, 16, 5)),
    )

    # --- replay 2024-02-13: the engine ran (ticks, a dropped signal) but did not trade ----
    dropped = signal(DAY2, "d2-s1", at(DAY2, 10, 40), "bearish", CALL) | {
        "acted": False,
        "drop_reason": "cooldown",
    }
    store.write(
        {
            "normalized_ticks": [tick(DAY2, 10, m, f"{DAY2}-10{m:02d}") for m in range(4)],
            "signals": [dropped],
        },
        RowMeta("replay", DAY2, V_NEW, "run-day2", at(DAY2, 18, 0)),
    )


@dataclass
class DbtRun:
    returncode: int
    output: str
    seconds: float


def project_files() -> set[str]:
    return {str(p.relative_to(PROJECT)) for p in PROJECT.rglob("*")}


def dbt(args: list[str], db_path: str, work: Path) -> DbtRun:
    """A dbt command the way the dbt step runs it (DbtCliResource), its output as dbt's
    messages; target/ and dbt.log under `work`."""
    return finished(run_dbt(args, db_path, work / "target", raise_on_error=False), time.monotonic())


def finished(invocation: DbtCliInvocation, started: float) -> DbtRun:
    output = "\n".join(str(event) for event in invocation.stream_raw_events())
    return DbtRun(invocation.process.returncode, output, time.monotonic() - started)


def dbt_build(db_path: str, work: Path, *, hold_lock: bool = False) -> DbtRun:
    """Run `dbt build`. With hold_lock, this process keeps the DuckDB file locked until dbt
    has started opening it, then lets go: the build only succeeds if the profile retries."""
    started = time.monotonic()
    lock = duckdb.connect(db_path) if hold_lock else None
    try:
        invocation = run_dbt(["build"], db_path, work / "target", raise_on_error=False)
        if lock is not None:
            log_file = work / "target" / "dbt.log"
            deadline = time.monotonic() + 120
            while invocation.process.poll() is None and time.monotonic() < deadline:
                if log_file.exists() and "Opening a new connection" in log_file.read_text():
                    break
                time.sleep(0.05)
            time.sleep(0.5)  # dbt's first duckdb.connect fails on our lock meanwhile
            lock.close()
            lock = None
        return finished(invocation, started)
    finally:
        if lock is not None:
            lock.close()


def read(db_path: str, sql: str) -> list[dict]:
    con = duckdb.connect(db_path, read_only=True)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, DbtRun]:
    work = tmp_path_factory.mktemp("dbt_good")
    db_path = str((work / "alphagen.duckdb").resolve())
    write_good_data(Store(db_path))
    before = project_files()
    run = dbt_build(db_path, work, hold_lock=True)
    assert run.returncode == 0, run.output
    assert project_files() == before, "dbt wrote into dbt_pnl/ (target, logs or .user.yml)"
    return db_path, run


def test_build_passes_every_test_while_the_file_was_briefly_locked(built):
    _, run = built
    assert "Completed successfully" in run.output
    # the singular test and the relationship test ran (and passed) as part of the build
    assert "assert_daily_pnl_matches_executions" in run.output
    assert "relationships_stg_executions_intent_id" in run.output
    assert "ERROR=0" in run.output and "PASS=" in run.output


def test_daily_pnl_figures_to_the_cent(built):
    db_path, _ = built
    rows = read(db_path, "SELECT * FROM daily_pnl ORDER BY trade_date, mode")
    assert [
        (r["trade_date"], r["mode"], r["realized_pnl"], r["fees"], r["trades"], r["wins"],
         r["losses"], r["version"])
        for r in rows
    ] == [
        # 1516.94 - 883.22 = 633.72; fees 2 * 16.53 + 2 * 6.61 = 46.28
        (DAY1, "paper", Decimal("-6.62"), Decimal("6.62"), 1, 0, 1, "2024-02-12"),
        (DAY1, "replay", Decimal("633.72"), Decimal("46.28"), 2, 1, 1, V_NEW),
        # ran, did not trade: a row of zeros
        (DAY2, "replay", Decimal("0.00"), Decimal("0.00"), 0, 0, 0, V_NEW),
    ]  # fmt: skip
    assert list(rows[0])[:7] == [
        "trade_date", "mode", "realized_pnl", "fees", "trades", "wins", "losses",
    ]  # fmt: skip


def test_trades_one_row_per_round_trip(built):
    db_path, _ = built
    rows = read(
        db_path,
        """SELECT trade_date, mode, position_id, option_symbol, signal_id, qty,
                  entry_time, entry_price, exit_time, exit_price, exit_reason, fees, pnl,
                  holding_minutes, version
           FROM trades ORDER BY mode, trade_date, position_id""",
    )
    got = [
        {k: (v.astimezone(NY) if isinstance(v, dt.datetime) else v) for k, v in r.items()}
        for r in rows
    ]
    assert got == [
        {
            "trade_date": DAY1, "mode": "paper", "position_id": "p1", "option_symbol": PUT,
            "signal_id": "s1", "qty": 5,
            "entry_time": at(DAY1, 15, 1, 2), "entry_price": Decimal("2.0000"),
            "exit_time": at(DAY1, 15, 55), "exit_price": Decimal("2.0000"),
            "exit_reason": "close", "fees": Decimal("6.62"), "pnl": Decimal("-6.62"),
            "holding_minutes": pytest.approx(53.97), "version": "2024-02-12",
        },
        {
            "trade_date": DAY1, "mode": "replay", "position_id": "p1", "option_symbol": PUT,
            "signal_id": "s1", "qty": 25,
            "entry_time": at(DAY1, 10, 6, 2), "entry_price": Decimal("1.2300"),
            "exit_time": at(DAY1, 10, 48, 2), "exit_price": Decimal("0.6100"),
            "exit_reason": "take_profit", "fees": Decimal("33.06"), "pnl": Decimal("1516.94"),
            "holding_minutes": 42.0, "version": V_NEW,
        },
        {
            "trade_date": DAY1, "mode": "replay", "position_id": "p2", "option_symbol": CALL,
            "signal_id": "s2", "qty": 10,
            "entry_time": at(DAY1, 11, 3, 2), "entry_price": Decimal("0.8700"),
            "exit_time": at(DAY1, 11, 16, 32), "exit_price": Decimal("1.7400"),
            "exit_reason": "stop_loss", "fees": Decimal("13.22"), "pnl": Decimal("-883.22"),
            "holding_minutes": 13.5, "version": V_NEW,
        },
    ]  # fmt: skip


def test_older_version_is_ignored(built):
    db_path, _ = built
    # the old version is in the source tables (it was written last) ...
    assert read(db_path, f"SELECT count(*) AS n FROM executions WHERE version = '{V_OLD}'")[0][
        "n"
    ] == 6
    # ... but nothing of it reaches staging or the marts
    for sql in (
        "SELECT count(*) AS n FROM staging.stg_executions WHERE version <> '{v}' AND mode = 'replay'",
        "SELECT count(*) AS n FROM staging.stg_normalized_ticks WHERE version <> '{v}' AND mode = 'replay'",
        "SELECT count(*) AS n FROM trades WHERE position_id = 'p9' OR version <> '{v}' AND mode = 'replay'",
    ):
        assert read(db_path, sql.format(v=V_NEW))[0]["n"] == 0, sql


def test_build_fails_on_execution_without_intent(tmp_path: Path):
    db_path = str((tmp_path / "alphagen.duckdb").resolve())
    store = Store(db_path)
    write_good_data(store)
    orphan = execution("orphan-e1", "no-such-intent", "p4", at(DAY2, 11, 0), CALL,
                       "SELL_TO_OPEN", "CANCELED", 1, None, 0.0, 0.0)  # fmt: skip
    # same (mode, day, version) as the day-2 run: a retried write of that run
    store.write({"executions": [orphan]}, RowMeta("replay", DAY2, V_NEW, "run-day2"))
    before = project_files()
    run = dbt_build(db_path, tmp_path)
    assert run.returncode != 0, run.output
    assert "FAIL 1 relationships_stg_executions_intent_id" in run.output, run.output
    assert "ERROR=1 " in run.output, run.output  # `dbt build` counts the failed test as its one error
    assert project_files() == before


def test_a_null_in_a_mart_fails_its_not_null_columns_test_naming_the_column(built, tmp_path: Path):
    db_path = str(tmp_path / "nulls.duckdb")
    shutil.copyfile(built[0], db_path)
    con = duckdb.connect(db_path)
    try:  # as if the mart's SQL had produced a null fee on one day
        con.execute("CREATE OR REPLACE TABLE daily_pnl AS SELECT * REPLACE ("
                    "CASE WHEN trade_date = DATE '2024-02-13' THEN NULL ELSE fees END AS fees) FROM daily_pnl")
    finally:
        con.close()
    run = dbt(["test", "--select", "daily_pnl", "--store-failures"], db_path, tmp_path)
    assert run.returncode != 0, run.output
    assert "FAIL 1 not_null_columns_daily_pnl" in run.output, run.output
    [stored] = read(db_path, "SELECT table_name FROM information_schema.tables WHERE table_schema = "
                    "'dbt_test__audit' AND table_name LIKE 'not_null_columns_daily_pnl%'")
    failures = read(db_path, f"SELECT null_column, null_rows FROM dbt_test__audit.{stored['table_name']}")
    assert failures == [{"null_column": "fees", "null_rows": 1}]


def test_a_file_from_before_the_versions_table_builds_with_its_days_as_base(built, tmp_path: Path):
    old = str((tmp_path / "old.duckdb").resolve())
    with duckdb.connect(old) as con:  # the eight tables and their rows, as an older release left them
        con.execute(f"ATTACH '{built[0]}' AS built (READ_ONLY)")
        for table in TABLES.values():
            con.execute(table.ddl)
            con.execute(f"INSERT INTO main.{table.name} SELECT * FROM built.main.{table.name}")
    Store(old).ensure_schema()  # as the replay, the live writers and the dbt step do first
    run = dbt_build(old, tmp_path)
    assert run.returncode == 0, run.output
    pnl = "SELECT * FROM daily_pnl ORDER BY trade_date, mode"
    assert read(old, pnl) == read(built[0], pnl)
    assert {r["variant"] for r in read(old, pnl)} == {"base"}


def test_relative_database_path_is_refused(tmp_path: Path, monkeypatch):
    # dbt runs in the project dir, where a relative path would silently create a new, empty
    # database; the profile refuses it before opening anything.
    before = project_files()
    monkeypatch.setenv("ALPHAGEN_DUCKDB_PATH", "alphagen.duckdb")
    run = finished(dbt_resource().cli(["build"], target_path=tmp_path / "target", raise_on_error=False),
                   time.monotonic())
    assert run.returncode != 0
    assert "must be an absolute path" in run.output, run.output
    assert not (PROJECT / "alphagen.duckdb").exists()
    assert project_files() == before


def test_performance_summary_and_equity_curve_recompute_from_daily_pnl_and_trades(built):
    """The performance figures recomputed here from the marts it is built on; dbt's unit tests (hand-made rows,
    edge cases) ran in the same build."""
    db_path, run = built
    for unit_test in ("equity_curve_peaks_from_zero_and_draws_down", "performance_summary_formulas",
                      "latest_version_per_mode_variant_and_day"):
        assert any(unit_test in line and " PASS " in line for line in run.output.splitlines()), run.output
    daily = read(db_path, "SELECT mode, trade_date, realized_pnl FROM daily_pnl ORDER BY mode, trade_date")
    trades = read(db_path, "SELECT mode, pnl, exit_reason FROM trades")
    summary = {r["mode"]: r for r in read(db_path, "SELECT * FROM performance_summary")}
    curve = read(db_path, "SELECT mode, trade_date, cumulative_pnl, peak, drawdown FROM equity_curve ORDER BY mode, trade_date")
    assert summary.keys() == {r["mode"] for r in daily}
    for mode, s in summary.items():
        expected_curve, expected = recomputed_summary([r for r in daily if r["mode"] == mode],
                                                      [r for r in trades if r["mode"] == mode])
        assert [(float(c["cumulative_pnl"]), float(c["peak"]), float(c["drawdown"]))
                for c in curve if c["mode"] == mode] == expected_curve
        assert summary_figures(s, expected) == pytest.approx(expected, abs=1e-4), mode


def recomputed_summary(daily: list[dict], trades: list[dict]) -> tuple[list[tuple[float, float, float]], dict]:
    """The performance figures by hand for one (mode, variant): its equity curve (cumulative, peak, drawdown) and
    the performance_summary figures, from its daily_pnl rows (in date order) and trades rows."""
    d = [float(r["realized_pnl"]) for r in daily]
    t = [float(r["pnl"]) for r in trades]
    cumulative, peak, curve = 0.0, 0.0, []
    for x in d:
        cumulative += x
        peak = max(peak, cumulative)
        curve.append((round(cumulative, 2), round(peak, 2), round(cumulative - peak, 2)))
    wins, losses = [x for x in t if x > 0], [x for x in t if x < 0]
    sd = statistics.stdev(d) if len(d) > 1 else 0.0
    downside = math.sqrt(sum(min(x, 0) ** 2 for x in d) / len(d))
    return curve, {
        "sessions": len(d), "trades": len(t), "wins": len(wins), "losses": len(losses),
        "total_pnl": round(sum(d), 2), "max_drawdown": min(dd for _, _, dd in curve),
        "win_rate": round(len(wins) / len(t), 4) if t else None,
        "profit_factor": round(sum(wins) / abs(sum(losses)), 4) if losses else None,
        "expectancy": round(sum(d) / len(t), 2) if t else None,
        "sharpe": round(statistics.mean(d) / sd * math.sqrt(252), 4) if sd else None,
        "sortino": round(statistics.mean(d) / downside * math.sqrt(252), 4) if downside else None,
        "return_on_capital": round(sum(d) / 5_000_000, 6),
        "exits_stop_loss": sum(r["exit_reason"] == "stop_loss" for r in trades),
    }


_COUNTS = ("sessions", "trades", "wins", "losses", "exits_stop_loss")


def summary_figures(row: dict, expected: dict) -> dict:
    """A performance_summary row's figures named in `expected`: counts as they are, the rest as floats."""
    return {k: row[k] if k in _COUNTS or row[k] is None else float(row[k]) for k in expected}


def test_the_reports_range_over_every_session_equals_the_marts_to_the_cent(built):
    """`alphagen report --stats --start --end` renders the marts' macros over a range; over
    every session its figures and curve are the marts' rows, to the cent and the 4th decimal."""
    from alphagen_dagster.report import Selection, read_performance

    db_path, _ = built
    store = Store(db_path)
    first, last = store.query("SELECT min(trade_date), max(trade_date) FROM daily_pnl").row(0)
    ranged = read_performance(store, Selection(start=first, end=last))
    marts = read_performance(store, Selection())
    assert ranged.summary.height == 2 and ranged.summary.equals(marts.summary)  # replay and paper
    assert ranged.curves.equals(marts.curves)
    assert marts.summary.equals(store.query("SELECT * FROM performance_summary ORDER BY mode, variant"))


def _events(invocation: DbtCliInvocation) -> list[tuple]:
    """A build's results as dagster-dbt streams them, less what differs from run to run."""
    out = []
    for event in invocation.stream():
        name = (event.asset_key.to_user_string(), getattr(event, "check_name", None))
        passed = getattr(event, "passed", None)
        keys = sorted(k for k in event.metadata if k not in ("Execution Duration", "unique_id", "invocation_id"))
        out.append((type(event).__name__, name, passed, keys))
    return sorted(out, key=repr)


def test_the_resource_without_the_adapter_streams_what_dagster_dbts_own_resource_does(built, tmp_path, caplog):
    """`DbtCliWithoutAdapter` overrides a private method of dagster-dbt: the same build through
    it and through `DbtCliResource` streams the same materializations and check results; only
    the library's own tried to open dbt's adapter here, where dbt-core is not installed, and
    logged the failure with its traceback. If dagster-dbt renames the method, this fails."""
    library = DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_resource().dbt_executable)
    assert list(inspect.signature(DbtCliResource._initialize_dbt_core_adapter).parameters) == ["self", "args"]
    args = ["build", "--select", "stg_executions+", "--exclude-resource-type", "unit_test"]
    invocations, streamed, warned = {}, {}, {}
    with duckdb_path_for_dbt(built[0]):
        for kind, resource in (("library", library), ("ours", dbt_resource())):  # one at a time: one file
            caplog.clear()
            invocations[kind] = resource.cli(args, manifest=manifest, target_path=tmp_path / kind, raise_on_error=False)
            streamed[kind] = _events(invocations[kind])
            warned[kind] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warned["library"] == ["An error was encountered when creating a handle to the dbt adapter in Dagster."]
    assert warned["ours"] == [] and {i.adapter for i in invocations.values()} == {None}
    assert {invocation.process.returncode for invocation in invocations.values()} == {0}
    assert streamed["ours"] == streamed["library"]
    kinds = {event[0] for event in streamed["ours"]}
    assert kinds == {"AssetMaterialization", "AssetCheckEvaluation"} and len(streamed["ours"]) > 10
