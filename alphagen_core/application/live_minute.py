"""The live minute increment: one newly closed minute through the replay engine, restored from
the tables, so that any process can pick up where the last one stopped.

A minute run for bar m (run after m's end):
1. reads what the tables hold for today's session: the bars and option-chain quotes of the
   minutes already processed (tables 1, 2, 4) and the broker events the session job recorded
   (table 8);
2. restores the engine by feeding it those minutes again (outputs discarded: they are in the
   tables already), with a `RecordedBroker` whose fills are table 8's;
3. feeds the new closed bars with the option chain as it stands now (stored under each
   minute whose slice used it), and writes their rows of tables 1-7 in one transaction.
Orders are not sent here: the session job places table 7's intents and records fills in
table 8. Stops and targets are the session job's too (`external_brackets`): it watches the
held quote between minute runs.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl
import structlog

from alphagen_core.application.control import (
    set_state,
    state_at,
    state_history,
    state_of,
)
from alphagen_core.application.gate import route
from alphagen_core.application.interfaces import MarketDataClient
from alphagen_core.application.replay import SessionRun
from alphagen_core.domain.calendar import Session
from alphagen_core.domain.engine import Engine, StepOutput
from alphagen_core.domain.models import (
    MINUTE,
    Action,
    Bar,
    BrokerPosition,
    Execution,
    ExitReason,
    MinuteSlice,
    OptionQuote,
    OrderStatus,
    TradeIntent,
    TradingState,
)
from alphagen_core.operations.settings import Settings
from alphagen_core.operations.variants import BASE, version_row
from alphagen_core.persistence.rows import (
    bar_rows,
    bars_from,
    executions_from,
    quote_rows,
    quotes_from,
)
from alphagen_core.persistence.store import RowMeta, Store

log = structlog.get_logger(__name__)

CHAIN = "chain"  # table 2 quote_kind of the chain a minute's slice used
WATCH = "watch"  # table 2 quote_kind of the held contract's quotes the session job watched
FINAL_STATUSES = (OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED)


def session_version(session_date: dt.date) -> str:
    """Paper and live keep one version per trading session."""
    return session_date.isoformat()


class RecordedBroker:
    """The engine's broker in a live minute run. Orders go nowhere (the session job places
    them); fills are the ones the session job recorded, each delivered in the minute bar it
    happened in, as the paper broker labels its fills."""

    name = "recorded"

    def __init__(self, events: list[Execution]) -> None:
        self._events = sorted(events, key=lambda e: (e.est_timestamp, e.execution_id))
        self._next = 0
        self._positions: dict[str, tuple[int, float]] = {}

    def submit(self, intent: TradeIntent, position_id: str) -> None:
        pass

    def cancel_working(self, position_id: str) -> None:
        pass

    def fill_working(self, quotes: Mapping[str, OptionQuote], at: dt.datetime) -> list[Execution]:
        out = []
        while self._next < len(self._events) and self._events[self._next].est_timestamp < at + MINUTE:
            event = self._events[self._next]
            self._next += 1
            if event.status is OrderStatus.FILLED:
                held, avg = self._positions.get(event.option_symbol, (0, 0.0))
                sign = -1 if event.action is Action.SELL_TO_OPEN else 1
                price = event.fill_price if sign < 0 and event.fill_price is not None else avg
                self._positions[event.option_symbol] = (held + sign * event.qty, price)
            out.append(event)
        return out

    def fill_now(self, intent: TradeIntent, position_id: str, price: float, at: dt.datetime) -> Execution:
        raise RuntimeError("live stops and targets are the session job's (external_brackets)")

    def positions(self) -> list[BrokerPosition]:
        return [BrokerPosition(s, q, p) for s, (q, p) in sorted(self._positions.items()) if q != 0]


@dataclass
class MinuteIncrement:
    minutes: list[dt.datetime] = field(default_factory=list)  # the new slices' bar starts
    rows: dict[str, int] = field(default_factory=dict)
    intents: list[TradeIntent] = field(default_factory=list)
    engine_seconds: float = 0.0  # the engine's own time over the new minutes


@dataclass
class _Stored:
    bars: list[Bar]
    chain: dict[dt.datetime, dict[str, OptionQuote]]
    events: list[Execution]
    last_minute: dt.datetime | None


def read_session(store: Store, mode: str, session_date: dt.date, half_spread: float) -> _Stored:
    version = session_version(session_date)
    args = [mode, session_date, version]
    where = "WHERE mode = ? AND session_date = ? AND version = ?"
    with store.connect() as con:
        store.ensure_schema(con)
        bars = con.sql(f"SELECT * FROM equity_bars {where} ORDER BY est_timestamp", params=args).pl()
        chain = con.sql(
            f"SELECT * FROM option_quotes {where} AND quote_kind = '{CHAIN}' ORDER BY est_timestamp, option_symbol",
            params=args,
        ).pl()
        events = con.sql(f"SELECT * FROM executions {where} ORDER BY est_timestamp, execution_id", params=args).pl()
        last = con.execute(f"SELECT max(period_start) FROM normalized_ticks {where}", args).fetchone()
    return _Stored(
        bars=bars_from(bars),
        chain=chain_by_minute(chain, half_spread),
        events=[e for e in executions_from(events) if e.status in FINAL_STATUSES],
        last_minute=last[0] if last else None,
    )


def chain_by_minute(rows: pl.DataFrame, half_spread: float) -> dict[dt.datetime, dict[str, OptionQuote]]:
    out: dict[dt.datetime, dict[str, OptionQuote]] = {}
    for quote in quotes_from(rows, half_spread):
        out.setdefault(quote.start, {})[quote.symbol] = quote
    return out


def with_minute_range(quote: OptionQuote, bar: Bar | None, half_spread: float) -> OptionQuote:
    """The held contract's quote with its minute aggregate's range, so that the loss limit
    values the short at the ask of the minute's high, as a replay of the day does."""
    if bar is None:
        return quote
    return replace(quote, high=bar.high, low=bar.low, half_spread=half_spread)


