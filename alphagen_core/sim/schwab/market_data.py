"""The stand-in's market data endpoints, served from its quote book.

    GET    /marketdata/v1/quotes?symbols=              options: quote.bidPrice, askPrice,
                                                       lastPrice, mark, quoteTime (ms)
    GET    /marketdata/v1/chains?symbol=&fromDate=&toDate=&contractType=&strikeCount=
           callExpDateMap / putExpDateMap keyed "YYYY-MM-DD:dte" then strike ("430.0");
           contracts carry bid/ask/last/mark/quoteTimeInLong (as the live service does)
    GET    /marketdata/v1/pricehistory                 1-minute candles from the QuoteBook
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from alphagen_core.domain.clock import NY
from alphagen_core.domain.symbols import parse_schwab
from alphagen_core.sim.schwab.quote_book import BookQuote, QuoteBook
from alphagen_core.sim.schwab.wire import Reply, describe, error, ms, utc_text


class MarketDataEndpoints:
    def __init__(self, quote_book: QuoteBook, clock: Any) -> None:
        self.quote_book = quote_book
        self.clock = clock

    def quotes(self, query: dict[str, str]) -> Reply:
        raw = query.get("symbols")
        if not raw:
            raise error(400, "symbols is required")
        result: dict[str, Any] = {}
        invalid: list[str] = []
        for symbol in (s for s in raw.split(",") if s):
            quote = self.quote_book.get(symbol)
            if quote is None:
                invalid.append(symbol)
                continue
            result[symbol] = self._quote_json(quote)
        if invalid:
            result["errors"] = {"invalidSymbols": invalid}
        return Reply(200, result)

    def _quote_json(self, q: BookQuote) -> dict[str, Any]:
        data: dict[str, Any] = {
            "bidPrice": q.bid,
            "askPrice": q.ask,
            "lastPrice": q.last if q.last is not None else q.mark,
            "mark": q.mark,
            "bidSize": 10,
            "askSize": 10,
            "quoteTime": ms(q.at),
            "tradeTime": ms(q.at),
            "totalVolume": int(q.volume or 0),
            "securityStatus": "Normal",
        }
        if len(q.symbol) != 21:
            return {
                "assetMainType": "EQUITY",
                "symbol": q.symbol,
                "realtime": True,
                "quote": data,
                "reference": {"description": q.symbol, "exchange": "Q", "exchangeName": "NASDAQ"},
            }
        contract = parse_schwab(q.symbol)
        underlying = self.quote_book.get(contract.root)
        if underlying is not None:
            data["underlyingPrice"] = (
                underlying.last if underlying.last is not None else underlying.mark
            )
        data["openInterest"] = 0
        return {
            "assetMainType": "OPTION",
            "symbol": q.symbol,
            "realtime": True,
            "quote": data,
            "reference": {
                "contractType": contract.right.value,
                "daysToExpiration": (contract.expiry - self.clock.now().date()).days,
                "description": describe(contract),
                "exchange": "o",
                "exchangeName": "OPR",
                "expirationDay": contract.expiry.day,
                "expirationMonth": contract.expiry.month,
                "expirationYear": contract.expiry.year,
                "isPennyPilot": True,
                "multiplier": 100,
                "settlementType": "P",
                "strikePrice": contract.strike,
                "underlying": contract.root,
            },
        }

    def chains(self, query: dict[str, str]) -> Reply:
        symbol = (query.get("symbol") or "").upper()
        if not symbol:
            raise error(400, "symbol is required")
        kind = (query.get("contractType") or "ALL").upper()
        try:
            start = dt.date.fromisoformat(query["fromDate"]) if query.get("fromDate") else None
            end = dt.date.fromisoformat(query["toDate"]) if query.get("toDate") else None
            strike_count = int(query["strikeCount"]) if query.get("strikeCount") else None
        except ValueError:
            raise error(400, "bad fromDate/toDate/strikeCount") from None
        underlying = self.quote_book.get(symbol)
        underlying_price = None
        if underlying is not None:
            underlying_price = underlying.last if underlying.last is not None else underlying.mark
        rows = [
            (c, q)
            for c, q in self.quote_book.options(symbol)
            if (start is None or c.expiry >= start)
            and (end is None or c.expiry <= end)
            and (kind == "ALL" or (kind == "CALL") == (c.right.value == "C"))
        ]
        if strike_count and underlying_price is not None:
            strikes = sorted(
                {c.strike for c, _ in rows}, key=lambda s: (abs(s - underlying_price), s)
            )
            keep = set(strikes[:strike_count])
            rows = [(c, q) for c, q in rows if c.strike in keep]
        today = self.clock.now().date()
        maps: dict[str, dict[str, dict[str, list[dict[str, Any]]]]] = {"C": {}, "P": {}}
        for contract, quote in sorted(rows, key=lambda r: (r[0].expiry, r[0].strike)):
            dte = (contract.expiry - today).days
            exp_key = f"{contract.expiry.isoformat()}:{dte}"
            strike_key = str(float(contract.strike))
            maps[contract.right.value].setdefault(exp_key, {}).setdefault(strike_key, []).append(
                {
                    "putCall": "CALL" if contract.right.value == "C" else "PUT",
                    "symbol": quote.symbol,
                    "description": describe(contract),
                    "exchangeName": "OPR",
                    "bid": quote.bid,
                    "ask": quote.ask,
                    "last": quote.last if quote.last is not None else quote.mark,
                    "mark": quote.mark,
                    "bidSize": 10,
                    "askSize": 10,
                    "totalVolume": int(quote.volume or 0),
                    "quoteTimeInLong": ms(quote.at),
                    "tradeTimeInLong": ms(quote.at),
                    "strikePrice": contract.strike,
                    "expirationDate": utc_text(
                        dt.datetime.combine(contract.expiry, dt.time(16, 0), tzinfo=NY)
                    ),
                    "daysToExpiration": dte,
                    "expirationType": "W",
                    "settlementType": "P",
                    "multiplier": 100.0,
                    "isPennyPilot": True,
                    "optionRoot": contract.root,
                }
            )
        return Reply(
            200,
            {
                "symbol": symbol,
                "status": "SUCCESS" if rows else "FAILED",
                "strategy": "SINGLE",
                "interval": 0.0,
                "isDelayed": False,
                "isIndex": False,
                "interestRate": 4.5,
                "underlyingPrice": underlying_price,
                "volatility": 29.0,
                "daysToExpiration": 0.0,
                "numberOfContracts": len(rows),
                "assetMainType": "OPTION",
                "callExpDateMap": maps["C"],
                "putExpDateMap": maps["P"],
            },
        )

    def price_history(self, query: dict[str, str]) -> Reply:
        symbol = (query.get("symbol") or "").upper()
        if not symbol:
            raise error(400, "symbol is required")
        if query.get("frequencyType", "minute") != "minute" or query.get("frequency", "1") != "1":
            raise error(400, "the stand-in serves 1-minute candles only")
        now = self.clock.now()
        try:
            start_ms = int(query.get("startDate") or ms(now - dt.timedelta(days=1)))
            end_ms = int(query.get("endDate") or ms(now))
        except ValueError:
            raise error(400, "startDate/endDate must be epoch milliseconds") from None
        start = dt.datetime.fromtimestamp(start_ms / 1000, tz=NY)
        end = dt.datetime.fromtimestamp(end_ms / 1000, tz=NY)
        extended = query.get("needExtendedHoursData", "false").lower() == "true"
        candles = [
            c
            for c in self.quote_book.candles(symbol, start, end)
            if extended or dt.time(9, 30) <= c.start.astimezone(NY).time() < dt.time(16, 0)
        ]
        return Reply(
            200,
            {
                "symbol": symbol,
                "empty": not candles,
                "candles": [
                    {
                        "open": c.open,
                        "high": c.high,
                        "low": c.low,
                        "close": c.close,
                        "volume": c.volume,
                        "datetime": ms(c.start),
                    }
                    for c in candles
                ],
            },
        )
