"""Small builders for engine tests: flat minute bars and option chains of aggregates."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from alphagen_core.domain.engine import Engine, StepOutput, StrategyConfig
from alphagen_core.domain.fills import PaperBroker
from alphagen_core.domain.models import (
    Bar,
    MinuteSlice,
    OptionContract,
    OptionQuote,
    Right,
)
from alphagen_core.domain.symbols import to_polygon

NY = ZoneInfo("America/New_York")
HALF_SPREAD = 0.05


def at(day: dt.date, hhmm: str) -> dt.datetime:
    h, m = map(int, hhmm.split(":"))
    return dt.datetime(day.year, day.month, day.day, h, m, tzinfo=NY)


def flat_bar(start: dt.datetime, price: float, volume: float = 1000.0) -> Bar:
    return Bar("QQQ", start, price, price, price, price, volume)


def option_symbol(day: dt.date, right: str, strike: float) -> str:
    return to_polygon(OptionContract("QQQ", day, Right(right), float(strike)))


def aggregate(
    day: dt.date, start: dt.datetime, right: str, strike: float, o: float, h: float | None = None,
    l: float | None = None, c: float | None = None,
) -> OptionQuote:
    h = o if h is None else h
    l = o if l is None else l
    c = o if c is None else c
    contract = OptionContract("QQQ", day, Right(right), float(strike))
    return OptionQuote(
        symbol=to_polygon(contract), contract=contract, start=start,
        bid=round(max(c - HALF_SPREAD, 0.0), 4), ask=round(c + HALF_SPREAD, 4), last=c,
        open=o, high=h, low=l, volume=10.0, half_spread=HALF_SPREAD,
    )


def chain(
    day: dt.date, start: dt.datetime, strikes: range, default: float = 1.00,
    overrides: dict[tuple[str, int], tuple[float, ...]] | None = None,
) -> dict[str, OptionQuote]:
    """Every strike, calls and puts, priced `default`; overrides[(right, strike)] = (o[, h, l, c])."""
    quotes = {}
    for strike in strikes:
        for right in "CP":
            ohlc = (overrides or {}).get((right, strike), (default,))
            q = aggregate(day, start, right, strike, *ohlc)
            quotes[q.symbol] = q
    return quotes


def run_engine(engine: Engine, slices: list[MinuteSlice]) -> StepOutput:
    """Feed every slice; merge the outputs of all minutes into one."""
    total = StepOutput()
    for s in slices:
        out = engine.on_slice(s)
        for name in ("signals", "intents", "executions", "rejections"):
            getattr(total, name).extend(getattr(out, name))
        total.tick, total.position = out.tick, out.position
    return total


def make_engine(day: dt.date, close: str, config: StrategyConfig | None = None) -> Engine:
    config = config or StrategyConfig()
    return Engine(day, at(day, close), config, PaperBroker(config.risk))
