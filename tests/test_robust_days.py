"""Ordinary real days replay alone, whatever their holes: a late first bar, a halt (a gap of
minutes), a chain that lacks the nearest strike for a while, bars with impossible prices.
Each is made from a sample day by editing its flat files as real data would be, then read by
the real loader and run through the engine."""

from __future__ import annotations

import datetime as dt
import gzip
import math
from pathlib import Path

import polars as pl
import pytest

from alphagen_core.adapters.polygon.flatfiles import (
    LocalFlatFiles,
    load_day,
    options_key,
    stocks_key,
)
from alphagen_core.application.replay import build_slices, run_session
from alphagen_core.domain.calendar import NY, session
from alphagen_core.domain.engine import StrategyConfig
from alphagen_core.sim.sample import generate

pytestmark = pytest.mark.unit

DAY = dt.date(2024, 2, 14)
NS = 1_000_000_000


def _ns(hh: int, mm: int) -> int:
    return int(dt.datetime.combine(DAY, dt.time(hh, mm), tzinfo=NY).timestamp()) * NS


def _rewrite(path: Path, edit) -> None:
    frame = pl.read_csv(path)
    with gzip.open(path, "wb") as out:
        edit(frame).write_csv(out)


@pytest.fixture
def flatfiles(tmp_path: Path) -> Path:
    generate(DAY, DAY, tmp_path)
    return tmp_path


def _replay(root: Path):
    s = session(DAY)
    data = load_day(LocalFlatFiles(root), s, cache_dir=root / "cache", use_cache=False)
    return data, run_session(s, build_slices(data.equity, data.options, 0.02), StrategyConfig())


def _flat_at_close(run) -> bool:
    flatten_at = session(DAY).close - dt.timedelta(minutes=5)
    return all(p.net_quantity == 0 for p in run.positions if p.est_timestamp >= flatten_at)


def test_a_late_first_bar_and_a_halt_replay_with_the_minutes_there_are(flatfiles):
    late, halt = (_ns(9, 30), _ns(9, 47)), (_ns(11, 0), _ns(11, 25))

    def holes(frame: pl.DataFrame) -> pl.DataFrame:
        t = pl.col("window_start")
        return frame.filter(~((t >= late[0]) & (t < late[1])) & ~((t >= halt[0]) & (t < halt[1])))

    _rewrite(flatfiles / stocks_key(DAY), holes)
    _rewrite(flatfiles / options_key(DAY), holes)
    data, run = _replay(flatfiles)
    assert len(run.ticks) == 390 - 17 - 25
    assert run.ticks[0].period_start.time() == dt.time(9, 47)
    assert not any(dt.time(11, 0) <= t.period_start.time() < dt.time(11, 25) for t in run.ticks)
    # MA9 waits for nine bars of the session it has, as on any day
    assert [t.ma9 is None for t in run.ticks[:9]] == [True] * 8 + [False]
    assert run.round_trips > 0 and _flat_at_close(run)


def test_a_chain_without_the_nearest_strike_trades_the_nearest_there_is(flatfiles):
    clean_data, clean = _replay(flatfiles)
    entry = next(i for i in clean.intents if i.action.value == "SELL_TO_OPEN")
    strike = entry.option_symbol[-8:]
    since = int(entry.est_timestamp.timestamp()) * NS - 10 * 60 * NS

    def without_strike(frame: pl.DataFrame) -> pl.DataFrame:  # the contract vanishes for 40 minutes
        gone = pl.col("ticker").str.starts_with("O:QQQ2") & pl.col("ticker").str.ends_with(strike)
        window = (pl.col("window_start") >= since) & (pl.col("window_start") < since + 40 * 60 * NS)
        return frame.filter(~(gone & window))

    _rewrite(flatfiles / options_key(DAY), without_strike)
    _, run = _replay(flatfiles)
    moved = next(i for i in run.intents if i.est_timestamp == entry.est_timestamp and i.action.value == "SELL_TO_OPEN")
    assert moved.option_symbol != entry.option_symbol
    assert abs(float(moved.option_symbol[-8:]) - float(strike)) == 1000  # the next $1 strike
    assert _flat_at_close(run)


def test_bars_with_impossible_prices_are_dropped_and_counted(flatfiles):
    bad_minutes = [_ns(10, m) for m in (5, 6, 7, 8)]
    values = [0.0, -1.0, math.nan, math.inf]

    def spoil(frame: pl.DataFrame) -> pl.DataFrame:
        for ns, value in zip(bad_minutes, values):
            hit = (pl.col("ticker") == "QQQ") & (pl.col("window_start") == ns)
            frame = frame.with_columns(pl.when(hit).then(value).otherwise(pl.col("low")).alias("low"))
        return frame

    _rewrite(flatfiles / stocks_key(DAY), spoil)
    data, run = _replay(flatfiles)
    assert data.rejected["equity_invalid"] == 4
    assert len(run.ticks) == 390 - 4
    assert _flat_at_close(run)
