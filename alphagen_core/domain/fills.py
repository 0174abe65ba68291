"""The fill model: how an order fills without a broker (replay and paper; Schwab has no paper
API), and the marketable-limit rule the paper execution client and the Schwab stand-in share.

Fill rules:
- An order decided on bar t fills on the option data of bar t+1, never bar t: at bar t+1's
  opening price, because the decision is made at bar t's end, which is bar t+1's open.
  Sells fill at the bid, buys at the ask. With minute aggregates only (flat files), the
  bid/ask are the price -/+ the configured half-spread (see OptionQuote).
- If the contract has no data in bar t+1 (an option minute with no trades), an exit stays
  working and fills on the next bar that has data; an entry is cancelled (the price it was
  decided on is gone).
- An entry never fills while an exit is still working: a rollover whose reversal close is
  waiting for data is cancelled with it unfilled, so that at most one position is ever open
; the close keeps waiting.
- Stop-loss and take-profit of a short are resting buy orders tested inside each minute
  bar: the stop triggers when the bar's high ask reaches it, the target when its low ask
  does; when both are touched in one bar we assume the stop (we cannot know which came
  first, and the stop is the conservative choice). A stop fills at the stop price, or at
  the bar's opening ask if the bar opened beyond it (a gap); a target fills at the target
  price, or at the opening ask if the bar opened below it (a limit buy fills at the better
  price).

Marketable limits (live paper and the Schwab stand-in): a sell fills at the bid once the bid
is at or above its limit, a buy at the ask once the ask is at or below it; a zero or negative
side never fills.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from alphagen_core.domain.models import (
    Action,
    BrokerPosition,
    Execution,
    ExitReason,
    OptionQuote,
    OrderStatus,
    TradeIntent,
)
from alphagen_core.domain.risk import RiskConfig, fees

PRICE_TOLERANCE = 1e-9  # float noise between a limit and the quote it was derived from


def side_price(sell: bool, bid: float, ask: float) -> float:
    """Sells fill at the bid, buys at the ask."""
    return bid if sell else ask


def marketable_price(sell: bool, bid: float, ask: float, limit: float | None) -> float | None:
    """The fill price of a limit order (None: a market order) at this quote, or None if it
    does not fill now."""
    price = side_price(sell, bid, ask)
    if price <= 0:
        return None
    if limit is not None and (price < limit - PRICE_TOLERANCE if sell else price > limit + PRICE_TOLERANCE):
        return None
    return price


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
                events.append(self._fill(order, side_price(sell, quote.open_bid, quote.open_ask), at))
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
