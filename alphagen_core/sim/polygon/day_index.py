"""A day's flat-file data indexed for fast time lookups: per ticker, its minute bars in
start order, with the running figures the stand-in serves.

What the stand-in makes up for bars, since flat files do not carry it: ``vw`` (a bar's VWAP)
is the bar's typical price (high + low + close) / 3, rounded to 4 places; ``a`` (the day's
VWAP) is the running volume-weighted mean of those, ``av`` the running volume, ``op`` the
first served bar's open, ``z`` volume / transactions.
"""

from __future__ import annotations

import bisect
import collections
import datetime as dt
import logging
import math
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from alphagen_core.domain.clock import NY

log = logging.getLogger(__name__)

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class EquityBar:
    t: int  # bar start, unix ms
    o: float
    h: float
    l: float  # noqa: E741
    c: float
    v: float
    n: int | None
    vw: float
    a: float  # the day's VWAP up to and including this bar
    av: float  # the day's volume up to and including this bar
    op: float  # the day's first open

    def rest(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": self.v, "vw": self.vw, "o": self.o, "c": self.c, "h": self.h, "l": self.l,
            "t": self.t,
        }
        if self.n is not None:
            out["n"] = self.n
        return out

    def am(self, sym: str) -> dict[str, Any]:
        z = int(self.v / self.n) if self.n else 0
        return {
            "ev": "AM", "sym": sym, "v": self.v, "av": self.av, "op": self.op, "vw": self.vw,
            "o": self.o, "c": self.c, "h": self.h, "l": self.l, "a": self.a, "z": z,
            "s": self.t, "e": self.t + MINUTE_MS,
        }


@dataclass(frozen=True, slots=True)
class OptionBar:
    t: int
    o: float
    h: float
    l: float  # noqa: E741
    c: float
    v: float
    n: int | None
    # running day aggregates over this contract's bars up to and including this one
    day_o: float
    day_h: float
    day_l: float
    day_v: float
    day_vw: float

    def rest(self) -> dict[str, Any]:
        """The contract's minute aggregate, as /v2/aggs serves an option ticker (`vw` made up
        as the bar's typical price, as for the underlying)."""
        out: dict[str, Any] = {"v": self.v, "vw": round((self.h + self.l + self.c) / 3.0, 4), "o": self.o,
                               "c": self.c, "h": self.h, "l": self.l, "t": self.t}
        if self.n is not None:
            out["n"] = self.n
        return out


@dataclass(frozen=True, slots=True)
class Contract:
    ticker: str
    underlying: str
    expiry: dt.date
    right: str  # "call" / "put"
    strike: float


@dataclass
class Series:
    starts: list[int]
    bars: list[Any]

    def ended(self, now_ms: int) -> int:
        """How many bars have ended by now_ms (their index bound)."""
        return bisect.bisect_right(self.starts, now_ms - MINUTE_MS)


@dataclass
class Day:
    date: dt.date
    equity: dict[str, Series] = field(default_factory=dict)
    options: dict[str, Series] = field(default_factory=dict)
    contracts: dict[str, Contract] = field(default_factory=dict)


def _num(x: Any) -> float:
    return float(x) if x is not None else float("nan")


def _right(value: Any) -> str:
    text = str(getattr(value, "value", value)).strip().upper()
    return "call" if text.startswith("C") else "put"


def _epoch_ms_expr(col: str) -> pl.Expr:
    return pl.col(col).dt.epoch("ms").alias("_t")


