"""The paper broker: our own fill model (Schwab has no paper API), used by replay and paper.

Fill rules (SPEC §1, "Paper and replay fills"):
- An order decided on bar t fills on the option data of bar t+1, never bar t: at bar t+1's
  opening price, because the decision is made at bar t's end, which is bar t+1's open.
  Sells fill at the bid, buys at the ask. With minute aggregates only (flat files), the
  bid/ask are the price -/+ the configured half-spread (see OptionQuote).
- If the contract has no data in bar t+1 (an option minute with no trades), an exit stays
  working and fills on the next bar that has data; an entry is cancelled (the price it was
  decided on is gone).
- An entry never fills while an exit is still working: a rollover whose reversal close is
  waiting for data is cancelled with it unfilled, so that at most one position is ever open
  (SPEC §1, "Single position"); the close keeps waiting.
- Stop-loss and take-profit of a short are resting buy orders tested inside each minute
  bar: the stop triggers when the bar's high ask reaches it, the target when its low ask
  does; when both are touched in one bar we assume the stop (we cannot know which came
  first, and the stop is the conservative choice). A stop fills at the stop price, or at
  the bar's opening ask if the bar opened beyond it (a gap); a target fills at the target
  price, or at the opening ask if the bar opened below it (a limit buy fills at the better
  price).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from alphagen_core.interfaces import MarketDataClient
from alphagen_core.models import (
    Action,
    BrokerPosition,
    Execution,
    ExitReason,
    Fill,
    OptionQuote,
    OrderRequest,
    OrderStatus,
    OrderUpdate,
    TradeIntent,
)
from alphagen_core.risk import RiskConfig, fees
from alphagen_core.sim.clock import Clock


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    intent: TradeIntent
    position_id: str


def bracket_trigger(
    quote: OptionQuote, stop_loss: float, take_profit: float
) -> tuple[ExitReason, float] | None:
    """Which bracket of a short the quote's minute touches, and the fill price."""
    if quote.high_ask >= stop_loss:
        return ExitReason.STOP_LOSS, max(stop_loss, quote.open_ask)
    if quote.low_ask <= take_profit:
        return ExitReason.TAKE_PROFIT, min(take_profit, quote.open_ask)
    return None


class PaperBroker:
    name = "paper"

    def __init__(self, risk: RiskConfig) -> None:
        self._risk = risk
        self._working: list[WorkingOrder] = []
        self._positions: dict[str, tuple[int, float]] = {}  # symbol -> (signed qty, avg price)

    def submit(self, intent: TradeIntent, position_id: str) -> None:
        self._working.append(WorkingOrder(intent, position_id))

    def cancel_working(self, position_id: str) -> None:
        self._working = [o for o in self._working if o.position_id != position_id]

    def fill_working(self, quotes: dict[str, OptionQuote], at: dt.datetime) -> list[Execution]:
        """Fill the orders decided on the previous bar at this bar's opening bid/ask."""
        events: list[Execution] = []
        still_working: list[WorkingOrder] = []
        exit_waiting = any(
            o.intent.action is Action.BUY_TO_CLOSE and o.intent.option_symbol not in quotes
            for o in self._working
        )
        for order in self._working:
            quote = quotes.get(order.intent.option_symbol)
            if order.intent.action is Action.SELL_TO_OPEN and exit_waiting:
                events.append(self._event(order, OrderStatus.CANCELED, None, at))
            elif quote is not None:
                sell = order.intent.action is Action.SELL_TO_OPEN
                events.append(self._fill(order, quote.open_bid if sell else quote.open_ask, at))
            elif order.intent.action is Action.SELL_TO_OPEN:
                events.append(self._event(order, OrderStatus.CANCELED, None, at))
            else:
                still_working.append(order)
        self._working = still_working
        return events

    def fill_now(self, intent: TradeIntent, position_id: str, price: float, at: dt.datetime) -> Execution:
        """A triggered resting order (stop or target) filling inside the current bar."""
        return self._fill(WorkingOrder(intent, position_id), price, at)

    def positions(self) -> list[BrokerPosition]:
        return [
            BrokerPosition(symbol=s, quantity=q, avg_price=p)
            for s, (q, p) in sorted(self._positions.items())
            if q != 0
        ]

    def _fill(self, order: WorkingOrder, price: float, at: dt.datetime) -> Execution:
        price = round(max(price, 0.0), 4)
        qty = order.intent.qty
        symbol = order.intent.option_symbol
        held, avg = self._positions.get(symbol, (0, 0.0))
        if order.intent.action is Action.SELL_TO_OPEN:
            self._positions[symbol] = (held - qty, price)
        else:
            self._positions[symbol] = (held + qty, avg)
        return self._event(order, OrderStatus.FILLED, price, at)

    def _event(
        self, order: WorkingOrder, status: OrderStatus, price: float | None, at: dt.datetime
    ) -> Execution:
        intent = order.intent
        filled = status is OrderStatus.FILLED
        return Execution(
            execution_id=f"exe-{intent.intent_id}-{status.value.lower()}",
            intent_id=intent.intent_id,
            position_id=order.position_id,
            order_id=f"paper-{intent.intent_id}",
            est_timestamp=at,
            option_symbol=intent.option_symbol,
            action=intent.action,
            status=status,
            fill_price=price,
            qty=intent.qty if filled else 0,
            fees=fees(self._risk, intent.qty) if filled else 0.0,
            pnl_contrib=0.0,  # the engine, which knows the entry credit, sets the P/L
            exit_reason=intent.reason if intent.action is Action.BUY_TO_CLOSE else None,
        )


