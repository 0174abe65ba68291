"""One hand-built session, worked out by hand: every trade and the P/L to the cent.

A short test session on 2024-02-12 that closes at 10:30 (so that the flatten and the
no-entry window fall inside 60 bars): no entries from 10:20 (10 minutes), flatten 5 minutes
before the close, so the flatten is decided at 10:24 (bar 10:23's end) and fills on bar
10:24, before 10:25. Bars are flat (o=h=l=c), volume 1000, no `vw`, so VWAP is the running
mean of the prices and MA9 the mean of the last nine. Option data are minute aggregates with
a half-spread of 0.05: bid = price - 0.05, ask = price + 0.05. Every contract trades at 1.00
unless overridden below.

Crossings, by hand (VWAP = running mean, MA9 = mean of the last 9):
- 09:42: MA9 = (100*5 + 99 + 98 + 101 + 102)/9 = 100 = VWAP 1300/13 -> a zero keeps side -1.
- 09:43: MA9 = 903/9 = 100.333 > VWAP = 1403/14 = 100.214 -> bullish (sell a put).
- 09:53: MA9 = 896/9 = 99.556 < VWAP = 2402/24 = 100.083 -> bearish (sell a call).
- 10:00: MA9 = 908/9 = 100.889 > VWAP = 3116/31 = 100.516 -> bullish.
- 10:06: MA9 = 896/9 = 99.556 < VWAP = 3701/37 = 100.027 -> bearish: reversal + rollover.

Trades (25 contracts each; fees 25 * 0.65 = 16.25 per fill):
1. Sell P103 at 09:44 open bid 2.05-0.05 = 2.00; stop 4.00, target 1.00. Bar 09:47 low
   0.90 -> low ask 0.95 <= 1.00: take-profit, buy at 1.00 (open ask 1.35 is above it).
   (2.00 - 1.00) * 100 * 25 - 32.50 = 2,467.50
2. Sell C97 at 09:54 open bid 1.50; stop 3.00, target 0.75. Bar 09:57 high 3.10 -> high
   ask 3.15 >= 3.00 and low 0.60 -> low ask 0.65 <= 0.75: both touched, assume the stop;
   buy at 3.00 (open ask 2.05 is below it).  (1.50 - 3.00) * 100 * 25 - 32.50 = -3,782.50
3. Sell P103 at 10:01 open bid 1.80. Bearish crossover at 10:06 -> buy to close at 10:07
   open ask 2.45 + 0.05 = 2.50.  (1.80 - 2.50) * 100 * 25 - 32.50 = -1,782.50
4. Rollover: sell C96 at 10:07 open bid 1.20; flattened at 10:24 open ask 0.80 + 0.05 =
   0.85.  (1.20 - 0.85) * 100 * 25 - 32.50 = 842.50
Total: 2,467.50 - 3,782.50 - 1,782.50 + 842.50 = -2,255.00; fees 8 * 16.25 = 130.00.
"""

from __future__ import annotations

import datetime as dt

import pytest

from alphagen_core.domain.engine import StrategyConfig
from alphagen_core.domain.models import Action, MinuteSlice, OrderStatus
from alphagen_core.domain.risk import RiskConfig
from tests.builders import at, chain, flat_bar, make_engine, option_symbol, run_engine

pytestmark = pytest.mark.unit

DAY = dt.date(2024, 2, 12)
PATH = [100] * 9 + [99, 98, 101, 102, 103, 103, 103, 103, 102, 100, 99, 98, 97, 97, 97, 98,
        100, 102, 103, 104, 104, 103, 101, 99, 97, 96] + [96] * 25
