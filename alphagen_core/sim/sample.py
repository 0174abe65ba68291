"""Deterministic, realistic sample Polygon (Massive) flat files, for tests and demos.

For every NYSE trading day in a range this writes, in the S3 key layout of the real bucket,

    us_stocks_sip/minute_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz
    us_options_opra/minute_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz

with the real header ``ticker,volume,open,close,high,low,window_start,transactions``,
``window_start`` in Unix nanoseconds of the bar start, rows sorted by ticker then window_start.

What is in a day:
- stocks: QQQ plus a few other tickers (AAPL, IWM, MSFT, NVDA, QQQM, SPY, TSLA), every
  regular-session minute, and thinner pre-market (04:00-open) and post-market
  (close-close+4h) bars with gaps. QQQ follows a minute path of alternating trending and
  mean-reverting stretches (short swings in the first 45 minutes) so that MA9 and the session
  VWAP cross several times a day, early sessions included, with a U-shaped volume profile.
- options: the QQQ chain of the nearest listed expiry on or after the session date (0DTE
  from 2022-11-14, when QQQ has an expiry every trading day; before that the next Mon/Wed/Fri
  or Friday expiry, see `qqq_expiries`), $1 strikes centred on the open and covering the
  day's range (>= 15 each side of the open), calls and puts, a bar every regular minute; the
  QQQ chain of the next listed expiry after it (with bars until close + 15 min, as QQQ
  options trade until 16:15, and so does the first chain when it does not expire today), a
  sparse QQQM chain (a ticker that shares the "O:QQQ" prefix), and SPY and IWM 0DTE chains.
  Prices are Black-Scholes (r = 0, trading-time years of 390 * 252 minutes, a skewed
  volatility smile; time left = minutes to today's close + trading minutes from today's close
  to the expiry's close) of the underlying's own minute bars, so an option's o/h/l/c follow
  the underlying's o/h/l/c; minimum price 0.01, rounded to cents.
- QQQ's price level is the sample's 2024-like ~$462 from 2022-11-14 on; earlier sessions
  use a rough per-year level (`_QQQ_LEVEL_BY_YEAR`), so old chains' strikes surround QQQ.
- ``full_size=True`` pads the options file to at least 2,000,000 rows with the chains of
  other underlyings (AAPL, AMD, AMZN, ..., SPXW, TSLA, ...), as the real file covers them all.

Everything is a function of (seed, date) only: one day generated alone is byte-identical to
the same day generated inside a range (the gzip header carries no file name and mtime 0).
Files are written to a temporary name and renamed, so a reader never sees a partial file.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from alphagen_core.adapters.polygon.flatfiles import COLUMNS as HEADER
from alphagen_core.adapters.polygon.flatfiles import options_key, stocks_key
from alphagen_core.domain.calendar import (
    NY,
    Session,
    is_trading_day,
    previous_trading_day,
    session,
    sessions,
)

FULL_SIZE_OPTION_ROWS = 2_000_000
GZIP_LEVEL = 4  # measured: 2.5x faster than level 6 for a 6 % larger file

_NS_PER_MIN = 60_000_000_000
_PRE_OPEN = dt.time(4, 0)
_POST_MINUTES = 240  # post-market runs until close + 4 h (20:00, or 17:00 on early closes)
_OPTIONS_AFTER_CLOSE = 15  # QQQ/SPY/IWM options (not the expiring ones) trade until 16:15
_YEAR_MINUTES = 390.0 * 252.0  # trading-time year


def option_ticker(root: str, expiry: dt.date, right: str, strike: float) -> str:
    """Polygon's option ticker, e.g. ``O:QQQ240212C00430000``."""
    return f"O:{root}{expiry:%y%m%d}{right}{round(strike * 1000):08d}"


# ---- QQQ's listed expiries (an approximation, used for sample data only) ------------------

QQQ_DAILY_EXPIRIES_FROM = dt.date(2022, 11, 14)  # Tuesday and Thursday expiries added: daily
QQQ_MON_WED_EXPIRIES_FROM = dt.date(2018, 1, 1)  # approximate start of Monday/Wednesday expiries


