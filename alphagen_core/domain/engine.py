"""The strategy as a deterministic state machine, fed one closed minute at a time.

Replay, paper and live all drive this same class. For each minute bar t it:
1. fills the orders decided at the end of bar t-1 on bar t's option data (the broker);
2. tests the open position's stop-loss and take-profit inside bar t;
3. updates VWAP/MA9 with bar t (known only now, at bar t's end) and looks for a crossover;
4. decides: entries, reversals (with rollover), the flatten before the close; these orders
   fill on bar t+1;
5. records the slice, the position and everything decided (tables 3-8).
It knows nothing of Dagster, Polygon or Schwab.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from alphagen_core.domain.fills import bracket_trigger
from alphagen_core.domain.indicators import BAR_VWAP, TYPICAL_PRICE, SessionIndicators
from alphagen_core.domain.models import (
    MINUTE,
    Action,
    Bar,
    BrokerPosition,
    Execution,
    ExitReason,
    MinuteSlice,
    NormalizedTick,
    OptionQuote,
    OrderStatus,
    PositionState,
    Right,
    Signal,
    SignalType,
    TradeIntent,
    TradingState,
)
from alphagen_core.domain.risk import (
    RiskConfig,
    brackets,
    loss_limit_reached,
    naked_margin_per_contract,
    position_size,
    price_insane,
    round_trip_pnl,
)
from alphagen_core.domain.strategy import (
    CrossoverDetector,
    right_for,
    select_contract,
    target_expiry,
)
from alphagen_core.domain.symbols import parse_polygon


@dataclass(frozen=True, slots=True)
class StrategyConfig:
    risk: RiskConfig = RiskConfig()
    cooldown: dt.timedelta = dt.timedelta(seconds=30)
    no_entry_before_close: dt.timedelta = dt.timedelta(minutes=30)
    flatten_before_close: dt.timedelta = dt.timedelta(minutes=5)
    strike_offset: int = 0
    stale_after: dt.timedelta = dt.timedelta(seconds=180)


class Broker(Protocol):
    """What the engine's orders go to: the paper fill model (replay), or the fills the live
    session recorded (`alphagen_core.application.live_minute.RecordedBroker`)."""

    name: str

    def submit(self, intent: TradeIntent, position_id: str) -> None: ...

    def cancel_working(self, position_id: str) -> None: ...

    def fill_working(self, quotes: Mapping[str, OptionQuote], at: dt.datetime) -> list[Execution]: ...

    def fill_now(self, intent: TradeIntent, position_id: str, price: float, at: dt.datetime) -> Execution: ...

    def positions(self) -> list[BrokerPosition]: ...


@dataclass(slots=True)
class OpenPosition:
    position_id: str
    signal_id: str | None
    symbol: str
    side: SignalType
    qty: int
    credit: float
    stop_loss: float
    take_profit: float
    closing: bool = False  # an exit order is working


@dataclass(slots=True)
class StepOutput:
    """Everything one minute produced, by table."""

    tick: NormalizedTick | None = None
    position: PositionState | None = None
    broker_positions: list[BrokerPosition] = field(default_factory=list)
    signals: list[Signal] = field(default_factory=list)
    intents: list[TradeIntent] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)
    rejections: list[tuple[str, str]] = field(default_factory=list)  # (what, why)


def side_of(option_symbol: str) -> SignalType:
    """A short put is the bullish side, a short call the bearish one."""
    return SignalType.BULLISH if parse_polygon(option_symbol).right is Right.PUT else SignalType.BEARISH


def slice_id_for(start: dt.datetime) -> str:
    return start.strftime("%Y-%m-%dT%H:%M")


class Engine:
    def __init__(
        self,
        session_date: dt.date,
        session_close: dt.datetime,
        config: StrategyConfig,
        broker: Broker,
        session_open: dt.datetime | None = None,
        external_brackets: bool = False,
    ) -> None:
        self.session_date = session_date
        self.session_open = session_open
        self.close = session_close
        self.cfg = config
        self.broker = broker
        # Live: the session job watches the held quote and exits on stop/target between
        # minute runs; its fills come back through the broker. Replay tests them here.
        self.external_brackets = external_brackets
        self.entry_cutoff = session_close - config.no_entry_before_close
        # The flatten order is decided one bar early so that it fills on the bar that opens
        # at close - buffer - 1 min: the book is flat *before* close - buffer.
        self.flatten_decision = session_close - config.flatten_before_close - MINUTE
        self.indicators = SessionIndicators()
        self.crossovers = CrossoverDetector()
        self.position: OpenPosition | None = None
        self.pending_entry: TradeIntent | None = None
        self.pending_side: SignalType | None = None
        self.realized_pnl = 0.0
        self.entries = 0  # entry orders sent this session (RISK_MAX_ENTRIES_PER_DAY)
        self.loss_limit_hit = False  # RISK_MAX_DAILY_LOSS reached: close, then open nothing
        # trading state (live: control_events); anything but active opens nothing.
        self.trading_state = TradingState.ACTIVE
        self.cooldown_until: dt.datetime | None = None
        self.last_bar_start: dt.datetime | None = None
        self.last_quotes: dict[str, OptionQuote] = {}
        self._intent_seq = 0
        self._slice_id = ""

    # ---- the minute step ------------------------------------------------------------------

    def on_slice(self, slc: MinuteSlice) -> StepOutput:
        out = StepOutput()
        bar = slc.bar
        if reason := self._reject_bar(slc):
            out.rejections.append((f"bar {bar.start:%H:%M}", reason))
            return out
        quotes = CheckedQuotes(slc.quotes, out.rejections)
        self.last_bar_start = bar.start
        self._slice_id = slice_id_for(bar.start)
        self._intent_seq = 0

        for event in self.broker.fill_working(quotes, bar.start):
            out.executions.append(self._apply(event))
        self._remember_held_quote(quotes)
        if not self.external_brackets:
            self._check_brackets(quotes, bar, out)
        self._check_loss_limit(quotes)

        vwap, ma9 = self.indicators.update(bar.high, bar.low, bar.close, bar.volume, bar.vwap)
        signal_type = self.crossovers.update(vwap, ma9)
        now = bar.end
        if signal_type is not None and vwap is not None and ma9 is not None:
            self._on_signal(signal_type, slc, quotes, vwap, ma9, now, out)
        if self.position and not self.position.closing and now >= self.flatten_decision:
            self._close(ExitReason.CLOSE, self.position.signal_id, now, out)
        if self.loss_limit_hit and self.position and not self.position.closing:
            self._close(ExitReason.DAILY_LOSS_LIMIT, self.position.signal_id, now, out)

        out.tick = self._tick(slc, quotes, vwap, ma9, now)
        out.position = self._position_state(bar.start)
        out.broker_positions = self.broker.positions()
        return out

    def finish(self, at: dt.datetime) -> StepOutput:
        """End of data: a short still open (its contract stopped trading) is closed at its
        last known ask. A 0DTE short is never held into the close."""
        out = StepOutput()
        pos = self.position
        if pos is None:
            return out
        quote = self.last_quotes.get(pos.symbol)
        price = quote.ask if quote else pos.credit
        self._slice_id = slice_id_for(at)
        intent = self._intent(Action.BUY_TO_CLOSE, pos, price, ExitReason.CLOSE.value, pos.signal_id, at)
        out.intents.append(intent)
        self.broker.cancel_working(pos.position_id)
        out.executions.append(self._apply(self.broker.fill_now(intent, pos.position_id, price, at)))
        return out

    # ---- steps ----------------------------------------------------------------------------

    def _reject_bar(self, slc: MinuteSlice) -> str | None:
        bar = slc.bar
        if self.last_bar_start is not None and bar.start <= self.last_bar_start:
            return "duplicate bar" if bar.start == self.last_bar_start else "out-of-order bar"
        if bar.start.date() != self.session_date:
            return "bar from another session"
        if self.session_open is not None and bar.start < self.session_open:
            return "bar before the open"
        if bar.start >= self.close:
            return "bar after the close"
        if not (bar.low <= min(bar.open, bar.close) and max(bar.open, bar.close) <= bar.high):
            return "inconsistent OHLC"
        if bar.volume < 0 or bar.low <= 0:
            return "non-positive price or negative volume"
        return None

    def _check_loss_limit(self, quotes: Mapping[str, OptionQuote]) -> None:
        """daily loss limit, on realized plus unrealized P/L. The open short is valued
        at the ask; on a minute aggregate at the ask of the bar's high, the worst the minute
        could have been for a short (the conservative side). Once reached it stays reached
        for the session: the position is closed at this minute's end and nothing opens."""
        if self.loss_limit_hit or self.cfg.risk.max_daily_loss <= 0:
            return
        unrealized = 0.0
        pos = self.position
        if pos is not None and (quote := quotes.get(pos.symbol) or self.last_quotes.get(pos.symbol)):
            worst = quote.high + quote.half_spread if quote.high is not None else quote.ask
            unrealized = round_trip_pnl(pos.credit, worst, pos.qty)
        self.loss_limit_hit = loss_limit_reached(self.cfg.risk, self.realized_pnl, unrealized)

    def _remember_held_quote(self, quotes: Mapping[str, OptionQuote]) -> None:
        """The last quote of the held contract: limits, marks and a forced close use it."""
        if self.position is not None and (quote := quotes.get(self.position.symbol)) is not None:
            self.last_quotes[self.position.symbol] = quote

    def _check_brackets(self, quotes: Mapping[str, OptionQuote], bar: Bar, out: StepOutput) -> None:
        """A stop or target touched inside this minute. The exit is recorded as an intent at
        the minute's end, when its range (high/low) is known: stamping it at the start would
        date knowledge of the minute before the minute was over (look-ahead). The fill is
        labelled with the minute it happened in (its start), as bars are."""
        pos = self.position
        if pos is None or pos.closing or (quote := quotes.get(pos.symbol)) is None:
            return
        trigger = bracket_trigger(quote, pos.stop_loss, pos.take_profit)
        if trigger is None:
            return
        reason, price = trigger
        intent = self._intent(Action.BUY_TO_CLOSE, pos, price, reason.value, pos.signal_id, bar.end)
        out.intents.append(intent)
        out.executions.append(self._apply(self.broker.fill_now(intent, pos.position_id, price, bar.start)))

    def _on_signal(
        self,
        signal_type: SignalType,
        slc: MinuteSlice,
        quotes: Mapping[str, OptionQuote],
        vwap: float,
        ma9: float,
        now: dt.datetime,
        out: StepOutput,
    ) -> None:
        price = slc.bar.close
        direction = "above" if signal_type is SignalType.BULLISH else "below"
        rationale = f"MA9 {ma9:.4f} crossed {direction} VWAP {vwap:.4f}; QQQ {price:.2f}"
        signal_id = f"sig-{self._slice_id}"
        pos = self.position
        in_cooldown = self.cooldown_until is not None and now < self.cooldown_until

        if pos is not None and pos.side is signal_type:
            return self._record(out, signal_id, signal_type, None, price, vwap, ma9, rationale, now, "position_open")
        if pos is not None and pos.closing:
            return self._record(out, signal_id, signal_type, None, price, vwap, ma9, rationale, now, "exit_pending")
        if self.pending_entry is not None:
            return self._record(out, signal_id, signal_type, None, price, vwap, ma9, rationale, now, "order_pending")

        reversing = pos is not None
        if reversing:  # exits are always taken; only the rollover entry is subject to the rules
            self._close(ExitReason.REVERSAL, signal_id, now, out)
        reason = self._entry_blocker(in_cooldown, now)
        chosen: OptionQuote | None = None
        qty = 0
        if reason is None:
            chosen, reason = self._choose(signal_type, quotes, price, now)
        if reason is None and chosen is not None:
            qty = self._size(chosen, price)
            if qty == 0:
                reason = "capital"
        if reason is not None:
            acted = reversing
            drop = None if acted else reason
            note = f"{rationale}; closed the position, no rollover: {reason}" if acted else rationale
            return self._record(out, signal_id, signal_type, None, price, vwap, ma9, note, now, drop, acted)

        assert chosen is not None
        if chosen.contract.expiry != self.session_date:  # the nearest later expiry, recorded
            rationale = f"{rationale}; no 0DTE listed: nearest expiry {chosen.contract.expiry.isoformat()}"
        self.cooldown_until = now + self.cfg.cooldown
        self._record(out, signal_id, signal_type, chosen.symbol, price, vwap, ma9, rationale, now, None)
        stop, target = brackets(self.cfg.risk, chosen.bid)
        intent = TradeIntent(
            intent_id=self._next_intent_id(),
            signal_id=signal_id,
            est_timestamp=now,
            action=Action.SELL_TO_OPEN,
            option_symbol=chosen.symbol,
            qty=qty,
            limit_price=round(chosen.bid, 4),
            stop_loss=stop,
            take_profit=target,
            reason="rollover" if reversing else "entry",
        )
        out.intents.append(intent)
        self.pending_entry, self.pending_side = intent, signal_type
        self.entries += 1
        self.broker.submit(intent, intent.intent_id)

    def _entry_blocker(self, in_cooldown: bool, now: dt.datetime) -> str | None:
        if self.loss_limit_hit:
            return ExitReason.DAILY_LOSS_LIMIT.value
        if self.trading_state is not TradingState.ACTIVE:
            return self.trading_state.value
        cap = self.cfg.risk.max_entries_per_day
        if cap and self.entries >= cap:
            return "entry_limit"
        if in_cooldown:
            return "cooldown"
        if now >= self.entry_cutoff or now >= self.flatten_decision:
            return "no_entry_window"
        return None

    def _choose(
        self, signal_type: SignalType, quotes: Mapping[str, OptionQuote], price: float, now: dt.datetime
    ) -> tuple[OptionQuote | None, str | None]:
        expiry = target_expiry(quotes, self.session_date)
        if expiry is None:
            return None, "no_contract"
        right = right_for(signal_type)
        chosen = select_contract(quotes, right, price, expiry, self.cfg.strike_offset)
        if chosen is None:
            return None, "no_contract"
        if now - chosen.source_time > self.cfg.stale_after + MINUTE:
            return None, "stale_data"
        if chosen.bid <= 0:
            return None, "no_bid"
        if insane := price_insane(self.cfg.risk, chosen.bid, chosen.bid, chosen.ask):
            return None, f"price_sanity: {insane}"
        return chosen, None

    def _size(self, chosen: OptionQuote, underlying: float) -> int:
        margin = naked_margin_per_contract(
            chosen.contract.right, chosen.contract.strike, underlying, chosen.bid
        )
        return position_size(self.cfg.risk, margin, self.cfg.risk.trading_capital + self.realized_pnl)

    def _close(self, reason: ExitReason, signal_id: str | None, now: dt.datetime, out: StepOutput) -> None:
        pos = self.position
        assert pos is not None
        quote = self.last_quotes.get(pos.symbol)
        limit = quote.ask if quote else pos.credit
        intent = self._intent(Action.BUY_TO_CLOSE, pos, limit, reason.value, signal_id, now)
        out.intents.append(intent)
        pos.closing = True
        self.broker.submit(intent, pos.position_id)

    # ---- bookkeeping ----------------------------------------------------------------------

    def _apply(self, event: Execution) -> Execution:
        """Update the book with a broker event; returns it with its realized P/L set."""
        if event.status is not OrderStatus.FILLED:
            if self.pending_entry and event.intent_id == self.pending_entry.intent_id:
                self.pending_entry = self.pending_side = None
            return event
        price = event.fill_price or 0.0
        if event.action is Action.SELL_TO_OPEN:
            intent, side = self.pending_entry, self.pending_side
            if intent is None or side is None or intent.intent_id != event.intent_id:
                # Live only: a fill the broker reported for an order this run did not
                # decide (a restart's restored history). The fill is the truth.
                intent, side = None, side_of(event.option_symbol)
            self.pending_entry = self.pending_side = None
            stop, target = brackets(self.cfg.risk, price)
            self.position = OpenPosition(
                position_id=event.position_id,
                signal_id=intent.signal_id if intent else None,
                symbol=event.option_symbol,
                side=side,
                qty=event.qty,
                credit=price,
                stop_loss=stop,
                take_profit=target,
            )
            pnl = -event.fees
        else:
            pos = self.position
            if pos is None or pos.position_id != event.position_id:
                return event  # live only: an exit of a position this run never saw open
            pnl = round(round_trip_pnl(pos.credit, price, event.qty) - event.fees, 2)
            self.position = None
        self.realized_pnl = round(self.realized_pnl + pnl, 2)
        return replace(event, pnl_contrib=round(pnl, 2))

    def _next_intent_id(self) -> str:
        self._intent_seq += 1
        return f"int-{self._slice_id}-{self._intent_seq}"

    def _intent(
        self,
        action: Action,
        pos: OpenPosition,
        limit: float,
        reason: str,
        signal_id: str | None,
        at: dt.datetime,
    ) -> TradeIntent:
        return TradeIntent(
            intent_id=self._next_intent_id(),
            signal_id=signal_id,
            est_timestamp=at,
            action=action,
            option_symbol=pos.symbol,
            qty=pos.qty,
            limit_price=round(limit, 4),
            stop_loss=None,
            take_profit=None,
            reason=reason,
        )

    def _record(
        self,
        out: StepOutput,
        signal_id: str,
        signal_type: SignalType,
        option_symbol: str | None,
        price: float,
        vwap: float,
        ma9: float,
        rationale: str,
        now: dt.datetime,
        drop_reason: str | None,
        acted: bool | None = None,
    ) -> None:
        out.signals.append(
            Signal(
                signal_id=signal_id,
                slice_id=self._slice_id,
                est_timestamp=now,
                signal_type=signal_type,
                option_symbol=option_symbol,
                underlying_price=price,
                vwap=vwap,
                ma9=ma9,
                rationale=rationale if drop_reason is None else f"{rationale}; dropped: {drop_reason}",
                cooldown_until=self.cooldown_until,
                acted=(drop_reason is None) if acted is None else acted,
                drop_reason=drop_reason,
            )
        )

    def _tick(
        self,
        slc: MinuteSlice,
        quotes: Mapping[str, OptionQuote],
        vwap: float | None,
        ma9: float | None,
        now: dt.datetime,
    ) -> NormalizedTick:
        held = self.position.symbol if self.position else None
        quote = self.last_quotes.get(held) if held else None
        stale = quote is not None and now - quote.source_time > self.cfg.stale_after + MINUTE
        return NormalizedTick(
            slice_id=self._slice_id,
            period_start=slc.bar.start,
            underlying_price=slc.bar.close,
            vwap=vwap,
            ma9=ma9,
            vwap_source=BAR_VWAP if slc.bar.vwap is not None else TYPICAL_PRICE,
            side=self.crossovers.side,
            quotes_in_slice=len(quotes),
            held_symbol=held,
            held_bid=quote.bid if quote else None,
            held_ask=quote.ask if quote else None,
            stale=stale or (not quotes),
        )

    def _position_state(self, at: dt.datetime) -> PositionState:
        pos = self.position
        if pos is None:
            return PositionState(at, self._slice_id, None, 0, None, None, 0.0, self.realized_pnl, None, None)
        quote = self.last_quotes.get(pos.symbol)
        mark = quote.ask if quote else None
        unrealized = round_trip_pnl(pos.credit, mark, pos.qty) if mark is not None else 0.0
        return PositionState(
            est_timestamp=at,
            slice_id=self._slice_id,
            symbol=pos.symbol,
            net_quantity=-pos.qty,
            avg_price=pos.credit,
            mark=mark,
            unrealized_pnl=unrealized,
            realized_pnl=self.realized_pnl,
            stop_loss=pos.stop_loss,
            take_profit=pos.take_profit,
        )


