"""Polygon websocket events read into the domain's values: an ``AM`` event into a `Bar`, a
``Q`` event into an `OptionQuote`, or `RejectedEvent` with the reason it cannot be used
(malformed, bad_quote, crossed_quote)."""

from __future__ import annotations

from typing import Any

from massive.websocket.models import EquityAgg, EquityQuote

from alphagen_core.adapters.polygon.market_data import is_finite_number, ny_from_ms
from alphagen_core.domain.models import Bar, OptionQuote
from alphagen_core.domain.symbols import OptionSymbolError, parse_polygon


class RejectedEvent(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def bar_from_am(d: dict[str, Any]) -> Bar:
    agg = EquityAgg.from_dict(d)
    sym = agg.symbol if isinstance(agg.symbol, str) and agg.symbol else None
    label = f"AM {sym or '?'}"
    if sym is None:
        raise RejectedEvent("malformed", "AM without a symbol")
    fields = {"s": agg.start_timestamp, "o": agg.open, "h": agg.high, "l": agg.low, "c": agg.close, "v": agg.volume}
    missing = [k for k, v in fields.items() if v is None]
    if missing:
        raise RejectedEvent("malformed", f"{label}: missing {', '.join(missing)}")
    bad = [k for k, v in fields.items() if not is_finite_number(v)]
    if bad or not isinstance(agg.start_timestamp, int):
        raise RejectedEvent("malformed", f"{label}: non-numeric {', '.join(bad or ['s'])}")
    o, h, lo, c, v = (float(x) for x in (agg.open, agg.high, agg.low, agg.close, agg.volume))
    if v < 0 or lo > min(o, c) + 1e-9 or h < max(o, c) - 1e-9 or lo <= 0:
        raise RejectedEvent("malformed", f"{label}: inconsistent prices or volume")
    start = ny_from_ms(agg.start_timestamp)
    return Bar(
        symbol=sym, start=start, open=o, high=h, low=lo, close=c, volume=v,
        vwap=float(agg.vwap) if is_finite_number(agg.vwap) else None,
        day_vwap=float(agg.aggregate_vwap) if is_finite_number(agg.aggregate_vwap) else None,
    )


def quote_from_q(d: dict[str, Any]) -> OptionQuote:
    q = EquityQuote.from_dict(d)
    sym = q.symbol if isinstance(q.symbol, str) and q.symbol else None
    if sym is None:
        raise RejectedEvent("malformed", "Q without a symbol")
    try:
        contract = parse_polygon(sym)
    except OptionSymbolError as exc:
        raise RejectedEvent("malformed", f"Q: {exc}") from None
    fields = {"bp": q.bid_price, "ap": q.ask_price, "t": q.timestamp}
    missing = [k for k, v in fields.items() if v is None]
    if missing:
        raise RejectedEvent("malformed", f"Q {sym}: missing {', '.join(missing)}")
    bad = [k for k, v in fields.items() if not is_finite_number(v)]
    if bad:
        raise RejectedEvent("malformed", f"Q {sym}: non-numeric {', '.join(bad)}")
    bid, ask = float(q.bid_price), float(q.ask_price)
    if ask <= 0 or bid < 0:
        raise RejectedEvent("bad_quote", f"Q {sym}: non-positive ask or negative bid")
    if bid > ask:
        raise RejectedEvent("crossed_quote", f"Q {sym}: bid {bid} above ask {ask}")
    return OptionQuote(symbol=sym, contract=contract, start=ny_from_ms(int(q.timestamp)), bid=bid, ask=ask)