def closed_bars(market: MarketDataClient, symbol: str, sess: Session, upto: dt.datetime,
                wait_s: float) -> list[Bar]:
    """The session's closed bars up to `upto`, waiting (bounded) for `upto` itself: the run
    may start just before the minute ends, and a source publishes a bar a moment after."""
    deadline = time.monotonic() + wait_s
    while True:
        bars = [b for b in market.minute_bars(symbol, sess.date) if b.start <= upto]
        if (bars and bars[-1].start >= upto) or time.monotonic() >= deadline:
            return bars
        time.sleep(0.3)


def run_minute_increment(
    store: Store,
    market: MarketDataClient,
    settings: Settings,
    sess: Session,
    upto: dt.datetime,
    run_id: str,
    *,
    wait_for_bar_s: float = 30.0,
) -> MinuteIncrement:
    """Process every closed minute up to `upto` not yet in the tables (normally just `upto`).

    Minute runs may overlap (a late one, the next one): they take turns on a file lock around
    read-compute-write, so each minute is computed once, from the rows before it."""
    version = version_row(BASE, settings)  # (git runs for it) before the bar closes, not after
    bars = closed_bars(market, settings.polygon_equity_ticker, sess, upto, wait_for_bar_s)
    chain = market.option_chain(settings.polygon_options_underlying, sess.date)
    with _turn(store.path):
        return _increment(store, market, settings, sess, bars, chain, run_id, version)


def _held_contract_bars(market: MarketDataClient, engine: Engine, sess: Session) -> dict[dt.datetime, Bar]:
    if engine.position is None:
        return {}
    try:
        return {b.start: b for b in market.minute_bars(engine.position.symbol, sess.date)}
    except Exception as exc:  # noqa: BLE001 - valued at the ask alone (Schwab has no option minute bars)
        log.warning("minute.held_contract_bars_unavailable", error=type(exc).__name__)
        return {}


@contextmanager
def _turn(db_path: Path) -> Iterator[None]:
    with open(db_path.with_name(db_path.name + ".minute.lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released on close, and by the OS if the process dies
        yield


def _increment(store: Store, market: MarketDataClient, settings: Settings, sess: Session, bars: list[Bar],
               chain: list[OptionQuote], run_id: str, version: dict[str, str]) -> MinuteIncrement:
    mode = route(settings).mode.value
    stored = read_session(store, mode, sess.date, settings.paper_half_spread)
    last = stored.last_minute
    new_bars = [b for b in bars if last is None or b.start > last]
    result = MinuteIncrement()
    if not new_bars:
        return result
    engine = Engine(sess.date, sess.close, settings.strategy_config(),
                    RecordedBroker(stored.events), session_open=sess.open, external_brackets=True)
    history = state_history(store, mode, sess.date)
    for bar in stored.bars:  # restore: these minutes' rows are in the tables already
        if last is not None and bar.start <= last:
            engine.trading_state = state_at(history, bar.end)  # as the minute was decided
            engine.on_slice(MinuteSlice(bar, stored.chain.get(bar.start, {})))
    # A minute processed late (its run queued behind another, or a restart) gets the chain as
    # it stands now: the freshest quotes at the moment its decision is made. Each minute's
    # chain is stored under that minute, so a restore feeds the engine the same slices; each
    # quote keeps the time its source gave it (quoted_at), and staleness is judged on that.
    # New minutes are decided under the state now in force.
    engine.trading_state = state_of(history[-1] if history else None)
    limit_hit_before = engine.loss_limit_hit
    run = SessionRun()
    chain_rows: list[dict[str, Any]] = []
    source = f"{settings.alphagen_data_provider}-live"
    started = time.perf_counter()
    held_bars = _held_contract_bars(market, engine, sess)
    for bar in new_bars:
        quotes = {q.symbol: replace(q, start=bar.start, quoted_at=q.source_time) for q in chain}
        if (held := engine.position.symbol if engine.position else None) in quotes:
            quotes[held] = with_minute_range(quotes[held], held_bars.get(bar.start), settings.paper_half_spread)
        out: StepOutput = engine.on_slice(MinuteSlice(bar, quotes))
        out.executions = []  # table 8 is the session job's
        run.add(out, bar.start, engine.broker.name)
        chain_rows += quote_rows(list(quotes.values()), CHAIN, source)
    result.engine_seconds = time.perf_counter() - started
    batches = {
        "equity_bars": bar_rows(new_bars, source),
        "option_quotes": chain_rows,
        "broker_positions": run.broker_positions,
        "normalized_ticks": run.ticks,
        "position_state": run.positions,
        "signals": run.signals,
        "trade_intents": run.intents,
        "versions": [version],  # once per version: the store skips a key it has
    }
    result.rows = store.write(batches, RowMeta(mode, sess.date, session_version(sess.date), run_id))
    if engine.loss_limit_hit and not limit_hit_before:
        set_state(store, mode, sess.date, TradingState.HALTED, ExitReason.DAILY_LOSS_LIMIT.value, "risk",
                  new_bars[-1].end, run_id)
    result.minutes = [b.start for b in new_bars]
    result.intents = run.intents
    for what, why in run.rejections:
        log.warning("minute.rejected_input", what=what, why=why)
    return result
