"""`SchwabStandIn`: a local stand-in for Schwab (OAuth, Trader API, market data) on loopback.

It speaks the documented wire formats closely enough that schwab-py's client works against
it unchanged (routed here by `alphagen_core.adapters.schwab.client.SchwabTransport`), so the
Schwab adapters are tested over real sockets and a whole accelerated session can run on one
machine without credentials. Stdlib only (threaded `http.server`).

This module serves HTTP and routes each request; the endpoints and their rules are in
`oauth`, `accounts`, `orders` and `market_data`, the faults in `faults`.

Time comes from `clock.now()` (tz-aware; `alphagen_core.domain.clock`), so token ages, order
times and the rate-limit window follow a simulated session. Tests read `.orders`,
`.requests`, `.stats` and `max_requests_in_window()`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from alphagen_core.domain.clock import WallClock
from alphagen_core.sim.faults import SERVER_ERRORS, Faults
from alphagen_core.sim.schwab.accounts import Account
from alphagen_core.sim.schwab.faults import (
    DEFAULT_RATE_LIMIT,
    RequestFaults,
    RequestRecord,
    SchwabFaults,
)
from alphagen_core.sim.schwab.market_data import MarketDataEndpoints
from alphagen_core.sim.schwab.oauth import OAuthServer
from alphagen_core.sim.schwab.orders import OrderBook, StandInOrder
from alphagen_core.sim.schwab.quote_book import QuoteBook
from alphagen_core.sim.schwab.wire import (
    ACCOUNT_PATH,
    ORDER_PATH,
    ORDERS_PATH,
    REASONS,
    UPSTREAM,
    Reply,
    error,
)


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
        self.stats: Counter[str] = Counter()

        self._lock = threading.RLock()  # one lock for all the stand-in's state
        self._stop = threading.Event()
        base_limit = self.faults.base.rate_limit_per_min
        self.request_faults = RequestFaults(
            self._lock,
            self.faults.base.rng("schwab", "requests"),
            base_limit if base_limit is not None else rate_limit_per_min,
            self.faults.base.rate_limit_window_s,
        )
        self._order_rng = self.faults.base.rng("schwab", "orders")
        self.oauth = OAuthServer(
            app_key, app_secret, clock=self.clock, lock=self._lock, stats=self.stats,
            callback_url=callback_url, access_token_lifetime_s=access_token_lifetime_s,
            refresh_token_max_age_s=refresh_token_max_age_s,
        )
        self.account = Account(self.account_number, starting_cash, self.quote_book, self._lock)
        self.order_book = OrderBook(
            self.account, self.quote_book, clock=self.clock, lock=self._lock, stats=self.stats,
            fill_rng=self.faults.base.rng("schwab", "fills"), faults=lambda: self.faults,
            reject_unquoted=reject_unquoted,
        )
        self.market_data = MarketDataEndpoints(self.quote_book, self.clock)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.quote_book.subscribe(self.order_book.on_quote)

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
        return self.order_book.orders

    @property
    def requests(self) -> list[RequestRecord]:
        return self.request_faults.requests

    def max_requests_in_window(self, window_s: float | None = None, app: str | None = None) -> int:
        return self.request_faults.max_requests_in_window(window_s, app)

    def positions(self) -> dict[str, int]:
        """Net signed quantity per symbol (Schwab form for options)."""
        return self.account.positions()

    def set_position(self, symbol: str, quantity: int, avg_price: float) -> None:
        self.account.set_position(symbol, quantity, avg_price)

    def inject(self, kind: str, **match: Any) -> None:
        """Script `kind` for the next requests that match (`RequestFaults.inject`: method,
        path_contains, count)."""
        self.request_faults.inject(kind, **match)

    def clear_injected(self) -> None:
        self.request_faults.clear_injected()

    def issued_secrets(self) -> list[str]:
        """Every authorization code, access, refresh and id token issued so far."""
        return self.oauth.issued_secrets()

    def revoke_access_tokens(self) -> None:
        """Forget every access token (the next API call answers 401)."""
        self.oauth.revoke_access_tokens()

    def match_orders(self) -> None:
        self.order_book.match_orders()

    def expire_day_orders(self) -> None:
        self.order_book.expire_day_orders()

    # -- dispatch

    def _dispatch(self, h: _Handler, method: str) -> None:
        arrival = self.clock.now().timestamp()
        parts = urlsplit(h.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length > 0 else b""
        is_oauth = path.startswith("/v1/oauth/")
        app = self.oauth.app_of(h.headers.get("Authorization") or "", query)
        record = RequestRecord(arrival, method, path, app, counted=path != "/v1/oauth/authorize")
        faults = self.faults
        fault, error_code = self.request_faults.fault_for(record, faults, is_oauth)
        if faults.base.latency_s:
            self._stop.wait(faults.base.latency_s)
        if fault is not None:
            record.fault = fault
            self.stats[f"fault_{fault}"] += 1
            if fault == "timeout":
                self._swallow(h)
                return
            if fault == "5xx":
                self._write(h, record, error_code, {"message": REASONS[error_code]})
            else:
                self._write(h, record, 429, error(429, "request rate exceeded").body)
            return
        try:
            reply = self._route(h, method, path, query, body, record)
        except Reply as r:
            reply = r
        except Exception as exc:  # a bug here must not kill the server thread silently
            self.stats["internal_error"] += 1
            reply = error(500, f"stand-in error: {type(exc).__name__}")
        if reply is None:
            return  # already handled (swallowed)
        self._write(h, record, reply.status, reply.body, reply.headers)

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
            h.send_response(status, REASONS.get(status))
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
    ) -> Reply | None:
        authorization = h.headers.get("Authorization") or ""
        if path == "/v1/oauth/authorize":
            self._require(method, "GET")
            return self.oauth.authorize(query)
        if path == "/v1/oauth/token":
            self._require(method, "POST")
            return self.oauth.token(authorization, body)
        if path.startswith("/trader/") or path.startswith("/marketdata/"):
            self.oauth.authenticate(authorization)
        else:
            raise error(404, "no such endpoint")
        if path == "/trader/v1/accounts/accountNumbers":
            self._require(method, "GET")
            return Reply(
                200, [{"accountNumber": self.account_number, "hashValue": self.account_hash}]
            )
        if path == "/trader/v1/accounts":
            self._require(method, "GET")
            return Reply(200, [self.account.account_json("positions" in query.get("fields", ""))])
        if m := ACCOUNT_PATH.match(path):
            self._require(method, "GET")
            self._check_hash(m.group(1))
            return Reply(200, self.account.account_json("positions" in query.get("fields", "")))
        if m := ORDERS_PATH.match(path):
            self._check_hash(m.group(1))
            if method == "POST":
                return self._place(h, body, record)
            self._require(method, "GET")
            return self.order_book.list_orders(query)
        if m := ORDER_PATH.match(path):
            self._check_hash(m.group(1))
            order_id = int(m.group(2))
            if method == "GET":
                return self.order_book.order(order_id)
            self._require(method, "DELETE")
            return self.order_book.cancel(order_id)
        if path == "/marketdata/v1/quotes":
            self._require(method, "GET")
            return self.market_data.quotes(query)
        if path == "/marketdata/v1/chains":
            self._require(method, "GET")
            return self.market_data.chains(query)
        if path == "/marketdata/v1/pricehistory":
            self._require(method, "GET")
            return self.market_data.price_history(query)
        raise error(404, "no such endpoint")

    @staticmethod
    def _require(method: str, wanted: str) -> None:
        if method != wanted:
            raise error(405, f"{method} not allowed here")

    def _check_hash(self, account_hash: str) -> None:
        if account_hash != self.account_hash:
            raise error(404, "unknown account")

    def _place(self, h: _Handler, body: bytes, record: RequestRecord) -> Reply | None:
        """POST an order: the order is created and matched, then its answer may be lost
        (`SchwabFaults.drop_order_response_rate`, or a scripted drop_response_*)."""
        try:
            spec = json.loads(body or b"null")
        except ValueError:
            raise error(400, "order body is not JSON") from None
        order = self.order_book.new_order(spec)
        with self._lock:
            self.order_book.add(order)
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
            return Reply(error_code, {"message": REASONS[error_code]})
        return Reply(201, None, {"Location": location})
