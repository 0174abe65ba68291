"""The sample flat files: deterministic, in Polygon's exact format, and rich enough for the
strategy (crossovers early and all day; stops, targets and reversals over a few days)."""

from __future__ import annotations

import datetime as dt
import gzip
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from alphagen_core.adapters.polygon.flatfiles import options_key, stocks_key
from alphagen_core.domain.calendar import next_trading_day, session, sessions
from alphagen_core.sim import sample

pytestmark = pytest.mark.unit

HEADER = "ticker,volume,open,close,high,low,window_start,transactions"
WEEK_START, WEEK_END = dt.date(2024, 2, 14), dt.date(2024, 2, 21)  # Wed..Wed over a weekend and Presidents Day
EARLY_CLOSE = dt.date(2024, 11, 29)
NS = 1_000_000_000


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    out = tmp_path_factory.mktemp("week")
    return out, sample.generate(WEEK_START, WEEK_END, out)


def _read(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, schema_overrides={"volume": pl.Int64, "window_start": pl.Int64, "transactions": pl.Int64})


def _ny(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        ts=pl.from_epoch("window_start", time_unit="ns").dt.replace_time_zone("UTC").dt.convert_time_zone("America/New_York")
    )


def _regular(frame: pl.DataFrame, d: dt.date) -> pl.DataFrame:
    s = session(d)
    lo, hi = int(s.open.timestamp()) * NS, int(s.close.timestamp()) * NS
    return frame.filter((pl.col("window_start") >= lo) & (pl.col("window_start") < hi))


# ---- determinism and layout -------------------------------------------------------------


def test_same_seed_same_bytes_and_one_day_alone_equals_the_day_in_a_range(week, tmp_path: Path) -> None:
    out, written = week
    again = sample.generate(WEEK_START, WEEK_END, tmp_path / "again")
    assert [p.relative_to(tmp_path / "again") for p in again] == [p.relative_to(out) for p in written]
    for a, b in zip(written, again, strict=True):
        assert a.read_bytes() == b.read_bytes(), a
    alone = sample.generate(dt.date(2024, 2, 16), dt.date(2024, 2, 16), tmp_path / "alone")
    assert len(alone) == 2
    for p in alone:
        assert p.read_bytes() == (out / p.relative_to(tmp_path / "alone")).read_bytes(), p
    other_seed = sample.generate(dt.date(2024, 2, 16), dt.date(2024, 2, 16), tmp_path / "seed8", seed=8)
    assert other_seed[0].read_bytes() != alone[0].read_bytes()


def test_files_only_on_trading_days_in_the_bucket_key_layout(week) -> None:
    out, written = week
    days = [dt.date(2024, 2, d) for d in (14, 15, 16, 20, 21)]  # not 17/18 (weekend) nor 19 (holiday)
    expected = [out / k for d in days for k in (stocks_key(d), options_key(d))]
    assert written == expected
    assert sorted(p for p in out.rglob("*") if p.is_file()) == sorted(expected)
    assert stocks_key(dt.date(2024, 2, 14)) == "us_stocks_sip/minute_aggs_v1/2024/02/2024-02-14.csv.gz"
    assert options_key(dt.date(2024, 2, 14)) == "us_options_opra/minute_aggs_v1/2024/02/2024-02-14.csv.gz"
    for d in days:  # every row of a day's files belongs to that day (New York time)
        for key in (stocks_key(d), options_key(d)):
            dates = _ny(_read(out / key))["ts"].dt.date().unique().to_list()
            assert dates == [d], key


