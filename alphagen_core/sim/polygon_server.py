"""A local stand-in for Polygon (Massive): REST and websocket on loopback, replaying a day's
flat files on a sim clock, so that the official ``massive`` clients work against it unchanged.

REST (stdlib ``ThreadingHTTPServer``, HTTP/1.1 keep-alive)::

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

Websocket (``websockets``; ``ws://host:ws_port/stocks`` and ``/options``): the status
greeting, ``auth`` -> ``auth_success`` / ``auth_failed``, ``subscribe`` / ``unsubscribe``
(``AM.QQQ``, ``AM.*``, ``Q.O:QQQ240212C00430000``, ``Q.*``), then ``AM`` events at the END of
each minute and ``Q`` events during it.

No look-ahead: a bar is served by REST, or sent as ``AM``, only once its window has ended on
the sim clock (``start + 1 min <= now``); quotes are sent at their own time.

What the stand-in makes up, since flat files do not carry it (documented here once):
- ``vw`` (a bar's VWAP) is the bar's typical price (high + low + close) / 3, rounded to 4
  places; ``a`` (the day's VWAP) is the running volume-weighted mean of those, ``av`` the
  running volume, ``op`` the first served bar's open, ``z`` volume / transactions.
- Option quotes: each option minute bar yields ``quotes_per_minute`` quotes at evenly
  spaced moments inside the minute (12, 24, 36, 48 s for 4) whose price walks the bar's
  path (open, low, high, close for an up bar; open, high, low, close otherwise), or with
  ``quotes_per_minute=OPEN_ONLY`` one quote at the minute's start at its open, with
  bid = max(price - half_spread, 0) and ask = price + half_spread. A snapshot's
  ``last_quote`` is the latest such quote at or before now; its ``day`` aggregates the
  contract's ended bars; ``underlying_asset.price`` is the underlying's last ended close.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import collections
import contextlib
import datetime as dt
import json
import logging
import math
import re
import socket
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import polars as pl
from pydantic import SecretStr
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from alphagen_core.domain.clock import NY, Clock, SimClock
from alphagen_core.operations.redaction import REDACTOR, redacting_logger
from alphagen_core.sim.faults import SERVER_ERRORS, Faults

log = logging.getLogger(__name__)
_ws_log = logging.getLogger(__name__ + ".ws")

MINUTE_MS = 60_000
_AGGS = re.compile(r"^/v2/aggs/ticker/([^/]+)/range/(\d+)/([a-z]+)/([^/]+)/([^/]+)/?$")
_CHAIN = re.compile(r"^/v3/snapshot/options/([^/]+)/?$")
_CONTRACT = re.compile(r"^/v3/snapshot/options/([^/]+)/([^/]+)/?$")
_MARKET_STATUS = "/v1/marketstatus/now"
_RANGE_OPS = ("gte", "gt", "lte", "lt")
_OPTION_EXCHANGE = 302  # an options exchange id, as in real Q events


# ---- a day's data, indexed for fast time lookups -------------------------------------------


@dataclass(frozen=True, slots=True)
class _EqBar:
    t: int  # bar start, unix ms
    o: float
    h: float
    l: float  # noqa: E741
    c: float
    v: float
    n: int | None
    vw: float
    a: float  # the day's VWAP up to and including this bar
    av: float  # the day's volume up to and including this bar
    op: float  # the day's first open

    def rest(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": self.v, "vw": self.vw, "o": self.o, "c": self.c, "h": self.h, "l": self.l,
            "t": self.t,
        }
        if self.n is not None:
            out["n"] = self.n
        return out

    def am(self, sym: str) -> dict[str, Any]:
        z = int(self.v / self.n) if self.n else 0
        return {
            "ev": "AM", "sym": sym, "v": self.v, "av": self.av, "op": self.op, "vw": self.vw,
            "o": self.o, "c": self.c, "h": self.h, "l": self.l, "a": self.a, "z": z,
            "s": self.t, "e": self.t + MINUTE_MS,
        }


@dataclass(frozen=True, slots=True)
class _OptBar:
    t: int
    o: float
    h: float
    l: float  # noqa: E741
    c: float
    v: float
    n: int | None
    # running day aggregates over this contract's bars up to and including this one
    day_o: float
    day_h: float
    day_l: float
    day_v: float
    day_vw: float

    def rest(self) -> dict[str, Any]:
        """The contract's minute aggregate, as /v2/aggs serves an option ticker (`vw` made up
        as the bar's typical price, as for the underlying)."""
        out: dict[str, Any] = {"v": self.v, "vw": round((self.h + self.l + self.c) / 3.0, 4), "o": self.o,
                               "c": self.c, "h": self.h, "l": self.l, "t": self.t}
        if self.n is not None:
            out["n"] = self.n
        return out


