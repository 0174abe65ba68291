"""`alphagen report` in a real `alphagen` process over a real DuckDB file: `--compare-modes` (a
day's round trips of paper beside the replay's, from the `trades` mart) and `--stats` (the
figures per mode and variant, over a range, the chart, the messages)."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import duckdb
import pytest

from tests.hand_marts import write_hand_marts

pytestmark = pytest.mark.e2e

DAY = dt.date(2024, 12, 12)
TRADES = [  # mode, entry, contract, entry price (credit), exit price (debit), reason
    ("replay", "10:01", "O:QQQ241212P00520000", 1.95, 0.97, "take_profit"),
    ("replay", "11:15", "O:QQQ241212C00522000", 1.40, 1.10, "reversal"),
    ("paper", "10:01", "O:QQQ241212P00520000", 1.90, 1.01, "take_profit"),
    ("paper", "11:16", "O:QQQ241212C00523000", 1.32, 1.18, "reversal"),
]


def _report(tmp_path: Path, alphagen, rows) -> subprocess.CompletedProcess[str]:
    db = tmp_path / "alphagen.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("""CREATE TABLE trades (trade_date DATE, mode VARCHAR, position_id VARCHAR, entry_time TIMESTAMPTZ,
                       option_symbol VARCHAR, qty BIGINT, entry_price DECIMAL(18, 4), exit_price DECIMAL(18, 4),
                       exit_reason VARCHAR, pnl DECIMAL(18, 2), variant VARCHAR)""")
        for i, (mode, hhmm, symbol, entry, exit_, reason) in enumerate(rows):
            con.execute("INSERT INTO trades VALUES (?, ?, ?, ?, ?, 25, ?, ?, ?, ?, 'base')",
                        [DAY, mode, f"pos-{i}", f"{DAY} {hhmm}:00-05:00", symbol, entry, exit_, reason,
                         round((entry - exit_) * 2500, 2)])
    return alphagen("report", "--compare-modes", "--for-date", str(DAY), env={"ALPHAGEN_DUCKDB_PATH": str(db)},
                    timeout=60)


def test_paper_round_trips_beside_the_replays_with_the_price_differences(tmp_path, alphagen):
    done = _report(tmp_path, alphagen, TRADES)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("2024-12-12: replay against paper")
    first, second = lines[2].split(), lines[3].split()
    assert first[0] == "1" and first[1] == "10:01"
    assert first[3:9] == ["1.95", "1.90", "-0.05", "0.97", "1.01", "+0.04"]
    assert second[2].endswith("*") and second[3:9] == ["1.40", "1.32", "-0.08", "1.10", "1.18", "+0.08"]
    assert "different contracts" in lines[-1]


def test_without_a_paper_session_it_says_what_is_missing(tmp_path, alphagen):
    done = _report(tmp_path, alphagen, [t for t in TRADES if t[0] == "replay"])
    assert done.returncode == 0, done.stderr
    assert "nothing to compare on 2024-12-12: round trips of replay" in done.stdout


def test_stats_over_a_range_side_by_side_with_the_chart(tmp_path, alphagen):
    db = write_hand_marts(tmp_path / "marts.duckdb")
    png = tmp_path / "out" / "perf.png"
    done = alphagen("report", "--stats", "--mode", "replay", "--start", "2024-01-04", "--png", str(png),
                    env={"ALPHAGEN_DUCKDB_PATH": str(db)}, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["replay/base"]  # wide_stop has no session from 2024-01-04
    assert next(line for line in lines if line.startswith("max_drawdown")).split() == ["max_drawdown", "-60.00"]
    assert lines[-1] == f"equity curve and drawdown: {png}" and png.read_bytes().startswith(b"\x89PNG")


def test_stats_without_a_range_reads_the_mart_and_writes_the_chart_under_the_chart_dir(tmp_path, alphagen):
    db = write_hand_marts(tmp_path / "marts.duckdb")
    done = alphagen("report", "--stats", "--variant", "wide_stop", "--variant", "base",
                    env={"ALPHAGEN_DUCKDB_PATH": str(db), "ALPHAGEN_CHART_DIR": str(tmp_path / "charts")}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split() == ["live/base", "paper/base", "replay/base", "replay/wide_stop"]
    assert done.stdout.splitlines()[-1] == f"equity curve and drawdown: {tmp_path / 'charts' / 'performance.png'}"


def test_stats_with_an_unknown_variant_lists_the_known_ones(tmp_path, alphagen):
    db = write_hand_marts(tmp_path / "marts.duckdb")
    done = alphagen("report", "--stats", "--variant", "tight", env={"ALPHAGEN_DUCKDB_PATH": str(db)}, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == "Error: unknown variant(s) tight; the marts hold: base, wide_stop"


def test_stats_before_any_replay_says_to_replay_first(tmp_path, alphagen):
    done = alphagen("report", "--stats", env={"ALPHAGEN_DUCKDB_PATH": str(tmp_path / "none.duckdb")}, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == "Error: no P/L marts yet: run `alphagen replay` or `alphagen demo` first"
    assert not (tmp_path / "none.duckdb").exists()
