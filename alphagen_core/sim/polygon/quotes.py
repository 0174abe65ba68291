"""Option quotes the stand-in makes up from option minute bars (flat files carry no quotes).

Each option minute bar yields ``quotes_per_minute`` quotes at evenly spaced moments inside
the minute (12, 24, 36, 48 s for 4) whose price walks the bar's path (open, low, high, close
for an up bar; open, high, low, close otherwise), or with ``quotes_per_minute=OPEN_ONLY``
one quote at the minute's start at its open, with bid = max(price - half_spread, 0) and
ask = price + half_spread.
"""

from __future__ import annotations

from alphagen_core.sim.polygon.day_index import MINUTE_MS, OptionBar

OPEN_ONLY = -1  # quotes_per_minute: the book shows each minute's opening quote only
OPTION_EXCHANGE = 302  # an options exchange id, as in real Q events


def quote_path(bar: OptionBar, k: int) -> list[tuple[int, float]]:
    """(time ms, price) of the k quotes inside the bar's minute; k = OPEN_ONLY: one quote, the
    open, at the minute's start."""
    if k == OPEN_ONLY:
        return [(bar.t, bar.o)]
    if k <= 0:
        return []
    path = [bar.o, bar.l, bar.h, bar.c] if bar.c >= bar.o else [bar.o, bar.h, bar.l, bar.c]
    out = []
    for i in range(k):
        price = path[-1] if k == 1 else path[round(i * (len(path) - 1) / (k - 1))]
        out.append((bar.t + (i + 1) * MINUTE_MS // (k + 1), price))
    return out


def bid_ask(price: float, half_spread: float) -> tuple[float, float]:
    return round(max(price - half_spread, 0.0), 4), round(price + half_spread, 4)
