"""`SchwabExecution`: the ExecutionClient for the Schwab Trader API (real orders).

Live gate. Schwab has no paper API; choosing paper or Schwab is done elsewhere
(`alphagen_core.application.gate.route`). As a last line of defence this class refuses
to be constructed unless ``settings.live_enabled`` is true (SCHWAB_PAPER=false *and* the
confirmation phrase) or its base URL is a loopback address, i.e. the local stand-in
(`alphagen_core/sim/schwab/`) that tests and simulated sessions use.

Orders are single-leg option LIMIT DAY orders, SELL_TO_OPEN or BUY_TO_CLOSE, with the price
sent as a string rounded to the cent (schwab-py would truncate a float: 1.15 -> "1.14").

Never sending an order twice. `submit` sends the POST once. When the answer is anything but
a clear 201 (timeout, connection error, 5xx, 429, a 201 without an order id) the order may
or may not exist at Schwab, so before sending anything again we look it up: we list the
orders entered since just before the submission (`LOOKUP_SLACK` earlier, for clock skew)
and match instrument symbol, instruction, quantity and price, ignoring orders this object
already attributed to earlier submissions. Found: that is our order. Definitely absent (the
lookup itself answered): we may send again, at most `max_submissions` times in all. If the
lookup cannot be completed, `SchwabOrderStateUnknown` is raised and nothing is resent; the
caller must reconcile (`find_order`/`open_orders`) before trying again. A clear 4xx
rejection raises `SchwabOrderRejected` and is never resent.

Residual risk, by design on the safe side: an unattributed identical order entered within
`LOOKUP_SLACK` before this submission (e.g. by a crashed previous process) is taken as ours,
so we may send one order too few, never one too many.

The account number is a secret: it is only used to pick the account hash (session.py) and is
never logged; order and account JSON (which contain it) are never logged or put in errors.
"""

from __future__ import annotations

import datetime as dt
import threading
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import httpx
import structlog
from schwab.client import Client
from schwab.utils import Utils

from alphagen_core.adapters.schwab.config import SchwabConfig
from alphagen_core.adapters.schwab.errors import (
    SchwabAPIError,
    SchwabAuthError,
    SchwabError,
    SchwabUnavailable,
)
from alphagen_core.adapters.schwab.session import (
    SchwabSession,
    error_detail,
    response_json,
)
from alphagen_core.domain.clock import NY
from alphagen_core.domain.models import (
    Action,
    BrokerBalances,
    BrokerPosition,
    Fill,
    OrderRequest,
    OrderUpdate,
)
from alphagen_core.domain.symbols import (
    OptionSymbolError,
    polygon_to_schwab,
    schwab_to_polygon,
)

log = structlog.get_logger(__name__)

LOOKUP_SLACK = dt.timedelta(seconds=60)
FINAL_STATUSES = frozenset({"FILLED", "CANCELED", "REJECTED", "EXPIRED", "REPLACED"})
_DEFINITE_REJECTIONS = frozenset({400, 403, 404, 405, 406, 409, 415, 422})


class LiveTradingDisabledError(SchwabError):
    pass


class SchwabOrderRejected(SchwabAPIError):
    """Schwab refused the order outright (4xx): it was not placed and is not resent."""


class SchwabOrderStateUnknown(SchwabError):
    """An order was sent, no clear answer came back, and the lookup failed too: it may or
    may not exist at Schwab. Reconcile before sending anything again."""


def format_price(price: float) -> str:
    """A limit price as Schwab wants it: a string with two decimals."""
    try:
        value = Decimal(str(price)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except (InvalidOperation, ValueError):
        raise ValueError(f"limit price {price!r} is not a number") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"limit price {price!r} must be positive")
    return f"{value:.2f}"


def order_spec(order: OrderRequest) -> dict[str, Any]:
    """The JSON body of a single-leg option LIMIT DAY order."""
    if order.qty <= 0 or int(order.qty) != order.qty:
        raise ValueError(f"order quantity must be a positive whole number, got {order.qty!r}")
    action = Action(order.action)
    return {
        "orderType": "LIMIT",
        "session": "NORMAL",
        "duration": "DAY",
        "orderStrategyType": "SINGLE",
        "price": format_price(order.limit_price),
        "orderLegCollection": [
            {
                "instruction": action.value,
                "quantity": int(order.qty),
                "instrument": {
                    "symbol": polygon_to_schwab(order.option_symbol),
                    "assetType": "OPTION",
                },
            }
        ],
    }