def qqq_expiry_weekdays(nominal: dt.date) -> tuple[int, ...]:
    """The weekdays (Monday = 0) on which a QQQ expiry is listed in the week of `nominal`:
    every weekday from 2022-11-14, Monday/Wednesday/Friday from 2018 (approximate), Fridays
    only (weeklies and monthlies) before that."""
    if nominal >= QQQ_DAILY_EXPIRIES_FROM:
        return (0, 1, 2, 3, 4)
    if nominal >= QQQ_MON_WED_EXPIRIES_FROM:
        return (0, 2, 4)
    return (4,)


def qqq_expiries(d: dt.date, count: int = 2) -> list[dt.date]:
    """The first `count` QQQ expiries on or after `d`, ascending. An expiry whose listed day
    is an NYSE holiday moves to the previous trading day (e.g. Good Friday -> Thursday).
    An approximation of the historical listing schedule, for sample data."""
    found: list[dt.date] = []
    nominal = d
    while len(found) < count:
        if nominal.weekday() in qqq_expiry_weekdays(nominal):
            expiry = nominal if is_trading_day(nominal) else previous_trading_day(nominal)
            if expiry >= d and expiry not in found:
                found.append(expiry)
        nominal += dt.timedelta(days=1)
    return found


def nearest_qqq_expiry(d: dt.date) -> dt.date:
    """The nearest QQQ expiry on or after `d`: `d` itself from 2022-11-14 (0DTE)."""
    return qqq_expiries(d, 1)[0]


def _minutes_to_expiry_close(d: dt.date, expiry: dt.date) -> float:
    """Trading minutes from `d`'s close to `expiry`'s close (0 when it expires on `d`)."""
    return float(sum(s.minutes for s in sessions(d + dt.timedelta(days=1), expiry)))


# ---- deterministic randomness -----------------------------------------------------------

# Each component of a day draws from its own stream so that, e.g., padding the options file
# (full_size) never changes the QQQ rows.
_STREAM = {"qqq": 1, "stocks": 2, "options": 3, "padding": 4, "level": 5}


def _rng(seed: int, d: dt.date, stream: str, extra: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, d.toordinal(), _STREAM[stream], extra]))


def _level(seed: int, d: dt.date, centre: float, amplitude: float, extra: int) -> float:
    """A slowly wandering price level: a function of the date, so consecutive days connect
    plausibly although each day is generated on its own."""
    x = d.toordinal()
    phase = (seed * 0.7331 + extra * 1.913) % (2 * math.pi)
    wave = 0.65 * math.sin(x / 37.0 + phase) + 0.35 * math.sin(x / 9.3 + 2 * phase)
    jitter = _rng(seed, d, "level", extra).normal(0.0, 0.004)
    return centre * (1.0 + amplitude * wave + jitter)


