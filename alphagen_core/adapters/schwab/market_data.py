"""`SchwabMarketData`: the MarketDataClient on Schwab's market data API (REST polling).

- quotes: ``GET /marketdata/v1/quotes?symbols=`` (Schwab-form symbols, at most
  `QUOTE_BATCH` per request); ``bidPrice``/``askPrice``/``lastPrice``/``quoteTime`` (ms).
  Symbols Schwab does not know (its ``errors.invalidSymbols``) or entries without a
  numeric bid and ask are left out of the result, with a warning.
- option_chain: ``GET /marketdata/v1/chains`` for one expiry (fromDate = toDate);
  ``callExpDateMap``/``putExpDateMap`` keyed ``"YYYY-MM-DD:dte"`` then by strike. Schwab's
  documented contract fields are ``bidPrice``/``askPrice``/``lastPrice`` while the live
  service answers ``bid``/``ask``/``last``: both are read.
- minute_bars: ``GET /marketdata/v1/pricehistory`` (1-minute candles, regular hours only).
  A candle's ``datetime`` is its start; only bars whose minute has ended by now are
  returned (a bar is usable only after its window ends). Schwab sends no per-bar
  VWAP, so `vwap` is None.

Every request shares the session's rate limiter and retries (session.py, ratelimit.py).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import structlog
from schwab.client import Client

from alphagen_core.adapters.schwab.config import SchwabConfig
from alphagen_core.adapters.schwab.errors import SchwabAPIError
from alphagen_core.adapters.schwab.session import SchwabSession, response_json
from alphagen_core.domain.clock import NY
from alphagen_core.domain.models import Bar, OptionQuote
from alphagen_core.domain.symbols import (
    OptionSymbolError,
    parse_polygon,
    parse_schwab,
    polygon_to_schwab,
    schwab_to_polygon,
)

log = structlog.get_logger(__name__)

QUOTE_BATCH = 100
SESSION_OPEN = dt.time(9, 30)
SESSION_CLOSE = dt.time(16, 0)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _ms_to_ny(value: Any) -> dt.datetime | None:
    number = _number(value)
    if number is None or number <= 0:
        return None
    return dt.datetime.fromtimestamp(number / 1000, tz=NY)


def _first(data: dict[str, Any], *names: str) -> float | None:
    for name in names:
        number = _number(data.get(name))
        if number is not None:
            return number
    return None


class SchwabMarketData:
    def __init__(self, session: SchwabSession) -> None:
        self.session = session

    @classmethod
    def from_settings(cls, settings: Any, **session_kwargs: Any) -> SchwabMarketData:
        return cls(SchwabSession(SchwabConfig.from_settings(settings), **session_kwargs))

    # -- quotes

    def quotes(self, option_symbols: list[str]) -> dict[str, OptionQuote]:
        """Current quotes of the given contracts, keyed by their Polygon-form symbols."""
        wanted: dict[str, str] = {}  # schwab form -> polygon form
        for symbol in option_symbols:
            wanted[polygon_to_schwab(symbol)] = symbol  # raises OptionSymbolError if bad
        result: dict[str, OptionQuote] = {}
        batch_keys = list(wanted)
        for i in range(0, len(batch_keys), QUOTE_BATCH):
            batch = batch_keys[i : i + QUOTE_BATCH]
            response = self.session.call("quotes", lambda c, b=batch: c.get_quotes(b))
            body = response_json(response, "quotes")
            if not isinstance(body, dict):
                raise SchwabAPIError("quotes", response.status_code, "unexpected answer shape")
            for schwab_symbol in batch:
                entry = body.get(schwab_symbol)
                if not isinstance(entry, dict):
                    continue
                quote = self._quote(wanted[schwab_symbol], entry)
                if quote is not None:
                    result[wanted[schwab_symbol]] = quote
            invalid = (body.get("errors") or {}).get("invalidSymbols") if isinstance(
                body.get("errors"), dict
            ) else None
            if invalid:
                log.warning("schwab_unknown_symbols", symbols=list(invalid)[:20])
        return result

    def _quote(self, polygon_symbol: str, entry: dict[str, Any]) -> OptionQuote | None:
        data = entry.get("quote") if isinstance(entry.get("quote"), dict) else entry
        bid = _first(data, "bidPrice", "bid")
        ask = _first(data, "askPrice", "ask")
        if bid is None or ask is None:
            log.warning("schwab_quote_without_bid_ask", symbol=polygon_symbol)
            return None
        at = _ms_to_ny(data.get("quoteTime")) or _ms_to_ny(data.get("quoteTimeInLong"))
        return OptionQuote(
            symbol=polygon_symbol,
            contract=parse_polygon(polygon_symbol),
            start=at or self.session.now(),
            bid=bid,
            ask=ask,
            last=_first(data, "lastPrice", "last"),
            open=None,
            high=None,
            low=None,
            volume=_first(data, "totalVolume"),
        )

    # -- chain

    def option_chain(self, underlying: str, expiry: dt.date) -> list[OptionQuote]:
        """Quotes of every listed contract of `underlying` expiring on `expiry`."""
        response = self.session.call(
            "option chain",
            lambda c: c.get_option_chain(
                underlying,
                contract_type=Client.Options.ContractType.ALL,
                strategy=Client.Options.Strategy.SINGLE,
                from_date=expiry,
                to_date=expiry,
            ),
        )
        body = response_json(response, "option chain")
        if not isinstance(body, dict):
            raise SchwabAPIError("option chain", response.status_code, "unexpected answer shape")
        result: list[OptionQuote] = []
        for map_name in ("callExpDateMap", "putExpDateMap"):
            by_expiry = body.get(map_name) or {}
            if not isinstance(by_expiry, dict):
                continue
            for by_strike in by_expiry.values():
                if not isinstance(by_strike, dict):
                    continue
                for contracts in by_strike.values():
                    for contract in contracts if isinstance(contracts, list) else []:
                        quote = self._chain_quote(contract, expiry)
                        if quote is not None:
                            result.append(quote)
        result.sort(key=lambda q: (q.contract.strike, q.contract.right.value))
        return result

    def _chain_quote(self, contract: Any, expiry: dt.date) -> OptionQuote | None:
        if not isinstance(contract, dict):
            return None
        try:
            parsed = parse_schwab(str(contract.get("symbol", "")))
        except OptionSymbolError:
            return None
        if parsed.expiry != expiry:
            return None
        bid = _first(contract, "bid", "bidPrice")
        ask = _first(contract, "ask", "askPrice")
        if bid is None or ask is None:
            return None
        polygon_symbol = schwab_to_polygon(str(contract["symbol"]))
        return OptionQuote(
            symbol=polygon_symbol,
            contract=parsed,
            start=_ms_to_ny(contract.get("quoteTimeInLong")) or self.session.now(),
            bid=bid,
            ask=ask,
            last=_first(contract, "last", "lastPrice"),
            volume=_first(contract, "totalVolume"),
        )

    # -- bars

    def minute_bars(self, symbol: str, session_date: dt.date) -> list[Bar]:
        """The session's closed regular-hours minute bars so far."""
        now = self.session.now()
        start = dt.datetime.combine(session_date, SESSION_OPEN, tzinfo=NY)
        end = min(dt.datetime.combine(session_date, SESSION_CLOSE, tzinfo=NY), now)
        if end <= start:
            return []
        response = self.session.call(
            "price history",
            lambda c: c.get_price_history_every_minute(
                symbol,
                start_datetime=start,
                end_datetime=end,
                need_extended_hours_data=False,
            ),
        )
        body = response_json(response, "price history")
        candles = body.get("candles") if isinstance(body, dict) else None
        bars: dict[dt.datetime, Bar] = {}
        for candle in candles if isinstance(candles, list) else []:
            bar = self._bar(symbol, candle)
            if bar is None:
                continue
            if bar.start.date() != session_date:
                continue
            if not SESSION_OPEN <= bar.start.time() < SESSION_CLOSE or bar.end > now:
                continue
            bars[bar.start] = bar  # a repeated minute keeps the last copy
        return [bars[k] for k in sorted(bars)]

    @staticmethod
    def _bar(symbol: str, candle: Any) -> Bar | None:
        if not isinstance(candle, dict):
            return None
        start = _ms_to_ny(candle.get("datetime"))
        values = [_number(candle.get(k)) for k in ("open", "high", "low", "close", "volume")]
        if start is None or any(v is None for v in values):
            return None
        o, h, low, c, v = values  # type: ignore[misc]
        if start.second or start.microsecond:
            return None
        return Bar(symbol=symbol, start=start, open=o, high=h, low=low, close=c, volume=v)


__all__ = ["SchwabMarketData"]
