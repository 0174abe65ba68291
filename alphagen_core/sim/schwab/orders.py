"""The stand-in's orders: validation, matching against the quote book, fills, cancels, and
their wire format.

    POST   /trader/v1/accounts/{hash}/orders           201, empty body, Location
           https://api.schwabapi.com/trader/v1/accounts/{hash}/orders/{id} (the exact form
           schwab-py's `Utils.extract_order_id` requires)
    GET    /trader/v1/accounts/{hash}/orders?fromEnteredTime=&toEnteredTime=[&status=]
    GET    /trader/v1/accounts/{hash}/orders/{id}
    DELETE /trader/v1/accounts/{hash}/orders/{id}      200; 400 if the order is final

Orders and fills (kept deliberately simple; the same rules as the paper broker's quotes):
    - single-leg LIMIT (or MARKET) orders; a new order is WORKING, or REJECTED when its
      option has never been quoted here (unknown contract); malformed bodies answer 400.
    - an order is matched against the QuoteBook when it arrives and whenever its contract's
      quote changes: a SELL (SELL_TO_OPEN, SELL_TO_CLOSE) is marketable when bid >= limit
      and fills at the current bid; a BUY (BUY_TO_CLOSE, BUY_TO_OPEN) when ask <= limit and
      fills at the current ask. A MARKET order fills at the bid/ask at once.
    - with the partial-fill fault, a marketable order fills half its remaining quantity per
      matching event (status stays WORKING, filledQuantity/remainingQuantity move, one
      executionLeg per fill) until done.
    - DELETE turns WORKING into CANCELED (filled quantity kept); `expire_day_orders()`
      turns WORKING into EXPIRED. Fills move positions and cash (`accounts`).
"""

from __future__ import annotations

import copy
import datetime as dt
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alphagen_core.domain.fills import marketable_price
from alphagen_core.domain.symbols import OptionSymbolError, parse_schwab
from alphagen_core.sim.schwab.accounts import Account
from alphagen_core.sim.schwab.faults import SchwabFaults
from alphagen_core.sim.schwab.quote_book import QuoteBook
from alphagen_core.sim.schwab.wire import Reply, error, parse_query_time, utc_text

INSTRUCTIONS = {"SELL_TO_OPEN", "BUY_TO_CLOSE", "BUY_TO_OPEN", "SELL_TO_CLOSE", "BUY", "SELL"}
FINAL_STATUSES = {"FILLED", "CANCELED", "REJECTED", "EXPIRED"}


@dataclass
class StandInFill:
    price: float
    quantity: int
    at: dt.datetime


@dataclass
class StandInOrder:
    order_id: int
    entered_at: dt.datetime
    spec: dict[str, Any]
    order_type: str
    symbol: str  # Schwab form
    asset_type: str
    instruction: str
    quantity: int
    price: float | None
    status: str = "WORKING"
    status_description: str | None = None
    fills: list[StandInFill] = field(default_factory=list)
    close_time: dt.datetime | None = None

    @property
    def filled_quantity(self) -> int:
        return sum(f.quantity for f in self.fills)

    @property
    def remaining_quantity(self) -> int:
        if self.status in ("CANCELED", "REJECTED", "EXPIRED"):
            return 0
        return self.quantity - self.filled_quantity


