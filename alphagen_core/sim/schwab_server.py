"""A local stand-in for Schwab (OAuth, Trader API, market data) on loopback.

It speaks the documented wire formats closely enough that schwab-py's client works against
it unchanged (routed here by `alphagen_core.adapters.schwab.auth.SchwabTransport`), so the
Schwab adapters are tested over real sockets and a whole accelerated session can run on one
machine without credentials. Stdlib only (threaded `http.server`).

Endpoints
    GET    /v1/oauth/authorize        302 to redirect_uri?code=...&session=...&state=...
    POST   /v1/oauth/token            HTTP Basic (app key:secret); grant_type
                                      authorization_code | refresh_token. Access tokens last
                                      `access_token_lifetime_s` (1800); a refresh token older
                                      than `refresh_token_max_age_s` (7 days) answers
                                      400 {"error": "invalid_grant", ...}. The refresh answer
                                      repeats the same refresh token (as Schwab does).
    GET    /trader/v1/accounts/accountNumbers          [{accountNumber, hashValue}]
    GET    /trader/v1/accounts/{hash}[?fields=positions]   currentBalances: cashBalance,
           liquidationValue, equity, maintenanceRequirement (a short option: 20% of its
           strike per share), availableFunds = buyingPower = liquidation - requirement
    POST   /trader/v1/accounts/{hash}/orders           201, empty body, Location
           https://api.schwabapi.com/trader/v1/accounts/{hash}/orders/{id} (the exact form
           schwab-py's `Utils.extract_order_id` requires)
    GET    /trader/v1/accounts/{hash}/orders?fromEnteredTime=&toEnteredTime=[&status=]
    GET    /trader/v1/accounts/{hash}/orders/{id}
    DELETE /trader/v1/accounts/{hash}/orders/{id}      200; 400 if the order is final
    GET    /marketdata/v1/quotes?symbols=              options: quote.bidPrice, askPrice,
                                                       lastPrice, mark, quoteTime (ms)
    GET    /marketdata/v1/chains?symbol=&fromDate=&toDate=&contractType=&strikeCount=
           callExpDateMap / putExpDateMap keyed "YYYY-MM-DD:dte" then strike ("430.0");
           contracts carry bid/ask/last/mark/quoteTimeInLong (as the live service does)
    GET    /marketdata/v1/pricehistory                 1-minute candles from the QuoteBook
Every /trader and /marketdata call needs `Authorization: Bearer <live access token>` (401).

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
      turns WORKING into EXPIRED. Fills move positions and cash.

Faults (`SchwabFaults`; random draws come from `Faults.rng`, so a seed replays exactly):
    base.latency_s          delay before every answer
    base.error_rate         a 5xx instead of processing (nothing happens)
    rate limit              a 429 for every request past `rate_limit_per_min` (default 120,
                            or base.rate_limit_per_min) within base.rate_limit_window_s,
                            per app, on the stand-in's clock (every request counts, the
                            token endpoint too, except the browser's authorize page)
    throttle_rate           a random 429 (nothing happens)
    timeout_rate            the request is swallowed: the server sleeps `timeout_sleep_s`
                            (past the client timeout) and closes without answering
    drop_order_response_rate  POST /orders: the order IS created (and matched), then the
                            answer is lost, as a timeout or a 5xx (`drop_order_response_as`)
                            - the case that must never lead to a second order
    partial_fill_rate       probability that a fill is partial (see above)
OAuth endpoints only get random faults when `oauth_faults` is set; the rate limit always
applies. `inject(kind, method=..., path_contains=..., count=...)` scripts faults for the
next matching requests (checked before the random ones), for tests that need one exact
sequence: kinds "5xx", "throttle", "timeout", "drop_response_timeout", "drop_response_5xx"
(the last two only on POST .../orders).

Time comes from `clock.now()` (tz-aware; `alphagen_core.domain.clock`), so token ages, order
times and the rate-limit window follow a simulated session. Tests read `.orders`,
`.requests`, `.stats` and `max_requests_in_window()`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import hashlib
import json
import re
import secrets
import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from alphagen_core.domain.clock import NY, WallClock
from alphagen_core.domain.fills import marketable_price
from alphagen_core.domain.models import OptionContract, OptionQuote
from alphagen_core.domain.symbols import (
    OptionSymbolError,
    parse_schwab,
    polygon_to_schwab,
)
from alphagen_core.sim.faults import NO_FAULTS, SERVER_ERRORS, Faults

UPSTREAM = "https://api.schwabapi.com"
DEFAULT_RATE_LIMIT = 120
CODE_LIFETIME_S = 600.0
_REASONS = {
    200: "OK",
    201: "Created",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_INSTRUCTIONS = {"SELL_TO_OPEN", "BUY_TO_CLOSE", "BUY_TO_OPEN", "SELL_TO_CLOSE", "BUY", "SELL"}
_FINAL = {"FILLED", "CANCELED", "REJECTED", "EXPIRED"}


# ---- faults -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchwabFaults:
    base: Faults = NO_FAULTS
    throttle_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_sleep_s: float = 2.0
    drop_order_response_rate: float = 0.0
    drop_order_response_as: str = "mixed"  # "timeout" | "5xx" | "mixed"
    partial_fill_rate: float = 0.0
    oauth_faults: bool = False

    def __post_init__(self) -> None:
        rates = ("throttle_rate", "timeout_rate", "drop_order_response_rate", "partial_fill_rate")
        for name in rates:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SchwabFaults.{name} must be within [0, 1], got {value!r}")
        if self.timeout_sleep_s < 0:
            raise ValueError("SchwabFaults.timeout_sleep_s must not be negative")
        if self.drop_order_response_as not in ("timeout", "5xx", "mixed"):
            raise ValueError("SchwabFaults.drop_order_response_as: timeout, 5xx or mixed")

    @classmethod
    def of(cls, faults: Faults | SchwabFaults | None) -> SchwabFaults:
        if faults is None:
            return cls()
        if isinstance(faults, SchwabFaults):
            return faults
        return cls(base=faults)


# ---- quotes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BookQuote:
    symbol: str  # Schwab form for options, the ticker for equities
    bid: float
    ask: float
    last: float | None
    at: dt.datetime
    volume: float | None = None

    @property
    def mark(self) -> float:
        return round((self.bid + self.ask) / 2, 4)


@dataclass(frozen=True)
class Candle:
    start: dt.datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


def book_key(symbol: str) -> str:
    """Schwab form for an option (given in Polygon or Schwab form), upper-case ticker else."""
    if symbol.startswith("O:"):
        return polygon_to_schwab(symbol)
    if len(symbol) == 21:
        parse_schwab(symbol)
        return symbol
    if not symbol or not symbol.strip() or " " in symbol.strip():
        raise OptionSymbolError(symbol, "neither an option symbol nor a ticker")
    return symbol.strip().upper()


class QuoteBook:
    """The stand-in's current quotes (and minute candles), fed by tests or by a replay."""

    def __init__(self, clock: Any = None) -> None:
        self.clock = clock or WallClock()
        self._lock = threading.Lock()
        self._quotes: dict[str, BookQuote] = {}
        self._candles: dict[str, dict[dt.datetime, Candle]] = {}
        self._listeners: list[Callable[[str], None]] = []

    def subscribe(self, listener: Callable[[str], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def set_quote(
        self,
        symbol: str,
        bid: float,
        ask: float,
        last: float | None = None,
        *,
        at: dt.datetime | None = None,
        volume: float | None = None,
    ) -> None:
        key = book_key(symbol)
        if bid < 0 or ask < 0:
            raise ValueError("bid and ask must not be negative")
        quote = BookQuote(
            key,
            float(bid),
            float(ask),
            None if last is None else float(last),
            at or self.clock.now(),
            volume,
        )
        with self._lock:
            self._quotes[key] = quote
            listeners = list(self._listeners)
        for listener in listeners:
            listener(key)

    def load(self, quotes: Iterable[OptionQuote]) -> None:
        """Set every quote of an iterable of `OptionQuote`s (e.g. a minute slice)."""
        for q in quotes:
            self.set_quote(q.symbol, q.bid, q.ask, q.last, at=q.start, volume=q.volume)

    def get(self, symbol: str) -> BookQuote | None:
        try:
            key = book_key(symbol)
        except OptionSymbolError:
            return None
        with self._lock:
            return self._quotes.get(key)

    def options(self, root: str) -> list[tuple[OptionContract, BookQuote]]:
        with self._lock:
            items = list(self._quotes.items())
        result = []
        for key, quote in items:
            if len(key) != 21:
                continue
            contract = parse_schwab(key)
            if contract.root == root.upper():
                result.append((contract, quote))
        return result

    def add_candle(
        self,
        symbol: str,
        start: dt.datetime,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
    ) -> None:
        key = book_key(symbol)
        with self._lock:
            self._candles.setdefault(key, {})[start] = Candle(start, open, high, low, close, volume)

    def candles(self, symbol: str, start: dt.datetime, end: dt.datetime) -> list[Candle]:
        key = book_key(symbol)
        with self._lock:
            rows = list(self._candles.get(key, {}).values())
        return sorted((c for c in rows if start <= c.start <= end), key=lambda c: c.start)


# ---- orders, positions, request log -------------------------------------------------------


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


@dataclass
class _Position:
    symbol: str
    asset_type: str
    long_qty: int = 0
    short_qty: int = 0
    avg_long: float = 0.0
    avg_short: float = 0.0


@dataclass
class RequestRecord:
    at: float  # the stand-in clock's unix time at arrival
    method: str
    path: str
    app: str | None
    status: int | None = None
    fault: str | None = None
    forced_drop: str | None = None  # a scripted drop_response_* for this POST
    counted: bool = True  # against the rate limit (the browser's authorize page is not)


INJECTABLE = ("5xx", "throttle", "timeout", "drop_response_timeout", "drop_response_5xx")


@dataclass
class _Scripted:
    kind: str
    method: str | None
    path_contains: str | None
    remaining: int

    def matches(self, method: str, path: str) -> bool:
        if self.kind.startswith("drop_response") and not (
            method == "POST" and _ORDERS.match(path)
        ):
            return False
        return (self.method is None or self.method == method) and (
            self.path_contains is None or self.path_contains in path
        )


def _utc_text(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _describe(c: OptionContract) -> str:
    return f"{c.root} {c.expiry:%m/%d/%Y} {c.strike:g} {'Call' if c.right.value == 'C' else 'Put'}"


def _oauth_error(status: int, error: str, description: str) -> _Reply:
    return _Reply(status, {"error": error, "error_description": description})


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def _parse_query_time(text: str) -> dt.datetime | None:
    value = text.strip()
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            pass
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


class _Reply(Exception):
    """Raised inside a route to answer at once."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _error(status: int, message: str) -> _Reply:
    problem = {"status": str(status), "title": _REASONS.get(status, ""), "detail": message}
    return _Reply(status, {"message": message, "errors": [problem]})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections end eventually
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass  # the default writes every path (with account hashes) to stderr

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self.server.standin._dispatch(self, "GET")

    def do_POST(self) -> None:  # noqa: N802
        self.server.standin._dispatch(self, "POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self.server.standin._dispatch(self, "DELETE")

    def do_PUT(self) -> None:  # noqa: N802
        self.server.standin._dispatch(self, "PUT")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    standin: SchwabStandIn


_ACCOUNT = re.compile(r"^/trader/v1/accounts/([^/]+)$")
_ORDERS = re.compile(r"^/trader/v1/accounts/([^/]+)/orders$")
_ORDER = re.compile(r"^/trader/v1/accounts/([^/]+)/orders/(\d+)$")


class SchwabStandIn:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        app_key: str,
        app_secret: str,
        account_number: str,
        faults: Faults | SchwabFaults | None = None,
        quote_book: QuoteBook | None = None,
        clock: Any = None,
        callback_url: str | None = None,
        access_token_lifetime_s: float = 1800.0,
        refresh_token_max_age_s: float = 7 * 24 * 3600.0,
        rate_limit_per_min: int | None = DEFAULT_RATE_LIMIT,
        reject_unquoted: bool = True,
        starting_cash: float = 5_000_000.0,
        account_hash: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.app_key = app_key
        self.app_secret = app_secret
        self.account_number = str(account_number)
        self.account_hash = account_hash or hashlib.sha256(
            f"alphagen-standin:{account_number}".encode()
        ).hexdigest().upper()
        self.faults = SchwabFaults.of(faults)
        self.clock = clock or (quote_book.clock if quote_book else WallClock())
        self.quote_book = quote_book or QuoteBook(self.clock)
        self.callback_url = callback_url
        self.access_token_lifetime_s = float(access_token_lifetime_s)
        self.refresh_token_max_age_s = float(refresh_token_max_age_s)
        base_limit = self.faults.base.rate_limit_per_min
        self.rate_limit_per_min = base_limit if base_limit is not None else rate_limit_per_min
        self.rate_window_s = self.faults.base.rate_limit_window_s
        self.reject_unquoted = reject_unquoted
        self.cash = float(starting_cash)

        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._rng = self.faults.base.rng("schwab", "requests")
        self._order_rng = self.faults.base.rng("schwab", "orders")
        self._fill_rng = self.faults.base.rng("schwab", "fills")
        self._codes: dict[str, tuple[float, str, bool]] = {}  # code -> (issued, redirect, used)
        self._access: dict[str, tuple[str, float]] = {}  # token -> (app, expires at)
        self._refresh: dict[str, tuple[str, float]] = {}  # token -> (app, issued at)
        self._orders: dict[int, StandInOrder] = {}
        self._next_order_id = 1_000_000_001
        self._positions: dict[str, _Position] = {}
        self._requests: list[RequestRecord] = []
        self._arrivals: dict[str | None, deque[float]] = {}
        self._scripted: list[_Scripted] = []
        self._issued: list[str] = []  # every code and token handed out (for secret scans)
        self.stats: Counter[str] = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.quote_book.subscribe(self._on_quote)

    # -- lifecycle

    def start(self) -> SchwabStandIn:
        if self._server is not None:
            return self
        self._stop.clear()
        server = _Server((self.host, self.port), _Handler)
        server.standin = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"schwab-standin:{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SchwabStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- inspection and control (tests, simulations)

    @property
    def orders(self) -> list[StandInOrder]:
        """Every order the stand-in accepted (a deep copy), oldest first."""
        with self._lock:
            return [copy.deepcopy(o) for _, o in sorted(self._orders.items())]

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return [copy.copy(r) for r in self._requests]

    def max_requests_in_window(self, window_s: float | None = None, app: str | None = None) -> int:
        """The most rate-limited requests (all but the browser's authorize page) that arrived
        within any rolling window of the stand-in's clock."""
        window = self.rate_window_s if window_s is None else window_s
        times = sorted(
            r.at for r in self.requests if r.counted and (app is None or r.app == app)
        )
        best = 0
        lo = 0
        for hi, t in enumerate(times):
            while times[lo] <= t - window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def positions(self) -> dict[str, int]:
        """Net signed quantity per symbol (Schwab form for options)."""
        with self._lock:
            return {
                s: p.long_qty - p.short_qty
                for s, p in self._positions.items()
                if p.long_qty or p.short_qty
            }

    def set_position(self, symbol: str, quantity: int, avg_price: float) -> None:
        key = book_key(symbol)
        with self._lock:
            asset = "OPTION" if len(key) == 21 else "EQUITY"
            pos = _Position(key, asset)
            if quantity >= 0:
                pos.long_qty, pos.avg_long = quantity, avg_price
            else:
                pos.short_qty, pos.avg_short = -quantity, avg_price
            self._positions[key] = pos

    def inject(
        self,
        kind: str,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        count: int = 1,
    ) -> None:
        """Script `kind` for the next `count` requests matching method/path (in order)."""
        if kind not in INJECTABLE:
            raise ValueError(f"kind must be one of {INJECTABLE}")
        with self._lock:
            self._scripted.append(_Scripted(kind, method, path_contains, count))

    def issued_secrets(self) -> list[str]:
        """Every authorization code, access, refresh and id token issued so far."""
        with self._lock:
            return list(self._issued)

    def clear_injected(self) -> None:
        with self._lock:
            self._scripted.clear()

    def _take_scripted(self, method: str, path: str) -> str | None:
        for item in self._scripted:
            if item.remaining > 0 and item.matches(method, path):
                item.remaining -= 1
                return item.kind
        return None

    def revoke_access_tokens(self) -> None:
        """Forget every access token (the next API call answers 401)."""
        with self._lock:
            self._access.clear()

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

    # -- dispatch

    def _now(self) -> dt.datetime:
        return self.clock.now()

    def _dispatch(self, h: _Handler, method: str) -> None:
        arrival = self._now().timestamp()
        parts = urlsplit(h.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length > 0 else b""
        is_oauth = path.startswith("/v1/oauth/")
        app = self._app_of(h, query)
        record = RequestRecord(arrival, method, path, app, counted=path != "/v1/oauth/authorize")
        with self._lock:
            self._requests.append(record)
            limited = record.counted and self._count_arrival(app, arrival)
            u_throttle, u_error, u_timeout = (self._rng.random() for _ in range(3))
            error_code = self._rng.choice(SERVER_ERRORS)
            scripted = None if limited else self._take_scripted(method, path)
        faults = self.faults
        fault: str | None = None
        if limited:
            fault = "rate_limit"
        elif scripted is not None:
            if scripted.startswith("drop_response"):
                record.forced_drop = scripted
            else:
                fault = scripted
        elif not is_oauth or faults.oauth_faults:
            if u_throttle < faults.throttle_rate:
                fault = "throttle"
            elif u_error < faults.base.error_rate:
                fault = "5xx"
            elif u_timeout < faults.timeout_rate:
                fault = "timeout"
        if faults.base.latency_s:
            self._stop.wait(faults.base.latency_s)
        if fault is not None:
            record.fault = fault
            self.stats[f"fault_{fault}"] += 1
            if fault == "timeout":
                self._swallow(h)
                return
            if fault == "5xx":
                self._write(h, record, error_code, {"message": _REASONS[error_code]})
            else:
                self._write(h, record, 429, _error(429, "request rate exceeded").body)
            return
        try:
            reply = self._route(h, method, path, query, body, record)
        except _Reply as r:
            reply = r
        except Exception as exc:  # a bug here must not kill the server thread silently
            self.stats["internal_error"] += 1
            reply = _error(500, f"stand-in error: {type(exc).__name__}")
        if reply is None:
            return  # already handled (swallowed)
        self._write(h, record, reply.status, reply.body, reply.headers)

    def _app_of(self, h: _Handler, query: dict[str, str]) -> str | None:
        header = h.headers.get("Authorization") or ""
        if header.startswith("Bearer "):
            with self._lock:
                entry = self._access.get(header[7:].strip())
            return entry[0] if entry else None
        if header.startswith("Basic "):
            key, _ = self._basic(header)
            return key
        return query.get("client_id")

    def _count_arrival(self, app: str | None, arrival: float) -> bool:
        if self.rate_limit_per_min is None:
            return False
        window = self._arrivals.setdefault(app, deque())
        while window and window[0] <= arrival - self.rate_window_s:
            window.popleft()
        window.append(arrival)
        return len(window) > self.rate_limit_per_min

    def _swallow(self, h: _Handler) -> None:
        """Sleep past the client's timeout and hang up without an answer."""
        self._stop.wait(self.faults.timeout_sleep_s)
        h.close_connection = True

    def _write(
        self,
        h: _Handler,
        record: RequestRecord,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        record.status = status
        if body is None:
            payload = b""
        elif isinstance(body, bytes):
            payload = body
        else:
            payload = json.dumps(body).encode()
        try:
            h.send_response(status, _REASONS.get(status))
            h.send_header("Content-Length", str(len(payload)))
            if payload:
                h.send_header("Content-Type", "application/json")
            h.send_header("Schwab-Client-CorrelId", str(uuid.uuid4()))
            for name, value in (headers or {}).items():
                h.send_header(name, value)
            h.end_headers()
            if payload:
                h.wfile.write(payload)
            h.wfile.flush()
        except OSError:
            h.close_connection = True

    # -- routes

    def _route(
        self,
        h: _Handler,
        method: str,
        path: str,
        query: dict[str, str],
        body: bytes,
        record: RequestRecord,
    ) -> _Reply | None:
        if path == "/v1/oauth/authorize":
            self._require(method, "GET")
            return self._authorize(query)
        if path == "/v1/oauth/token":
            self._require(method, "POST")
            return self._token(h, body)
        if path.startswith("/trader/") or path.startswith("/marketdata/"):
            self._authenticate(h)
        else:
            raise _error(404, "no such endpoint")
        if path == "/trader/v1/accounts/accountNumbers":
            self._require(method, "GET")
            return _Reply(
                200, [{"accountNumber": self.account_number, "hashValue": self.account_hash}]
            )
        if path == "/trader/v1/accounts":
            self._require(method, "GET")
            return _Reply(200, [self._account_json("positions" in query.get("fields", ""))])
        if m := _ACCOUNT.match(path):
            self._require(method, "GET")
            self._check_hash(m.group(1))
            return _Reply(200, self._account_json("positions" in query.get("fields", "")))
        if m := _ORDERS.match(path):
            self._check_hash(m.group(1))
            if method == "POST":
                return self._place(h, body, record)
            self._require(method, "GET")
            return self._list_orders(query)
        if m := _ORDER.match(path):
            self._check_hash(m.group(1))
            order_id = int(m.group(2))
            if method == "GET":
                with self._lock:
                    order = self._orders.get(order_id)
                    if order is None:
                        raise _error(404, "order not found")
                    return _Reply(200, self._order_json(order))
            self._require(method, "DELETE")
            return self._cancel(order_id)
        if path == "/marketdata/v1/quotes":
            self._require(method, "GET")
            return self._quotes(query)
        if path == "/marketdata/v1/chains":
            self._require(method, "GET")
            return self._chains(query)
        if path == "/marketdata/v1/pricehistory":
            self._require(method, "GET")
            return self._price_history(query)
        raise _error(404, "no such endpoint")

    @staticmethod
    def _require(method: str, wanted: str) -> None:
        if method != wanted:
            raise _error(405, f"{method} not allowed here")

    def _check_hash(self, account_hash: str) -> None:
        if account_hash != self.account_hash:
            raise _error(404, "unknown account")

    # -- oauth

    def _basic(self, header: str) -> tuple[str | None, str | None]:
        try:
            decoded = base64.b64decode(header[6:].strip()).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        key, sep, secret = decoded.partition(":")
        return (key, secret) if sep else (None, None)

    def _authorize(self, query: dict[str, str]) -> _Reply:
        if query.get("client_id") != self.app_key:
            raise _Reply(400, {"error": "invalid_client", "error_description": "unknown client_id"})
        redirect = query.get("redirect_uri") or ""
        if not redirect or (self.callback_url is not None and redirect != self.callback_url):
            raise _oauth_error(400, "invalid_request", "redirect_uri mismatch")
        if query.get("response_type", "code") != "code":
            raise _Reply(400, {"error": "unsupported_response_type"})
        code = f"C0.{secrets.token_urlsafe(24)}@"
        with self._lock:
            self._codes[code] = (self._now().timestamp(), redirect, False)
            self._issued.append(code)
        params = {"code": code, "session": str(uuid.uuid4())}
        if "state" in query:
            params["state"] = query["state"]
        sep = "&" if "?" in redirect else "?"
        self.stats["authorize"] += 1
        return _Reply(302, None, {"Location": f"{redirect}{sep}{urlencode(params)}"})

    def _token(self, h: _Handler, body: bytes) -> _Reply:
        key, secret = self._basic(h.headers.get("Authorization") or "")
        if key != self.app_key or secret != self.app_secret:
            raise _oauth_error(401, "invalid_client", "bad client credentials")
        form = {k: v[-1] for k, v in parse_qs(body.decode(errors="replace")).items()}
        grant = form.get("grant_type")
        now = self._now().timestamp()
        with self._lock:
            if grant == "authorization_code":
                entry = self._codes.get(form.get("code", ""))
                if (
                    entry is None
                    or entry[2]
                    or now - entry[0] > CODE_LIFETIME_S
                    or form.get("redirect_uri", entry[1]) != entry[1]
                ):
                    raise _oauth_error(400, "invalid_grant", "bad or used authorization code")
                self._codes[form["code"]] = (entry[0], entry[1], True)
                refresh = f"R0.{secrets.token_urlsafe(32)}@"
                self._refresh[refresh] = (key, now)
                self.stats["token_code"] += 1
            elif grant == "refresh_token":
                refresh = form.get("refresh_token", "")
                entry = self._refresh.get(refresh)
                too_old = entry is not None and now - entry[1] >= self.refresh_token_max_age_s
                if entry is None or entry[0] != key or too_old:
                    self.stats["token_refresh_refused"] += 1
                    raise _oauth_error(400, "invalid_grant", "refresh token expired or unknown")
                self.stats["token_refresh"] += 1
            else:
                raise _Reply(400, {"error": "unsupported_grant_type"})
            access = f"I0.{secrets.token_urlsafe(32)}@"
            id_token = f"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.{secrets.token_urlsafe(48)}"
            self._access[access] = (key, now + self.access_token_lifetime_s)
            self._issued.extend((access, refresh, id_token))
        return _Reply(
            200,
            {
                "expires_in": int(self.access_token_lifetime_s),
                "token_type": "Bearer",
                "scope": "api",
                "refresh_token": refresh,
                "access_token": access,
                "id_token": id_token,
            },
        )

    def _authenticate(self, h: _Handler) -> None:
        header = h.headers.get("Authorization") or ""
        if not header.startswith("Bearer "):
            raise _error(401, "missing bearer token")
        with self._lock:
            entry = self._access.get(header[7:].strip())
        if entry is None or self._now().timestamp() >= entry[1]:
            raise _error(401, "access token invalid or expired")

    # -- accounts

    def _account_json(self, with_positions: bool) -> dict[str, Any]:
        with self._lock:
            positions = [
                self._position_json(p)
                for p in self._positions.values()
                if p.long_qty or p.short_qty
            ]
            cash = self.cash
            requirement = sum(self._maintenance(p) for p in self._positions.values())
        market = sum(p["marketValue"] for p in positions)
        liquidation = cash + market
        available = round(max(liquidation - requirement, 0.0), 2)
        account: dict[str, Any] = {
            "type": "MARGIN",
            "accountNumber": self.account_number,
            "roundTrips": 0,
            "isDayTrader": False,
            "isClosingOnlyRestricted": False,
            "pfcbFlag": False,
            "initialBalances": {"cashBalance": cash, "liquidationValue": cash + market},
            "currentBalances": {
                "cashBalance": cash, "liquidationValue": liquidation, "equity": liquidation,
                "maintenanceRequirement": round(requirement, 2), "availableFunds": available,
                "buyingPower": available,
            },
            "projectedBalances": {"cashBalance": cash},
        }
        if with_positions:
            account["positions"] = positions
        return {
            "securitiesAccount": account,
            "aggregatedBalance": {
                "currentLiquidationValue": cash + market,
                "liquidationValue": cash + market,
            },
        }

    @staticmethod
    def _maintenance(p: _Position) -> float:
        """A short option's requirement, simplified to 20% of the strike per share: the
        stand-in knows no underlying price (the real rule is `risk.naked_margin_per_contract`)."""
        if p.asset_type != "OPTION" or not p.short_qty:
            return 0.0
        return p.short_qty * 100 * 0.20 * parse_schwab(p.symbol).strike

    def _position_json(self, p: _Position) -> dict[str, Any]:
        quote = self.quote_book.get(p.symbol)
        multiplier = 100 if p.asset_type == "OPTION" else 1
        net = p.long_qty - p.short_qty
        if quote is not None:
            mark = quote.mark
        else:
            mark = p.avg_short if net < 0 else p.avg_long
        instrument: dict[str, Any] = {"assetType": p.asset_type, "symbol": p.symbol}
        if p.asset_type == "OPTION":
            contract = parse_schwab(p.symbol)
            instrument.update(
                {
                    "cusip": "0" + p.symbol.replace(" ", "")[:8],
                    "description": _describe(contract),
                    "type": "VANILLA",
                    "putCall": "CALL" if contract.right.value == "C" else "PUT",
                    "underlyingSymbol": contract.root,
                }
            )
        average = p.avg_short if net < 0 else p.avg_long
        return {
            "shortQuantity": float(p.short_qty),
            "averagePrice": round(average, 4),
            "longQuantity": float(p.long_qty),
            "settledLongQuantity": 0.0,
            "settledShortQuantity": 0.0,
            "averageLongPrice": round(p.avg_long, 4),
            "averageShortPrice": round(p.avg_short, 4),
            "instrument": instrument,
            "marketValue": round(net * mark * multiplier, 2),
            "currentDayProfitLoss": 0.0,
        }

    # -- orders

    def _place(self, h: _Handler, body: bytes, record: RequestRecord) -> _Reply | None:
        try:
            spec = json.loads(body or b"null")
        except ValueError:
            raise _error(400, "order body is not JSON") from None
        order = self._new_order(spec)
        with self._lock:
            self._orders[order.order_id] = order
            self.stats["orders"] += 1
            self._match(order)
            drop = self._order_rng.random() < self.faults.drop_order_response_rate
            as_timeout = self._order_rng.random() < 0.5
            error_code = self._order_rng.choice(SERVER_ERRORS)
        location = f"{UPSTREAM}/trader/v1/accounts/{self.account_hash}/orders/{order.order_id}"
        mode = self.faults.drop_order_response_as
        if record.forced_drop is not None:
            drop = True
            mode = "timeout" if record.forced_drop == "drop_response_timeout" else "5xx"
        if drop:
            record.fault = "drop_order_response"
            self.stats["fault_drop_order_response"] += 1
            if mode == "timeout" or (mode == "mixed" and as_timeout):
                self._swallow(h)
                return None
            record.status = error_code
            return _Reply(error_code, {"message": _REASONS[error_code]})
        return _Reply(201, None, {"Location": location})

    def _new_order(self, spec: Any) -> StandInOrder:
        if not isinstance(spec, dict):
            raise _error(400, "order must be a JSON object")
        order_type = spec.get("orderType")
        if order_type not in ("LIMIT", "MARKET"):
            raise _error(400, "the stand-in takes LIMIT and MARKET orders only")
        if spec.get("orderStrategyType", "SINGLE") != "SINGLE":
            raise _error(400, "the stand-in takes SINGLE orders only")
        if spec.get("session") not in ("NORMAL", None) or spec.get("duration") not in ("DAY", None):
            raise _error(400, "the stand-in takes NORMAL session DAY orders only")
        legs = spec.get("orderLegCollection")
        if not isinstance(legs, list) or len(legs) != 1 or not isinstance(legs[0], dict):
            raise _error(400, "exactly one order leg is required")
        leg = legs[0]
        instruction = leg.get("instruction")
        if instruction not in _INSTRUCTIONS:
            raise _error(400, "unknown instruction")
        quantity = leg.get("quantity")
        if (
            isinstance(quantity, bool)
            or not isinstance(quantity, int | float)
            or quantity <= 0
            or int(quantity) != quantity
        ):
            raise _error(400, "quantity must be a positive whole number")
        instrument = leg.get("instrument") or {}
        asset = instrument.get("assetType")
        symbol = instrument.get("symbol")
        if asset not in ("OPTION", "EQUITY") or not isinstance(symbol, str):
            raise _error(400, "instrument needs assetType OPTION or EQUITY and a symbol")
        if asset == "OPTION":
            try:
                parse_schwab(symbol)
            except OptionSymbolError:
                raise _error(400, "invalid option symbol") from None
        price: float | None = None
        if order_type == "LIMIT":
            try:
                price = float(spec.get("price"))
            except (TypeError, ValueError):
                raise _error(400, "a LIMIT order needs a numeric price") from None
            if not price > 0:
                raise _error(400, "price must be positive")
        with self._lock:
            order_id = self._next_order_id
            self._next_order_id += 1
        order = StandInOrder(
            order_id=order_id,
            entered_at=self._now(),
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

    def _on_quote(self, key: str) -> None:
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
        if remaining > 1 and self._fill_rng.random() < self.faults.partial_fill_rate:
            quantity = max(1, remaining // 2)
            self.stats["partial_fills"] += 1
        now = self._now()
        order.fills.append(StandInFill(round(price, 4), quantity, now))
        self._apply_fill(order, price, quantity)
        if order.remaining_quantity == 0:
            order.status = "FILLED"
            order.close_time = now

    def _apply_fill(self, order: StandInOrder, price: float, quantity: int) -> None:
        pos = self._positions.get(order.symbol)
        if pos is None:
            pos = self._positions[order.symbol] = _Position(order.symbol, order.asset_type)
        multiplier = 100 if order.asset_type == "OPTION" else 1
        instruction = order.instruction
        if instruction in ("SELL_TO_OPEN",) or (instruction == "SELL" and pos.long_qty == 0):
            total = pos.short_qty + quantity
            pos.avg_short = (pos.avg_short * pos.short_qty + price * quantity) / total
            pos.short_qty = total
        elif instruction in ("BUY_TO_OPEN",) or (instruction == "BUY" and pos.short_qty == 0):
            total = pos.long_qty + quantity
            pos.avg_long = (pos.avg_long * pos.long_qty + price * quantity) / total
            pos.long_qty = total
        elif instruction.startswith("BUY"):  # BUY_TO_CLOSE
            pos.short_qty = max(pos.short_qty - quantity, 0)
            if pos.short_qty == 0:
                pos.avg_short = 0.0
        else:  # SELL_TO_CLOSE
            pos.long_qty = max(pos.long_qty - quantity, 0)
            if pos.long_qty == 0:
                pos.avg_long = 0.0
        sign = 1 if instruction.startswith("SELL") else -1
        self.cash += sign * price * quantity * multiplier

    def _cancel(self, order_id: int) -> _Reply:
        with self._lock:
            order = self._orders.get(order_id)
            if order is None:
                raise _error(404, "order not found")
            if order.status in _FINAL:
                raise _error(400, f"order is {order.status} and cannot be canceled")
            order.status = "CANCELED"
            order.close_time = self._now()
        return _Reply(200, None)

    def _list_orders(self, query: dict[str, str]) -> _Reply:
        start = _parse_query_time(query.get("fromEnteredTime", ""))
        end = _parse_query_time(query.get("toEnteredTime", ""))
        if start is None or end is None:
            raise _error(400, "fromEnteredTime and toEnteredTime are required (ISO-8601)")
        status = query.get("status")
        try:
            limit = int(query.get("maxResults") or 3000)
        except ValueError:
            raise _error(400, "maxResults must be a number") from None
        with self._lock:
            rows = [
                self._order_json(o)
                for o in sorted(self._orders.values(), key=lambda o: o.order_id, reverse=True)
                if start <= o.entered_at <= end and (status is None or o.status == status)
            ]
        return _Reply(200, rows[:limit])

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
                            "time": _utc_text(fill.at),
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
            "enteredTime": _utc_text(o.entered_at),
            "tag": "API_TDAM:alphagen",
            "accountNumber": (
                int(self.account_number) if self.account_number.isdigit() else self.account_number
            ),
        }
        if o.price is not None:
            row["price"] = o.price
        if o.close_time is not None:
            row["closeTime"] = _utc_text(o.close_time)
        if o.status_description:
            row["statusDescription"] = o.status_description
        if activities:
            row["orderActivityCollection"] = activities
        return row

    # -- market data

    def _quotes(self, query: dict[str, str]) -> _Reply:
        raw = query.get("symbols")
        if not raw:
            raise _error(400, "symbols is required")
        result: dict[str, Any] = {}
        invalid: list[str] = []
        for symbol in (s for s in raw.split(",") if s):
            quote = self.quote_book.get(symbol)
            if quote is None:
                invalid.append(symbol)
                continue
            result[symbol] = self._quote_json(quote)
        if invalid:
            result["errors"] = {"invalidSymbols": invalid}
        return _Reply(200, result)

    def _quote_json(self, q: BookQuote) -> dict[str, Any]:
        data: dict[str, Any] = {
            "bidPrice": q.bid,
            "askPrice": q.ask,
            "lastPrice": q.last if q.last is not None else q.mark,
            "mark": q.mark,
            "bidSize": 10,
            "askSize": 10,
            "quoteTime": _ms(q.at),
            "tradeTime": _ms(q.at),
            "totalVolume": int(q.volume or 0),
            "securityStatus": "Normal",
        }
        if len(q.symbol) != 21:
            return {
                "assetMainType": "EQUITY",
                "symbol": q.symbol,
                "realtime": True,
                "quote": data,
                "reference": {"description": q.symbol, "exchange": "Q", "exchangeName": "NASDAQ"},
            }
        contract = parse_schwab(q.symbol)
        underlying = self.quote_book.get(contract.root)
        if underlying is not None:
            data["underlyingPrice"] = (
                underlying.last if underlying.last is not None else underlying.mark
            )
        data["openInterest"] = 0
        return {
            "assetMainType": "OPTION",
            "symbol": q.symbol,
            "realtime": True,
            "quote": data,
            "reference": {
                "contractType": contract.right.value,
                "daysToExpiration": (contract.expiry - self._now().date()).days,
                "description": _describe(contract),
                "exchange": "o",
                "exchangeName": "OPR",
                "expirationDay": contract.expiry.day,
                "expirationMonth": contract.expiry.month,
                "expirationYear": contract.expiry.year,
                "isPennyPilot": True,
                "multiplier": 100,
                "settlementType": "P",
                "strikePrice": contract.strike,
                "underlying": contract.root,
            },
        }

    def _chains(self, query: dict[str, str]) -> _Reply:
        symbol = (query.get("symbol") or "").upper()
        if not symbol:
            raise _error(400, "symbol is required")
        kind = (query.get("contractType") or "ALL").upper()
        try:
            start = dt.date.fromisoformat(query["fromDate"]) if query.get("fromDate") else None
            end = dt.date.fromisoformat(query["toDate"]) if query.get("toDate") else None
            strike_count = int(query["strikeCount"]) if query.get("strikeCount") else None
        except ValueError:
            raise _error(400, "bad fromDate/toDate/strikeCount") from None
        underlying = self.quote_book.get(symbol)
        underlying_price = None
        if underlying is not None:
            underlying_price = underlying.last if underlying.last is not None else underlying.mark
        rows = [
            (c, q)
            for c, q in self.quote_book.options(symbol)
            if (start is None or c.expiry >= start)
            and (end is None or c.expiry <= end)
            and (kind == "ALL" or (kind == "CALL") == (c.right.value == "C"))
        ]
        if strike_count and underlying_price is not None:
            strikes = sorted(
                {c.strike for c, _ in rows}, key=lambda s: (abs(s - underlying_price), s)
            )
            keep = set(strikes[:strike_count])
            rows = [(c, q) for c, q in rows if c.strike in keep]
        today = self._now().date()
        maps: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {"C": {}, "P": {}}
        for contract, quote in sorted(rows, key=lambda r: (r[0].expiry, r[0].strike)):
            dte = (contract.expiry - today).days
            exp_key = f"{contract.expiry.isoformat()}:{dte}"
            strike_key = str(float(contract.strike))
            maps[contract.right.value].setdefault(exp_key, {}).setdefault(strike_key, []).append(
                {
                    "putCall": "CALL" if contract.right.value == "C" else "PUT",
                    "symbol": quote.symbol,
                    "description": _describe(contract),
                    "exchangeName": "OPR",
                    "bid": quote.bid,
                    "ask": quote.ask,
                    "last": quote.last if quote.last is not None else quote.mark,
                    "mark": quote.mark,
                    "bidSize": 10,
                    "askSize": 10,
                    "totalVolume": int(quote.volume or 0),
                    "quoteTimeInLong": _ms(quote.at),
                    "tradeTimeInLong": _ms(quote.at),
                    "strikePrice": contract.strike,
                    "expirationDate": _utc_text(
                        dt.datetime.combine(contract.expiry, dt.time(16, 0), tzinfo=NY)
                    ),
                    "daysToExpiration": dte,
                    "expirationType": "W",
                    "settlementType": "P",
                    "multiplier": 100.0,
                    "isPennyPilot": True,
                    "optionRoot": contract.root,
                }
            )
        return _Reply(
            200,
            {
                "symbol": symbol,
                "status": "SUCCESS" if rows else "FAILED",
                "strategy": "SINGLE",
                "interval": 0.0,
                "isDelayed": False,
                "isIndex": False,
                "interestRate": 4.5,
                "underlyingPrice": underlying_price,
                "volatility": 29.0,
                "daysToExpiration": 0.0,
                "numberOfContracts": len(rows),
                "assetMainType": "OPTION",
                "callExpDateMap": maps["C"],
                "putExpDateMap": maps["P"],
            },
        )

    def _price_history(self, query: dict[str, str]) -> _Reply:
        symbol = (query.get("symbol") or "").upper()
        if not symbol:
            raise _error(400, "symbol is required")
        if query.get("frequencyType", "minute") != "minute" or query.get("frequency", "1") != "1":
            raise _error(400, "the stand-in serves 1-minute candles only")
        now = self._now()
        try:
            start_ms = int(query.get("startDate") or _ms(now - dt.timedelta(days=1)))
            end_ms = int(query.get("endDate") or _ms(now))
        except ValueError:
            raise _error(400, "startDate/endDate must be epoch milliseconds") from None
        start = dt.datetime.fromtimestamp(start_ms / 1000, tz=NY)
        end = dt.datetime.fromtimestamp(end_ms / 1000, tz=NY)
        extended = query.get("needExtendedHoursData", "false").lower() == "true"
        candles = [
            c
            for c in self.quote_book.candles(symbol, start, end)
            if extended or dt.time(9, 30) <= c.start.astimezone(NY).time() < dt.time(16, 0)
        ]
        return _Reply(
            200,
            {
                "symbol": symbol,
                "empty": not candles,
                "candles": [
                    {
                        "open": c.open,
                        "high": c.high,
                        "low": c.low,
                        "close": c.close,
                        "volume": c.volume,
                        "datetime": _ms(c.start),
                    }
                    for c in candles
                ],
            },
        )
