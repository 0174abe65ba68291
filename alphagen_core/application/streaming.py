"""Streamed market data for the live session, with REST as the fallback.

The session job holds the one stream (Polygon's `AM` minute bars of the underlying and `Q`
quotes of the contracts the trader asks about):
- `StreamedMarketData` answers the trader's quotes from the stream once a contract has
  quoted on the current connection, and from REST (at most once a second per contract, the
  Schwab budget) until then or while the stream is down. A pushed quote wakes the trader.
- Every streamed bar is appended to a `BarSpool`, a JSON-lines file per session day, which
  the minute runs (other processes) read through `SpooledMarketData` instead of polling REST.
  The stream backfills a gap from REST before the next live bar, so the spool has no holes;
  a spool that has not moved for `SPOOL_ALIVE` (the session job or its stream is down) is
  ignored and the minute runs poll REST as before.
Quotes keep the time their source gave them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import structlog

from alphagen_core.application.interfaces import MarketDataClient
from alphagen_core.domain.clock import Clock
from alphagen_core.domain.models import Bar, OptionQuote

log = structlog.get_logger(__name__)

# A bar closes every minute: a spool whose last bar ended longer ago than this is not being fed.
SPOOL_ALIVE = dt.timedelta(seconds=90)
MAX_WATCHED = 8  # the contracts asked about most recently (the held one and an entry or two)


class QuoteStream(Protocol):
    def run(self, on_bar: Callable[[Bar], None], on_quote: Callable[[OptionQuote], None],
            stop: Callable[[], bool]) -> None: ...

    def watch(self, option_symbols: list[str]) -> None: ...

    def connected_at(self, market: str) -> float | None:
        """time.monotonic() of the current connection to `market`, or None while down."""
        ...


class BarSpool:
    """Closed bars of one session day in `root/<date>/<symbol>.jsonl`: one writer (the
    session job, under its lease), any number of readers. A torn last line (a crash mid
    write) is skipped."""

    def __init__(self, root: Path, session_date: dt.date) -> None:
        self.dir = Path(root) / session_date.isoformat()

    def path(self, symbol: str) -> Path:
        return self.dir / f"{symbol}.jsonl"

    def append(self, bar: Bar) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        record = {**dataclasses.asdict(bar), "start": bar.start.isoformat()}
        with open(self.path(bar.symbol), "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self, symbol: str) -> list[Bar]:
        try:
            lines = self.path(symbol).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        bars: dict[dt.datetime, Bar] = {}
        for line in lines:
            try:
                record: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                continue
            record["start"] = dt.datetime.fromisoformat(record["start"])
            bars[record["start"]] = Bar(**record)
        return [bars[k] for k in sorted(bars)]


class SpooledMarketData:
    """A minute run's market data: the session job's streamed bars while the spool is fed,
    REST otherwise; the chain and quotes from REST."""

    def __init__(self, rest: MarketDataClient, spool: BarSpool, clock: Clock) -> None:
        self.rest, self.spool, self.clock = rest, spool, clock

    def minute_bars(self, symbol: str, session_date: dt.date) -> list[Bar]:
        bars = self.spool.read(symbol)
        if bars and self.clock.now() - bars[-1].end <= SPOOL_ALIVE:
            return bars
        return self.rest.minute_bars(symbol, session_date)

    def option_chain(self, underlying: str, expiry: dt.date) -> list[OptionQuote]:
        return self.rest.option_chain(underlying, expiry)

    def quotes(self, option_symbols: list[str]) -> dict[str, OptionQuote]:
        return self.rest.quotes(option_symbols)


class StreamedMarketData:
    """The session job's market data: see the module docstring. Use as a context manager
    (it runs the stream on a thread of its own)."""

    def __init__(self, stream: QuoteStream, rest: MarketDataClient, spool: BarSpool | None = None,
                 *, rest_every_s: float = 1.0) -> None:
        self.stream, self.rest, self.spool = stream, rest, spool
        self.rest_every_s = rest_every_s
        self._lock = threading.Lock()
        self._streamed: dict[str, tuple[float, OptionQuote]] = {}  # symbol -> (received, quote)
        self._from_rest: dict[str, tuple[float, OptionQuote]] = {}
        self._wanted: OrderedDict[str, None] = OrderedDict()
        self._pushed = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.streamed_quotes = self.rest_quotes = 0  # answers given from each

    def __enter__(self) -> StreamedMarketData:
        self._thread = threading.Thread(target=self._run, name="market-stream", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            self.stream.run(self._on_bar, self._on_quote, self._stop.is_set)
        except Exception as exc:  # noqa: BLE001 - REST carries on; the reason is logged
            log.error("stream.ended", error=type(exc).__name__)

    def _on_bar(self, bar: Bar) -> None:
        if self.spool is not None:
            self.spool.append(bar)

    def _on_quote(self, quote: OptionQuote) -> None:
        with self._lock:
            self._streamed[quote.symbol] = (time.monotonic(), quote)
        self._pushed.set()

    # ---- MarketDataClient ---------------------------------------------------------------------

    def minute_bars(self, symbol: str, session_date: dt.date) -> list[Bar]:
        return self.rest.minute_bars(symbol, session_date)

    def option_chain(self, underlying: str, expiry: dt.date) -> list[OptionQuote]:
        return self.rest.option_chain(underlying, expiry)

    def quotes(self, option_symbols: list[str]) -> dict[str, OptionQuote]:
        self._want(option_symbols)
        since = self.stream.connected_at("options")
        with self._lock:
            out = {s: q for s in option_symbols
                   if (got := self._streamed.get(s)) is not None and since is not None and got[0] >= since
                   for q in (got[1],)}
        self.streamed_quotes += len(out)
        missing = [s for s in option_symbols if s not in out]
        if missing:
            out.update(self._rest(missing))
        return out

    def wait_for_quote(self, timeout_s: float) -> None:
        """Sleep up to `timeout_s`, waking as soon as a quote is pushed."""
        self._pushed.wait(timeout_s)
        self._pushed.clear()

    # ---- internals ----------------------------------------------------------------------------

    def _want(self, symbols: list[str]) -> None:
        changed = False
        for s in symbols:
            changed |= s not in self._wanted
            self._wanted[s] = None
            self._wanted.move_to_end(s)
        while len(self._wanted) > MAX_WATCHED:
            self._wanted.popitem(last=False)
        if changed:
            self.stream.watch(list(self._wanted))

    def _rest(self, symbols: list[str]) -> dict[str, OptionQuote]:
        now = time.monotonic()
        due = [s for s in symbols if s not in self._from_rest or now - self._from_rest[s][0] >= self.rest_every_s]
        if due:
            for s, q in self.rest.quotes(due).items():
                self._from_rest[s] = (now, q)
            self.rest_quotes += len(due)
        return {s: self._from_rest[s][1] for s in symbols if s in self._from_rest}
