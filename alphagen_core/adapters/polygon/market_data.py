"""`PolygonMarketData`: the MarketDataClient over Polygon (Massive) REST, through the
official ``massive.RESTClient``: minute bars and option snapshots.

- A bar is returned only after its window ended (``bar.end <= clock.now()``); REST may hand
  out the minute still forming, which is dropped.
- Unusable snapshots (crossed or non-positive quotes, bad tickers) are skipped with a warning.
- The API key is never logged and never put in an exception's text.

The websocket stream is `stream.PolygonStream`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import urllib3
from massive import RESTClient
from massive.exceptions import BadResponse

from alphagen_core.adapters.polygon.config import PolygonConfig
from alphagen_core.domain import calendar
from alphagen_core.domain.clock import NY, Clock, WallClock
from alphagen_core.domain.models import MINUTE, Bar, OptionQuote
from alphagen_core.domain.symbols import OptionSymbolError, parse_polygon
from alphagen_core.operations.redaction import redact, redacting_logger

log = logging.getLogger(__name__)
T = TypeVar("T")

MASSIVE_LOGGERS = ("WebSocketClient", "RESTClient")


class PolygonError(RuntimeError):
    """A Polygon request failed. The text never contains the API key."""


class PolygonAuthError(PolygonError):
    """Polygon rejected the API key (REST 401 or websocket auth_failed)."""


class PolygonNotFound(PolygonError):
    """Polygon answered 404 (unknown ticker or contract)."""


def is_finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def ny_from_ms(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, NY)


class PolygonMarketData:
    """MarketDataClient over Polygon REST.

    Transient failures (5xx, 429, timeouts, resets) are first retried by the massive client
    (3 times, urllib3 backoff 0-0.4 s), then here ``attempts`` times with exponential backoff
    capped at ``max_backoff_s``; a paged listing restarts from its first page.
    """

    def __init__(
        self,
        config: PolygonConfig,
        *,
        clock: Clock | None = None,
        attempts: int = 4,
        backoff_s: float = 0.25,
        max_backoff_s: float = 3.0,
        timeout_s: float = 10.0,
        regular_session_only: bool = True,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or WallClock()
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._regular_only = regular_session_only
        key = config.api_key.get_secret_value()
        self._key = key
        for name in MASSIVE_LOGGERS:
            redacting_logger(name, key)
        redacting_logger("urllib3.connectionpool", key)
        self._client = RESTClient(
            api_key=key,
            base=config.rest_url,
            connect_timeout=timeout_s,
            read_timeout=timeout_s,
            retries=3,
        )

    def __repr__(self) -> str:
        return f"PolygonMarketData(rest_url={self.config.rest_url!r})"

    def close(self) -> None:
        """Close the pooled HTTP connections (they reopen on the next request)."""
        self._client.client.clear()

    def __enter__(self) -> PolygonMarketData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        delay = self._backoff_s
        last: BaseException | None = None
        for attempt in range(1, self._attempts + 1):
            try:
                return fn()
            except BadResponse as exc:
                raise self._bad_response(what, str(exc)) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                last = exc
                if attempt == self._attempts:
                    break
                log.warning(
                    "polygon %s failed (%s), attempt %d of %d; retrying in %.2f s",
                    what, type(exc).__name__, attempt, self._attempts, delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, self._max_backoff_s)
        reason = type(last).__name__ if last is not None else "unknown error"
        if isinstance(last, urllib3.exceptions.MaxRetryError) and last.reason is not None:
            reason = f"{reason}: {type(last.reason).__name__}"
        raise PolygonError(f"polygon {what} failed after {self._attempts} attempts ({reason})") from None

    def _bad_response(self, what: str, body: str) -> PolygonError:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = {}
        parsed = parsed if isinstance(parsed, dict) else {}
        status = str(parsed.get("status", ""))
        message = str(parsed.get("error") or parsed.get("message") or body[:200])
        text = redact(f"polygon {what} failed: {status} {message}".strip(), self._key)
        if "api key" in message.lower() or status in ("NOT_AUTHORIZED", "AUTH_ERROR"):
            return PolygonAuthError(redact(f"polygon {what}: API key rejected ({message})", self._key))
        if status == "NOT_FOUND":
            return PolygonNotFound(text)
        return PolygonError(text)

    # MarketDataClient

    def minute_bars(self, symbol: str, session_date: dt.date) -> list[Bar]:
        day = session_date.isoformat()

        def fetch() -> list[Any]:
            return list(self._client.list_aggs(
                symbol, 1, "minute", day, day, adjusted=True, sort="asc", limit=50000,
            ))

        aggs = self._call(f"minute bars of {symbol} on {day}", fetch)
        lo = hi = None
        if self._regular_only:
            if not calendar.is_trading_day(session_date):
                return []
            s = calendar.session(session_date)
            lo, hi = s.open, s.close
        now = self.clock.now()
        bars: dict[dt.datetime, Bar] = {}
        for agg in aggs:
            values = (agg.open, agg.high, agg.low, agg.close, agg.volume)
            if not isinstance(agg.timestamp, int) or not all(is_finite_number(v) for v in values):
                log.warning("polygon: skipped a malformed %s aggregate", symbol)
                continue
            start = ny_from_ms(agg.timestamp)
            if start.date() != session_date or start + MINUTE > now:
                continue  # another day, or the minute still forming (look-ahead)
            if lo is not None and hi is not None and not lo <= start < hi:
                continue
            bars[start] = Bar(
                symbol=symbol, start=start, open=float(agg.open), high=float(agg.high),
                low=float(agg.low), close=float(agg.close), volume=float(agg.volume),
                vwap=float(agg.vwap) if is_finite_number(agg.vwap) else None,
                transactions=int(agg.transactions) if is_finite_number(agg.transactions) else None,
            )
        return [bars[k] for k in sorted(bars)]

    def option_chain(self, underlying: str, expiry: dt.date) -> list[OptionQuote]:
        params = {"expiration_date": expiry.isoformat(), "limit": 250}

        def fetch() -> list[Any]:
            return list(self._client.list_snapshot_options_chain(underlying, params=dict(params)))

        snaps = self._call(f"option chain of {underlying} {expiry}", fetch)
        quotes = {}
        for snap in snaps:
            q = self._quote_from_snapshot(snap)
            if q is not None and q.contract.expiry == expiry:
                quotes[q.symbol] = q
        return [quotes[k] for k in sorted(quotes)]

    def quotes(self, option_symbols: list[str]) -> dict[str, OptionQuote]:
        out: dict[str, OptionQuote] = {}
        for sym in dict.fromkeys(option_symbols):
            contract = parse_polygon(sym)
            try:
                snap = self._call(
                    f"snapshot of {sym}",
                    lambda: self._client.get_snapshot_option(contract.root, sym),  # noqa: B023
                )
            except PolygonNotFound:
                log.warning("polygon: no snapshot for %s", sym)
                continue
            q = self._quote_from_snapshot(snap)
            if q is not None:
                out[sym] = q
        return out

    def _quote_from_snapshot(self, snap: Any) -> OptionQuote | None:
        details, lq = getattr(snap, "details", None), getattr(snap, "last_quote", None)
        ticker = getattr(details, "ticker", None)
        if not isinstance(ticker, str) or lq is None:
            return None
        bid, ask = lq.bid, lq.ask
        if not (is_finite_number(bid) and is_finite_number(ask)) or ask <= 0 or bid < 0 or bid > ask:
            log.warning("polygon: skipped an unusable quote of %s", ticker)
            return None
        try:
            contract = parse_polygon(ticker)
        except OptionSymbolError:
            log.warning("polygon: skipped a snapshot with a bad ticker")
            return None
        updated = lq.last_updated
        start = (
            dt.datetime.fromtimestamp(updated / 1e9, NY) if is_finite_number(updated) and updated > 0
            else self.clock.now()
        )
        last = getattr(getattr(snap, "last_trade", None), "price", None)
        day = getattr(snap, "day", None)
        if not is_finite_number(last):
            last = getattr(day, "close", None)
        volume = getattr(day, "volume", None)
        return OptionQuote(
            symbol=ticker, contract=contract, start=start, bid=float(bid), ask=float(ask),
            last=float(last) if is_finite_number(last) else None,
            volume=float(volume) if is_finite_number(volume) else None,
        )
