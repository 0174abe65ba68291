"""Strategy rules of that need no state beyond their arguments: the crossover
detector and the choice of contract."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from alphagen_core.domain.models import OptionQuote, Right, SignalType


@dataclass(slots=True)
class CrossoverDetector:
    """side_t = sign(MA9_t - VWAP_t); a zero keeps the previous side. A crossover is a side
    that differs from the last non-zero side before it (the first defined side is none)."""

    side: int = 0

    def update(self, vwap: float | None, ma9: float | None) -> SignalType | None:
        if vwap is None or ma9 is None:
            return None
        diff = ma9 - vwap
        new_side = (diff > 0) - (diff < 0)
        if new_side == 0 or new_side == self.side:
            return None
        previous, self.side = self.side, new_side
        if previous == 0:
            return None
        return SignalType.BULLISH if new_side > 0 else SignalType.BEARISH


def right_for(signal: SignalType) -> Right:
    """Bullish -> sell a put; bearish -> sell a call."""
    return Right.PUT if signal is SignalType.BULLISH else Right.CALL


def target_expiry(quotes: dict[str, OptionQuote], session_date: dt.date) -> dt.date | None:
    """0DTE when listed, else the nearest later expiry."""
    expiries = {q.contract.expiry for q in quotes.values() if q.contract.expiry >= session_date}
    return min(expiries) if expiries else None


def select_contract(
    quotes: dict[str, OptionQuote],
    right: Right,
    underlying_price: float,
    expiry: dt.date,
    strike_offset: int = 0,
) -> OptionQuote | None:
    """The strike nearest the underlying (ties: lower for puts, higher for calls), moved
    `strike_offset` strikes out of the money (down for puts, up for calls)."""
    chain = sorted(
        (q for q in quotes.values() if q.contract.right is right and q.contract.expiry == expiry),
        key=lambda q: q.contract.strike,
    )
    if not chain:
        return None
    lower_on_tie = right is Right.PUT

    def distance(i: int) -> tuple[float, float]:
        strike = chain[i].contract.strike
        return abs(strike - underlying_price), strike if lower_on_tie else -strike

    nearest = min(range(len(chain)), key=distance)
    index = nearest - strike_offset if right is Right.PUT else nearest + strike_offset
    return chain[index] if 0 <= index < len(chain) else None