def test_header_and_row_format_exactly_as_polygon(week) -> None:
    out, _ = week
    for key in (stocks_key(WEEK_START), options_key(WEEK_START)):
        text = gzip.decompress((out / key).read_bytes()).decode("ascii")
        lines = text.splitlines()
        assert lines[0] == HEADER
        assert text.endswith("\n") and "\r" not in text
        row = re.compile(r"^(O:)?[A-Z]+[0-9A-Z]*,\d+,\d+(\.\d{1,2})?,\d+(\.\d{1,2})?,\d+(\.\d{1,2})?,\d+(\.\d{1,2})?,\d{19},\d+$")
        bad = [ln for ln in lines[1:] if not row.match(ln)]
        assert not bad, bad[:3]
        df = _read(out / key)
        # sorted like Polygon: by ticker, then window_start; no duplicate bars
        assert df.equals(df.sort("ticker", "window_start"))
        assert df.select(pl.struct("ticker", "window_start").is_unique().all()).item()
        assert (df["window_start"] % (60 * NS) == 0).all()
        assert (df["volume"] > 0).all() and (df["transactions"] > 0).all()
        assert df.select((pl.col("high") >= pl.max_horizontal("open", "close")).all()).item()
        assert df.select((pl.col("low") <= pl.min_horizontal("open", "close")).all()).item()
        assert (df["low"] >= 0.01).all()
    opt = _read(out / options_key(WEEK_START))
    assert opt["ticker"].str.contains(r"^O:[A-Z]+\d{6}[CP]\d{8}$").all()
    assert sample.option_ticker("QQQ", dt.date(2024, 2, 12), "C", 430) == "O:QQQ240212C00430000"
    assert sample.option_ticker("SPXW", dt.date(2024, 2, 12), "P", 5012.5) == "O:SPXW240212P05012500"
    strike = round(_read(out / stocks_key(WEEK_START)).filter(pl.col("ticker") == "QQQ")["close"].median())
    assert sample.option_ticker("QQQ", WEEK_START, "P", strike) in set(opt["ticker"])


def test_stocks_file_has_extended_hours_and_other_tickers(week) -> None:
    out, _ = week
    d = WEEK_START
    df = _ny(_read(out / stocks_key(d)))
    assert {"QQQ", "SPY", "AAPL", "IWM", "QQQM"} <= set(df["ticker"].unique())
    q = df.filter(pl.col("ticker") == "QQQ")
    times = q["ts"].dt.time()
    assert times.min() >= dt.time(4, 0) and times.max() <= dt.time(19, 59)
    pre = q.filter(pl.col("ts").dt.time() < dt.time(9, 30))
    post = q.filter(pl.col("ts").dt.time() >= dt.time(16, 0))
    reg = _regular(q, d)
    assert len(reg) == 390  # every regular minute
    assert 50 < len(pre) < 330 and 50 < len(post) < 240  # thinner, with gaps
    assert pre["volume"].median() < reg["volume"].median() / 5
    assert post["volume"].median() < reg["volume"].median() / 5
    assert 400 <= reg["low"].min() and reg["high"].max() <= 520
    # U-shaped volume: the first and last half hours trade more than midday
    v = reg["volume"].to_numpy()
    assert v[:30].mean() > 1.5 * v[150:240].mean() and v[-30:].mean() > 1.3 * v[150:240].mean()


def test_early_close_day_ends_with_the_1259_bar(tmp_path: Path) -> None:
    sample.generate(EARLY_CLOSE, EARLY_CLOSE, tmp_path)
    s = session(EARLY_CLOSE)
    assert s.early_close
    stocks = _ny(_read(tmp_path / stocks_key(EARLY_CLOSE)))
    reg = _ny(_regular(stocks.filter(pl.col("ticker") == "QQQ"), EARLY_CLOSE))
    assert len(reg) == 210
    assert reg["ts"].min().time() == dt.time(9, 30) and reg["ts"].max().time() == dt.time(12, 59)
    post = stocks.filter((pl.col("ticker") == "QQQ") & (pl.col("ts") >= s.close))
    assert post["ts"].max().time() <= dt.time(16, 59)
    opt = _ny(_read(tmp_path / options_key(EARLY_CLOSE)))
    zero = opt.filter(pl.col("ticker").str.starts_with("O:QQQ241129"))
    assert zero["ts"].min().time() == dt.time(9, 30) and zero["ts"].max().time() == dt.time(12, 59)
    assert opt["ts"].max().time() < dt.time(13, 15)


# ---- the option chains ------------------------------------------------------------------


def _chain(opt: pl.DataFrame, root: str, expiry: dt.date) -> pl.DataFrame:
    return opt.filter(pl.col("ticker").str.starts_with(f"O:{root}{expiry:%y%m%d}")).with_columns(
        right=pl.col("ticker").str.slice(-9, 1), strike=pl.col("ticker").str.slice(-8).cast(pl.Int64) / 1000
    )


