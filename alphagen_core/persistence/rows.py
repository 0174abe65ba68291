"""Table rows <-> domain models: the one place that knows how a model's fields become a
table's columns (`tables.py`) and back.

Tables 4-8 and control_events hold their models field for field (`MODEL_OF`); tables 1-3
name some fields differently (a bar's start is its row's est_timestamp) or add the row's
context (the quote kind, the source, the broker).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import fields, is_dataclass
from enum import Enum
from functools import cache
from typing import Any, get_type_hints

import polars as pl

from alphagen_core.domain.models import (
    BALANCE_SYMBOLS,
    Bar,
    BrokerBalances,
    BrokerPosition,
    ControlEvent,
    Execution,
    NormalizedTick,
    OptionContract,
    OptionQuote,
    PositionState,
    Right,
    Signal,
    TradeIntent,
)

MODEL_OF: dict[str, type] = {
    "normalized_ticks": NormalizedTick,
    "position_state": PositionState,
    "signals": Signal,
    "trade_intents": TradeIntent,
    "executions": Execution,
    "control_events": ControlEvent,
}


def to_frame(rows: pl.DataFrame | Sequence[Any]) -> pl.DataFrame:
    """Rows as a frame: a frame as it is, flat dataclasses by their fields, dicts by their
    keys; enums by their values."""
    if isinstance(rows, pl.DataFrame):
        return rows
    if not rows:
        return pl.DataFrame()
    first = rows[0]
    if is_dataclass(first):  # read the fields directly: asdict deep-copies
        names = [f.name for f in fields(first)]
        columns = {n: [_plain(getattr(r, n)) for r in rows] for n in names}
    else:
        names = list(first)
        columns = {n: [_plain(r[n]) for r in rows] for n in names}
    return pl.DataFrame(columns, strict=False)


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


@cache
def _field_enums(model: type) -> dict[str, type[Enum]]:
    return {name: hint for name, hint in get_type_hints(model).items()
            if isinstance(hint, type) and issubclass(hint, Enum)}


def models_from(model: type, frame: pl.DataFrame) -> list[Any]:
    """A table's rows as the model it holds field for field (`MODEL_OF`)."""
    names = [f.name for f in fields(model)]
    enums = _field_enums(model)
    return [
        model(**{n: enums[n](v) if n in enums else v for n, v in r.items()})
        for r in frame.select(names).iter_rows(named=True)
    ]


def ticks_from(frame: pl.DataFrame) -> list[NormalizedTick]:
    return models_from(NormalizedTick, frame)


def intents_from(frame: pl.DataFrame) -> list[TradeIntent]:
    return models_from(TradeIntent, frame)


def executions_from(frame: pl.DataFrame) -> list[Execution]:
    return models_from(Execution, frame)


def control_events_from(frame: pl.DataFrame) -> list[ControlEvent]:
    return models_from(ControlEvent, frame)


# ---- table 1: equity_bars -----------------------------------------------------------------


def bar_rows(bars: Iterable[Bar], source: str) -> list[dict[str, Any]]:
    return [
        {"symbol": b.symbol, "est_timestamp": b.start, "open": b.open, "high": b.high, "low": b.low,
         "close": b.close, "volume": b.volume, "bar_vwap": b.vwap, "day_vwap": b.day_vwap,
         "transactions": b.transactions, "source": source}
        for b in bars
    ]


def bars_from(frame: pl.DataFrame) -> list[Bar]:
    """Table 1's rows, or a flat file's bars (which have no VWAP columns), as bars."""
    return [
        Bar(symbol=r["symbol"], start=r["est_timestamp"], open=r["open"], high=r["high"], low=r["low"],
            close=r["close"], volume=r["volume"], vwap=r.get("bar_vwap"), day_vwap=r.get("day_vwap"),
            transactions=r.get("transactions"))
        for r in frame.iter_rows(named=True)
    ]


def equity_bar_rows(equity: pl.DataFrame, source: str) -> pl.DataFrame:
    """A flat file's bars as table 1's rows. Flat files carry no per-bar or day VWAP: both
    stay NULL."""
    return equity.select(
        "symbol", "est_timestamp", "open", "high", "low", "close", "volume",
        pl.lit(None, pl.Float64).alias("bar_vwap"),
        pl.lit(None, pl.Float64).alias("day_vwap"),
        pl.col("transactions").cast(pl.Int64),
        pl.lit(source).alias("source"),
    )


# ---- table 2: option_quotes ---------------------------------------------------------------


def quote_rows(quotes: Iterable[OptionQuote], kind: str, source: str) -> list[dict[str, Any]]:
    """Live quotes as table 2's rows. A live quote has no minute open (a chain's quote is filed
    under the minute that used it), and its source time is kept in quoted_at."""
    return [
        {"option_symbol": q.symbol, "est_timestamp": q.start, "underlying": q.contract.root,
         "expiry": q.contract.expiry, "right": q.contract.right.value, "strike": q.contract.strike,
         "bid": q.bid, "ask": q.ask, "last": q.last, "open": None, "high": q.high, "low": q.low,
         "volume": q.volume, "quote_kind": kind, "source": source, "quoted_at": q.source_time}
        for q in quotes
    ]


def quotes_from(frame: pl.DataFrame, half_spread: float) -> list[OptionQuote]:
    """Table 2's rows as quotes; a row with a minute's range (high) is valued with the
    half-spread, as its aggregate was."""
    return [
        OptionQuote(
            symbol=r["option_symbol"], contract=OptionContract(r["underlying"], r["expiry"], Right(r["right"]),
                                                               r["strike"]),
            start=r["est_timestamp"], bid=r["bid"], ask=r["ask"], last=r["last"], open=r["open"],
            high=r["high"], low=r["low"], volume=r["volume"], quoted_at=r["quoted_at"],
            half_spread=half_spread if r["high"] is not None else 0.0,
        )
        for r in frame.iter_rows(named=True)
    ]


def option_quote_rows(options: pl.DataFrame, half_spread: float, source: str) -> pl.DataFrame:
    """A flat file's option aggregates as table 2's rows, with the bid/ask the fill model uses."""
    return options.select(
        "option_symbol", "est_timestamp", "underlying", "expiry", "right", "strike",
        (pl.col("close") - half_spread).clip(lower_bound=0.0).round(4).alias("bid"),
        (pl.col("close") + half_spread).round(4).alias("ask"),
        pl.col("close").alias("last"),
        "open", "high", "low", "volume",
        pl.lit("aggregate").alias("quote_kind"),
        pl.lit(source).alias("source"),
    )


# ---- table 3: broker_positions ------------------------------------------------------------


def broker_position_rows(positions: Iterable[BrokerPosition], at: dt.datetime, broker: str) -> list[dict[str, Any]]:
    return [
        {"est_timestamp": at, "symbol": p.symbol, "quantity": p.quantity, "avg_price": p.avg_price,
         "market_value": p.market_value, "broker": broker}
        for p in positions
    ]


def balance_rows(balances: BrokerBalances, at: dt.datetime, broker: str) -> list[dict[str, Any]]:
    """The account's balances as table 3 rows named BALANCE_SYMBOLS, the amount in market_value."""
    return broker_position_rows(
        (BrokerPosition(symbol, 0, None, getattr(balances, name)) for name, symbol in BALANCE_SYMBOLS.items()),
        at, broker,
    )
