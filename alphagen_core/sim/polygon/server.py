"""`PolygonStandIn`: a local stand-in for Polygon (Massive), REST and websocket on loopback,
replaying a day's flat files on a sim clock, so that the official ``massive`` clients work
against it unchanged.

This module starts and stops the two servers; what they answer is in `rest` and
`websocket` (both from one `served.ServedMarket`), the data in `day_index` and the quotes
made up from it in `quotes`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import threading
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from websockets.asyncio.server import Server

from alphagen_core.domain.clock import NY, Clock, SimClock
from alphagen_core.operations.redaction import REDACTOR
from alphagen_core.sim.faults import Faults
from alphagen_core.sim.polygon.day_index import DayStore
from alphagen_core.sim.polygon.rest import RestApi, RestServer
from alphagen_core.sim.polygon.served import ServedMarket
from alphagen_core.sim.polygon.websocket import WebsocketApi

log = logging.getLogger(__name__)


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
        self.data = DayStore(days, source, equity_ticker, underlying, cache_dir)
        if clock is None:
            dates = self.data.dates()
            if not dates:
                raise ValueError("give a clock, or at least one day to start the clock on")
            clock = SimClock(dt.datetime.combine(dates[0], dt.time(9, 30), tzinfo=NY), speed=60.0)
        self.clock = clock
        self.faults = faults or Faults()
        self.half_spread = half_spread
        self.quotes_per_minute = quotes_per_minute
        REDACTOR.add(self._api_key)
        # counters for tests and logs
        self.stats: collections.Counter[str] = collections.Counter()
        served = ServedMarket(
            self.data, clock, self.faults, self._api_key, self.stats, half_spread, quotes_per_minute
        )
        self.rest = RestApi(served, base_url=lambda: self.rest_url)
        self.websocket = WebsocketApi(served)
        self._http: RestServer | None = None
        self._http_thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ws_thread: threading.Thread | None = None
        self._ws_server: Server | None = None
        self._stop_event = threading.Event()

    # -- lifecycle

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
        self._http = RestServer((self.host, self._port), self.rest)
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
                self._ws_server = loop.run_until_complete(self.websocket.serve(self.host, self._ws_port))
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

    def stop(self) -> None:
        self._stop_event.set()
        http, self._http = self._http, None
        if http is not None:
            http.shutdown()
            http.close_open_sockets()
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
                    for conn in list(self.websocket.open_connections):
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

    # -- addresses

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
