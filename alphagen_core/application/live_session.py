"""The session trader: the long-running part of a live or paper session.

Between minute runs it
- places the intents the minute runs write to table 7 (and its own exits), as marketable
  limit orders priced off the current quote with a slippage cap;
- tracks every order to its end and records each event once in table 8;
- watches the held contract's quote and exits on its stop-loss or take-profit, and flattens
  at the flatten time, whatever the minute runs are doing.

It must survive its own death. On start it reconciles before anything else: the position is
rebuilt from table 8's fills; an intent with a SUBMITTED row is tracked by its order id; an
intent with no row may have been sent just before a crash, so the broker's orders of the day
are searched for it (same contract, side and quantity, not yet attributed) and, if found,
recorded instead of being sent again. Table 8's rows have deterministic ids per intent, so
writing an event twice adds nothing.

The DuckDB file is only opened for a moment per read or write (alphagen_core.persistence.store).
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import structlog

from alphagen_core.application.control import current_state, set_state, state_of
from alphagen_core.application.gate import route
from alphagen_core.application.interfaces import ExecutionClient, MarketDataClient
from alphagen_core.application.live_minute import WATCH, session_version
from alphagen_core.domain.calendar import Session
from alphagen_core.domain.clock import Clock
from alphagen_core.domain.engine import slice_id_for
from alphagen_core.domain.models import (
    Action,
    BrokerPosition,
    Execution,
    ExitReason,
    OptionQuote,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    TradeIntent,
    TradingState,
)
from alphagen_core.domain.risk import (
    brackets,
    fees,
    naked_margin_per_contract,
    price_insane,
    round_trip_pnl,
)
from alphagen_core.domain.symbols import parse_polygon
from alphagen_core.operations.settings import Settings
from alphagen_core.persistence.rows import (
    balance_rows,
    broker_position_rows,
    executions_from,
    intents_from,
    quote_rows,
)
from alphagen_core.persistence.store import RowMeta, Store, UnchangedReads

log = structlog.get_logger(__name__)

RECONCILE_SLACK = dt.timedelta(minutes=2)
WATCH_RECORD_EVERY = dt.timedelta(seconds=1)


@dataclass(frozen=True)
class TraderTimings:
    """Real seconds for polling; session time for ages (a sim clock may run fast)."""

    poll_s: float = 0.25  # table 7
    order_poll_s: float = 1.0  # each working order (after a first look at once)
    quote_poll_s: float = 1.0  # the held contract's quote (Schwab allows 120 requests a minute)
    control_poll_s: float = 0.5  # control_events: an operator's halt or flatten is obeyed within 2 s
    broker_poll_s: float = 15.0  # the broker's positions into table 3, compared with the book (the seeds' interval)
    flush_quotes_s: float = 5.0
    entry_ttl: dt.timedelta = dt.timedelta(minutes=2)  # older entries are not sent
    working_ttl: dt.timedelta = dt.timedelta(minutes=1)  # then cancel (entry) or re-price (exit)
    end_grace: dt.timedelta = dt.timedelta(minutes=15)  # hard stop after the close


@dataclass
class Held:
    position_id: str
    symbol: str
    qty: int
    credit: float
    stop_loss: float
    take_profit: float


@dataclass
class Working:
    intent: TradeIntent
    position_id: str
    order_id: str
    placed_at: dt.datetime
    cancel_sent: bool = False
    polled: float = 0.0  # time.monotonic() of the last look-up


@dataclass
class TraderStats:
    orders_sent: int = 0
    fills: int = 0
    reconciled_orders: int = 0
    realized_pnl: float = 0.0
    # for /health and /metrics: intents not sent or refused, whether the broker's last poll
    # answered, closed bar to order sent (real seconds; entries and reversals)
    rejections: int = 0
    broker_reachable: bool | None = None
    bar_to_order_s: list[float] = field(default_factory=list)


class SessionTrader:
    def __init__(
        self,
        store: Store,
        broker: ExecutionClient,
        market: MarketDataClient,
        settings: Settings,
        session: Session,
        clock: Clock,
        run_id: str,
        *,
        timings: TraderTimings = TraderTimings(),
        on_write: Callable[[dict[str, int]], None] = lambda rows: None,
        heartbeat: Callable[[], None] = lambda: None,
        alert: Callable[..., None] = lambda key, kind, title, **fields: None,
    ) -> None:
        self.store, self.broker, self.market = store, broker, market
        self._polled = UnchangedReads(store)  # table 7 and control_events, polled all session
        self.settings, self.session, self.clock, self.t = settings, session, clock, timings
        self.risk = settings.risk_config()
        self.route = route(settings)
        self.meta = RowMeta(self.route.mode.value, session.date, session_version(session.date), run_id)
        self.flatten_at = session.close - dt.timedelta(minutes=settings.flatten_minutes_before_close)
        self.on_write, self.heartbeat, self.alert = on_write, heartbeat, alert
        self.held: Held | None = None
        self.working: dict[str, Working] = {}
        self.done: set[str] = set()  # intents with a final row, or never to be sent
        self.waiting: list[TradeIntent] = []  # entries waiting for an exit to fill
        self.quotes: list[OptionQuote] = []
        self.stats = TraderStats()
        self.state = TradingState.ACTIVE
        self.mismatches = 0  # consecutive broker polls that disagree with the book
        self.buying_power: float | None = None  # the broker's, from the last poll (None: no account)
        self._last_quote_poll = self._last_flush = self._last_control_poll = self._last_broker_poll = 0.0
        self._last_intents_poll = 0.0
        # A streamed source answers from memory and wakes the loop when a quote arrives, so
        # the held contract is looked at on every pass instead of once a quote_poll_s.
        self._pause: Callable[[float], None] = getattr(market, "wait_for_quote", time.sleep)
        self._quote_poll_s = 0.0 if hasattr(market, "wait_for_quote") else timings.quote_poll_s

    # ---- the loop -----------------------------------------------------------------------------

    def run(self, stop: Callable[[], bool] = lambda: False) -> TraderStats:
        self._read_control()
        self.reconcile()
        while not stop():
            self.heartbeat()
            now = self.clock.now()
            self.step(now)
            if self._finished(now):
                break
            self._pause(self.t.poll_s)
        self._flush_quotes(force=True)
        log.info("trader.end", orders=self.stats.orders_sent, fills=self.stats.fills,
                 realized_pnl=round(self.stats.realized_pnl, 2))
        return self.stats

    def _finished(self, now: dt.datetime) -> bool:
        if now >= self.session.close + self.t.end_grace:
            if self.held or self.working:
                log.error("trader.ended_with_open_risk", held=bool(self.held), working=len(self.working))
            return True
        return now >= self.session.close and not self.held and not self.working

    def step(self, now: dt.datetime) -> None:
        if time.monotonic() - self._last_control_poll >= self.t.control_poll_s:
            self._read_control()
        if self.state is TradingState.FLATTENING:
            self._flatten_now(now)
        if time.monotonic() - self._last_broker_poll >= self.t.broker_poll_s:
            self._check_positions(now)
        if time.monotonic() - self._last_intents_poll >= self.t.poll_s:  # a pushed quote wakes us more often
            self._last_intents_poll = time.monotonic()
            for intent in self._new_intents():
                self._take(intent, now)
        self._track(now)
        self._retry_waiting(now)
        if self.held and time.monotonic() - self._last_quote_poll >= self._quote_poll_s:
            self._last_quote_poll = time.monotonic()
            self._watch(now)
        self._flush_quotes()

    # ---- reconciliation -----------------------------------------------------------------------

    def reconcile(self) -> None:
        events = self._events()
        for e in sorted(events, key=lambda e: (e.est_timestamp, e.execution_id)):
            if e.status is OrderStatus.FILLED:
                self._book_fill(e)
        final = {e.intent_id for e in events if e.status is not OrderStatus.SUBMITTED}
        submitted = {e.intent_id: e for e in events if e.status is OrderStatus.SUBMITTED}
        known_orders = {e.order_id for e in events}
        self.done |= final
        broker_orders = self._orders_today()
        for intent in self._intents():
            if intent.intent_id in final:
                continue
            if (row := submitted.get(intent.intent_id)) is not None:
                self.working[row.order_id] = Working(intent, row.position_id, row.order_id, row.est_timestamp)
                continue
            match = next(
                (o for o in broker_orders
                 if o.order_id not in known_orders and o.request is not None
                 and (o.request.option_symbol, o.request.action) == (intent.option_symbol, intent.action)
                 and o.request.qty <= intent.qty  # an entry may have been cut to the buying power
                 and (o.entered_at is None or o.entered_at >= intent.est_timestamp - RECONCILE_SLACK)),
                None,
            )
            if match is not None:  # sent before a crash, never recorded: record, do not resend
                known_orders.add(match.order_id)
                position_id = self._position_id_for(intent)
                self._write_event(self._event(intent, position_id, match.order_id, OrderStatus.SUBMITTED,
                                              match.entered_at or self.clock.now()))
                self.working[match.order_id] = Working(intent, position_id, match.order_id,
                                                       match.entered_at or self.clock.now())
                self.stats.reconciled_orders += 1
                log.warning("trader.reconciled_unrecorded_order", intent_id=intent.intent_id)
        self._track(self.clock.now())  # fills of those orders first, then compare positions
        self._check_positions(self.clock.now(), at_start=True)
        log.info("trader.reconciled", held=self.held.symbol if self.held else None,
                 working=len(self.working), done=len(self.done))

    def _check_positions(self, now: dt.datetime, at_start: bool = False) -> None:
        """The broker's positions into table 3, compared with the book. A difference
        that survives two polls halts the session (`position_mismatch`): one poll may fall
        between a fill and the trader seeing it. At start, a short the book does not know is
        adopted only with ALPHAGEN_ADOPT_UNKNOWN_POSITIONS=true; otherwise the session halts
        (`unknown_position`) and the position is left to the operator."""
        self._last_broker_poll = time.monotonic()
        try:
            at_broker = [p for p in self.broker.positions() if p.quantity]
            balances = self.broker.balances()
        except Exception as exc:  # noqa: BLE001 - reported; table 8 stays the book
            log.warning("trader.broker_unavailable", error=type(exc).__name__)
            self.stats.broker_reachable = False
            return
        self.stats.broker_reachable = True
        self.buying_power = balances.buying_power if balances is not None else None
        rows = broker_position_rows(at_broker, now, self.route.broker)
        if balances is not None:
            rows += balance_rows(balances, now, self.route.broker)
        self._write({"broker_positions": rows})
        ours = {self.held.symbol: -self.held.qty} if self.held else {}
        theirs = {p.symbol: p.quantity for p in at_broker}
        if at_start and not ours and len(at_broker) == 1 and at_broker[0].quantity < 0:
            if self.settings.alphagen_adopt_unknown_positions:
                log.warning("trader.adopted_unknown_position", symbol=at_broker[0].symbol)
                self._adopt(at_broker[0])
                return
            return self._halt(f"unknown_position: the broker holds {theirs}, the book nothing", now)
        self.mismatches = self.mismatches + 1 if ours != theirs else 0
        if self.mismatches:
            log.warning("trader.position_mismatch", ours=ours, broker=theirs, polls=self.mismatches)
        if self.mismatches >= 2:
            self.alert(f"position_mismatch:{self.meta.mode}:{self.session.date}:{sorted(ours.items())}:"
                       f"{sorted(theirs.items())}", "position_mismatch", "Position mismatch",
                       book=ours, broker=theirs, polls=self.mismatches)
        if self.mismatches >= 2 and self.state is TradingState.ACTIVE:
            self._halt(f"position_mismatch: the book holds {ours}, the broker {theirs}", now)

    def _halt(self, reason: str, now: dt.datetime) -> None:
        log.error("trader.halted", reason=reason)
        set_state(self.store, self.meta.mode, self.session.date, TradingState.HALTED, reason, "trader", now,
                  self.meta.run_id)
        self.state = TradingState.HALTED
        self._alert_state(TradingState.HALTED, reason, "trader", now)

    def _alert_state(self, state: TradingState, reason: str, source: str, at: dt.datetime) -> None:
        """A halt or flatten, by the trader, a limit or an operator: alerted once per change."""
        self.alert(f"state:{self.meta.mode}:{self.session.date}:{state.value}:{reason}:{at.isoformat()}",
                   "halt", f"Trading {state.value} ({self.meta.mode} {self.session.date})",
                   reason=reason, source=source, state=state.value)

    def _adopt(self, p: BrokerPosition) -> None:
        credit = p.avg_price or 0.0
        stop, target = brackets(self.risk, credit)
        self.held = Held(f"adopted-{p.symbol}", p.symbol, -p.quantity, credit, stop, target)

    def _orders_today(self) -> list[OrderUpdate]:
        return self.broker.open_orders(self.session.open - dt.timedelta(hours=1))

    # ---- intents ------------------------------------------------------------------------------

    def _intents(self) -> list[TradeIntent]:
        return self._polled.read("intents", lambda: intents_from(
            self._session_rows("trade_intents", "ORDER BY est_timestamp, intent_id")))

    def _events(self) -> list[Execution]:
        return executions_from(self._session_rows("executions"))

    def _session_rows(self, table: str, order: str = ""):
        return self.store.query(
            f"SELECT * FROM {table} WHERE mode = ? AND session_date = ? AND version = ? {order}",
            [self.meta.mode, self.meta.session_date, self.meta.version],
        )

    def _new_intents(self) -> list[TradeIntent]:
        seen = self.done | {w.intent.intent_id for w in self.working.values()} | {
            i.intent_id for i in self.waiting}
        return [i for i in self._intents() if i.intent_id not in seen]

    def _take(self, intent: TradeIntent, now: dt.datetime) -> None:
        if intent.action is Action.BUY_TO_CLOSE:
            if self.held is None or self.held.symbol != intent.option_symbol:
                return self._drop(intent, "no such position", now)
            if self._exit_working():
                return self._drop(intent, "an exit is already working", now)
            # what the book holds, which an entry bounded by buying power may have made smaller
            return self._place(replace(intent, qty=self.held.qty), self.held.position_id, now)
        if self.state is not TradingState.ACTIVE:
            return self._drop(intent, f"trading {self.state.value}", now)
        if self.held is not None or self._exit_working():
            self.waiting.append(intent)  # a rollover: its reversal close goes first
            return None
        if any(w.intent.action is Action.SELL_TO_OPEN for w in self.working.values()):
            return self._drop(intent, "an entry is already working", now)
        if now - intent.est_timestamp > self.t.entry_ttl:
            return self._drop(intent, "stale intent: its price is gone", now)
        return self._place(intent, intent.intent_id, now)

    def _retry_waiting(self, now: dt.datetime) -> None:
        waiting, self.waiting = self.waiting, []
        for intent in waiting:
            if now - intent.est_timestamp > self.t.entry_ttl:
                self._drop(intent, "its reversal close did not fill in time", now)
            else:
                self._take(intent, now)

    def _exit_working(self) -> bool:
        return any(w.intent.action is Action.BUY_TO_CLOSE for w in self.working.values())

    def _drop(self, intent: TradeIntent, why: str, now: dt.datetime, *,
              status: OrderStatus = OrderStatus.CANCELED, order_id: str = "not-sent") -> None:
        log.info("trader.intent_not_sent", intent_id=intent.intent_id, why=why)
        self.stats.rejections += 1
        self._write_event(self._event(intent, self._position_id_for(intent), order_id, status, now))
        self.done.add(intent.intent_id)

    def _position_id_for(self, intent: TradeIntent) -> str:
        if intent.action is Action.SELL_TO_OPEN:
            return intent.intent_id
        return self.held.position_id if self.held else "none"

    # ---- orders -------------------------------------------------------------------------------

    def _limit(self, intent: TradeIntent) -> tuple[float, OptionQuote | None]:
        """A marketable limit: the current bid (sell) or ask (buy), capped by the slippage
        allowance; the decision's own price when no quote is to be had. With the quote."""
        slip = self.settings.order_limit_slippage
        try:
            quote = self.market.quotes([intent.option_symbol]).get(intent.option_symbol)
        except Exception as exc:  # noqa: BLE001 - price off the intent instead
            log.warning("trader.quote_unavailable", error=type(exc).__name__)
            quote = None
        if intent.action is Action.SELL_TO_OPEN:
            return max(round((quote.bid if quote else intent.limit_price) - slip, 2), 0.01), quote
        return round((quote.ask if quote else intent.limit_price) + slip, 2), quote

    def _place(self, intent: TradeIntent, position_id: str, now: dt.datetime) -> None:
        limit, quote = self._limit(intent)
        # price sanity, on entries: an exit is never held back (it reduces risk).
        if intent.action is Action.SELL_TO_OPEN:
            problem = "no quote" if quote is None else price_insane(self.risk, limit, quote.bid, quote.ask)
            if problem is not None:
                return self._drop(intent, f"price_sanity: {problem}", now, status=OrderStatus.REJECTED,
                                  order_id="price_sanity")
            qty = self._affordable(intent, limit)
            if qty < 1:
                return self._drop(intent, f"buying_power: {self.buying_power:,.2f} covers no contract", now,
                                  status=OrderStatus.REJECTED, order_id="buying_power")
            if qty < intent.qty:
                log.warning("trader.entry_reduced", intent_id=intent.intent_id, qty=qty, decided=intent.qty,
                            buying_power=self.buying_power)
                intent = replace(intent, qty=qty)
        request = OrderRequest(intent.action, intent.option_symbol, intent.qty, limit, intent.intent_id)
        try:
            order_id = self.broker.submit(request)
        except Exception as exc:
            if not type(exc).__name__.endswith("Rejected"):
                # The order may or may not exist at the broker: never resend blindly. The job
                # fails, the session sensor starts a new one, and its reconciliation looks
                # the order up before anything is sent again.
                raise
            log.error("trader.order_rejected", intent_id=intent.intent_id, error=type(exc).__name__)
            self.stats.rejections += 1
            self._write_event(self._event(intent, position_id, "rejected", OrderStatus.REJECTED, now))
            self.done.add(intent.intent_id)
            return
        self.stats.orders_sent += 1
        if intent.action is Action.SELL_TO_OPEN or intent.reason == ExitReason.REVERSAL.value:
            self.stats.bar_to_order_s.append(
                max(0.0, time.time() - self.clock.wall_time(intent.est_timestamp)))
        self.working[order_id] = Working(intent, position_id, order_id, now)
        self._write_event(self._event(intent, position_id, order_id, OrderStatus.SUBMITTED, now))
        log.info("trader.order_sent", intent_id=intent.intent_id, action=intent.action.value,
                 symbol=intent.option_symbol, qty=intent.qty, limit=request.limit_price)

    def _affordable(self, intent: TradeIntent, limit: float) -> int:
        """The entry's size within the broker's buying power (unbounded without an account):
        the margin of one uncovered short at the last underlying price in table 1."""
        if self.buying_power is None:
            return intent.qty
        contract = parse_polygon(intent.option_symbol)
        rows = self.store.query(
            "SELECT close FROM equity_bars WHERE mode = ? AND session_date = ? ORDER BY est_timestamp DESC LIMIT 1",
            [self.meta.mode, self.meta.session_date])
        underlying = float(rows["close"][0]) if rows.height else contract.strike
        margin = naked_margin_per_contract(contract.right, contract.strike, underlying, limit)
        return min(intent.qty, math.floor(max(self.buying_power, 0.0) / margin))

    def _track(self, now: dt.datetime) -> None:
        for order_id, w in list(self.working.items()):
            if time.monotonic() - w.polled < self.t.order_poll_s:
                continue
            w.polled = time.monotonic()
            update = self.broker.order(order_id)
            if update.is_final:
                del self.working[order_id]
                self._finish(w, update, now)
            elif not w.cancel_sent and now - w.placed_at > self.t.working_ttl:
                log.info("trader.cancel_stale_order", intent_id=w.intent.intent_id)
                self.broker.cancel(order_id)
                w.cancel_sent = True

    def _finish(self, w: Working, update: OrderUpdate, now: dt.datetime) -> None:
        self.done.add(w.intent.intent_id)
        filled = update.filled_qty
        if filled <= 0:
            status = OrderStatus.REJECTED if update.status == "REJECTED" else OrderStatus.CANCELED
            self._write_event(self._event(w.intent, w.position_id, w.order_id, status, now))
            return
        price = round(sum(f.price * f.qty for f in update.fills) / max(sum(f.qty for f in update.fills), 1), 4) \
            if update.fills else w.intent.limit_price
        at = max((f.at for f in update.fills), default=now)
        event = self._event(w.intent, w.position_id, w.order_id, OrderStatus.FILLED, at, price, filled)
        event = self._book_fill(event)
        self._write_event(event)
        self.stats.fills += 1

    def _book_fill(self, e: Execution) -> Execution:
        """Update the held position with a fill; returns the event with its P/L set (the
        engine's arithmetic: the entry costs its fees, the exit realizes the round trip)."""
        price = e.fill_price or 0.0
        if e.action is Action.SELL_TO_OPEN:
            stop, target = brackets(self.risk, price)
            self.held = Held(e.position_id, e.option_symbol, e.qty, price, stop, target)
            pnl = -e.fees
        else:
            held = self.held
            pnl = -e.fees if held is None else round(round_trip_pnl(held.credit, price, e.qty) - e.fees, 2)
            self.held = None
        self.stats.realized_pnl += pnl
        return replace(e, pnl_contrib=round(pnl, 2))

    def _event(self, intent: TradeIntent, position_id: str, order_id: str, status: OrderStatus,
               at: dt.datetime, price: float | None = None, qty: int = 0) -> Execution:
        filled = status is OrderStatus.FILLED
        return Execution(
            execution_id=f"exe-{intent.intent_id}-{status.value.lower()}",
            intent_id=intent.intent_id, position_id=position_id, order_id=order_id, est_timestamp=at,
            option_symbol=intent.option_symbol, action=intent.action, status=status, fill_price=price,
            qty=qty if filled else 0, fees=fees(self.risk, qty) if filled else 0.0, pnl_contrib=0.0,
            exit_reason=intent.reason if intent.action is Action.BUY_TO_CLOSE else None,
        )

    # ---- the held contract --------------------------------------------------------------------

    def _watch(self, now: dt.datetime) -> None:
        held = self.held
        assert held is not None
        try:
            quote = self.market.quotes([held.symbol]).get(held.symbol)
        except Exception as exc:  # noqa: BLE001 - try again next poll; the flatten still applies
            log.warning("trader.quote_unavailable", error=type(exc).__name__)
            quote = None
        reason = None
        if self._exit_working():
            pass
        elif now >= self.flatten_at:
            reason = ExitReason.CLOSE
        elif quote is not None and quote.ask >= held.stop_loss:
            reason = ExitReason.STOP_LOSS
        elif quote is not None and quote.ask <= held.take_profit:
            reason = ExitReason.TAKE_PROFIT
        self._record(quote, crossed=reason is not None)
        if reason is not None:
            self._send_exit(reason, quote, now)

    def _record(self, quote: OptionQuote | None, crossed: bool) -> None:
        """Table 2 keeps the held quotes at most one a second (a streamed contract may quote
        many times a second), and always the one that crossed a stop or target."""
        if quote is None or (self.quotes and self.quotes[-1] == quote):
            return
        last = self.quotes[-1].start if self.quotes else None
        if crossed or last is None or quote.start - last >= WATCH_RECORD_EVERY:
            self.quotes.append(quote)

    def _send_exit(self, reason: ExitReason, quote: OptionQuote | None, now: dt.datetime) -> None:
        held = self.held
        assert held is not None
        intent = TradeIntent(
            intent_id=f"int-{slice_id_for(now)}-{reason.value}-{len(self.done) + len(self.working)}",
            signal_id=None, est_timestamp=now, action=Action.BUY_TO_CLOSE, option_symbol=held.symbol,
            qty=held.qty, limit_price=quote.ask if quote else held.credit, stop_loss=None, take_profit=None,
            reason=reason.value,
        )
        self._write({"trade_intents": [intent]})
        self._place(intent, held.position_id, now)

    # ---- the trading state (control_events) ---------------------------------------------------

    def _read_control(self) -> None:
        self._last_control_poll = time.monotonic()
        event = self._polled.read("control", lambda: current_state(self.store, self.meta.mode, self.session.date))
        state = state_of(event)
        if state is not self.state:
            log.warning("trader.state", state=state.value, was=self.state.value)
            self.state = state
            if event is not None and state is not TradingState.ACTIVE:
                self._alert_state(state, event.reason, event.source, event.est_timestamp)

    def _flatten_now(self, now: dt.datetime) -> None:
        """Close now, then halt: working entries are cancelled, the position is bought back at
        a marketable limit, and once flat the trader records `halted`."""
        for w in self.working.values():
            if w.intent.action is Action.SELL_TO_OPEN and not w.cancel_sent:
                self.broker.cancel(w.order_id)
                w.cancel_sent = True
        if self.held is not None and not self._exit_working():
            self._send_exit(ExitReason.FLATTEN, None, now)
        if self.held is None and not self.working:
            self._halt("flattened", now)

    # ---- writes -------------------------------------------------------------------------------

    def _write_event(self, event: Execution) -> None:
        self._write({"executions": [event]})

    def _write(self, batches: dict[str, list]) -> None:
        added = self.store.write(batches, self.meta)
        if any(added.values()):
            self.on_write(added)

    def _flush_quotes(self, force: bool = False) -> None:
        if not self.quotes or (not force and time.monotonic() - self._last_flush < self.t.flush_quotes_s):
            return
        quotes, self.quotes = self.quotes, []
        self._last_flush = time.monotonic()
        self._write({"option_quotes": quote_rows(quotes, WATCH, f"{self.settings.alphagen_data_provider}-live")})