@pytest.mark.parametrize("d", [dt.date(2024, 2, 14), dt.date(2024, 2, 16), dt.date(2024, 2, 21)])
def test_qqq_0dte_chain_is_full_every_regular_minute(week, d: dt.date) -> None:
    out, _ = week
    opt = _read(out / options_key(d))
    qqq = _regular(_read(out / stocks_key(d)).filter(pl.col("ticker") == "QQQ"), d).sort("window_start")
    open_px = qqq["open"][0]
    chain = _chain(opt, "QQQ", d)
    strikes = np.array(sorted(chain["strike"].unique()))
    assert np.all(np.diff(strikes) == 1.0)  # $1 spacing, no holes
    assert (strikes < open_px).sum() >= 15 and (strikes > open_px).sum() >= 15
    assert strikes.min() <= qqq["low"].min() - 5 and strikes.max() >= qqq["high"].max() + 5
    minutes = set(qqq["window_start"].to_list())
    per_minute = chain.group_by("window_start").agg(
        calls_below=((pl.col("right") == "C") & (pl.col("strike") < open_px)).sum(),
        calls_above=((pl.col("right") == "C") & (pl.col("strike") > open_px)).sum(),
        puts_below=((pl.col("right") == "P") & (pl.col("strike") < open_px)).sum(),
        puts_above=((pl.col("right") == "P") & (pl.col("strike") > open_px)).sum(),
        n=pl.len(),
    )
    assert set(per_minute["window_start"].to_list()) == minutes  # no bars outside the session
    for col in ("calls_below", "calls_above", "puts_below", "puts_above"):
        assert per_minute[col].min() >= 15, col
    assert per_minute["n"].min() == per_minute["n"].max() == 2 * len(strikes)


def test_option_prices_follow_the_underlying(week) -> None:
    out, _ = week
    d = WEEK_START
    opt = _read(out / options_key(d))
    qqq = _regular(_read(out / stocks_key(d)).filter(pl.col("ticker") == "QQQ"), d).sort("window_start")
    chain = _chain(opt, "QQQ", d)
    k = round(qqq["open"][0])
    s_close = qqq["close"].to_numpy()
    call = chain.filter((pl.col("right") == "C") & (pl.col("strike") == k)).sort("window_start")
    put = chain.filter((pl.col("right") == "P") & (pl.col("strike") == k)).sort("window_start")
    c, p = call["close"].to_numpy(), put["close"].to_numpy()
    assert np.corrcoef(np.diff(c), np.diff(s_close))[0, 1] > 0.8
    assert np.corrcoef(np.diff(p), np.diff(s_close))[0, 1] < -0.8
    # put-call parity with r = 0 (within rounding), and time value dies into the close
    assert np.abs(c - p - (s_close - k)).max() < 0.05
    assert min(c[-1], p[-1]) <= 0.05 and 1.0 < c[0] + p[0] < 8.0
    # calls cheaper as the strike rises, puts dearer, in every minute
    wide = chain.pivot(on="strike", index=["window_start", "right"], values="close").sort("window_start", "right")
    prices = wide.drop("window_start", "right").to_numpy()
    is_call = (wide["right"] == "C").to_numpy()
    assert (np.diff(prices[is_call], axis=1) <= 0).all() and (np.diff(prices[~is_call], axis=1) >= 0).all()
    # the minimum price and cents
    assert chain["low"].min() == 0.01
    assert ((chain["close"] * 100).round(6) % 1 == 0).all()


def test_other_underlyings_and_expiries_are_present(week) -> None:
    out, _ = week
    d = WEEK_START
    opt = _read(out / options_key(d))
    roots = set(opt["ticker"].str.extract(r"^O:([A-Z]+)\d").unique())
    assert {"QQQ", "QQQM", "SPY", "IWM"} <= roots
    assert len(_chain(opt, "SPY", d)) > 1000 and len(_chain(opt, "IWM", d)) > 1000
    nxt = _ny(_chain(opt, "QQQ", next_trading_day(d)))
    assert len(nxt) > 1000
    # non-expiring QQQ options trade until 16:15, past the stock session
    assert nxt["ts"].max().time() == dt.time(16, 14)
    qqq_expiries = set(opt.filter(pl.col("ticker").str.contains(r"^O:QQQ\d"))["ticker"].str.slice(5, 6))
    assert qqq_expiries == {f"{d:%y%m%d}", f"{next_trading_day(d):%y%m%d}"}


def test_full_size_pads_to_two_million_rows_without_changing_the_rest() -> None:
    d = dt.date(2024, 2, 15)
    stocks, options = sample.day_frames(d)
    stocks_full, options_full = sample.day_frames(d, full_size=True)
    assert len(options_full) >= 2_000_000
    assert stocks_full.equals(stocks)
    assert options_full.equals(options_full.sort("ticker", "window_start"))
    assert options_full.select(pl.struct("ticker", "window_start").is_unique().all()).item()
    mine = pl.col("ticker").str.contains(r"^O:(QQQ|QQQM|IWM)\d") | pl.col("ticker").str.starts_with(f"O:SPY{d:%y%m%d}")
    assert options_full.filter(mine).equals(options.filter(mine))
    roots = options_full["ticker"].str.extract(r"^O:([A-Z]+)\d").value_counts()
    assert len(roots) >= 10 and roots["count"].max() < 400_000  # a plausible mix, not one giant chain
    # the QQQ block sits between other underlyings' blocks, as in the real file
    first_qqq = options_full["ticker"].str.starts_with("O:QQQ").arg_max()
    assert 200_000 < first_qqq < len(options_full) - 200_000