class OrderBook:
    """Every order the stand-in accepted, matched against `quote_book`; fills go to `account`."""

    def __init__(
        self,
        account: Account,
        quote_book: QuoteBook,
        *,
        clock: Any,
        lock: threading.RLock,
        stats: Counter[str],
        fill_rng: random.Random,
        faults: Callable[[], SchwabFaults],
        reject_unquoted: bool,
    ) -> None:
        self.account = account
        self.quote_book = quote_book
        self.clock = clock
        self.reject_unquoted = reject_unquoted
        self.stats = stats
        self._lock = lock
        self._fill_rng = fill_rng
        self._faults = faults
        self._orders: dict[int, StandInOrder] = {}
        self._next_order_id = 1_000_000_001

    @property
    def orders(self) -> list[StandInOrder]:
        """Every order accepted (a deep copy), oldest first."""
        with self._lock:
            return [copy.deepcopy(o) for _, o in sorted(self._orders.items())]

    def add(self, order: StandInOrder) -> None:
        """Accept a new order and match it at once."""
        with self._lock:
            self._orders[order.order_id] = order
            self.stats["orders"] += 1
            self._match(order)

    def match_orders(self) -> None:
        with self._lock:
            for order in list(self._orders.values()):
                self._match(order)

    def expire_day_orders(self) -> None:
        with self._lock:
            for order in self._orders.values():
                if order.status == "WORKING":
                    order.status = "EXPIRED"
                    order.close_time = self.clock.now()

    def new_order(self, spec: Any) -> StandInOrder:
        """The order a POST body asks for (400 if malformed), not yet accepted."""
        if not isinstance(spec, dict):
            raise error(400, "order must be a JSON object")
        order_type = spec.get("orderType")
        if order_type not in ("LIMIT", "MARKET"):
            raise error(400, "the stand-in takes LIMIT and MARKET orders only")
        if spec.get("orderStrategyType", "SINGLE") != "SINGLE":
            raise error(400, "the stand-in takes SINGLE orders only")
        if spec.get("session") not in ("NORMAL", None) or spec.get("duration") not in ("DAY", None):
            raise error(400, "the stand-in takes NORMAL session DAY orders only")
        legs = spec.get("orderLegCollection")
        if not isinstance(legs, list) or len(legs) != 1 or not isinstance(legs[0], dict):
            raise error(400, "exactly one order leg is required")
        leg = legs[0]
        instruction = leg.get("instruction")
        if instruction not in INSTRUCTIONS:
            raise error(400, "unknown instruction")
        quantity = leg.get("quantity")
        if (
            isinstance(quantity, bool)
            or not isinstance(quantity, int | float)
            or quantity <= 0
            or int(quantity) != quantity
        ):
            raise error(400, "quantity must be a positive whole number")
        instrument = leg.get("instrument") or {}
        asset = instrument.get("assetType")
        symbol = instrument.get("symbol")
        if asset not in ("OPTION", "EQUITY") or not isinstance(symbol, str):
            raise error(400, "instrument needs assetType OPTION or EQUITY and a symbol")
        if asset == "OPTION":
            try:
                parse_schwab(symbol)
            except OptionSymbolError:
                raise error(400, "invalid option symbol") from None
        price: float | None = None
        if order_type == "LIMIT":
            try:
                price = float(spec.get("price"))
            except (TypeError, ValueError):
                raise error(400, "a LIMIT order needs a numeric price") from None
            if not price > 0:
                raise error(400, "price must be positive")
        with self._lock:
            order_id = self._next_order_id
            self._next_order_id += 1
        order = StandInOrder(
            order_id=order_id,
            entered_at=self.clock.now(),
            spec=copy.deepcopy(spec),
            order_type=order_type,
            symbol=symbol if asset == "OPTION" else symbol.upper(),
            asset_type=asset,
            instruction=instruction,
            quantity=int(quantity),
            price=price,
        )
        if self.reject_unquoted and asset == "OPTION" and self.quote_book.get(symbol) is None:
            order.status = "REJECTED"
            order.status_description = "unknown or unquoted contract"
            order.close_time = order.entered_at
        return order

    def on_quote(self, key: str) -> None:
        with self._lock:
            for order in list(self._orders.values()):
                if order.symbol == key and order.status == "WORKING":
                    self._match(order)

    def _match(self, order: StandInOrder) -> None:
        """Fill rules: see the module docstring. Called with the lock held."""
        if order.status != "WORKING":
            return
        quote = self.quote_book.get(order.symbol)
        if quote is None:
            return
        sell = order.instruction.startswith("SELL")
        price = marketable_price(sell, quote.bid, quote.ask, order.price if order.order_type == "LIMIT" else None)
        if price is None:
            return
        remaining = order.remaining_quantity
        quantity = remaining
        if remaining > 1 and self._fill_rng.random() < self._faults().partial_fill_rate:
            quantity = max(1, remaining // 2)
            self.stats["partial_fills"] += 1
        now = self.clock.now()
        order.fills.append(StandInFill(round(price, 4), quantity, now))
        self.account.apply_fill(order, price, quantity)
        if order.remaining_quantity == 0:
            order.status = "FILLED"
            order.close_time = now

    def cancel(self, order_id: int) -> Reply:
        with self._lock:
            order = self._orders.get(order_id)
            if order is None:
                raise error(404, "order not found")
            if order.status in FINAL_STATUSES:
                raise error(400, f"order is {order.status} and cannot be canceled")
            order.status = "CANCELED"
            order.close_time = self.clock.now()
        return Reply(200, None)

    def order(self, order_id: int) -> Reply:
        with self._lock:
            order = self._orders.get(order_id)
            if order is None:
                raise error(404, "order not found")
            return Reply(200, self._order_json(order))

    def list_orders(self, query: dict[str, str]) -> Reply:
        start = parse_query_time(query.get("fromEnteredTime", ""))
        end = parse_query_time(query.get("toEnteredTime", ""))
        if start is None or end is None:
            raise error(400, "fromEnteredTime and toEnteredTime are required (ISO-8601)")
        status = query.get("status")
        try:
            limit = int(query.get("maxResults") or 3000)
        except ValueError:
            raise error(400, "maxResults must be a number") from None
        with self._lock:
            rows = [
                self._order_json(o)
                for o in sorted(self._orders.values(), key=lambda o: o.order_id, reverse=True)
                if start <= o.entered_at <= end and (status is None or o.status == status)
            ]
        return Reply(200, rows[:limit])

    def _order_json(self, o: StandInOrder) -> dict[str, Any]:
        leg = o.spec["orderLegCollection"][0]
        instrument: dict[str, Any] = {"assetType": o.asset_type, "symbol": o.symbol}
        if o.asset_type == "OPTION":
            contract = parse_schwab(o.symbol)
            instrument.update(
                {
                    "type": "VANILLA",
                    "putCall": "CALL" if contract.right.value == "C" else "PUT",
                    "underlyingSymbol": contract.root,
                }
            )
        activities = []
        remaining = o.quantity
        for fill in o.fills:
            remaining -= fill.quantity
            activities.append(
                {
                    "activityType": "EXECUTION",
                    "activityId": o.order_id * 100 + len(activities) + 1,
                    "executionType": "FILL",
                    "quantity": float(fill.quantity),
                    "orderRemainingQuantity": float(remaining),
                    "executionLegs": [
                        {
                            "legId": 1,
                            "price": fill.price,
                            "quantity": float(fill.quantity),
                            "mismarkedQuantity": 0.0,
                            "time": utc_text(fill.at),
                        }
                    ],
                }
            )
        row: dict[str, Any] = {
            "session": o.spec.get("session", "NORMAL"),
            "duration": o.spec.get("duration", "DAY"),
            "orderType": o.order_type,
            "complexOrderStrategyType": "NONE",
            "quantity": float(o.quantity),
            "filledQuantity": float(o.filled_quantity),
            "remainingQuantity": float(o.remaining_quantity),
            "requestedDestination": "AUTO",
            "destinationLinkName": "AutoRoute",
            "orderLegCollection": [
                {
                    "orderLegType": o.asset_type,
                    "legId": 1,
                    "instrument": instrument,
                    "instruction": o.instruction,
                    "positionEffect": "OPENING" if o.instruction.endswith("OPEN") else "CLOSING",
                    "quantity": float(leg.get("quantity", o.quantity)),
                }
            ],
            "orderStrategyType": "SINGLE",
            "orderId": o.order_id,
            "cancelable": o.status == "WORKING",
            "editable": o.status == "WORKING",
            "status": o.status,
            "enteredTime": utc_text(o.entered_at),
            "tag": "API_TDAM:alphagen",
            "accountNumber": (
                int(self.account.number) if self.account.number.isdigit() else self.account.number
            ),
        }
        if o.price is not None:
            row["price"] = o.price
        if o.close_time is not None:
            row["closeTime"] = utc_text(o.close_time)
        if o.status_description:
            row["statusDescription"] = o.status_description
        if activities:
            row["orderActivityCollection"] = activities
        return row
