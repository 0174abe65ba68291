"""Replay one trading day: the day's bars and option aggregates -> minute slices -> the engine
-> the rows of all eight tables. Pure: reading files and writing DuckDB happen elsewhere."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from alphagen_core.adapters.paper.execution import PaperBroker
from alphagen_core.calendar import Session
from alphagen_core.engine import Engine, StepOutput, StrategyConfig
from alphagen_core.models import (
    Bar,
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
        self.broker_positions.extend(
            {"est_timestamp": at, "symbol": p.symbol, "quantity": p.quantity,
             "avg_price": p.avg_price, "market_value": p.market_value, "broker": broker}
            for p in out.broker_positions
        )
        self.signals.extend(out.signals)
        self.intents.extend(out.intents)
        self.executions.extend(out.executions)
        self.rejections.extend(out.rejections)

    @property
    def realized_pnl(self) -> float:
        return round(sum(e.pnl_contrib for e in self.executions), 2)

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


def bars_from_frame(equity: pl.DataFrame) -> list[Bar]:
    has_vw = "bar_vwap" in equity.columns
    return [
        Bar(
            symbol=r["symbol"], start=r["est_timestamp"], open=r["open"], high=r["high"],
            low=r["low"], close=r["close"], volume=r["volume"],
            vwap=r["bar_vwap"] if has_vw else None, transactions=r.get("transactions"),
        )
        for r in equity.iter_rows(named=True)
    ]


def quotes_by_minute(options: pl.DataFrame, half_spread: float) -> dict[dt.datetime, dict[str, OptionQuote]]:
    """Option minute aggregates as quotes: bid/ask = close -/+ the half-spread."""
    contracts: dict[str, OptionContract] = {}
    minutes: dict[dt.datetime, dict[str, OptionQuote]] = {}
    cols = ("option_symbol", "underlying", "expiry", "right", "strike", "est_timestamp",
            "open", "high", "low", "close", "volume")
    for sym, und, exp, right, strike, start, o, h, l, c, v in options.select(cols).iter_rows():
        contract = contracts.get(sym)
        if contract is None:
            contract = contracts[sym] = OptionContract(und, exp, Right(right), strike)
        minutes.setdefault(start, {})[sym] = OptionQuote(
            symbol=sym, contract=contract, start=start,
            bid=max(round(c - half_spread, 4), 0.0), ask=round(c + half_spread, 4), last=c,
            open=o, high=h, low=l, volume=v, half_spread=half_spread,
        )
    return minutes


def build_slices(equity: pl.DataFrame, options: pl.DataFrame, half_spread: float) -> list[MinuteSlice]:
    quotes = quotes_by_minute(options, half_spread)
    return [MinuteSlice(bar, quotes.get(bar.start, {})) for bar in bars_from_frame(equity)]


def equity_bar_rows(equity: pl.DataFrame, source: str) -> pl.DataFrame:
    """Table 1 rows. Flat files carry no per-bar or day VWAP: both stay NULL."""
    return equity.select(
        "symbol", "est_timestamp", "open", "high", "low", "close", "volume",
        pl.lit(None, pl.Float64).alias("bar_vwap"),
        pl.lit(None, pl.Float64).alias("day_vwap"),
        pl.col("transactions").cast(pl.Int64),
        pl.lit(source).alias("source"),
    )


def option_quote_rows(options: pl.DataFrame, half_spread: float, source: str) -> pl.DataFrame:
    """Table 2 rows: the aggregates with the bid/ask the fill model uses."""
    return options.select(
        "option_symbol", "est_timestamp", "underlying", "expiry", "right", "strike",
        (pl.col("close") - half_spread).clip(lower_bound=0.0).round(4).alias("bid"),
        (pl.col("close") + half_spread).round(4).alias("ask"),
        pl.col("close").alias("last"),
        "open", "high", "low", "volume",
        pl.lit("aggregate").alias("quote_kind"),
        pl.lit(source).alias("source"),
    )


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