class PaperExecution:
    """The ExecutionClient of a paper session without a broker: marketable orders fill at once
    at the current quote (sell at the bid, buy at the ask), others wait and are re-checked on
    each look-up. Orders live in this process only; after a restart the session trader
    rebuilds its book from table 8 (the `positions` it is given)."""

    name = "paper"

    def __init__(self, market: MarketDataClient, clock: Clock, positions: list[BrokerPosition] | None = None) -> None:
        self._market, self._clock = market, clock
        self._orders: dict[str, tuple[OrderRequest, list[Fill], str, dt.datetime]] = {}
        self._positions = {p.symbol: p for p in positions or []}

    def positions(self) -> list[BrokerPosition]:
        return [p for p in self._positions.values() if p.quantity]

    def balances(self) -> None:
        return None  # no account: the engine sizes entries on RISK_TRADING_CAPITAL

    def submit(self, order: OrderRequest) -> str:
        order_id = f"paper-{order.intent_id}"
        self._orders[order_id] = (order, [], "WORKING", self._clock.now())
        self._try_fill(order_id)
        return order_id

    def order(self, order_id: str) -> OrderUpdate:
        self._try_fill(order_id)
        request, fills, status, entered = self._orders[order_id]
        filled = sum(f.qty for f in fills)
        return OrderUpdate(order_id, status, filled, request.qty - filled, tuple(fills), entered, request)

    def cancel(self, order_id: str) -> None:
        request, fills, status, entered = self._orders[order_id]
        if status == "WORKING":
            self._orders[order_id] = (request, fills, "CANCELED", entered)

    def open_orders(self, since: dt.datetime) -> list[OrderUpdate]:
        return [self.order(i) for i, (_, _, _, entered) in self._orders.items() if entered >= since]

    def find_order(self, order: OrderRequest, since: dt.datetime) -> OrderUpdate | None:
        order_id = f"paper-{order.intent_id}"
        return self.order(order_id) if order_id in self._orders else None

    def _try_fill(self, order_id: str) -> None:
        request, fills, status, entered = self._orders[order_id]
        if status != "WORKING":
            return
        quote = self._market.quotes([request.option_symbol]).get(request.option_symbol)
        if quote is None:
            return
        sell = request.action is Action.SELL_TO_OPEN
        price = quote.bid if sell else quote.ask
        if (sell and price < request.limit_price) or (not sell and price > request.limit_price) or price <= 0:
            return
        fills.append(Fill(round(price, 4), request.qty, self._clock.now()))
        self._orders[order_id] = (request, fills, "FILLED", entered)
        held = self._positions.get(request.option_symbol)
        qty = (held.quantity if held else 0) + (-request.qty if sell else request.qty)
        self._positions[request.option_symbol] = BrokerPosition(request.option_symbol, qty, price if sell else None)