def build_day(equity: pl.DataFrame, options: pl.DataFrame, date: dt.date | None = None) -> Day:
    """Index one day's frames (the columns of ``flatfiles.load_day``'s DayData)."""
    eq = equity.select(
        "symbol", _epoch_ms_expr("est_timestamp"), "open", "high", "low", "close", "volume",
        "transactions",
    ).sort("symbol", "_t")
    if date is None:
        first = equity.select(pl.col("est_timestamp").min()).item()
        date = first.astimezone(NY).date() if first is not None else dt.date(1970, 1, 1)
    day = Day(date=date)
    grouped: dict[str, list[tuple]] = collections.defaultdict(list)
    for row in eq.iter_rows():
        grouped[row[0]].append(row[1:])
    for sym, rows in grouped.items():
        bars: list[EquityBar] = []
        cum_v = cum_pv = 0.0
        op = _num(rows[0][1])
        for t, o, h, lo, c, v, n in rows:
            o, h, lo, c, v = _num(o), _num(h), _num(lo), _num(c), float(v or 0.0)
            vw = round((h + lo + c) / 3.0, 4)
            cum_v += v
            cum_pv += vw * v
            a = round(cum_pv / cum_v, 4) if cum_v > 0 else vw
            bars.append(EquityBar(int(t), o, h, lo, c, v, None if n is None else int(n), vw, a, cum_v, op))
        day.equity[sym] = Series([b.t for b in bars], bars)

    if options.height:
        op_frame = options.select(
            "option_symbol", "underlying", "expiry", "right", "strike", _epoch_ms_expr("est_timestamp"),
            "open", "high", "low", "close", "volume", "transactions",
        ).sort("option_symbol", "_t")
        ogrouped: dict[str, list[tuple]] = collections.defaultdict(list)
        for row in op_frame.iter_rows():
            sym = row[0]
            if sym not in day.contracts:
                day.contracts[sym] = Contract(sym, str(row[1]), row[2], _right(row[3]), float(row[4]))
            ogrouped[sym].append(row[5:])
        for sym, rows in ogrouped.items():
            obars: list[OptionBar] = []
            day_o = _num(rows[0][1])
            day_h, day_l, cum_v, cum_pv = -math.inf, math.inf, 0.0, 0.0
            for t, o, h, lo, c, v, n in rows:
                o, h, lo, c, v = _num(o), _num(h), _num(lo), _num(c), float(v or 0.0)
                day_h, day_l = max(day_h, h), min(day_l, lo)
                cum_v += v
                cum_pv += v * (h + lo + c) / 3.0
                vw = round(cum_pv / cum_v, 4) if cum_v > 0 else c
                obars.append(OptionBar(int(t), o, h, lo, c, v, None if n is None else int(n), day_o, day_h, day_l, cum_v, vw))
            day.options[sym] = Series([b.t for b in obars], obars)
    return day


class DayStore:
    """Days by date: the ones given up front, and any other loaded lazily from a flat-file
    source through ``flatfiles.load_day`` (cached, thread-safe)."""

    def __init__(
        self,
        days: Iterable[Any],
        source: Any,
        equity_ticker: str,
        underlying: str,
        cache_dir: Path | None,
    ) -> None:
        self._days: dict[dt.date, Day | None] = {}
        self._source = source
        self._equity_ticker = equity_ticker
        self._underlying = underlying
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        for d in days:
            built = self._from_day_data(d)
            self._days[built.date] = built

    @staticmethod
    def _from_day_data(d: Any) -> Day:
        if isinstance(d, Day):
            return d
        session = getattr(d, "session", None)
        date = getattr(session, "date", None) or getattr(d, "date", None)
        if not isinstance(date, dt.date):
            date = None
        return build_day(d.equity, d.options, date)

    def dates(self) -> list[dt.date]:
        with self._lock:
            return sorted(k for k, v in self._days.items() if v is not None)

    def get(self, date: dt.date) -> Day | None:
        with self._lock:
            if date in self._days:
                return self._days[date]
            day = self._load(date)
            self._days[date] = day
            return day

    def _load(self, date: dt.date) -> Day | None:
        if self._source is None:
            return None
        from alphagen_core.adapters.polygon import flatfiles
        from alphagen_core.domain import calendar

        if not calendar.is_trading_day(date):
            return None
        source = self._source
        if isinstance(source, (str, Path)):
            source = flatfiles.LocalFlatFiles(source)
        cache_dir = self._cache_dir or Path(tempfile.gettempdir()) / "alphagen-polygon-standin-cache"
        try:
            data = flatfiles.load_day(
                source,
                calendar.session(date),
                equity_ticker=self._equity_ticker,
                underlying=self._underlying,
                cache_dir=cache_dir,
            )
        except Exception as exc:  # noqa: BLE001 - a missing day is simply not served
            log.warning("polygon stand-in: no data for %s (%s)", date, type(exc).__name__)
            return None
        return build_day(data.equity, data.options, date)

