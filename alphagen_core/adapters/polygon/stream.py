"""`PolygonStream`: minute bars (``AM``) and option quotes (``Q``) over Polygon's websockets
(``massive.WebSocketClient``), supervised, with REST backfill of missed minutes.

Rules applied here:
- A bar is delivered only after its window ended (``bar.end <= clock.now()``).
- Bars reach the caller strictly in time order, each minute once: a bar not after the last
  delivered one is rejected ("duplicate" when it repeats the last minute, "out_of_order"
  when it is older), and a gap (after a reconnect, or a live bar more than a minute after
  the last) is first filled from REST ``minute_bars``.
- Malformed messages, crossed or non-positive quotes are rejected with a recorded reason;
  nothing stops the stream but a rejected API key.
- The API key is never logged and never put in an exception's text.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable
from typing import Any

from massive import WebSocketClient
from massive.exceptions import AuthError

from alphagen_core.adapters.polygon.config import PolygonConfig
from alphagen_core.adapters.polygon.market_data import (
    MASSIVE_LOGGERS,
    PolygonAuthError,
    PolygonMarketData,
)
from alphagen_core.adapters.polygon.stream_events import (
    RejectedEvent,
    bar_from_am,
    quote_from_q,
)
from alphagen_core.application.interfaces import MarketDataClient
from alphagen_core.domain.clock import Clock, WallClock
from alphagen_core.domain.models import MINUTE, Bar, OptionQuote
from alphagen_core.domain.symbols import parse_polygon
from alphagen_core.operations.redaction import redact, redacting_logger

log = logging.getLogger(__name__)

MAX_OPTION_SUBSCRIPTIONS = 1000  # Polygon's limit per connection
_OK_STATUSES = {"connected", "auth_success", "success"}


class PolygonStream:
    """MarketDataStream over Polygon's websockets, run by the official massive client.

    The massive client reconnects only a bounded number of times over one ``connect()`` and
    ends quietly on a 1000/1001 close, so each connection here is one ``connect()`` with
    ``max_reconnects=0`` and this class supervises it: reconnect with exponential backoff
    (``backoff_s`` doubling, capped at ``max_backoff_s``, reset once a connection has lived
    ``stable_after_s``), resubscribe, and backfill the missed minutes from REST before any
    live bar. A half-open connection is noticed by websocket pings (``ping_interval_s`` +
    ``ping_timeout_s``).

    ``rejections`` lists (reason, detail) for every message dropped; ``events`` lists
    (monotonic time, market, what) for connections and disconnections.
    """

    def __init__(
        self,
        config: PolygonConfig,
        market_data: MarketDataClient | None = None,
        clock: Clock | None = None,
        *,
        backoff_s: float = 0.2,
        max_backoff_s: float = 3.0,
        stable_after_s: float = 10.0,
        open_timeout_s: float = 5.0,
        ping_interval_s: float | None = 20.0,
        ping_timeout_s: float | None = 20.0,
        backfill_on_start: bool = True,
        on_rejection: Callable[[str, str], None] | None = None,
        max_rejections: int = 10_000,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or WallClock()
        self._owns_market_data = market_data is None
        self.market_data = market_data or PolygonMarketData(config, clock=self.clock)
        self._key = config.api_key.get_secret_value()
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._stable_after_s = stable_after_s
        self._open_timeout_s = open_timeout_s
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._backfill_on_start = backfill_on_start
        self._on_rejection = on_rejection
        self._max_rejections = max_rejections
        self._ws_logger = redacting_logger(__name__ + ".websocket", self._key)
        for name in MASSIVE_LOGGERS:
            redacting_logger(name, self._key)

        self.rejections: list[tuple[str, str]] = []
        self.events: list[tuple[float, str, str]] = []
        self.backfilled = 0  # bars delivered from REST
        self._connected_at: dict[str, float] = {}
        self._watched: frozenset[str] = frozenset()
        self._watch_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._clients: dict[str, WebSocketClient] = {}
        # delivery state (only touched on the stream's loop)
        self._last_bar: dict[str, dt.datetime] = {}
        self._last_quote: dict[str, tuple[dt.datetime, float, float]] = {}
        self._need_backfill = backfill_on_start
        self._on_bar: Callable[[Bar], None] = lambda bar: None
        self._on_quote: Callable[[OptionQuote], None] = lambda quote: None

    def __repr__(self) -> str:
        return f"PolygonStream(stocks={self.config.stock_ws_url!r}, options={self.config.options_ws_url!r})"

    # -- public API --------------------------------------------------------------------------

    @property
    def watched(self) -> frozenset[str]:
        return self._watched

    def watch(self, option_symbols: Iterable[str]) -> None:
        symbols = list(dict.fromkeys(option_symbols))
        for sym in symbols:
            parse_polygon(sym)  # raises OptionSymbolError for a bad symbol
        if len(symbols) > MAX_OPTION_SUBSCRIPTIONS:
            raise ValueError(
                f"Polygon streams at most {MAX_OPTION_SUBSCRIPTIONS} option contracts per connection"
            )
        with self._watch_lock:
            self._watched = frozenset(symbols)
            loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._apply_watch)
            except RuntimeError:  # the loop just closed
                pass

    def run(
        self,
        on_bar: Callable[[Bar], None],
        on_quote: Callable[[OptionQuote], None],
        stop: Callable[[], bool],
    ) -> None:
        """Stream until ``stop()`` is true (polled every 50 ms). Callbacks run on this
        thread, in order. Raises PolygonAuthError if the key is rejected."""
        self._on_bar, self._on_quote = on_bar, on_quote
        try:
            asyncio.run(self._main(stop))
        finally:
            if self._owns_market_data and isinstance(self.market_data, PolygonMarketData):
                self.market_data.close()

    # -- supervision --------------------------------------------------------------------------

    async def _main(self, stop: Callable[[], bool]) -> None:
        with self._watch_lock:
            self._loop = asyncio.get_running_loop()
        self._deliver_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._need_backfill = self._backfill_on_start or bool(self._last_bar)
        tasks = [
            asyncio.create_task(self._supervise("stocks"), name="polygon-stocks"),
            asyncio.create_task(self._supervise("options"), name="polygon-options"),
        ]
        try:
            while not stop() and not any(t.done() for t in tasks):
                await asyncio.sleep(0.05)
        finally:
            self._stopping.set()
            await self._close_clients()
            _, pending = await asyncio.wait(tasks, timeout=3)
            for task in pending:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            with self._watch_lock:
                self._loop = None
            self._connected_at.clear()
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result

    async def _close_clients(self) -> None:
        """Close the open connections with a normal close frame (connect() then returns)."""
        for client in list(self._clients.values()):
            ws = client.websocket
            if ws is None:
                continue
            try:
                await asyncio.wait_for(ws.close(), 2)
            except Exception:  # noqa: BLE001 - closing a broken connection is best effort
                ws.transport.abort()

    def _topics(self, market: str) -> list[str]:
        if market == "stocks":
            return [f"AM.{self.config.equity_ticker}"]
        return sorted(f"Q.{s}" for s in self._watched)

    def _apply_watch(self) -> None:
        client = self._clients.get("options")
        if client is None:
            return
        want = set(self._topics("options"))
        have = set(client.scheduled_subs)
        if want - have:
            client.subscribe(*sorted(want - have))
        if have - want:
            client.unsubscribe(*sorted(have - want))

    def _delays(self) -> Generator[float]:
        delay = self._backoff_s
        while True:
            yield delay
            delay = min(delay * 2, self._max_backoff_s)

    def connected_at(self, market: str) -> float | None:
        """time.monotonic() when the current connection to `market` came up; None while down."""
        return self._connected_at.get(market)

    def _event(self, market: str, what: str) -> None:
        self.events.append((time.monotonic(), market, what))
        if what == "connected":
            self._connected_at[market] = time.monotonic()
        elif not what.startswith("server status"):
            self._connected_at.pop(market, None)
        log.info("polygon %s websocket: %s", market, what)

    async def _supervise(self, market: str) -> None:
        endpoint = self.config.stocks_endpoint if market == "stocks" else self.config.options_endpoint
        delays = self._delays()
        first = True
        while not self._stopping.is_set():
            client = WebSocketClient(
                api_key=self._key, feed=endpoint.feed, market=endpoint.market,
                secure=endpoint.secure, raw=True, subscriptions=self._topics(market),
                max_reconnects=0,
            )
            self._clients[market] = client
            if market == "stocks" and not first:
                self._need_backfill = True
            started = time.monotonic()
            connect = asyncio.create_task(client.connect(
                lambda raw: self._on_frame(market, raw),
                close_timeout=1,
                logger=self._ws_logger,
                open_timeout=self._open_timeout_s,
                ping_interval=self._ping_interval_s,
                ping_timeout=self._ping_timeout_s,
                reconnect_delays=self._delays,
            ))
            monitor = asyncio.create_task(self._monitor(market, client, connect))
            try:
                await connect
                reason = "closed by the server"
            except AuthError:
                self._event(market, "API key rejected")
                raise PolygonAuthError(f"polygon {market} websocket: API key rejected") from None
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():  # we are being stopped
                    connect.cancel()
                    await asyncio.gather(connect, return_exceptions=True)
                    raise
                reason = f"no greeting or auth answer within {2 * self._open_timeout_s:g} s"
            except Exception as exc:  # noqa: BLE001 - any connection failure means reconnect
                reason = redact(f"{type(exc).__name__}: {exc}"[:200], self._key)
            finally:
                monitor.cancel()
                self._clients.pop(market, None)
                # massive leaves the socket open when connect() raises (e.g. on auth_failed)
                if client.websocket is not None:
                    client.websocket.transport.abort()
            if self._stopping.is_set():
                break
            self._event(market, f"disconnected ({reason})")
            if time.monotonic() - started >= self._stable_after_s:
                delays = self._delays()
            delay = next(delays)
            first = False
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
            except TimeoutError:
                pass

    async def _monitor(self, market: str, client: WebSocketClient, connect: asyncio.Task[Any]) -> None:
        """Notice when the connection is authenticated and subscribed, then backfill.

        massive waits without a timeout for the server's greeting and auth answer; a server
        that accepts the socket and then says nothing is cut off here."""
        opened_at = None
        while client.websocket is None or client.schedule_resub:
            await asyncio.sleep(0.02)
            if client.websocket is not None and opened_at is None:
                opened_at = time.monotonic()
            if opened_at is not None and time.monotonic() - opened_at > 2 * self._open_timeout_s:
                connect.cancel()
                return
        self._event(market, "connected")
        if market == "options":
            self._apply_watch()
        else:
            async with self._deliver_lock:
                if self._need_backfill:
                    await self._backfill(self.config.equity_ticker, None, self.clock.now().date())

    # -- messages ---------------------------------------------------------------------------------

    def _reject(self, reason: str, detail: str) -> None:
        detail = redact(detail, self._key)
        self.rejections.append((reason, detail))
        if len(self.rejections) > self._max_rejections:
            del self.rejections[: len(self.rejections) - self._max_rejections]
        log.warning("polygon stream rejected a message (%s): %s", reason, detail)
        if self._on_rejection is not None:
            try:
                self._on_rejection(reason, detail)
            except Exception:  # noqa: BLE001
                log.exception("polygon stream: on_rejection callback failed")

    async def _on_frame(self, market: str, raw: str | bytes) -> None:
        try:
            payload = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self._reject("malformed", f"{market}: a frame that is not valid JSON ({len(raw)} bytes)")
            return
        if not isinstance(payload, list):
            self._reject("malformed", f"{market}: a frame that is not a JSON list")
            return
        for item in payload:
            if not isinstance(item, dict):
                self._reject("malformed", f"{market}: an event that is not a JSON object")
                continue
            ev = item.get("ev")
            try:
                if ev == "status":
                    status = item.get("status")
                    if status not in _OK_STATUSES:
                        self._event(market, f"server status {status}: {str(item.get('message'))[:200]}")
                elif ev == "AM" and market == "stocks":
                    await self._deliver_live_bar(bar_from_am(item))
                elif ev == "Q" and market == "options":
                    self._deliver_quote(quote_from_q(item))
                else:
                    self._reject("unexpected", f"{market}: event {str(ev)[:20]!r}")
            except RejectedEvent as rej:
                self._reject(rej.reason, rej.detail)

    async def _deliver_live_bar(self, bar: Bar) -> None:
        async with self._deliver_lock:
            last = self._last_bar.get(bar.symbol)
            if last is not None and bar.start <= last:
                reason = "duplicate" if bar.start == last else "out_of_order"
                self._reject(reason, f"AM {bar.symbol} {bar.start:%Y-%m-%d %H:%M} is not after "
                                     f"the last delivered bar {last:%H:%M}")
                return
            if bar.symbol == self.config.equity_ticker and (
                self._need_backfill or (last is not None and bar.start - last > MINUTE)
            ):
                await self._backfill(bar.symbol, bar.start, bar.start.date())
            self._emit_bar(bar)

    async def _backfill(self, symbol: str, before: dt.datetime | None, session_date: dt.date) -> None:
        """Deliver the REST bars after the last delivered one (and before ``before``).
        Called with the delivery lock held."""
        try:
            bars = await asyncio.to_thread(self.market_data.minute_bars, symbol, session_date)
        except Exception as exc:  # noqa: BLE001 - a failed backfill is recorded, live goes on
            self._reject("backfill_failed", redact(f"{symbol} {session_date}: {type(exc).__name__}: {exc}"[:300], self._key))
            return
        self._need_backfill = False
        now = self.clock.now()
        count = 0
        for bar in sorted(bars, key=lambda b: b.start):
            last = self._last_bar.get(symbol)
            if (last is not None and bar.start <= last) or (before is not None and bar.start >= before):
                continue
            if bar.end > now:
                continue
            self._emit_bar(bar)
            count += 1
        self.backfilled += count
        if count:
            log.info("polygon stream: backfilled %d %s bars from REST", count, symbol)

    def _emit_bar(self, bar: Bar) -> None:
        self._last_bar[bar.symbol] = bar.start
        try:
            self._on_bar(bar)
        except Exception:  # noqa: BLE001 - the consumer's bug must not kill the feed
            log.exception("polygon stream: on_bar callback failed")

    def _deliver_quote(self, quote: OptionQuote) -> None:
        if quote.symbol not in self._watched:
            return  # a straggler from before an unsubscribe
        last = self._last_quote.get(quote.symbol)
        if last is not None:
            if quote.start < last[0]:
                self._reject("out_of_order", f"Q {quote.symbol} at {quote.start:%H:%M:%S.%f} is older "
                                             f"than the last delivered quote")
                return
            if quote.start == last[0] and (quote.bid, quote.ask) == last[1:]:
                self._reject("duplicate", f"Q {quote.symbol} at {quote.start:%H:%M:%S.%f} repeated")
                return
        self._last_quote[quote.symbol] = (quote.start, quote.bid, quote.ask)
        try:
            self._on_quote(quote)
        except Exception:  # noqa: BLE001
            log.exception("polygon stream: on_quote callback failed")