class CheckedQuotes(Mapping[str, OptionQuote]):
    """A minute's quotes, checked when used: a crossed, zero or negative quote reads
    as absent and is recorded once with the reason. Checking on use keeps a minute cheap: the
    engine reads the held contract every minute and the whole chain only at a signal."""

    __slots__ = ("_raw", "_rejections", "_rejected")

    def __init__(self, raw: Mapping[str, OptionQuote], rejections: list[tuple[str, str]]) -> None:
        self._raw = raw
        self._rejections = rejections
        self._rejected: set[str] = set()

    def __getitem__(self, symbol: str) -> OptionQuote:
        quote = self._raw[symbol]
        problem = _quote_problem(quote)
        if problem is None:
            return quote
        if symbol not in self._rejected:
            self._rejected.add(symbol)
            self._rejections.append((symbol, problem))
        raise KeyError(symbol)

    def __iter__(self) -> Iterator[str]:
        return (symbol for symbol in self._raw if symbol in self)  # `in` checks and records

    def __len__(self) -> int:
        return len(self._raw)


def _quote_problem(q: OptionQuote) -> str | None:
    if q.ask <= 0:
        return "zero or negative ask"
    if q.bid < 0:
        return "negative bid"
    if q.bid > q.ask:
        return "crossed quote"
    return None