@dataclass(frozen=True, slots=True)
class _Contract:
    ticker: str
    underlying: str
    expiry: dt.date
    right: str  # "call" / "put"
    strike: float


@dataclass
class _Series:
    starts: list[int]
    bars: list[Any]

    def ended(self, now_ms: int) -> int:
        """How many bars have ended by now_ms (their index bound)."""
        return bisect.bisect_right(self.starts, now_ms - MINUTE_MS)


@dataclass
class _Day:
    date: dt.date
    equity: dict[str, _Series] = field(default_factory=dict)
    options: dict[str, _Series] = field(default_factory=dict)
    contracts: dict[str, _Contract] = field(default_factory=dict)


def _num(x: Any) -> float:
    return float(x) if x is not None else float("nan")


def _right(value: Any) -> str:
    text = str(getattr(value, "value", value)).strip().upper()
    return "call" if text.startswith("C") else "put"


def _epoch_ms_expr(col: str) -> pl.Expr:
    return pl.col(col).dt.epoch("ms").alias("_t")


def build_day(equity: pl.DataFrame, options: pl.DataFrame, date: dt.date | None = None) -> _Day:
    """Index one day's frames (the columns of ``flatfiles.load_day``'s DayData)."""
    eq = equity.select(
        "symbol", _epoch_ms_expr("est_timestamp"), "open", "high", "low", "close", "volume",
        "transactions",
    ).sort("symbol", "_t")
    if date is None:
        first = equity.select(pl.col("est_timestamp").min()).item()
        date = first.astimezone(NY).date() if first is not None else dt.date(1970, 1, 1)
    day = _Day(date=date)
    grouped: dict[str, list[tuple]] = collections.defaultdict(list)
    for row in eq.iter_rows():
        grouped[row[0]].append(row[1:])
    for sym, rows in grouped.items():
        bars: list[_EqBar] = []
        cum_v = cum_pv = 0.0
        op = _num(rows[0][1])
        for t, o, h, lo, c, v, n in rows:
            o, h, lo, c, v = _num(o), _num(h), _num(lo), _num(c), float(v or 0.0)
            vw = round((h + lo + c) / 3.0, 4)
            cum_v += v
            cum_pv += vw * v
            a = round(cum_pv / cum_v, 4) if cum_v > 0 else vw
            bars.append(_EqBar(int(t), o, h, lo, c, v, None if n is None else int(n), vw, a, cum_v, op))
        day.equity[sym] = _Series([b.t for b in bars], bars)

    if options.height:
        op_frame = options.select(
            "option_symbol", "underlying", "expiry", "right", "strike", _epoch_ms_expr("est_timestamp"),
            "open", "high", "low", "close", "volume", "transactions",
        ).sort("option_symbol", "_t")
        ogrouped: dict[str, list[tuple]] = collections.defaultdict(list)
        for row in op_frame.iter_rows():
            sym = row[0]
            if sym not in day.contracts:
                day.contracts[sym] = _Contract(sym, str(row[1]), row[2], _right(row[3]), float(row[4]))
            ogrouped[sym].append(row[5:])
        for sym, rows in ogrouped.items():
            obars: list[_OptBar] = []
            day_o = _num(rows[0][1])
            day_h, day_l, cum_v, cum_pv = -math.inf, math.inf, 0.0, 0.0
            for t, o, h, lo, c, v, n in rows:
                o, h, lo, c, v = _num(o), _num(h), _num(lo), _num(c), float(v or 0.0)
                day_h, day_l = max(day_h, h), min(day_l, lo)
                cum_v += v
                cum_pv += v * (h + lo + c) / 3.0
                vw = round(cum_pv / cum_v, 4) if cum_v > 0 else c
                obars.append(_OptBar(int(t), o, h, lo, c, v, None if n is None else int(n), day_o, day_h, day_l, cum_v, vw))
            day.options[sym] = _Series([b.t for b in obars], obars)
    return day