# ---- good enough for the strategy -------------------------------------------------------


def _crossovers(bars: pl.DataFrame) -> list[tuple[int, int]]:
    h, lo, c, v = (bars[x].to_numpy().astype(float) for x in ("high", "low", "close", "volume"))
    vwap = np.cumsum((h + lo + c) / 3 * v) / np.cumsum(v)
    ma9 = np.full(len(c), np.nan)
    ma9[8:] = np.convolve(c, np.ones(9) / 9, "valid")
    side, out = 0, []
    for i in range(8, len(c)):
        s = int(np.sign(ma9[i] - vwap[i]))
        if s == 0:
            continue
        if side and s != side:
            out.append((i, s))
        side = s
    return out


def test_crossovers_early_and_all_day_and_every_exit_kind_occurs(tmp_path: Path) -> None:
    """A simplified replay of the strategy over two weeks: sell the ATM 0DTE option on the
    bar after each crossover; a stop (2x credit), a target (0.5x) or a reversal must each
    happen, and crossovers must come several times a day, early sessions included."""
    start, end = dt.date(2024, 3, 4), dt.date(2024, 3, 15)
    sample.generate(start, end, tmp_path)
    exits: dict[str, int] = {"stop": 0, "target": 0, "reversal": 0}
    for s in sessions(start, end):
        bars = _regular(_read(tmp_path / stocks_key(s.date)).filter(pl.col("ticker") == "QQQ"), s.date).sort("window_start")
        xs = _crossovers(bars)
        assert len(xs) >= 3, (s.date, xs)
        assert len([i for i, _ in xs if i < 45]) >= 2, (s.date, xs)  # before 10:15
        opt = _chain(_read(tmp_path / options_key(s.date)), "QQQ", s.date)
        o_ns = bars["window_start"][0]
        book = {
            (t, (w - o_ns) // (60 * NS)): (o, h, lo)
            for t, w, o, h, lo in opt.select("ticker", "window_start", "open", "high", "low").iter_rows()
        }
        closes = bars["close"].to_numpy()
        signals = dict(xs)
        held: tuple[str, float] | None = None
        for i in range(len(closes) - 1):
            if held:
                _, high, low = book[(held[0], i)]
                if high >= 2 * held[1]:
                    exits["stop"] += 1
                    held = None
                elif low <= 0.5 * held[1]:
                    exits["target"] += 1
                    held = None
            if i in signals and i < len(closes) - 30:
                if held:
                    exits["reversal"] += 1
                right = "P" if signals[i] > 0 else "C"
                ticker = sample.option_ticker("QQQ", s.date, right, round(closes[i]))
                held = (ticker, book[(ticker, i + 1)][0])
    assert all(n >= 2 for n in exits.values()), exits


def test_the_strategy_path_can_carry_another_underlyings_name(tmp_path: Path) -> None:
    d = dt.date(2024, 2, 15)
    messages: list[str] = []
    sample.generate(d, d, tmp_path, underlying="SPY", progress=messages.append)
    assert len(messages) == 1 and messages[0].startswith("2024-02-15")
    stocks, options = sample.day_frames(d)
    renamed_stocks = _read(tmp_path / stocks_key(d))
    renamed_options = _read(tmp_path / options_key(d))
    assert "QQQ" not in set(renamed_stocks["ticker"])
    spy = renamed_stocks.filter(pl.col("ticker") == "SPY").drop("ticker")
    assert spy.equals(stocks.filter(pl.col("ticker") == "QQQ").drop("ticker"))
    assert renamed_options.select(pl.struct("ticker", "window_start").is_unique().all()).item()
    assert renamed_options.equals(renamed_options.sort("ticker", "window_start"))
    spy_opts = renamed_options.filter(pl.col("ticker").str.contains(r"^O:SPY\d"))
    qqq_opts = options.filter(pl.col("ticker").str.contains(r"^O:QQQ\d"))
    assert spy_opts["ticker"].str.slice(5).equals(qqq_opts["ticker"].str.slice(5))
    assert spy_opts.drop("ticker").equals(qqq_opts.drop("ticker"))
