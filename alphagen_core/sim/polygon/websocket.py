"""The Polygon stand-in's websockets (``websockets``; ``ws://host:ws_port/stocks`` and
``/options``): the status greeting, ``auth`` -> ``auth_success`` / ``auth_failed``,
``subscribe`` / ``unsubscribe`` (``AM.QQQ``, ``AM.*``, ``Q.O:QQQ240212C00430000``, ``Q.*``),
then ``AM`` events at the END of each minute and ``Q`` events (`quotes`) during it, with the
websocket faults of `Faults`.

No look-ahead: a bar is sent as ``AM`` only once its window has ended on the sim clock
(``start + 1 min <= now``); quotes are sent at their own time.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime as dt
import json
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from alphagen_core.domain.clock import NY
from alphagen_core.operations.redaction import REDACTOR, redacting_logger
from alphagen_core.sim.polygon.day_index import MINUTE_MS
from alphagen_core.sim.polygon.quotes import OPTION_EXCHANGE, bid_ask, quote_path
from alphagen_core.sim.polygon.served import ServedMarket


class WebsocketApi:
    """Serves the two websocket clusters from ``served``; ``open_connections`` are the live
    ones (a stop aborts those that do not close)."""

    def __init__(self, served: ServedMarket) -> None:
        self.served = served
        self.open_connections: set[ServerConnection] = set()
        self.drops = 0  # drops and stalls so far, all connections (only touched on the loop)
        self._connections = 0
        self._logger = redacting_logger(__name__ + ".websockets")

    async def serve(self, host: str, port: int) -> Server:
        return await serve(
            self._handle, host, port, logger=self._logger,
            ping_interval=20, ping_timeout=20, close_timeout=1,
        )

    async def _handle(self, conn: ServerConnection) -> None:
        path = urlsplit(conn.request.path).path.strip("/") if conn.request else ""
        if path not in ("stocks", "options"):
            await conn.close(1008, "unknown cluster")
            return
        self._connections += 1
        conn_no = self._connections
        self.open_connections.add(conn)
        self.served.stats[f"ws_connections_{path}"] += 1
        try:
            await conn.send(json.dumps([{"ev": "status", "status": "connected", "message": "Connected Successfully"}]))
            if not await self._auth(conn):
                return
            session = _WsSession(self, conn, path, conn_no)
            await session.run()
        except ConnectionClosed:
            pass
        finally:
            self.open_connections.discard(conn)

    async def _auth(self, conn: ServerConnection) -> bool:
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
            if msg.get("params") == self.served.api_key:
                await conn.send(json.dumps([{"ev": "status", "status": "auth_success", "message": "authenticated"}]))
                return True
            if isinstance(msg.get("params"), str) and msg["params"]:
                REDACTOR.add(msg["params"])
            self.served.stats["ws_auth_failed"] += 1
            await conn.send(json.dumps([{"ev": "status", "status": "auth_failed", "message": "authentication failed"}]))
            await conn.close(1008, "authentication failed")
            return False

    def events(self, market: str, subs: set[str], a: int, b: int) -> list[tuple[int, str, dict[str, Any]]]:
        """Data events with time in (a, b] for the given subscriptions, in time order."""
        events: list[tuple[int, str, dict[str, Any]]] = []
        dates = {dt.datetime.fromtimestamp(x / 1000, NY).date() for x in (a, b)}
        for date in sorted(dates):
            day = self.served.data.get(date)
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
                        for t, price in quote_path(bar, self.served.quotes_per_minute):
                            if a < t <= b:
                                bid, ask = bid_ask(price, self.served.half_spread)
                                size = max(1, int(bar.v // 10) + 1)
                                events.append((t, sym, {
                                    "ev": "Q", "sym": sym, "bx": OPTION_EXCHANGE, "ax": OPTION_EXCHANGE,
                                    "bp": bid, "ap": ask, "bs": size, "as": size, "t": t,
                                }))
        events.sort(key=lambda e: (e[0], e[1]))
        return events


_MALFORMED_KINDS = ("truncated", "not_a_list", "missing_fields", "not_a_number")


class _WsSession:
    """One authenticated websocket connection: subscriptions, the timed data stream, faults."""

    def __init__(self, api: WebsocketApi, conn: ServerConnection, market: str, conn_no: int) -> None:
        self.api = api
        self.conn = conn
        self.market = market
        self.subs: set[str] = set()
        self.faults = api.served.faults
        self.rng = api.served.faults.rng("ws", market, conn_no)
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
        cursor = self.api.served.now_ms()
        while not self.finished:
            await asyncio.sleep(0.01)
            now = self.api.served.now_ms()
            if now <= cursor or not self.subs:
                cursor = max(cursor, now)
                continue
            events = await asyncio.to_thread(self.api.events, self.market, set(self.subs), cursor, now)
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
            self.api.served.stats["ws_out_of_order"] += 1
            await self._send(held)
        if f.duplicate_rate and not self.finished and rng.random() < f.duplicate_rate:
            self.api.served.stats["ws_duplicates"] += 1
            await self._send(frame)

    def _malformed(self, frame: str, event: dict[str, Any], kind: str) -> str:
        self.api.served.stats["ws_malformed"] += 1
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
        self.api.served.stats[f"ws_frames_{self.market}"] += 1
        f = self.faults
        stall = f.stall_after_messages is not None and self.sent >= f.stall_after_messages
        drop = f.drop_after_messages is not None and self.sent >= f.drop_after_messages
        if (stall or drop) and (f.max_drops is None or self.api.drops < f.max_drops):
            self.api.drops += 1
            await (self._stall() if stall else self._drop())

    async def _drop(self) -> None:
        self.finished = True
        f = self.faults
        self.api.served.stats["ws_drops"] += 1
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
        self.api.served.stats["ws_stalls"] += 1
        self.conn.transport.pause_reading()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.wait_closed(), 120)
        self.conn.transport.abort()
