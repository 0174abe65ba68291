"""A DuckDB file holding hand-made `daily_pnl` and `trades` marts, and `equity_curve` and
`performance_summary` built from them with the marts' own SQL (dbt_pnl/macros/performance.sql),
as `dbt build` would: for the report's tests, which need marts but not a replay."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from alphagen_dagster.report import performance_sql

D = dt.date
# (mode, variant, trade_date, realized_pnl): every session the engine ran, 0 without trades
DAILY = [
    ("replay", "base", D(2024, 1, 2), 100), ("replay", "base", D(2024, 1, 3), -80),
    ("replay", "base", D(2024, 1, 4), 30), ("replay", "base", D(2024, 1, 5), -60),
    ("replay", "base", D(2024, 1, 8), 0),
    ("replay", "wide_stop", D(2024, 1, 2), 40), ("replay", "wide_stop", D(2024, 1, 3), 0),
    ("paper", "base", D(2024, 1, 2), 0), ("paper", "base", D(2024, 1, 3), 0),  # no trades: a flat curve
    ("live", "base", D(2024, 1, 2), 100), ("live", "base", D(2024, 1, 3), 50),  # no losses
]
# the trading capital each variant ran with (RISK_TRADING_CAPITAL of its versions rows)
DEFAULT_CAPITAL = 5_000_000
CAPITAL = {"wide_stop": 1_000_000}
# (mode, variant, trade_date, pnl, exit_reason): a row per round trip, summing to DAILY
TRADES = [
    ("replay", "base", D(2024, 1, 2), 150, "take_profit"), ("replay", "base", D(2024, 1, 2), -50, "reversal"),
    ("replay", "base", D(2024, 1, 3), -80, "stop_loss"), ("replay", "base", D(2024, 1, 4), 30, "take_profit"),
    ("replay", "base", D(2024, 1, 5), -60, "close"),
    ("replay", "wide_stop", D(2024, 1, 2), 40, "take_profit"),
    ("live", "base", D(2024, 1, 2), 100, "take_profit"), ("live", "base", D(2024, 1, 3), 50, "flatten"),
]


def write_hand_marts(path: Path, daily=DAILY, trades=TRADES, *, before_variants: bool = False) -> Path:
    """`before_variants`: the marts as an earlier version built them (no variant in trades, no
    trading capital in daily_pnl)."""
    with duckdb.connect(str(path)) as con:
        con.execute("""CREATE TABLE daily_pnl (trade_date DATE, mode VARCHAR, realized_pnl DECIMAL(18, 2),
                       variant VARCHAR, trading_capital DOUBLE)""")
        con.executemany("INSERT INTO daily_pnl VALUES (?, ?, ?, ?, ?)",
                        [(d, m, p, v, CAPITAL.get(v, DEFAULT_CAPITAL)) for m, v, d, p in daily])
        con.execute("""CREATE TABLE trades (trade_date DATE, mode VARCHAR, pnl DECIMAL(18, 2), exit_reason VARCHAR,
                       variant VARCHAR)""")
        con.executemany("INSERT INTO trades VALUES (?, ?, ?, ?, ?)", [(d, m, p, r, v) for m, v, d, p, r in trades])
        summary, curve = performance_sql("daily_pnl", "(SELECT * FROM trades)")
        con.execute(f"CREATE TABLE equity_curve AS {curve}")
        con.execute(f"CREATE TABLE performance_summary AS {summary}")
        if before_variants:
            con.execute("ALTER TABLE trades DROP COLUMN variant")
            con.execute("ALTER TABLE daily_pnl DROP COLUMN trading_capital")
    return path