# ---- price paths ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bars:
    """Minute bars over the day's whole grid (pre-market, regular, post-market)."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray


@dataclass(frozen=True)
class _Grid:
    session: Session
    start_ns: int  # window_start of the first grid minute (04:00 NY)
    n_pre: int
    n_reg: int
    n_post: int

    @property
    def size(self) -> int:
        return self.n_pre + self.n_reg + self.n_post

    @property
    def reg(self) -> slice:
        return slice(self.n_pre, self.n_pre + self.n_reg)


def _grid(s: Session) -> _Grid:
    pre_start = dt.datetime.combine(s.date, _PRE_OPEN, tzinfo=NY)
    n_pre = int((s.open - pre_start) / dt.timedelta(minutes=1))
    return _Grid(s, int(pre_start.timestamp()) * 1_000_000_000, n_pre, s.minutes, _POST_MINUTES)


def _regular_closes(rng: np.random.Generator, n: int, open_px: float, walls: tuple[float, float]) -> np.ndarray:
    """Regular-session closes: swings around the open for the first ~45 minutes (so that
    MA9 and VWAP cross early), then alternating trending and mean-reverting stretches, and a
    few sharp news-like moves. Outside `walls` (low, high) the price is pulled back."""
    scale = open_px / 450.0
    wall_lo, wall_hi = walls
    drift = np.zeros(n)
    kappa = np.zeros(n)
    target = np.full(n, np.nan)  # a level to revert to; NaN: the stretch's starting level
    # Opening swings: pulled towards open + A sin(2 pi t / P), so MA9 (lagging ~4 bars)
    # oscillates around the session VWAP (which stays near the open) and crosses it.
    opening = min(48, n)
    period = rng.uniform(13.0, 18.0)
    amplitude = rng.uniform(1.2, 2.1) * scale
    phase = rng.uniform(0.0, 2 * math.pi)
    tt = np.arange(opening)
    envelope = np.minimum(1.0, (tt + 1) / 6.0)  # starts at the open price
    target[:opening] = open_px + envelope * amplitude * (np.sin(2 * math.pi * tt / period + phase) - math.sin(phase))
    kappa[:opening] = 0.45
    t = opening
    direction = float(rng.choice((-1.0, 1.0)))
    while t < n:
        if rng.random() < 0.55:  # a trend, usually against the previous one
            length = int(rng.integers(14, 40))
            direction = -direction if rng.random() < 0.7 else direction
            drift[t : t + length] = direction * rng.uniform(0.05, 0.13) * scale
        else:  # mean reversion around the stretch's starting level
            length = int(rng.integers(15, 45))
            kappa[t : t + length] = rng.uniform(0.08, 0.25)
        t += length
    # Sharp one- or two-minute moves (news-like, e.g. a 14:00 FOMC release) after the first
    # hour: a short option's premium can double inside one bar, before MA9 can turn, which
    # is how stops get hit.
    for _ in range(int(rng.integers(2, 5)) if n >= 120 else 0):
        at = int(rng.integers(60, n - 15))
        sign = float(rng.choice((-1.0, 1.0)))
        drift[at] = sign * rng.uniform(1.8, 3.8) * scale
        drift[at + 1] = sign * rng.uniform(0.0, 0.6) * scale
        kappa[at : at + 2] = 0.0
    u = np.arange(n) / max(n - 1, 1)
    sigma = 0.085 * scale * (1.0 + 1.0 * np.exp(-u * n / 25.0) + 0.5 * np.exp(-(1 - u) * n / 25.0))
    eps = rng.standard_normal(n) * sigma
    closes = np.empty(n)
    p = open_px
    anchor = open_px
    for i in range(n):
        if kappa[i] > 0 and (i == 0 or kappa[i - 1] == 0):
            anchor = p
        level = anchor if np.isnan(target[i]) else target[i]
        pull = kappa[i] * (level - p)
        soft_wall = -0.02 * (p - wall_hi) if p > wall_hi else (-0.02 * (p - wall_lo) if p < wall_lo else 0.0)
        p = p + drift[i] + pull + soft_wall + eps[i]
        closes[i] = p
    return closes


def _walk(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    return np.cumsum(rng.standard_normal(n) * sigma)


def _bars_from_closes(rng: np.random.Generator, first_open: float, closes: np.ndarray, wick: np.ndarray) -> _Bars:
    opens = np.empty_like(closes)
    opens[0] = first_open
    opens[1:] = closes[:-1]
    o = np.round(opens, 2)
    c = np.round(closes, 2)
    h = np.round(np.maximum(opens, closes) + np.abs(rng.standard_normal(len(closes))) * wick, 2)
    lo = np.round(np.minimum(opens, closes) - np.abs(rng.standard_normal(len(closes))) * wick, 2)
    h = np.maximum(h, np.maximum(o, c))
    lo = np.maximum(np.minimum(lo, np.minimum(o, c)), 0.01)
    return _Bars(o, h, lo, c)


# Rough yearly QQQ price levels for sessions before 2022-11-14 (later sessions keep the
# sample's own level, so that their files never change); earlier years use the first entry.
_QQQ_LEVEL_BY_YEAR = {
    2010: 48.0, 2011: 55.0, 2012: 64.0, 2013: 75.0, 2014: 94.0, 2015: 106.0, 2016: 108.0,
    2017: 139.0, 2018: 167.0, 2019: 186.0, 2020: 246.0, 2021: 343.0, 2022: 315.0,
}


def _qqq_centre(d: dt.date) -> float:
    if d >= QQQ_DAILY_EXPIRIES_FROM:
        return 462.0
    return _QQQ_LEVEL_BY_YEAR[min(max(d.year, min(_QQQ_LEVEL_BY_YEAR)), max(_QQQ_LEVEL_BY_YEAR))]


def _qqq_bars(seed: int, g: _Grid) -> tuple[_Bars, np.ndarray]:
    """QQQ over the whole grid, and its regular-session volume profile (U-shaped)."""
    rng = _rng(seed, g.session.date, "qqq")
    centre = _qqq_centre(g.session.date)
    open_px = round(_level(seed, g.session.date, centre, 0.085, 0), 2)
    walls = (405.0 * centre / 462.0, 515.0 * centre / 462.0)  # (405, 515) at the 462 level
    reg = _regular_closes(rng, g.n_reg, open_px, walls)
    gap = rng.normal(0.0, 0.25)
    pre = open_px + gap + _walk(rng, g.n_pre, 0.035)
    pre = pre - pre[-1] + open_px + gap  # the pre-market ends near the open
    post = reg[-1] + _walk(rng, g.n_post, 0.03)
    closes = np.concatenate([pre, reg, post])
    first_open = pre[0] - rng.normal(0.0, 0.03)
    wick = np.concatenate([np.full(g.n_pre, 0.02), np.full(g.n_reg, 0.06), np.full(g.n_post, 0.02)])
    bars = _bars_from_closes(rng, first_open, closes, wick)
    # The regular session opens at the open price exactly.
    i0 = g.n_pre
    o, h, lo = bars.open.copy(), bars.high.copy(), bars.low.copy()
    o[i0] = open_px
    h[i0] = max(h[i0], open_px)
    lo[i0] = min(lo[i0], open_px)
    u = np.arange(g.n_reg) / max(g.n_reg - 1, 1)
    profile = 1.0 + 3.0 * np.exp(-u * g.n_reg / 22.0) + 1.8 * np.exp(-(1 - u) * g.n_reg / 18.0)
    return _Bars(o, h, lo, bars.close), profile


_OTHER_STOCKS = {  # ticker: (typical price, beta to QQQ, idiosyncratic sigma per minute, volume scale)
    "AAPL": (195.0, 0.9, 0.0006, 0.6),
    "IWM": (205.0, 0.7, 0.0005, 0.45),
    "MSFT": (415.0, 0.9, 0.0005, 0.25),
    "NVDA": (125.0, 1.6, 0.0012, 3.0),
    "QQQM": (190.0, 1.0, 0.00005, 0.05),
    "SPY": (535.0, 0.75, 0.0002, 1.0),
    "TSLA": (240.0, 1.4, 0.0015, 1.2),
}


def _stock_bars(seed: int, g: _Grid, qqq: _Bars, index: int, typical: float, beta: float, idio: float) -> _Bars:
    rng = _rng(seed, g.session.date, "stocks", index)
    level = _level(seed, g.session.date, typical, 0.08, index + 1)
    qlog = np.log(qqq.close / qqq.close[g.n_pre])
    logp = beta * qlog + _walk(rng, g.size, idio)
    logp -= logp[g.n_pre]
    closes = level * np.exp(logp)
    wick = np.full(g.size, 0.00012 * level)
    return _bars_from_closes(rng, closes[0] * (1 + rng.normal(0, idio)), closes, wick)


def _presence(rng: np.random.Generator, g: _Grid, pre_lo: float, pre_hi: float, post_hi: float, post_lo: float) -> np.ndarray:
    """Which grid minutes have a bar: every regular minute; thinner outside."""
    p = np.ones(g.size)
    p[: g.n_pre] = np.linspace(pre_lo, pre_hi, g.n_pre)
    p[g.n_pre + g.n_reg :] = np.linspace(post_hi, post_lo, g.n_post)
    return rng.random(g.size) < p


def _volumes(rng: np.random.Generator, g: _Grid, profile: np.ndarray, scale: float, bars: _Bars) -> tuple[np.ndarray, np.ndarray]:
    base = np.empty(g.size)
    base[: g.n_pre] = np.linspace(0.004, 0.05, g.n_pre)
    base[g.reg] = profile
    base[g.n_pre + g.n_reg :] = 0.03 + 0.4 * np.exp(-np.arange(g.n_post) / 4.0)
    move = np.abs(bars.close - bars.open) / bars.close * 4000.0
    vol = 70_000.0 * scale * base * (1.0 + move) * rng.lognormal(0.0, 0.35, g.size)
    vol = np.maximum(np.round(vol), 1).astype(np.int64)
    trades = np.maximum(vol // rng.integers(60, 160, g.size), 1).astype(np.int64)
    return vol, trades


def _stocks_frame(seed: int, g: _Grid, qqq: _Bars, profile: np.ndarray) -> tuple[pl.DataFrame, dict[str, _Bars]]:
    minutes_ns = g.start_ns + np.arange(g.size, dtype=np.int64) * _NS_PER_MIN
    per_ticker: dict[str, _Bars] = {"QQQ": qqq}
    for i, (ticker, (typical, beta, idio, _)) in enumerate(_OTHER_STOCKS.items()):
        per_ticker[ticker] = _stock_bars(seed, g, qqq, i, typical, beta, idio)
    frames = []
    for i, ticker in enumerate(sorted(per_ticker)):
        bars = per_ticker[ticker]
        rng = _rng(seed, g.session.date, "stocks", 100 + i)
        scale = 1.0 if ticker == "QQQ" else _OTHER_STOCKS[ticker][3]
        present = _presence(rng, g, 0.25, 0.9, 0.95, 0.3) if scale >= 0.2 else _presence(rng, g, 0.05, 0.4, 0.5, 0.05)
        vol, trades = _volumes(rng, g, profile, scale, bars)
        idx = np.flatnonzero(present)
        frames.append(
            pl.DataFrame(
                {
                    "ticker": pl.Series([ticker]).gather(np.zeros(len(idx), dtype=np.int64)),
                    "volume": vol[idx],
                    "open": bars.open[idx],
                    "close": bars.close[idx],
                    "high": bars.high[idx],
                    "low": bars.low[idx],
                    "window_start": minutes_ns[idx],
                    "transactions": trades[idx],
                }
            )
        )
    return pl.concat(frames), per_ticker


# ---- options ----------------------------------------------------------------------------


def _norm_cdf(x: np.ndarray) -> np.ndarray:
    """Standard normal CDF via Abramowitz-Stegun 7.1.26 (|error| < 1.5e-7; no scipy)."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