class _DayStore:
    """Days by date: the ones given up front, and any other loaded lazily from a flat-file
    source through ``flatfiles.load_day`` (cached, thread-safe)."""

    def __init__(
        self,
        days: Iterable[Any],
        source: Any,
        equity_ticker: str,
        underlying: str,
        cache_dir: Path | None,
    ) -> None:
        self._days: dict[dt.date, _Day | None] = {}
        self._source = source
        self._equity_ticker = equity_ticker
        self._underlying = underlying
        self._cache_dir = cache_dir
        self._lock = threading.Lock()
        for d in days:
            built = self._from_day_data(d)
            self._days[built.date] = built

    @staticmethod
    def _from_day_data(d: Any) -> _Day:
        if isinstance(d, _Day):
            return d
        session = getattr(d, "session", None)
        date = getattr(session, "date", None) or getattr(d, "date", None)
        if not isinstance(date, dt.date):
            date = None
        return build_day(d.equity, d.options, date)

    def dates(self) -> list[dt.date]:
        with self._lock:
            return sorted(k for k, v in self._days.items() if v is not None)

    def get(self, date: dt.date) -> _Day | None:
        with self._lock:
            if date in self._days:
                return self._days[date]
            day = self._load(date)
            self._days[date] = day
            return day

    def _load(self, date: dt.date) -> _Day | None:
        if self._source is None:
            return None
        from alphagen_core.adapters.polygon import flatfiles
        from alphagen_core.domain import calendar

        if not calendar.is_trading_day(date):
            return None
        source = self._source
        if isinstance(source, (str, Path)):
            source = flatfiles.LocalFlatFiles(source)
        cache_dir = self._cache_dir or Path(tempfile.gettempdir()) / "alphagen-polygon-standin-cache"
        try:
            data = flatfiles.load_day(
                source,
                calendar.session(date),
                equity_ticker=self._equity_ticker,
                underlying=self._underlying,
                cache_dir=cache_dir,
            )
        except Exception as exc:  # noqa: BLE001 - a missing day is simply not served
            log.warning("polygon stand-in: no data for %s (%s)", date, type(exc).__name__)
            return None
        return build_day(data.equity, data.options, date)


# ---- quotes derived from option minute bars --------------------------------------------------


