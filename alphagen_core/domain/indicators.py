"""Session VWAP and MA9, vectorised for whole days and incremental for live.

Both forms add the same floats in the same order, so they agree bit for bit:
- VWAP_t = sum(p_i * v_i) / sum(v_i) over the session's bars up to t, where p_i is the bar's
  own VWAP when the source sends one (Polygon `vw`), else the typical price (h + l + c) / 3;
- MA9_t = (c_{t-8} + ... + c_t) / 9, summed left to right; undefined for the first 8 bars.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import polars as pl

MA_WINDOW = 9
BAR_VWAP = "bar_vwap"
TYPICAL_PRICE = "typical_price"


def bar_price(high: float, low: float, close: float, bar_vwap: float | None) -> float:
    return bar_vwap if bar_vwap is not None else (high + low + close) / 3


@dataclass(slots=True)
class SessionIndicators:
    """Incremental VWAP/MA9 for one session; feed bars in order with `update`."""

    _pv: float = 0.0
    _v: float = 0.0
    _closes: deque[float] = field(default_factory=lambda: deque(maxlen=MA_WINDOW))

    def update(
        self, high: float, low: float, close: float, volume: float, bar_vwap: float | None
    ) -> tuple[float | None, float | None]:
        self._pv += bar_price(high, low, close, bar_vwap) * volume
        self._v += volume
        self._closes.append(close)
        vwap = self._pv / self._v if self._v > 0 else None
        if len(self._closes) < MA_WINDOW:
            return vwap, None
        total = 0.0
        for c in self._closes:
            total += c
        return vwap, total / MA_WINDOW


def with_indicators(bars: pl.DataFrame) -> pl.DataFrame:
    """Add `vwap`, `ma9` and `vwap_source` to one session's bars sorted by time.

    Needs columns high, low, close, volume; uses `bar_vwap` where present and not null.
    The arithmetic is numpy's, element by element: polars may reassociate float
    expressions, which would break bit-for-bit agreement with the incremental form.
    """
    high, low, close, volume = (bars[c].to_numpy().astype(np.float64) for c in ("high", "low", "close", "volume"))
    typical = (high + low + close) / 3
    if "bar_vwap" in bars.columns:
        bar_vwap = bars["bar_vwap"].cast(pl.Float64).to_numpy()
        has_vw = ~np.isnan(bar_vwap)
        price = np.where(has_vw, bar_vwap, typical)
    else:
        has_vw = np.zeros(len(bars), dtype=bool)
        price = typical
    cum_pv = np.cumsum(price * volume)
    cum_v = np.cumsum(volume)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(cum_v > 0, cum_pv / cum_v, np.nan)
    ma9 = np.full(len(bars), np.nan)
    if len(bars) >= MA_WINDOW:
        total = np.zeros(len(bars) - MA_WINDOW + 1)
        for lag in range(MA_WINDOW):  # oldest first, as the incremental form adds
            total = total + close[lag : len(close) - MA_WINDOW + 1 + lag]
        ma9[MA_WINDOW - 1 :] = total / MA_WINDOW
    return bars.with_columns(
        vwap=pl.Series(vwap, nan_to_null=True),
        ma9=pl.Series(ma9, nan_to_null=True),
        vwap_source=pl.Series(np.where(has_vw, BAR_VWAP, TYPICAL_PRICE)),
    )