def _black_scholes(s: np.ndarray, k: np.ndarray, minutes: np.ndarray, sigma0: np.ndarray, is_call: np.ndarray) -> np.ndarray:
    """Option value with r = 0, a skewed smile, and `minutes` of trading time left;
    intrinsic value at expiry."""
    m = np.log(k / s)
    sigma = np.clip(sigma0 * (1.0 - 4.0 * m + 60.0 * m * m), 0.5 * sigma0, 3.0 * sigma0)
    t = np.maximum(minutes, 0.0) / _YEAR_MINUTES
    sd = sigma * np.sqrt(t)
    live = sd > 1e-9
    sd_safe = np.where(live, sd, 1.0)
    d1 = (-m + 0.5 * sd_safe * sd_safe) / sd_safe
    call = s * _norm_cdf(d1) - k * _norm_cdf(d1 - sd_safe)
    call = np.where(live, call, np.maximum(s - k, 0.0))
    put = call - s + k
    return np.where(is_call, call, put)


@dataclass
class _Contracts:
    """A list of contracts, built up group by group."""

    ticker: list[str]
    underlying: list[str]
    strike: list[float]
    is_call: list[bool]
    extra_minutes: list[float]  # trading minutes from today's close to the expiry's close
    sigma0: list[float]
    presence: list[float]  # probability of a bar in a given minute
    after_close: list[bool]  # trades until close + 15 min (not expiring today)
    vol_scale: list[float]

    @classmethod
    def empty(cls) -> _Contracts:
        return cls([], [], [], [], [], [], [], [], [])

    def add_chain(
        self,
        root: str,
        underlying: str,
        expiry: dt.date,
        strikes: np.ndarray,
        *,
        extra_minutes: float,
        sigma0: float,
        presence: float | np.ndarray,
        vol_scale: float,
    ) -> None:
        pres = np.broadcast_to(np.asarray(presence, dtype=float), strikes.shape)
        for right in ("C", "P"):
            for k, p in zip(strikes.tolist(), pres.tolist(), strict=True):
                self.ticker.append(option_ticker(root, expiry, right, k))
                self.underlying.append(underlying)
                self.strike.append(float(k))
                self.is_call.append(right == "C")
                self.extra_minutes.append(extra_minutes)
                self.sigma0.append(sigma0)
                self.presence.append(p)
                self.after_close.append(extra_minutes > 0)
                self.vol_scale.append(vol_scale)

    def __len__(self) -> int:
        return len(self.ticker)


