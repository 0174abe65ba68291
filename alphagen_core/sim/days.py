"""The day `alphagen sim-session` trades by default: a sample day whose first half hour has
the usual crossovers, and which then settles, so that a short simulated session (the first
half hour and a little) has seen every order the whole day will ever produce.

From the sample generator's day (alphagen_core.sim.sample) it changes only QQQ and its 0DTE
chain:
- every 0DTE option minute is flat (open = high = low = close): the stand-in broker quotes
  each minute's open, so a stop or target inside a minute would be seen by a replay's fill
  model and not by the live session; flat minutes make both see the same prices;
- at SETTLE (10:00) QQQ gaps 1 % further in the direction of its MA9/VWAP side and stays
  there (MA9 runs away from the lagging VWAP: no crossover), and every 0DTE option gaps down
  to 10 % of its 09:59 price (a short still open takes its profit on the 10:00 bar).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from alphagen_core.adapters.polygon.flatfiles import options_key, stocks_key
from alphagen_core.domain.calendar import NY
from alphagen_core.domain.indicators import SessionIndicators
from alphagen_core.sim.sample import _write_csv_gz, day_frames, option_ticker

SETTLE = dt.time(10, 0)
SETTLED_OPTION_FACTOR = 0.1
SETTLE_GAP = 0.01


def _settled_level(qqq: pl.DataFrame) -> float:
    indicators = SessionIndicators()
    vwap = ma9 = None
    for high, low, close, volume in qqq.select("high", "low", "close", "volume").iter_rows():
        vwap, ma9 = indicators.update(high, low, close, volume, None)
    last = qqq["close"][-1]
    up = vwap is not None and ma9 is not None and ma9 > vwap
    return round(last * (1 + SETTLE_GAP if up else 1 - SETTLE_GAP), 2)


def write_sim_day(day: dt.date, out_dir: Path, *, seed: int = 7) -> Path:
    """Write the sim-session day's two flat files under `out_dir`; returns `out_dir`."""
    stocks, options = day_frames(day, seed=seed)
    settle_ns = int(dt.datetime.combine(day, SETTLE, tzinfo=NY).timestamp() * 1e9)
    after = pl.col("window_start") >= settle_ns
    qqq = pl.col("ticker") == "QQQ"
    level = _settled_level(stocks.filter(qqq & ~after).sort("window_start"))
    stocks = stocks.with_columns(
        [pl.when(qqq & after).then(pl.lit(level)).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close")]
    )
    zero_dte = pl.col("ticker").str.starts_with(option_ticker("QQQ", day, "C", 1)[:11])
    last_before = (
        options.filter(zero_dte & ~after).sort("window_start").group_by("ticker").agg(pl.col("close").last().alias("_last"))
    )
    settled = (pl.col("_last") * SETTLED_OPTION_FACTOR).round(2).clip(lower_bound=0.01)
    price = pl.when(zero_dte & after).then(settled).otherwise(pl.col("close"))
    options = (
        options.join(last_before, on="ticker", how="left", maintain_order="left")
        .with_columns(pl.when(zero_dte).then(price).otherwise(pl.col(c)).alias(c) for c in ("open", "high", "low", "close"))
        .drop("_last")
    )
    _write_csv_gz(stocks, Path(out_dir) / stocks_key(day))
    _write_csv_gz(options, Path(out_dir) / options_key(day))
    return Path(out_dir)