OVERRIDES = {  # minute -> {(right, strike): (open[, high, low, close])}
    "09:43": {("P", 103): (2.05,)}, "09:44": {("P", 103): (2.05,)},
    "09:45": {("P", 103): (2.05,)}, "09:46": {("P", 103): (2.05,)},
    "09:47": {("P", 103): (1.30, 1.30, 0.90, 0.95)},
    "09:53": {("C", 97): (1.55,)}, "09:54": {("C", 97): (1.55,)},
    "09:55": {("C", 97): (1.55,)}, "09:56": {("C", 97): (1.55,)},
    "09:57": {("C", 97): (2.00, 3.10, 0.60, 3.00)},
    **{f"10:0{m}": {("P", 103): (1.85,)} for m in range(0, 7)},
    "10:07": {("P", 103): (2.45,), ("C", 96): (1.25,)},
    "10:24": {("C", 96): (0.80,)},
}
CONFIG = StrategyConfig(
    risk=RiskConfig(),
    no_entry_before_close=dt.timedelta(minutes=10),
    flatten_before_close=dt.timedelta(minutes=5),
)


def slices() -> list[MinuteSlice]:
    out = []
    for i, price in enumerate(PATH):
        start = at(DAY, "09:30") + dt.timedelta(minutes=i)
        quotes = chain(DAY, start, range(94, 107), overrides=OVERRIDES.get(f"{start:%H:%M}"))
        out.append(MinuteSlice(flat_bar(start, price), quotes))
    return out


@pytest.fixture(scope="module")
def result():
    engine = make_engine(DAY, "10:30", CONFIG)
    return engine, run_engine(engine, slices())


def test_signals_at_the_hand_computed_crossings(result):
    _, out = result
    got = [(s.est_timestamp.strftime("%H:%M"), s.signal_type.value, s.acted) for s in out.signals]
    # decided at each crossing bar's end
    assert got == [("09:44", "bullish", True), ("09:54", "bearish", True),
                   ("10:01", "bullish", True), ("10:07", "bearish", True)]


def test_fills_match_the_hand_worked_trades(result):
    _, out = result
    fills = [(e.est_timestamp.strftime("%H:%M"), e.action, e.option_symbol, e.fill_price, e.qty,
              e.exit_reason, e.pnl_contrib) for e in out.executions if e.status is OrderStatus.FILLED]
    p103, c97, c96 = option_symbol(DAY, "P", 103), option_symbol(DAY, "C", 97), option_symbol(DAY, "C", 96)
    assert fills == [
        ("09:44", Action.SELL_TO_OPEN, p103, 2.00, 25, None, -16.25),
        ("09:47", Action.BUY_TO_CLOSE, p103, 1.00, 25, "take_profit", 2483.75),
        ("09:54", Action.SELL_TO_OPEN, c97, 1.50, 25, None, -16.25),
        ("09:57", Action.BUY_TO_CLOSE, c97, 3.00, 25, "stop_loss", -3766.25),
        ("10:01", Action.SELL_TO_OPEN, p103, 1.80, 25, None, -16.25),
        ("10:07", Action.BUY_TO_CLOSE, p103, 2.50, 25, "reversal", -1766.25),
        ("10:07", Action.SELL_TO_OPEN, c96, 1.20, 25, None, -16.25),
        ("10:24", Action.BUY_TO_CLOSE, c96, 0.85, 25, "close", 858.75),
    ]


def test_session_pnl_to_the_cent(result):
    engine, out = result
    assert round(sum(e.pnl_contrib for e in out.executions), 2) == -2255.00
    assert round(sum(e.fees for e in out.executions), 2) == 130.00
    assert engine.realized_pnl == -2255.00
    assert out.position.net_quantity == 0 and out.position.realized_pnl == -2255.00


def test_every_execution_links_to_an_intent_and_signal(result):
    _, out = result
    intents = {i.intent_id: i for i in out.intents}
    signals = {s.signal_id for s in out.signals}
    for e in out.executions:
        assert e.intent_id in intents
        assert intents[e.intent_id].signal_id in signals
    reasons = [intents[e.intent_id].reason for e in out.executions]
    assert reasons == ["entry", "take_profit", "entry", "stop_loss", "entry", "reversal", "rollover", "close"]
