"""The stand-in's market: the current quote of each symbol and its minute candles, fed by
tests or by a replay. Orders match against it (`orders`) and the market data endpoints serve
it (`market_data`)."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from alphagen_core.domain.clock import WallClock
from alphagen_core.domain.models import OptionContract, OptionQuote
from alphagen_core.domain.symbols import (
    OptionSymbolError,
    parse_schwab,
    polygon_to_schwab,
)


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