def parse_schwab_time(text: Any) -> dt.datetime | None:
    """Schwab timestamps ('2024-02-12T15:31:00+0000', ISO forms, or epoch ms) in New York."""
    if text is None:
        return None
    if isinstance(text, int | float):
        return dt.datetime.fromtimestamp(float(text) / 1000, tz=NY)
    value = str(text).strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")
        except ValueError:
            return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(NY)


def _to_int(value: Any, default: int = 0) -> int:
    try:
        return int(round(float(value)))
    except (TypeError, ValueError):
        return default


def _to_float(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _polygon_symbol(symbol: str, asset_type: str | None) -> str:
    if asset_type == "OPTION" or len(symbol) == 21:
        try:
            return schwab_to_polygon(symbol)
        except OptionSymbolError:
            return symbol
    return symbol


class SchwabExecution:
    """ExecutionClient on the Schwab Trader API. See the module docstring for the rules."""

    def __init__(
        self,
        session: SchwabSession,
        *,
        live_enabled: bool,
        max_submissions: int = 3,
        lookup_attempts: int = 2,
        lookup_delay_s: float = 1.0,
    ) -> None:
        if not live_enabled and not session.config.is_loopback:
            raise LiveTradingDisabledError(
                "refusing to place orders at Schwab: live trading is off (it needs "
                "SCHWAB_PAPER=false and SCHWAB_LIVE_CONFIRMATION); only a loopback stand-in "
                "may be used without it"
            )
        if max_submissions < 1 or lookup_attempts < 1:
            raise ValueError("max_submissions and lookup_attempts must be at least 1")
        self.session = session
        self.max_submissions = max_submissions
        self.lookup_attempts = lookup_attempts
        self.lookup_delay_s = lookup_delay_s
        self._submit_lock = threading.Lock()
        self._known: dict[str, OrderRequest] = {}  # order id -> the request we sent

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> SchwabExecution:
        session_kwargs = {
            k: kwargs.pop(k) for k in ("limiter", "timer", "clock", "retry") if k in kwargs
        }
        config = SchwabConfig.from_settings(settings)
        session = SchwabSession(config, **session_kwargs)
        return cls(session, live_enabled=settings.live_enabled, **kwargs)

    # -- positions

    def positions(self) -> list[BrokerPosition]:
        account_hash = self.session.account_hash()
        response = self.session.call(
            "account positions",
            lambda c: c.get_account(account_hash, fields=[Client.Account.Fields.POSITIONS]),
        )
        body = response_json(response, "account positions")
        account = body.get("securitiesAccount", {}) if isinstance(body, dict) else {}
        result: list[BrokerPosition] = []
        for row in account.get("positions", []) or []:
            position = self._position(row)
            if position is not None:
                result.append(position)
        return result

    def balances(self) -> BrokerBalances:
        """currentBalances of the account. A margin account states `buyingPower`; a cash
        account only `cashAvailableForTrading`, which is then its buying power."""
        account_hash = self.session.account_hash()
        response = self.session.call("account balances", lambda c: c.get_account(account_hash))
        body = response_json(response, "account balances")
        account = body.get("securitiesAccount", {}) if isinstance(body, dict) else {}
        current = account.get("currentBalances") or {}
        cash = _to_float(current.get("cashBalance"))
        buying_power = current.get("buyingPower", current.get("cashAvailableForTrading"))
        if buying_power is None:
            raise SchwabAPIError("account balances", response.status_code, "the answer states no buying power")
        return BrokerBalances(cash=cash, buying_power=_to_float(buying_power),
                              liquidation_value=_to_float(current.get("liquidationValue"), cash))

    @staticmethod
    def _position(row: dict[str, Any]) -> BrokerPosition | None:
        instrument = row.get("instrument") or {}
        symbol = instrument.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            return None
        long_qty = float(row.get("longQuantity") or 0)
        short_qty = float(row.get("shortQuantity") or 0)
        quantity = _to_int(long_qty - short_qty)
        if quantity < 0:
            avg = row.get("averageShortPrice", row.get("averagePrice"))
        else:
            avg = row.get("averageLongPrice", row.get("averagePrice"))
        market_value = row.get("marketValue")
        return BrokerPosition(
            symbol=_polygon_symbol(symbol, instrument.get("assetType")),
            quantity=quantity,
            avg_price=float(avg) if avg is not None else None,
            market_value=float(market_value) if market_value is not None else None,
        )

    # -- orders

    def submit(self, order: OrderRequest) -> str:
        spec = order_spec(order)  # validates before anything is sent
        account_hash = self.session.account_hash()
        with self._submit_lock:
            for submission in range(1, self.max_submissions + 1):
                sent_at = self.session.now()
                order_id, unclear = self._post_once(account_hash, spec)
                if order_id is not None:
                    self._known[order_id] = order
                    log.info(
                        "schwab_order_placed",
                        order_id=order_id,
                        intent_id=order.intent_id,
                        submission=submission,
                    )
                    return order_id
                log.warning(
                    "schwab_order_answer_unclear",
                    intent_id=order.intent_id,
                    submission=submission,
                    reason=unclear,
                )
                found = self._lookup_after_failure(order, sent_at - LOOKUP_SLACK)
                if found is not None:
                    self._known[found.order_id] = order
                    log.info(
                        "schwab_order_found_after_unclear_answer",
                        order_id=found.order_id,
                        intent_id=order.intent_id,
                        status=found.status,
                    )
                    return found.order_id
                if submission < self.max_submissions:
                    self.session.backoff(submission)
            raise SchwabUnavailable(
                f"Schwab did not accept the order for intent {order.intent_id} after "
                f"{self.max_submissions} submissions (each confirmed absent before resending)"
            )

    def _post_once(self, account_hash: str, spec: dict[str, Any]) -> tuple[str | None, str]:
        """(order id, "") on success, or (None, why the outcome is unclear). Raises on a
        clear rejection. Sends exactly one POST."""
        try:
            response = self.session.send(lambda c: c.place_order(account_hash, spec))
        except httpx.TransportError as exc:
            return None, f"no answer ({type(exc).__name__})"
        status = response.status_code
        if status in (200, 201):
            order_id: int | None
            try:
                order_id = Utils(self.session.client, account_hash).extract_order_id(response)
            except Exception:
                order_id = None
            if order_id is not None:
                return str(order_id), ""
            return None, "accepted without an order id in Location"
        if status == 401:
            # Rejected before processing; refresh so the next attempt can authenticate.
            self.session.refresh_access_token()
            return None, "HTTP 401"
        if status in _DEFINITE_REJECTIONS:
            raise SchwabOrderRejected("place order", status, error_detail(response))
        return None, f"HTTP {status}"

    def _lookup_after_failure(self, order: OrderRequest, since: dt.datetime) -> OrderUpdate | None:
        for attempt in range(1, self.lookup_attempts + 1):
            try:
                found = self._match(order, since, exclude=set(self._known))
            except SchwabAuthError:
                raise
            except SchwabError as exc:
                raise SchwabOrderStateUnknown(
                    f"the order for intent {order.intent_id} may or may not be at Schwab: "
                    f"the lookup failed ({type(exc).__name__}); reconcile before resending"
                ) from None
            if found is not None:
                return found
            if attempt < self.lookup_attempts:
                self.session.timer.sleep(self.lookup_delay_s)
        return None

    def order(self, order_id: str) -> OrderUpdate:
        account_hash = self.session.account_hash()
        response = self.session.call(
            "get order", lambda c: c.get_order(int(order_id), account_hash)
        )
        return self._update(response_json(response, "get order"))

    def cancel(self, order_id: str) -> None:
        """Cancel a working order. Cancelling an order that is already final (filled in the
        meantime, cancelled, rejected) is not an error; anything else Schwab refuses is."""
        account_hash = self.session.account_hash()
        try:
            self.session.call("cancel order", lambda c: c.cancel_order(int(order_id), account_hash))
        except SchwabAPIError as exc:
            if exc.status in (400, 404, 409, 422):
                current = self.order(order_id)
                if current.is_final:
                    log.info(
                        "schwab_cancel_of_final_order", order_id=order_id, status=current.status
                    )
                    return
            raise
        log.info("schwab_order_cancel_sent", order_id=order_id)

    def open_orders(self, since: dt.datetime) -> list[OrderUpdate]:
        """Every order entered since `since` (any status), oldest first."""
        if since.tzinfo is None:
            raise ValueError("`since` must be timezone-aware")
        account_hash = self.session.account_hash()
        # schwab-py formats these with strftime and a literal 'Z' (seconds, no zone
        # conversion): hand it UTC. A minute past now covers truncation and clock skew.
        start = since.astimezone(dt.timezone.utc)
        end = (self.session.now() + dt.timedelta(minutes=1)).astimezone(dt.timezone.utc)
        response = self.session.call(
            "list orders",
            lambda c: c.get_orders_for_account(
                account_hash, from_entered_datetime=start, to_entered_datetime=end
            ),
        )
        rows = response_json(response, "list orders")
        if not isinstance(rows, list):
            raise SchwabAPIError("list orders", response.status_code, "unexpected answer shape")
        updates = [self._update(row) for row in rows if isinstance(row, dict)]
        far_past = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
        return sorted(updates, key=lambda u: (u.entered_at or far_past, u.order_id))

    def find_order(self, order: OrderRequest, since: dt.datetime) -> OrderUpdate | None:
        """The most recent order since `since` with the same symbol, instruction, quantity and
        limit price (preferring one this object has not already attributed elsewhere)."""
        found = self._match(order, since, exclude=set(self._known))
        if found is None:
            found = self._match(order, since, exclude=set())
        return found

    def _match(
        self, order: OrderRequest, since: dt.datetime, *, exclude: set[str]
    ) -> OrderUpdate | None:
        wanted_symbol = order.option_symbol
        wanted_price = Decimal(format_price(order.limit_price))
        candidates = []
        for update in self.open_orders(since):
            request = update.request
            if request is None or update.order_id in exclude:
                continue
            try:
                price = Decimal(format_price(request.limit_price))
            except ValueError:
                continue
            if (
                request.option_symbol == wanted_symbol
                and request.action == order.action
                and request.qty == order.qty
                and price == wanted_price
            ):
                candidates.append(update)
        return candidates[-1] if candidates else None

    def _update(self, row: dict[str, Any]) -> OrderUpdate:
        order_id = str(row.get("orderId", ""))
        quantity = _to_int(row.get("quantity"))
        filled = _to_int(row.get("filledQuantity"))
        remaining = _to_int(row.get("remainingQuantity"), max(quantity - filled, 0))
        fills: list[Fill] = []
        for activity in row.get("orderActivityCollection") or []:
            if not isinstance(activity, dict):
                continue
            if activity.get("activityType", "EXECUTION") != "EXECUTION":
                continue
            for leg in activity.get("executionLegs") or []:
                at = parse_schwab_time(leg.get("time"))
                if at is None or leg.get("price") is None:
                    continue
                fills.append(
                    Fill(price=float(leg["price"]), qty=_to_int(leg.get("quantity")), at=at)
                )
        fills.sort(key=lambda f: f.at)
        return OrderUpdate(
            order_id=order_id,
            status=str(row.get("status", "UNKNOWN")),
            filled_qty=filled,
            remaining_qty=remaining,
            fills=tuple(fills),
            entered_at=parse_schwab_time(row.get("enteredTime")),
            request=self._request_of(order_id, row, quantity),
        )

    def _request_of(self, order_id: str, row: dict[str, Any], quantity: int) -> OrderRequest | None:
        known = self._known.get(order_id)
        if known is not None:
            return known
        legs = row.get("orderLegCollection") or []
        if len(legs) != 1 or row.get("price") is None:
            return None
        leg = legs[0]
        instrument = leg.get("instrument") or {}
        try:
            action = Action(leg.get("instruction"))
            symbol = schwab_to_polygon(str(instrument.get("symbol", "")))
        except (ValueError, OptionSymbolError):
            return None
        return OrderRequest(
            action=action,
            option_symbol=symbol,
            qty=_to_int(leg.get("quantity"), quantity),
            limit_price=float(row["price"]),
            intent_id="",
        )
