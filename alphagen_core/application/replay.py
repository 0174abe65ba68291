"""Replay one trading day: the day's bars and option aggregates -> minute slices -> the engine
-> the rows of all eight tables. Pure: reading files and writing DuckDB happen elsewhere."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from alphagen_core.domain.calendar import Session
from alphagen_core.domain.engine import Engine, StepOutput, StrategyConfig
from alphagen_core.domain.fills import PaperBroker
from alphagen_core.domain.models import (
    Execution,
    MinuteSlice,
    NormalizedTick,
    OptionContract,
    OptionQuote,
    OrderStatus,
    PositionState,
    Right,
    Signal,
    TradeIntent,
)
from alphagen_core.persistence.rows import (
    bars_from,
    broker_position_rows,
    equity_bar_rows,
    option_quote_rows,
)


@dataclass
class SessionRun:
    """Everything the engine produced over a session, by table."""

    ticks: list[NormalizedTick] = field(default_factory=list)
    positions: list[PositionState] = field(default_factory=list)
    broker_positions: list[dict[str, Any]] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    intents: list[TradeIntent] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    rejections: list[tuple[str, str]] = field(default_factory=list)

    def add(self, out: StepOutput, at: dt.datetime, broker: str) -> None:
        if out.tick is not None:
            self.ticks.append(out.tick)
        if out.position is not None:
            self.positions.append(out.position)
        self.broker_positions.extend(broker_position_rows(out.broker_positions, at, broker))
        self.signals.extend(out.signals)
        self.intents.extend(out.intents)
        self.executions.extend(out.executions)
        self.rejections.extend(out.rejections)

    @property
    def realized_pnl(self) -> float:
        return round(sum((e.pnl_contrib for e in self.executions), 0.0), 2)

    @property
    def round_trips(self) -> int:
        return sum(
            1 for e in self.executions
            if e.status is OrderStatus.FILLED and e.exit_reason is not None
        )


def run_session(session: Session, slices: Iterable[MinuteSlice], config: StrategyConfig) -> SessionRun:
    broker = PaperBroker(config.risk)
    engine = Engine(session.date, session.close, config, broker, session_open=session.open)
    run = SessionRun()
    last = session.open
    for slc in slices:
        run.add(engine.on_slice(slc), slc.bar.start, broker.name)
        last = slc.bar.start
    run.add(engine.finish(last), last, broker.name)
    return run


class MinuteQuotes(Mapping[str, OptionQuote]):
    """One minute's option aggregates as quotes, built on first use: a day has tens of
    thousands of rows, and the engine reads one contract a minute and a chain per signal."""

    __slots__ = ("_start", "_rows", "_cols", "_contracts", "_half_spread", "_built")

    def __init__(self, start: dt.datetime, rows: dict[str, int], cols: dict[str, list],
                 contracts: dict[str, OptionContract], half_spread: float) -> None:
        self._start, self._rows, self._cols = start, rows, cols
        self._contracts, self._half_spread = contracts, half_spread
        self._built: dict[str, OptionQuote] = {}

    def __getitem__(self, symbol: str) -> OptionQuote:
        quote = self._built.get(symbol)
        if quote is None:
            i, c, hs = self._rows[symbol], self._cols, self._half_spread
            close = c["close"][i]
            quote = self._built[symbol] = OptionQuote(
                symbol=symbol, contract=self._contracts[symbol], start=self._start,
                bid=max(round(close - hs, 4), 0.0), ask=round(close + hs, 4), last=close,
                open=c["open"][i], high=c["high"][i], low=c["low"][i], volume=c["volume"][i],
                half_spread=hs,
            )
        return quote

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def quotes_by_minute(options: pl.DataFrame, half_spread: float) -> dict[dt.datetime, MinuteQuotes]:
    """Option minute aggregates as quotes: bid/ask = close -/+ the half-spread."""
    cols = {n: options[n].to_list() for n in ("option_symbol", "open", "high", "low", "close", "volume")}
    contracts = {
        sym: OptionContract(und, exp, Right(right), strike)
        for sym, und, exp, right, strike in options.select(
            "option_symbol", "underlying", "expiry", "right", "strike").unique("option_symbol").iter_rows()
    }
    # Rows are grouped on the timestamps' integer form: converting every row's timestamp to a
    # zone-aware datetime cost most of this function; only the day's minutes are converted.
    stamps = options["est_timestamp"]
    minutes = stamps.unique()
    minute_of = dict(zip(minutes.to_physical().to_list(), minutes.to_list(), strict=True))
    rows_by_minute: dict[int, dict[str, int]] = {}
    for i, (sym, stamp) in enumerate(zip(cols["option_symbol"], stamps.to_physical().to_list(), strict=True)):
        rows_by_minute.setdefault(stamp, {})[sym] = i
    return {
        minute_of[stamp]: MinuteQuotes(minute_of[stamp], rows, cols, contracts, half_spread)
        for stamp, rows in rows_by_minute.items()
    }


def build_slices(equity: pl.DataFrame, options: pl.DataFrame, half_spread: float) -> list[MinuteSlice]:
    quotes = quotes_by_minute(options, half_spread)
    return [MinuteSlice(bar, quotes.get(bar.start, {})) for bar in bars_from(equity)]


def tables_for(run: SessionRun, equity_rows: pl.DataFrame, option_rows: pl.DataFrame) -> dict[str, Any]:
    """The batches of all eight tables, for Store.write."""
    return {
        "equity_bars": equity_rows,
        "option_quotes": option_rows,
        "broker_positions": run.broker_positions,
        "normalized_ticks": run.ticks,
        "position_state": run.positions,
        "signals": run.signals,
        "trade_intents": run.intents,
        "executions": run.executions,
    }


def replay_day(session: Session, equity: pl.DataFrame, options: pl.DataFrame, half_spread: float,
               config: StrategyConfig, source: str) -> tuple[int, SessionRun, dict[str, Any]]:
    """One day's data through the engine under `config`: the minutes replayed, the run and the
    batches of all eight tables."""
    slices = build_slices(equity, options, half_spread)
    run = run_session(session, slices, config)
    batches = tables_for(run, equity_bar_rows(equity, source), option_quote_rows(options, half_spread, source))
    return len(slices), run, batches