def _strike_range(bars: _Bars, g: _Grid, step: float, each_side: int, margin: int) -> np.ndarray:
    """Strikes centred on the open, covering the day's range plus `margin` strikes."""
    reg = g.reg
    open_px = bars.open[g.n_pre]
    centre = round(open_px / step)
    lo = min(centre - each_side, math.floor(bars.low[reg].min() / step) - margin)
    hi = max(centre + each_side, math.ceil(bars.high[reg].max() / step) + margin)
    return np.round(np.arange(lo, hi + 1) * step, 2)


def _option_rows(rng: np.random.Generator, g: _Grid, c: _Contracts, under: dict[str, _Bars], profile: np.ndarray) -> pl.DataFrame:
    """Minute bars of every contract in `c`, sorted by ticker then window_start."""
    n_min = g.n_reg + _OPTIONS_AFTER_CLOSE
    order = np.argsort(np.array(c.ticker))  # byte order of ASCII tickers, as Polygon sorts
    tick = np.array(c.ticker)[order]
    und = np.array(c.underlying)[order]
    strike = np.array(c.strike)[order]
    is_call = np.array(c.is_call)[order]
    extra = np.array(c.extra_minutes)[order]
    sigma0 = np.array(c.sigma0)[order]
    pres = np.array(c.presence)[order]
    after = np.array(c.after_close)[order]
    vscale = np.array(c.vol_scale)[order]

    present = rng.random((len(tick), n_min)) < pres[:, None]
    present[:, g.n_reg :] &= after[:, None]
    ci, mi = np.nonzero(present)  # contract-major, minutes ascending: Polygon's order

    # Underlying o/h/l/c per row, from each underlying's own bars.
    names = sorted(set(und.tolist()))
    code = np.searchsorted(np.array(names), und)
    sl = slice(g.n_pre, g.n_pre + n_min)
    so, sh, slo, sc = (np.stack([getattr(under[nm], f)[sl] for nm in names]) for f in ("open", "high", "low", "close"))
    rc = code[ci]
    s_o, s_h, s_l, s_c = so[rc, mi], sh[rc, mi], slo[rc, mi], sc[rc, mi]

    k, call, sig, ex = strike[ci], is_call[ci], sigma0[ci], extra[ci]
    left = np.maximum(g.n_reg - mi, 0).astype(float)  # minutes to today's close at bar start
    t_start = ex + left
    t_end = ex + np.maximum(left - 1.0, 0.0)
    po = _black_scholes(s_o, k, t_start, sig, call)
    pc = _black_scholes(s_c, k, t_end, sig, call)
    # A call is worth most at the bar's high with the most time left, least at its low with
    # the least time left; a put the other way round.
    ph = _black_scholes(np.where(call, s_h, s_l), k, t_start, sig, call)
    pl_ = _black_scholes(np.where(call, s_l, s_h), k, t_end, sig, call)
    o = np.maximum(np.round(po, 2), 0.01)
    c_ = np.maximum(np.round(pc, 2), 0.01)
    h = np.maximum(np.maximum(np.round(ph, 2), 0.01), np.maximum(o, c_))
    lo = np.minimum(np.maximum(np.round(pl_, 2), 0.01), np.minimum(o, c_))

    prof = np.concatenate([profile, np.full(_OPTIONS_AFTER_CLOSE, 0.2)])[mi]
    dist = np.abs(k - s_c) / s_c * 450.0  # distance in "QQQ dollars"
    vol = 1.0 + np.floor(vscale[ci] * 400.0 * prof * np.exp(-dist / 3.0) * rng.lognormal(0.0, 0.6, len(ci)))
    trades = np.maximum(vol // rng.integers(2, 9, len(ci)), 1)

    window_start = g.start_ns + (g.n_pre + mi).astype(np.int64) * _NS_PER_MIN
    return pl.DataFrame(
        {
            "ticker": pl.Series(tick).gather(ci),
            "volume": vol.astype(np.int64),
            "open": o,
            "close": c_,
            "high": h,
            "low": lo,
            "window_start": window_start,
            "transactions": trades.astype(np.int64),
        }
    )


def _sigma0(rng: np.random.Generator, base: float) -> float:
    return float(base * rng.uniform(0.8, 1.25))


def _options_frame(seed: int, g: _Grid, stocks: dict[str, _Bars], profile: np.ndarray) -> pl.DataFrame:
    d = g.session.date
    rng = _rng(seed, d, "options")
    first, second = qqq_expiries(d, 2)  # from 2022-11-14: today (0DTE) and the next trading day
    friday = d + dt.timedelta(days=(4 - d.weekday()) % 7 or 7)
    c = _Contracts.empty()
    qqq = stocks["QQQ"]
    q_sigma = _sigma0(rng, 0.20)
    c.add_chain("QQQ", "QQQ", first, _strike_range(qqq, g, 1.0, 15, 10), extra_minutes=_minutes_to_expiry_close(d, first), sigma0=q_sigma, presence=1.0, vol_scale=1.0)
    c.add_chain("QQQ", "QQQ", second, _strike_range(qqq, g, 1.0, 15, 0), extra_minutes=_minutes_to_expiry_close(d, second), sigma0=q_sigma * 0.95, presence=1.0, vol_scale=0.3)
    qqqm_strikes = _strike_range(stocks["QQQM"], g, 1.0, 5, 0)
    c.add_chain("QQQM", "QQQM", friday, qqqm_strikes, extra_minutes=390.0 * max(np.busday_count(d, friday), 1), sigma0=q_sigma, presence=0.15, vol_scale=0.05)
    spy_strikes = _strike_range(stocks["SPY"], g, 1.0, 12, 0)
    spy_pres = np.clip(1.1 - np.abs(spy_strikes - spy_strikes.mean()) / 30.0, 0.3, 1.0)
    c.add_chain("SPY", "SPY", d, spy_strikes, extra_minutes=0.0, sigma0=_sigma0(rng, 0.16), presence=spy_pres, vol_scale=1.2)
    iwm_strikes = _strike_range(stocks["IWM"], g, 1.0, 8, 0)
    c.add_chain("IWM", "IWM", d, iwm_strikes, extra_minutes=0.0, sigma0=_sigma0(rng, 0.24), presence=0.7, vol_scale=0.4)
    return _option_rows(rng, g, c, stocks, profile)


_PADDING = {  # root: (typical price, strike step, daily sigma base)
    "AAPL": (195.0, 2.5, 0.28),
    "AMD": (150.0, 2.5, 0.45),
    "AMZN": (185.0, 2.5, 0.32),
    "BAC": (38.0, 0.5, 0.25),
    "GOOGL": (170.0, 2.5, 0.30),
    "META": (520.0, 5.0, 0.38),
    "MSFT": (415.0, 2.5, 0.26),
    "NFLX": (650.0, 5.0, 0.36),
    "NVDA": (125.0, 1.0, 0.55),
    "SPXW": (5600.0, 5.0, 0.15),
    "SPY": (535.0, 1.0, 0.16),
    "TLT": (92.0, 0.5, 0.14),
    "TSLA": (240.0, 2.5, 0.60),
    "XLF": (44.0, 0.5, 0.20),
}


def _padding_frame(seed: int, g: _Grid, stocks: dict[str, _Bars], existing_rows: int, profile: np.ndarray) -> pl.DataFrame:
    """Other underlyings' chains (six weekly expiries each, plus SPXW's 0DTE), wide enough
    that the options file has at least FULL_SIZE_OPTION_ROWS rows."""
    d = g.session.date
    rng = _rng(seed, d, "padding")
    n_min = g.n_reg + _OPTIONS_AFTER_CLOSE
    under: dict[str, _Bars] = {}
    chains: list[tuple[str, str, dt.date, float, int, float, float]] = []
    first_friday = d + dt.timedelta(days=(4 - d.weekday()) % 7)
    for i, (root, (typical, step, sig)) in enumerate(_PADDING.items()):
        # The stocks file's own path where it has the ticker; a path of its own otherwise.
        key = "SPX" if root == "SPXW" else root
        if root == "SPXW":
            spy = stocks["SPY"]
            under[key] = _Bars(*(np.round(getattr(spy, f) * 10.47, 2) for f in ("open", "high", "low", "close")))
        elif key in stocks:
            under[key] = stocks[key]
        else:
            level = _level(seed, d, typical, 0.1, 50 + i)
            closes = level * np.exp(_walk(rng, g.size, 0.0009 * sig / 0.3))
            under[key] = _bars_from_closes(rng, closes[0], closes, np.full(g.size, 0.0002 * level))
        expiries = [first_friday + dt.timedelta(weeks=w) for w in range(6)]
        if root == "SPXW" and first_friday != d:
            expiries.insert(0, d)  # a daily-expiry product
        if root == "SPY":
            expiries = [e for e in expiries if e != d]  # SPY's 0DTE chain is in the base file
        for expiry in expiries:
            days_out = (expiry - d).days
            chains.append((root, key, expiry, step, 25 + 3 * days_out, sig * rng.uniform(0.85, 1.15), 390.0 * days_out * 5 / 7))

    def presence(width: int) -> np.ndarray:
        dist = np.abs(np.arange(-width, width + 1)) / width
        return np.clip(0.95 - 0.9 * dist, 0.03, 0.95)

    # Scale the chains' widths so that the expected row count clears the target by 3 %.
    need = FULL_SIZE_OPTION_ROWS - existing_rows
    expected = sum(2 * presence(w).sum() * n_min for *_, w, _, _ in chains)
    factor = max(need * 1.03 / expected, 0.05)
    c = _Contracts.empty()
    for root, key, expiry, step, base_width, sig, extra in chains:
        width = max(int(round(base_width * factor)), 3)
        centre = round(float(under[key].open[g.n_pre]) / step)
        strikes = np.round(np.arange(centre - width, centre + width + 1) * step, 2)
        c.add_chain(root, key, expiry, strikes, extra_minutes=extra, sigma0=float(sig), presence=presence(width), vol_scale=0.5)
    frame = _option_rows(rng, g, c, under, profile)
    if len(frame) < need:  # cannot happen with a 3 % margin over a sum of ~2M coin flips
        raise AssertionError(f"padding produced {len(frame)} rows, {need} needed")
    return frame


# ---- writing ----------------------------------------------------------------------------


def _write_csv_gz(frame: pl.DataFrame, path: Path) -> None:
    """Write `frame` as gzip CSV, atomically (temporary file, then rename).

    polars' own gzip writer, about three times faster than CSV then Python's gzip at the same
    level (BENCHMARKS.md, "Flat files: writing a generated day"). Its output is a single gzip member with mtime 0 and
    no file name, so it is deterministic.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.select(HEADER).write_csv(tmp, compression="gzip", compression_level=GZIP_LEVEL, check_extension=False, line_terminator="\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def day_frames(d: dt.date, *, seed: int = 7, full_size: bool = False, underlying: str = "QQQ") -> tuple[pl.DataFrame, pl.DataFrame]:
    """The (stocks, options) frames of one trading day, exactly as `generate` writes them."""
    g = _grid(session(d))
    qqq, profile = _qqq_bars(seed, g)
    stocks, per_ticker = _stocks_frame(seed, g, qqq, profile)
    options = _options_frame(seed, g, per_ticker, profile)
    if full_size:
        options = pl.concat([options, _padding_frame(seed, g, per_ticker, len(options), profile)]).sort("ticker", "window_start", maintain_order=True)
    if underlying != "QQQ":
        # The strategy-friendly path is generated as QQQ and renamed; rows that already
        # carry the new name (e.g. SPY) are dropped first so that nothing is duplicated.
        stocks = stocks.filter(pl.col("ticker") != underlying)
        options = options.filter(~pl.col("ticker").str.contains(rf"^O:{underlying}\d"))
        stocks = stocks.with_columns(pl.col("ticker").replace({"QQQ": underlying}))
        options = options.with_columns(pl.col("ticker").str.replace(r"^O:QQQ(\d)", f"O:{underlying}$1"))
        stocks = stocks.sort("ticker", "window_start", maintain_order=True)
        options = options.sort("ticker", "window_start", maintain_order=True)
    return stocks, options


def generate(
    start: dt.date,
    end: dt.date,
    out_dir: Path,
    *,
    seed: int = 7,
    full_size: bool = False,
    underlying: str = "QQQ",
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Write the stocks and options minute-aggregate files of every trading day in
    [start, end] under `out_dir` (S3 key layout); returns the paths written, day by day,
    stocks file first."""
    out_dir = Path(out_dir)
    written: list[Path] = []
    for s in sessions(start, end):
        stocks, options = day_frames(s.date, seed=seed, full_size=full_size, underlying=underlying)
        for key, frame in ((stocks_key(s.date), stocks), (options_key(s.date), options)):
            path = out_dir / key
            _write_csv_gz(frame, path)
            written.append(path)
        if progress is not None:
            progress(f"{s.date}: {len(stocks)} stock rows, {len(options)} option rows")
    return written
