"""The paper venue's execution client: a paper session without a broker. Fills follow the
marketable-limit rule of `alphagen_core.domain.fills`."""

from __future__ import annotations

import datetime as dt

from alphagen_core.application.interfaces import MarketDataClient
from alphagen_core.domain.clock import Clock
from alphagen_core.domain.fills import marketable_price
from alphagen_core.domain.models import (
    Action,
    BrokerPosition,
    Fill,
    OrderRequest,
    OrderUpdate,
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
        price = marketable_price(sell, quote.bid, quote.ask, request.limit_price)
        if price is None:
            return
        fills.append(Fill(round(price, 4), request.qty, self._clock.now()))
        self._orders[order_id] = (request, fills, "FILLED", entered)
        held = self._positions.get(request.option_symbol)
        qty = (held.quantity if held else 0) + (-request.qty if sell else request.qty)
        self._positions[request.option_symbol] = BrokerPosition(request.option_symbol, qty, price if sell else None)
