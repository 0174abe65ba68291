"""The Polygon stand-in's REST API (stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive)::

    GET /v2/aggs/ticker/{T}/range/1/minute/{from}/{to}   T: the underlying or an option ticker;
                                                          from/to: YYYY-MM-DD or unix ms
        ?adjusted=&sort=asc|desc&limit=(default 5000, max 50000)
        -> {"ticker", "status": "OK", "adjusted", "queryCount", "resultsCount", "count",
            "request_id", "results": [{v, vw, o, c, h, l, t, n}], "next_url"?}
    GET /v3/snapshot/options/{underlying}
        ?expiration_date[.gte|.gt|.lte|.lt]=&strike_price[.gte|.gt|.lte|.lt]=
        &contract_type=call|put&sort=ticker|expiration_date|strike_price&order=asc|desc
        &limit=(default 10, max 250)&cursor=   -> {"status", "request_id", "results", "next_url"?}
    GET /v3/snapshot/options/{underlying}/{contract}  -> {"status", "request_id", "results": {}}
    GET /v1/marketstatus/now   -> {"market": open|extended-hours|closed, "serverTime", "earlyHours",
        "afterHours", "exchanges"} on the sim clock

    Authorization: ``Authorization: Bearer KEY`` or ``?apiKey=KEY``, else 401 with Polygon's
    body ``{"status": "ERROR", "request_id": ..., "error": "Unknown API Key"}``.

No look-ahead: a bar is served only once its window has ended on the sim clock
(``start + 1 min <= now``). A snapshot's ``last_quote`` is the latest made-up quote
(`quotes`) at or before now; its ``day`` aggregates the contract's ended bars;
``underlying_asset.price`` is the underlying's last ended close.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import collections
import contextlib
import datetime as dt
import json
import logging
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from alphagen_core.domain.clock import NY
from alphagen_core.operations.redaction import REDACTOR
from alphagen_core.sim.faults import SERVER_ERRORS
from alphagen_core.sim.polygon.day_index import MINUTE_MS, Contract, Day, Series
from alphagen_core.sim.polygon.quotes import OPTION_EXCHANGE, bid_ask, quote_path
from alphagen_core.sim.polygon.served import ServedMarket

log = logging.getLogger(__name__)

_AGGS = re.compile(r"^/v2/aggs/ticker/([^/]+)/range/(\d+)/([a-z]+)/([^/]+)/([^/]+)/?$")
_CHAIN = re.compile(r"^/v3/snapshot/options/([^/]+)/?$")
_CONTRACT = re.compile(r"^/v3/snapshot/options/([^/]+)/([^/]+)/?$")
_MARKET_STATUS = "/v1/marketstatus/now"
_RANGE_OPS = ("gte", "gt", "lte", "lt")


class _HTTPError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _parse_bound(text: str, *, end: bool) -> int:
    """An aggregates from/to: unix ms, or a date (whole NY day, inclusive)."""
    text = unquote(text)
    if text.isdigit():
        return int(text)
    try:
        d = dt.date.fromisoformat(text)
    except ValueError:
        raise _HTTPError(400, {"status": "ERROR", "error": f"invalid date {text!r}"}) from None
    if end:
        d = d + dt.timedelta(days=1)
    ms = int(dt.datetime.combine(d, dt.time(0), tzinfo=NY).timestamp() * 1000)
    return ms - 1 if end else ms


def _int_param(q: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    if name not in q:
        return default
    try:
        value = int(q[name])
    except ValueError:
        raise _HTTPError(400, {"status": "ERROR", "error": f"invalid {name}"}) from None
    return max(lo, min(hi, value))


class RestServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: RestApi) -> None:
        self.api = api
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("polygon stand-in: connection error from %s", client_address, exc_info=True)

    def close_open_sockets(self) -> None:
        """Cut the kept-alive connections, so that their handler threads end."""
        with self.sockets_lock:
            for sock in list(self.open_sockets):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    server: RestServer

    def setup(self) -> None:
        super().setup()
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        with self.server.sockets_lock:
            self.server.open_sockets.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:  # noqa: N802
        self.server.api.handle(self)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("polygon stand-in rest: %s", REDACTOR.redact(format % args))


class RestApi:
    """Answers the REST requests from ``served``, with its faults (latency, 5xx, rate
    limit). ``base_url`` gives the server's address for ``next_url`` links."""

    def __init__(self, served: ServedMarket, base_url: Callable[[], str]) -> None:
        self.served = served
        self._base_url = base_url
        self._lock = threading.Lock()
        self._rest_rng: random.Random = served.faults.rng("rest")
        self._admitted: collections.deque[float] = collections.deque()
        self._request_no = 0

    def _next_request_id(self) -> str:
        with self._lock:
            self._request_no += 1
            return f"sim{self._request_no:08x}"

    def handle(self, h: _Handler) -> None:
        request_id = self._next_request_id()
        try:
            status, body = self._route(h, request_id)
        except _HTTPError as exc:
            status, body = exc.status, exc.body
        except Exception:  # noqa: BLE001 - a bug in the stand-in answers 500, like a server
            log.exception("polygon stand-in: error answering a request")
            status, body = 500, {"status": "ERROR", "error": "Internal server error"}
        body.setdefault("request_id", request_id)
        payload = json.dumps(body, separators=(",", ":")).encode()
        self.served.stats[f"http_{status}"] += 1
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
        except OSError:
            h.close_connection = True

    def _route(self, h: _Handler, request_id: str) -> tuple[int, dict[str, Any]]:
        parts = urlsplit(h.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        f = self.served.faults
        if f.latency_s > 0:
            time.sleep(f.latency_s)
        auth = h.headers.get("Authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else query.pop("apiKey", "")
        query.pop("apiKey", None)
        if not key:
            raise _HTTPError(401, {"status": "ERROR", "error": "API Key was not provided"})
        if key != self.served.api_key:
            REDACTOR.add(key)
            raise _HTTPError(401, {"status": "ERROR", "error": "Unknown API Key"})
        with self._lock:
            if f.rate_limit_per_min is not None:
                now = time.monotonic()
                while self._admitted and now - self._admitted[0] >= f.rate_limit_window_s:
                    self._admitted.popleft()
                if len(self._admitted) >= f.rate_limit_per_min:
                    raise _HTTPError(429, {
                        "status": "ERROR",
                        "error": "You've exceeded the maximum requests per minute, please wait "
                        "or upgrade your subscription to continue.",
                    })
                self._admitted.append(now)
            error = f.error_rate > 0 and self._rest_rng.random() < f.error_rate
            error_status = self._rest_rng.choice(SERVER_ERRORS) if error else 0
        if error:
            raise _HTTPError(error_status, {"status": "ERROR", "error": "Internal server error"})

        path = unquote(parts.path)
        if m := _AGGS.match(path):
            return 200, self._aggs(m.group(1), m.group(2), m.group(3), m.group(4), m.group(5), query)
        if m := _CHAIN.match(path):
            return 200, self._chain(m.group(1), query)
        if m := _CONTRACT.match(path):
            return self._contract(m.group(1), m.group(2))
        if path.rstrip("/") == _MARKET_STATUS:
            return 200, self._market_status()
        raise _HTTPError(404, {"status": "NOT_FOUND", "message": "Not found"})

    def _series(self, ticker: str, date: dt.date) -> Series | None:
        day = self.served.data.get(date)
        if day is None:
            return None
        return (day.options if ticker.startswith("O:") else day.equity).get(ticker)

    def _aggs(self, ticker: str, mult: str, span: str, frm: str, to: str, q: dict[str, str]) -> dict[str, Any]:
        if mult != "1" or span != "minute":
            raise _HTTPError(400, {"status": "ERROR", "error": "the stand-in serves 1/minute aggregates only"})
        lo, hi = _parse_bound(frm, end=False), _parse_bound(to, end=True)
        limit = _int_param(q, "limit", 5000, 1, 50000)
        desc = q.get("sort", "asc").lower() == "desc"
        now_ms = self.served.now_ms()
        hi_ended = min(hi, now_ms - MINUTE_MS)  # no look-ahead: only bars whose window ended
        results: list[dict[str, Any]] = []
        if hi_ended >= lo:
            first = dt.datetime.fromtimestamp(lo / 1000, NY).date()
            last = dt.datetime.fromtimestamp(hi_ended / 1000, NY).date()
            if (last - first).days > 366:
                first = last - dt.timedelta(days=366)
            d = first
            while d <= last:
                series = self._series(ticker, d)
                if series is not None:
                    i = bisect.bisect_left(series.starts, lo)
                    j = bisect.bisect_right(series.starts, hi_ended)
                    results.extend(b.rest() for b in series.bars[i:j])
                d += dt.timedelta(days=1)
        if desc:
            results.reverse()
        body: dict[str, Any] = {"ticker": ticker, "adjusted": q.get("adjusted", "true") != "false"}
        if len(results) > limit:
            results = results[:limit]
            if desc:
                nxt_from, nxt_to = lo, results[-1]["t"] - 1
            else:
                nxt_from, nxt_to = results[-1]["t"] + 1, hi
            params = {k: v for k, v in q.items() if k in ("adjusted", "sort", "limit")}
            body["next_url"] = (
                f"{self._base_url()}/v2/aggs/ticker/{ticker}/range/1/minute/{nxt_from}/{nxt_to}"
                + (f"?{urlencode(params)}" if params else "")
            )
        body.update({
            "queryCount": len(results), "resultsCount": len(results), "count": len(results),
            "status": "OK", "results": results,
        })
        return body

    # snapshots

    def _underlying_price(self, day: Day, underlying: str, now_ms: int) -> tuple[float, int] | None:
        series = day.equity.get(underlying)
        if series is None:
            return None
        k = series.ended(now_ms)
        if k == 0:
            return None
        bar = series.bars[k - 1]
        return bar.c, bar.t + MINUTE_MS

    def _last_quote(self, series: Series, now_ms: int) -> tuple[int, float] | None:
        i = bisect.bisect_right(series.starts, now_ms) - 1
        while i >= 0:
            times = [(t, p) for t, p in quote_path(series.bars[i], self.served.quotes_per_minute) if t <= now_ms]
            if times:
                return times[-1]
            i -= 1
        return None

    def _snapshot(self, day: Day, c: Contract, now_ms: int) -> dict[str, Any]:
        snap: dict[str, Any] = {
            "details": {
                "ticker": c.ticker, "contract_type": c.right, "exercise_style": "american",
                "expiration_date": c.expiry.isoformat(), "shares_per_contract": 100,
                "strike_price": c.strike,
            },
            "day": {},
        }
        series = day.options.get(c.ticker)
        if series is not None:
            k = series.ended(now_ms)
            if k:
                bar = series.bars[k - 1]
                end_ns = (bar.t + MINUTE_MS) * 1_000_000
                snap["day"] = {
                    "open": bar.day_o, "high": bar.day_h, "low": bar.day_l, "close": bar.c,
                    "volume": bar.day_v, "vwap": bar.day_vw, "last_updated": end_ns,
                }
                snap["last_trade"] = {
                    "price": bar.c, "size": 1, "sip_timestamp": end_ns, "exchange": OPTION_EXCHANGE,
                    "timeframe": "REAL-TIME",
                }
            quote = self._last_quote(series, now_ms)
            if quote is not None:
                t, price = quote
                bid, ask = bid_ask(price, self.served.half_spread)
                snap["last_quote"] = {
                    "bid": bid, "ask": ask, "bid_size": 10, "ask_size": 10,
                    "midpoint": round((bid + ask) / 2, 4), "last_updated": t * 1_000_000,
                    "timeframe": "REAL-TIME",
                }
        under = self._underlying_price(day, c.underlying, now_ms)
        snap["underlying_asset"] = {"ticker": c.underlying, "timeframe": "REAL-TIME"}
        if under is not None:
            snap["underlying_asset"].update(price=under[0], last_updated=under[1] * 1_000_000)
        return snap

    def _market_status(self) -> dict[str, Any]:
        """``/v1/marketstatus/now`` on the sim clock: ``market`` is ``open`` in the regular
        session, ``extended-hours`` from 04:00 to the open and from the close to 20:00 of a
        trading day, else ``closed``; ``serverTime`` in whole seconds, New York time."""
        from alphagen_core.domain.calendar import is_trading_day, session

        now = self.served.clock.now().astimezone(NY).replace(microsecond=0)
        market = "closed"
        if is_trading_day(now.date()):
            s = session(now.date())
            if s.open <= now < s.close:
                market = "open"
            elif now.replace(hour=4, minute=0, second=0) <= now < now.replace(hour=20, minute=0, second=0):
                market = "extended-hours"
        return {
            "market": market, "serverTime": now.isoformat(),
            "earlyHours": market == "extended-hours" and now.hour < 12,
            "afterHours": market == "extended-hours" and now.hour >= 12,
            "exchanges": {"nasdaq": market, "nyse": market, "otc": market},
        }

    def _today(self, now_ms: int) -> Day | None:
        return self.served.data.get(dt.datetime.fromtimestamp(now_ms / 1000, NY).date())

    def _chain(self, underlying: str, q: dict[str, str]) -> dict[str, Any]:
        offset = 0
        if "cursor" in q:
            try:
                state = json.loads(base64.urlsafe_b64decode(q["cursor"].encode()))
                q, offset = dict(state["q"]), int(state["o"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise _HTTPError(400, {"status": "ERROR", "error": "invalid cursor"}) from None
        limit = _int_param(q, "limit", 10, 1, 250)
        now_ms = self.served.now_ms()
        day = self._today(now_ms)
        contracts = [] if day is None else [c for c in day.contracts.values() if c.underlying == underlying]
        contracts = [c for c in contracts if self._matches(c, q)]
        sort = q.get("sort", "ticker")
        keys = {"ticker": lambda c: c.ticker, "expiration_date": lambda c: (c.expiry, c.ticker),
                "strike_price": lambda c: (c.strike, c.ticker)}
        if sort not in keys:
            raise _HTTPError(400, {"status": "ERROR", "error": f"invalid sort {sort!r}"})
        contracts.sort(key=keys[sort], reverse=q.get("order", "asc").lower() == "desc")
        page = contracts[offset : offset + limit]
        body: dict[str, Any] = {
            "status": "OK",
            "results": [self._snapshot(day, c, now_ms) for c in page] if day is not None else [],
        }
        if offset + limit < len(contracts):
            state = {"q": {k: v for k, v in q.items() if k != "cursor"}, "o": offset + limit}
            cursor = base64.urlsafe_b64encode(json.dumps(state, sort_keys=True).encode()).decode()
            body["next_url"] = f"{self._base_url()}/v3/snapshot/options/{underlying}?cursor={cursor}"
        return body

    @staticmethod
    def _matches(c: Contract, q: Mapping[str, str]) -> bool:
        try:
            for name, value in (("expiration_date", c.expiry), ("strike_price", c.strike)):
                conv = dt.date.fromisoformat if name == "expiration_date" else float
                if name in q and value != conv(q[name]):
                    return False
                for op in _RANGE_OPS:
                    key = f"{name}.{op}"
                    if key in q:
                        bound = conv(q[key])
                        if not {"gte": value >= bound, "gt": value > bound,
                                "lte": value <= bound, "lt": value < bound}[op]:
                            return False
        except ValueError:
            raise _HTTPError(400, {"status": "ERROR", "error": "invalid filter value"}) from None
        ctype = q.get("contract_type", "").lower()
        return not ctype or ctype == c.right

    def _contract(self, underlying: str, ticker: str) -> tuple[int, dict[str, Any]]:
        now_ms = self.served.now_ms()
        day = self._today(now_ms)
        c = None if day is None else day.contracts.get(ticker)
        if day is None or c is None or c.underlying != underlying:
            return 404, {"status": "NOT_FOUND", "message": "Ticker not found."}
        return 200, {"status": "OK", "results": self._snapshot(day, c, now_ms)}