def _quote_path(bar: _OptBar, k: int) -> list[tuple[int, float]]:
    """(time ms, price) of the k quotes inside the bar's minute; k = OPEN_ONLY: one quote, the
    open, at the minute's start."""
    if k == OPEN_ONLY:
        return [(bar.t, bar.o)]
    if k <= 0:
        return []
    path = [bar.o, bar.l, bar.h, bar.c] if bar.c >= bar.o else [bar.o, bar.h, bar.l, bar.c]
    out = []
    for i in range(k):
        price = path[-1] if k == 1 else path[round(i * (len(path) - 1) / (k - 1))]
        out.append((bar.t + (i + 1) * MINUTE_MS // (k + 1), price))
    return out


OPEN_ONLY = -1  # quotes_per_minute: the book shows each minute's opening quote only


def _bid_ask(price: float, half_spread: float) -> tuple[float, float]:
    return round(max(price - half_spread, 0.0), 4), round(price + half_spread, 4)


# ---- REST --------------------------------------------------------------------------------------


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


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    standin: PolygonStandIn

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("polygon stand-in: connection error from %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    server: _QuietServer

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
        self.server.standin._handle_http(self)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("polygon stand-in rest: %s", self.server.standin._redact(format % args))


# ---- the stand-in -------------------------------------------------------------------------------


class PolygonStandIn:
    """Polygon REST + websocket on loopback, replaying flat-file days on ``clock``.

    ``days``: DayData values (anything with ``.equity`` and ``.options`` frames in the
    ``flatfiles.load_day`` layout, and optionally ``.session``); ``source``: a flat-file
    source for ``load_day`` (a FlatFileSource, or a folder path) for any other trading date,
    loaded when first asked for (processed-day cache in ``cache_dir``, default a folder
    under the system temp dir). Each day serves the equity ticker and the one option expiry
    ``load_day`` keeps. The REST server listens on ``port`` and the websocket on ``ws_port``
    (0: any free port). Use ``start()``/``stop()`` or ``with PolygonStandIn(...) as s:``.
    """

    def __init__(
        self,
        *days: Any,
        source: Any = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ws_port: int = 0,
        api_key: str | SecretStr = "sim-key",
        clock: Clock | None = None,
        faults: Faults | None = None,
        equity_ticker: str = "QQQ",
        underlying: str = "QQQ",
        cache_dir: Path | None = None,
        half_spread: float = 0.02,
        quotes_per_minute: int = 4,
    ) -> None:
        self._api_key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else str(api_key)
        if not self._api_key:
            raise ValueError("the stand-in needs a non-empty api_key")
        self.host = host
        self._port = port
        self._ws_port = ws_port
        self.data = _DayStore(days, source, equity_ticker, underlying, cache_dir)
        if clock is None:
            dates = self.data.dates()
            if not dates:
                raise ValueError("give a clock, or at least one day to start the clock on")
            clock = SimClock(dt.datetime.combine(dates[0], dt.time(9, 30), tzinfo=NY), speed=60.0)
        self.clock = clock
        self.faults = faults or Faults()
        self.half_spread = half_spread
        self.quotes_per_minute = quotes_per_minute
        self._redactor = REDACTOR  # the project's one redactor
        self._redactor.add(self._api_key)
        self._ws_logger = redacting_logger(__name__ + ".websockets")
        # REST fault state
        self._lock = threading.Lock()
        self._rest_rng = self.faults.rng("rest")
        self._admitted: collections.deque[float] = collections.deque()
        self._request_no = 0
        # websocket fault state (only touched on the server loop)
        self._ws_connections = 0
        self._drops = 0
        self._ws_open: set[ServerConnection] = set()
        # counters for tests and logs
        self.stats: collections.Counter[str] = collections.Counter()
        self._http: _QuietServer | None = None
        self._http_thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws_thread: threading.Thread | None = None
        self._ws_server: Server | None = None
        self._stop_event = threading.Event()

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> PolygonStandIn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"PolygonStandIn(rest={self.rest_url if self._http else None}, ws_port={self._ws_port})"

    def start(self) -> PolygonStandIn:
        if self._http is not None:
            return self
        self._stop_event.clear()
        self._http = _QuietServer((self.host, self._port), _Handler)
        self._http.standin = self
        self._port = self._http.server_address[1]
        self._http_thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
            name="polygon-standin-rest", daemon=True,
        )
        self._http_thread.start()

        ready = threading.Event()
        failure: list[BaseException] = []

        def run_loop() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self._ws_server = loop.run_until_complete(self._start_ws())
                self._ws_port = self._ws_server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()

        self._ws_thread = threading.Thread(target=run_loop, name="polygon-standin-ws", daemon=True)
        self._ws_thread.start()
        ready.wait(10)
        if failure:
            self.stop()
            raise failure[0]
        return self

    async def _start_ws(self) -> Server:
        return await serve(
            self._ws_handler, self.host, self._ws_port, logger=self._ws_logger,
            ping_interval=20, ping_timeout=20, close_timeout=1,
        )

    def stop(self) -> None:
        self._stop_event.set()
        http, self._http = self._http, None
        if http is not None:
            http.shutdown()
            with http.sockets_lock:
                for sock in list(http.open_sockets):
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
            http.server_close()
        if self._http_thread is not None:
            self._http_thread.join(5)
            self._http_thread = None
        loop, server = self._loop, self._ws_server
        if loop is not None and server is not None and loop.is_running():

            async def close() -> None:
                server.close(close_connections=True)  # close frames with 1001
                try:
                    await asyncio.wait_for(asyncio.shield(server.wait_closed()), 0.3)
                except TimeoutError:  # a client that does not answer: cut it off
                    for conn in list(self._ws_open):
                        conn.transport.abort()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(server.wait_closed(), 2)

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
        if self._ws_thread is not None:
            self._ws_thread.join(5)
            self._ws_thread = None
        self._loop = None
        self._ws_server = None

    def serve_forever(self) -> None:
        """Start, block until ``stop()`` (from another thread) or Ctrl-C, then stop."""
        self.start()
        log.info("polygon stand-in: REST %s, websocket %s", self.rest_url, self.ws_feed)
        try:
            while not self._stop_event.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    # -- addresses ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def ws_port(self) -> int:
        return self._ws_port

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def ws_feed(self) -> str:
        """The ``feed`` argument of ``massive.WebSocketClient`` (with ``secure=False``)."""
        return f"{self.host}:{self._ws_port}"

    def env(self) -> dict[str, str]:
        """POLYGON_* settings that point the system at this stand-in (no secrets)."""
        return {
            "POLYGON_REST_URL": self.rest_url,
            "POLYGON_STOCK_WS_URL": f"ws://{self.ws_feed}/stocks",
            "POLYGON_OPTIONS_WS_URL": f"ws://{self.ws_feed}/options",
        }

    def _redact(self, text: str) -> str:
        return self._redactor.redact(text)

    def _now_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)

    # -- REST -------------------------------------------------------------------------------------

    def _next_request_id(self) -> str:
        with self._lock:
            self._request_no += 1
            return f"sim{self._request_no:08x}"

    def _handle_http(self, h: _Handler) -> None:
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
        self.stats[f"http_{status}"] += 1
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
        f = self.faults
        if f.latency_s > 0:
            time.sleep(f.latency_s)
        auth = h.headers.get("Authorization", "")
        key = auth[7:].strip() if auth.lower().startswith("bearer ") else query.pop("apiKey", "")
        query.pop("apiKey", None)
        if not key:
            raise _HTTPError(401, {"status": "ERROR", "error": "API Key was not provided"})
        if key != self._api_key:
            self._redactor.add(key)
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

    def _series(self, ticker: str, date: dt.date) -> _Series | None:
        day = self.data.get(date)
        if day is None:
            return None
        return (day.options if ticker.startswith("O:") else day.equity).get(ticker)

    def _aggs(self, ticker: str, mult: str, span: str, frm: str, to: str, q: dict[str, str]) -> dict[str, Any]:
        if mult != "1" or span != "minute":
            raise _HTTPError(400, {"status": "ERROR", "error": "the stand-in serves 1/minute aggregates only"})
        lo, hi = _parse_bound(frm, end=False), _parse_bound(to, end=True)
        limit = _int_param(q, "limit", 5000, 1, 50000)
        desc = q.get("sort", "asc").lower() == "desc"
        now_ms = self._now_ms()
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
                f"{self.rest_url}/v2/aggs/ticker/{ticker}/range/1/minute/{nxt_from}/{nxt_to}"
                + (f"?{urlencode(params)}" if params else "")
            )
        body.update({
            "queryCount": len(results), "resultsCount": len(results), "count": len(results),
            "status": "OK", "results": results,
        })
        return body

    # snapshots

    def _underlying_price(self, day: _Day, underlying: str, now_ms: int) -> tuple[float, int] | None:
        series = day.equity.get(underlying)
        if series is None:
            return None
        k = series.ended(now_ms)
        if k == 0:
            return None
        bar = series.bars[k - 1]
        return bar.c, bar.t + MINUTE_MS

    def _last_quote(self, series: _Series, now_ms: int) -> tuple[int, float] | None:
        i = bisect.bisect_right(series.starts, now_ms) - 1
        while i >= 0:
            times = [(t, p) for t, p in _quote_path(series.bars[i], self.quotes_per_minute) if t <= now_ms]
            if times:
                return times[-1]
            i -= 1
        return None

    def _snapshot(self, day: _Day, c: _Contract, now_ms: int) -> dict[str, Any]:
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
                    "price": bar.c, "size": 1, "sip_timestamp": end_ns, "exchange": _OPTION_EXCHANGE,
                    "timeframe": "REAL-TIME",
                }
            quote = self._last_quote(series, now_ms)
            if quote is not None:
                t, price = quote
                bid, ask = _bid_ask(price, self.half_spread)
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

        now = self.clock.now().astimezone(NY).replace(microsecond=0)
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

    def _today(self, now_ms: int) -> _Day | None:
        return self.data.get(dt.datetime.fromtimestamp(now_ms / 1000, NY).date())

    def _chain(self, underlying: str, q: dict[str, str]) -> dict[str, Any]:
        offset = 0
        if "cursor" in q:
            try:
                state = json.loads(base64.urlsafe_b64decode(q["cursor"].encode()))
                q, offset = dict(state["q"]), int(state["o"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise _HTTPError(400, {"status": "ERROR", "error": "invalid cursor"}) from None
        limit = _int_param(q, "limit", 10, 1, 250)
        now_ms = self._now_ms()
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
            body["next_url"] = f"{self.rest_url}/v3/snapshot/options/{underlying}?cursor={cursor}"
        return body

    @staticmethod
    def _matches(c: _Contract, q: Mapping[str, str]) -> bool:
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
        now_ms = self._now_ms()
        day = self._today(now_ms)
        c = None if day is None else day.contracts.get(ticker)
        if day is None or c is None or c.underlying != underlying:
            return 404, {"status": "NOT_FOUND", "message": "Ticker not found."}
        return 200, {"status": "OK", "results": self._snapshot(day, c, now_ms)}

    # -- websocket ----------------------------------------------------------------------------

    async def _ws_handler(self, conn: ServerConnection) -> None:
        path = urlsplit(conn.request.path).path.strip("/") if conn.request else ""
        if path not in ("stocks", "options"):
            await conn.close(1008, "unknown cluster")
            return
        self._ws_connections += 1
        conn_no = self._ws_connections
        self._ws_open.add(conn)
        self.stats[f"ws_connections_{path}"] += 1
        try:
            await conn.send(json.dumps([{"ev": "status", "status": "connected", "message": "Connected Successfully"}]))
            if not await self._ws_auth(conn):
                return
            session = _WsSession(self, conn, path, conn_no)
            await session.run()
        except ConnectionClosed:
            pass
        finally:
            self._ws_open.discard(conn)

    async def _ws_auth(self, conn: ServerConnection) -> bool:
        while True:
            try:
                raw = await asyncio.wait_for(conn.recv(), 30)
            except TimeoutError:
                await conn.close(1008, "authentication timeout")
                return False
            try:
                msg = json.loads(raw)
            except ValueError:
                await conn.send(json.dumps([{"ev": "status", "status": "error", "message": "invalid JSON"}]))
                continue
            if not isinstance(msg, dict) or msg.get("action") != "auth":
                await conn.send(json.dumps([{"ev": "status", "status": "error", "message": "not authorized"}]))
                continue
            if msg.get("params") == self._api_key:
                await conn.send(json.dumps([{"ev": "status", "status": "auth_success", "message": "authenticated"}]))
                return True
            if isinstance(msg.get("params"), str) and msg["params"]:
                self._redactor.add(msg["params"])
            self.stats["ws_auth_failed"] += 1
            await conn.send(json.dumps([{"ev": "status", "status": "auth_failed", "message": "authentication failed"}]))
            await conn.close(1008, "authentication failed")
            return False

    def _events(self, market: str, subs: set[str], a: int, b: int) -> list[tuple[int, str, dict[str, Any]]]:
        """Data events with time in (a, b] for the given subscriptions, in time order."""
        events: list[tuple[int, str, dict[str, Any]]] = []
        dates = {dt.datetime.fromtimestamp(x / 1000, NY).date() for x in (a, b)}
        for date in sorted(dates):
            day = self.data.get(date)
            if day is None:
                continue
            if market == "stocks":
                wanted = day.equity.keys() if "AM.*" in subs else [s[3:] for s in subs if s.startswith("AM.")]
                for sym in wanted:
                    series = day.equity.get(sym)
                    if series is None:
                        continue
                    i = bisect.bisect_right(series.starts, a - MINUTE_MS)
                    j = bisect.bisect_right(series.starts, b - MINUTE_MS)
                    events.extend((bar.t + MINUTE_MS, sym, bar.am(sym)) for bar in series.bars[i:j])
            else:
                wanted = day.options.keys() if "Q.*" in subs else [s[2:] for s in subs if s.startswith("Q.")]
                for sym in wanted:
                    series = day.options.get(sym)
                    if series is None:
                        continue
                    i = bisect.bisect_right(series.starts, a - MINUTE_MS)
                    j = bisect.bisect_right(series.starts, b)
                    for bar in series.bars[i:j]:
                        for t, price in _quote_path(bar, self.quotes_per_minute):
                            if a < t <= b:
                                bid, ask = _bid_ask(price, self.half_spread)
                                size = max(1, int(bar.v // 10) + 1)
                                events.append((t, sym, {
                                    "ev": "Q", "sym": sym, "bx": _OPTION_EXCHANGE, "ax": _OPTION_EXCHANGE,
                                    "bp": bid, "ap": ask, "bs": size, "as": size, "t": t,
                                }))
        events.sort(key=lambda e: (e[0], e[1]))
        return events


_MALFORMED_KINDS = ("truncated", "not_a_list", "missing_fields", "not_a_number")


class _WsSession:
    """One authenticated websocket connection: subscriptions, the timed data stream, faults."""

    def __init__(self, standin: PolygonStandIn, conn: ServerConnection, market: str, conn_no: int) -> None:
        self.s = standin
        self.conn = conn
        self.market = market
        self.subs: set[str] = set()
        self.faults = standin.faults
        self.rng = standin.faults.rng("ws", market, conn_no)
        self.sent = 0
        self.seq = 0
        self.held: str | None = None
        self.finished = False

    async def run(self) -> None:
        """Until the client goes away (the reader ends) or a fault ends the connection."""
        reader = asyncio.create_task(self._read())
        sender = asyncio.create_task(self._send_loop())
        try:
            await asyncio.wait((reader, sender), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, sender):
                task.cancel()
            for task in (reader, sender):
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task

    async def _read(self) -> None:
        async for raw in self.conn:
            try:
                msg = json.loads(raw)
                action, params = msg["action"], str(msg.get("params", ""))
            except (ValueError, KeyError, TypeError):
                await self.conn.send(json.dumps([{"ev": "status", "status": "error", "message": "invalid message"}]))
                continue
            topics = [t.strip() for t in params.split(",") if t.strip()]
            if action == "subscribe":
                self.subs.update(topics)
                verb = "subscribed to"
            elif action == "unsubscribe":
                self.subs.difference_update(topics)
                verb = "unsubscribed to"
            else:
                await self.conn.send(json.dumps([{"ev": "status", "status": "error", "message": f"unknown action {action!r}"}]))
                continue
            await self.conn.send(json.dumps(
                [{"ev": "status", "status": "success", "message": f"{verb}: {t}"} for t in topics]
            ))

    async def _send_loop(self) -> None:
        cursor = self.s._now_ms()
        while not self.finished:
            await asyncio.sleep(0.01)
            now = self.s._now_ms()
            if now <= cursor or not self.subs:
                cursor = max(cursor, now)
                continue
            events = await asyncio.to_thread(self.s._events, self.market, set(self.subs), cursor, now)
            cursor = now
            for _, _, event in events:
                self.seq += 1
                if event["ev"] == "Q":
                    event["q"] = self.seq
                await self._emit(json.dumps([event], separators=(",", ":")), event)
                if self.finished:
                    return

    async def _emit(self, frame: str, event: dict[str, Any]) -> None:
        f, rng = self.faults, self.rng
        if f.malformed_rate and rng.random() < f.malformed_rate:
            await self._send(self._malformed(frame, event, rng.choice(_MALFORMED_KINDS)))
            if self.finished:
                return
        if f.out_of_order_rate and self.held is None and rng.random() < f.out_of_order_rate:
            self.held = frame
            return
        await self._send(frame)
        if self.held is not None and not self.finished:
            held, self.held = self.held, None
            self.s.stats["ws_out_of_order"] += 1
            await self._send(held)
        if f.duplicate_rate and not self.finished and rng.random() < f.duplicate_rate:
            self.s.stats["ws_duplicates"] += 1
            await self._send(frame)

    def _malformed(self, frame: str, event: dict[str, Any], kind: str) -> str:
        self.s.stats["ws_malformed"] += 1
        if kind == "truncated":
            return frame[: max(1, len(frame) // 2)]
        if kind == "not_a_list":
            return json.dumps(event)
        bad = dict(event)
        if kind == "missing_fields":
            for k in ("c", "h", "bp", "ap"):
                bad.pop(k, None)
        else:
            for k in ("c", "ap"):
                if k in bad:
                    bad[k] = "n/a"
        return json.dumps([bad])

    async def _send(self, frame: str) -> None:
        await self.conn.send(frame)
        self.sent += 1
        self.s.stats[f"ws_frames_{self.market}"] += 1
        f = self.faults
        stall = f.stall_after_messages is not None and self.sent >= f.stall_after_messages
        drop = f.drop_after_messages is not None and self.sent >= f.drop_after_messages
        if (stall or drop) and (f.max_drops is None or self.s._drops < f.max_drops):
            self.s._drops += 1
            await (self._stall() if stall else self._drop())

    async def _drop(self) -> None:
        self.finished = True
        f = self.faults
        self.s.stats["ws_drops"] += 1
        transport = self.conn.transport
        if f.half_close:
            if transport.can_write_eof():
                transport.write_eof()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.wait_closed(), 30)
            transport.abort()
        elif f.drop_code is not None:
            await self.conn.close(f.drop_code, "fault injection")
        else:
            transport.abort()

    async def _stall(self) -> None:
        self.finished = True
        self.s.stats["ws_stalls"] += 1
        self.conn.transport.pause_reading()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.wait_closed(), 120)
        self.conn.transport.abort()
