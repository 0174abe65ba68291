"""One test per strategy rule of the spec (and the bad-input safety rules the engine applies).

Sessions are real NYSE sessions from alphagen_core.domain.calendar: 2024-02-12 (a Monday, 09:30 to
16:00) and 2024-11-29 (the day after Thanksgiving, an early close at 13:00). Bars start at the
open and are flat (o = h = l = c, volume 1000, no `vw`) unless a test says otherwise, so VWAP
is the running mean of the closes and MA9 the mean of the last nine. Option data are minute
aggregates from tests/builders.chain: every contract trades at 1.00 unless overridden, and
bid/ask = price -/+ 0.05.

The paths below cross at hand-computed bars (i = bar index, bar i starts at 09:30 + i min and
is decided on at its end):
- UP = 100 x 9, 99, 102: bar 9 gives MA9 899/9 = 99.889 < VWAP 999/10 = 99.9, the first
  defined side (-1, no signal); bar 10 (09:40) MA9 901/9 = 100.111 > VWAP 1101/11 = 100.091:
  bullish, decided 09:41, sell a put at the strike nearest 102.
- DOWN = 100 x 9, 101, 98: bar 10 (09:40) MA9 899/9 = 99.889 < VWAP 1099/11 = 99.909: bearish,
  sell a call at the strike nearest 98.
- UP_DOWN = UP, 98: bar 11 (09:41) MA9 899/9 = 99.889 < VWAP 1199/12 = 99.917: bearish,
  decided 09:42.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from alphagen_core.domain.calendar import session
from alphagen_core.domain.engine import Engine, StepOutput, StrategyConfig
from alphagen_core.domain.fills import PaperBroker
from alphagen_core.domain.indicators import BAR_VWAP, TYPICAL_PRICE, with_indicators
from alphagen_core.domain.models import (
    MINUTE,
    Action,
    Bar,
    MinuteSlice,
    OptionContract,
    OptionQuote,
    OrderStatus,
    Right,
    SignalType,
)
from alphagen_core.domain.risk import RiskConfig, round_trip_pnl
from alphagen_core.domain.strategy import select_contract
from alphagen_core.domain.symbols import to_polygon
from tests.builders import at, chain, flat_bar, option_symbol

pytestmark = pytest.mark.unit

DAY = dt.date(2024, 2, 12)
EARLY_DAY = dt.date(2024, 11, 29)
STRIKES = range(90, 111)
UP = [100] * 9 + [99, 102]
DOWN = [100] * 9 + [101, 98]
UP_DOWN = UP + [98]
P102 = option_symbol(DAY, "P", 102)
C98 = option_symbol(DAY, "C", 98)
QTY = 25
FEE = 25 * 0.65  # one fill of the default 25 contracts


# ---- helpers ---------------------------------------------------------------------------


def build(
    closes: list[float],
    *,
    day: dt.date = DAY,
    prices: dict[str, dict[tuple[str, int], tuple[float, ...]]] | None = None,
    drop: dict[str, list[str]] | None = None,
) -> list[MinuteSlice]:
    """Flat bars from the session's open, one a minute, with the full chain of the session's
    expiry; prices["HH:MM"][(right, strike)] = (o[, h, l, c]); drop["HH:MM"] = symbols with
    no data in that minute."""
    out = []
    for i, price in enumerate(closes):
        start = session(day).open + i * MINUTE
        key = f"{start:%H:%M}"
        quotes = chain(day, start, STRIKES, overrides=(prices or {}).get(key))
        for symbol in (drop or {}).get(key, ()):
            del quotes[symbol]
        out.append(MinuteSlice(flat_bar(start, price), quotes))
    return out


def engine_for(day: dt.date = DAY, config: StrategyConfig | None = None) -> Engine:
    sess = session(day)
    config = config or StrategyConfig()
    return Engine(day, sess.close, config, PaperBroker(config.risk), session_open=sess.open)


def run(engine: Engine, slices: list[MinuteSlice]) -> list[StepOutput]:
    return [engine.on_slice(s) for s in slices]


def merged(outs: list[StepOutput], name: str) -> list:
    return [x for o in outs for x in getattr(o, name)]


def fills(outs: list[StepOutput]):
    return [e for e in merged(outs, "executions") if e.status is OrderStatus.FILLED]


def hm(t: dt.datetime) -> str:
    return t.strftime("%H:%M")


def real_quote(day: dt.date, start: dt.datetime, right: str, strike: float, bid: float, ask: float) -> OptionQuote:
    """A quote with a real bid and ask (no aggregate, no half-spread)."""
    contract = OptionContract("QQQ", day, Right(right), float(strike))
    return OptionQuote(symbol=to_polygon(contract), contract=contract, start=start, bid=bid, ask=ask)


# A put entry on UP: P102 priced 2.00 -> limit (bid) 1.95 at 09:41, filled at 09:41's open
# bid 1.95; stop 3.90, target 0.975.
ENTRY_PRICES = {"09:40": {("P", 102): (2.00,)}, "09:41": {("P", 102): (2.00,)}}


def bracket_session(exit_bar: tuple[float, ...]) -> tuple[Engine, list[StepOutput]]:
    """UP, a put at 1.95, then the put's minute 09:43 has (o, h, l, c) = exit_bar."""
    prices = {**ENTRY_PRICES, "09:43": {("P", 102): exit_bar}}
    engine = engine_for()
    return engine, run(engine, build(UP + [102] * 4, prices=prices))


# ---- bars and indicators ---------------------------------------------------------------


def test_bar_is_usable_only_after_its_window_ends():
    slices = build(UP + [102])
    engine = engine_for()
    outs = run(engine, slices)
    # nothing is decided before the crossing bar (09:40) has been fed, i.e. before 09:41
    assert merged(outs[:10], "signals") == [] and merged(outs[:10], "intents") == []
    [signal] = outs[10].signals
    assert signal.slice_id == "2024-02-12T09:40"
    assert signal.est_timestamp == slices[10].bar.end == at(DAY, "09:41")
    [intent] = outs[10].intents
    assert intent.est_timestamp == at(DAY, "09:41")
    assert outs[10].executions == []  # the order cannot fill on the bar it was decided on
    assert outs[10].tick.period_start == at(DAY, "09:40")  # the bar keeps its start label
    [fill] = outs[11].executions
    assert fill.est_timestamp == at(DAY, "09:41") == slices[11].bar.start
    for i, out in enumerate(outs):  # every decision is stamped at the end of its bar
        assert all(x.est_timestamp == slices[i].bar.end for x in out.signals + out.intents)


def test_session_vwap_uses_bar_vwap_when_given_else_typical_price():
    t0 = session(DAY).open
    bars = [
        Bar("QQQ", t0, 100.0, 101.0, 99.0, 100.5, 100.0),  # no vw: (101 + 99 + 100.5) / 3
        Bar("QQQ", t0 + MINUTE, 100.5, 102.0, 100.0, 101.0, 300.0, vwap=101.2),  # vw given
        Bar("QQQ", t0 + 2 * MINUTE, 101.0, 101.5, 100.5, 101.0, 600.0),
    ]
    engine = engine_for()
    ticks = [engine.on_slice(MinuteSlice(b, chain(DAY, b.start, STRIKES))).tick for b in bars]
    p1, p2, p3 = (101 + 99 + 100.5) / 3, 101.2, (101.5 + 100.5 + 101) / 3
    expected = [p1, (p1 * 100 + p2 * 300) / 400, (p1 * 100 + p2 * 300 + p3 * 600) / 1000]
    assert [t.vwap for t in ticks] == pytest.approx(expected, rel=1e-12)
    assert [t.vwap_source for t in ticks] == [TYPICAL_PRICE, BAR_VWAP, TYPICAL_PRICE]
    # the close-only VWAP would be different: the rule really uses h/l or vw
    assert ticks[2].vwap != pytest.approx((100.5 * 100 + 101 * 300 + 101 * 600) / 1000)
    # the vectorised form (replays) agrees bit for bit and records the same source
    frame = with_indicators(pl.DataFrame({
        "high": [b.high for b in bars], "low": [b.low for b in bars], "close": [b.close for b in bars],
        "volume": [b.volume for b in bars], "bar_vwap": [b.vwap for b in bars],
    }))
    assert frame["vwap"].to_list() == [t.vwap for t in ticks]
    assert frame["vwap_source"].to_list() == [TYPICAL_PRICE, BAR_VWAP, TYPICAL_PRICE]


def test_ma9_undefined_for_first_8_bars_no_signal():
    # A zigzag that crosses its own mean on every bar.
    zigzag = [100, 104, 96] + [104, 96] * 10
    engine = engine_for()
    outs = run(engine, build(zigzag))
    assert [o.tick.ma9 for o in outs[:8]] == [None] * 8
    assert outs[8].tick.ma9 == sum(zigzag[:9]) / 9 == 100.0
    assert outs[9].tick.ma9 == pytest.approx(sum(zigzag[1:10]) / 9)
    assert all(o.tick.side == 0 for o in outs[:9])  # bar 8: MA9 = VWAP = 100, still no side
    assert outs[9].tick.side == 1  # the first defined side is not a crossover
    signals = merged(outs, "signals")
    assert signals[0].est_timestamp == at(DAY, "09:41")  # bar 10, the first change of side
    assert signals[0].signal_type is SignalType.BEARISH
    assert all(s.est_timestamp >= at(DAY, "09:41") for s in signals)

    # VWAP undefined (no volume yet) -> no signal even with MA9 defined
    engine = engine_for()
    slices = [
        MinuteSlice(flat_bar(s.bar.start, s.bar.close, volume=0.0 if i < 15 else 1000.0), s.quotes)
        for i, s in enumerate(build(zigzag))
    ]
    outs = run(engine, slices)
    assert all(o.tick.vwap is None for o in outs[:15]) and outs[15].tick.vwap is not None
    assert outs[14].tick.ma9 is not None
    assert merged(outs[:16], "signals") == []  # bar 15 gives the first side only


def test_zero_difference_keeps_previous_side():
    # bar 12 (09:42): MA9 = (100*5 + 99 + 98 + 101 + 102)/9 = 100 = VWAP 1300/13 -> side stays -1
    base = [100] * 9 + [99, 98, 101, 102]
    outs = run(engine_for(), build(base + [103]))
    assert outs[12].tick.ma9 == outs[12].tick.vwap == 100.0
    assert outs[11].tick.side == outs[12].tick.side == -1
    assert outs[12].signals == []
    # bar 13 (103): MA9 903/9 > VWAP 1403/14 -> +1, which differs from the last non-zero -1
    assert [(hm(s.est_timestamp), s.signal_type) for s in merged(outs, "signals")] == [
        ("09:44", SignalType.BULLISH)
    ]
    # back below after the zero: -1 again is no crossover (the zero did not reset the side)
    outs = run(engine_for(), build(base + [97]))
    assert outs[13].tick.side == -1
    assert merged(outs, "signals") == []


def test_crossover_above_sells_put():
    outs = run(engine_for(), build(UP + [102]))
    [signal] = merged(outs, "signals")
    assert signal.signal_type is SignalType.BULLISH and signal.ma9 > signal.vwap and signal.acted
    [intent] = merged(outs, "intents")
    assert intent.action is Action.SELL_TO_OPEN and intent.option_symbol == signal.option_symbol == P102
    assert fills(outs)[0].option_symbol == P102


def test_crossover_below_sells_call():
    outs = run(engine_for(), build(DOWN + [98]))
    [signal] = merged(outs, "signals")
    assert signal.signal_type is SignalType.BEARISH and signal.ma9 < signal.vwap and signal.acted
    [intent] = merged(outs, "intents")
    assert intent.action is Action.SELL_TO_OPEN and intent.option_symbol == C98


# ---- the contract ----------------------------------------------------------------------


def test_contract_nearest_strike_ties_lower_for_puts_higher_for_calls():
    # bullish with QQQ at 101.5 (MA9 900.5/9 = 100.056 > VWAP 1100.5/11 = 100.045): 101 or 102
    outs = run(engine_for(), build([100] * 9 + [99, 101.5]))
    assert merged(outs, "intents")[0].option_symbol == option_symbol(DAY, "P", 101)
    # bearish with QQQ at 98.5 (MA9 899.5/9 = 99.944 < VWAP 1099.5/11 = 99.955): 98 or 99
    outs = run(engine_for(), build([100] * 9 + [101, 98.5]))
    assert merged(outs, "intents")[0].option_symbol == option_symbol(DAY, "C", 99)
    # away from a tie the nearest strike wins either way
    quotes = chain(DAY, at(DAY, "09:40"), STRIKES)
    for price, put, call in [(101.49, 101, 101), (101.51, 102, 102), (100.0, 100, 100)]:
        assert select_contract(quotes, Right.PUT, price, DAY).contract.strike == put
        assert select_contract(quotes, Right.CALL, price, DAY).contract.strike == call
    assert select_contract(quotes, Right.PUT, 101.5, DAY).contract.strike == 101
    assert select_contract(quotes, Right.CALL, 101.5, DAY).contract.strike == 102


def test_strike_offset_moves_out_of_the_money():
    for offset, put_strike, call_strike in [(0, 102, 98), (1, 101, 99), (2, 100, 100)]:
        config = StrategyConfig(strike_offset=offset)
        outs = run(engine_for(config=config), build(UP + [102]))
        assert merged(outs, "intents")[0].option_symbol == option_symbol(DAY, "P", put_strike)
        outs = run(engine_for(config=config), build(DOWN + [98]))
        assert merged(outs, "intents")[0].option_symbol == option_symbol(DAY, "C", call_strike)
    # an offset past the end of the listed strikes finds no contract: nothing is sold
    outs = run(engine_for(config=StrategyConfig(strike_offset=50)), build(UP + [102]))
    [signal] = merged(outs, "signals")
    assert not signal.acted and signal.drop_reason == "no_contract"
    assert merged(outs, "intents") == []


def test_nearest_later_expiry_when_no_0dte():
    later, latest, expired = dt.date(2024, 2, 13), dt.date(2024, 2, 16), dt.date(2024, 2, 9)
    slices = []
    for s in build(UP + [102]):
        quotes = {
            **chain(latest, s.bar.start, STRIKES),
            **chain(later, s.bar.start, STRIKES),
            **chain(expired, s.bar.start, STRIKES),
        }
        slices.append(MinuteSlice(s.bar, quotes))
    outs = run(engine_for(), slices)
    [signal] = merged(outs, "signals")
    expected = option_symbol(later, "P", 102)
    assert signal.acted and signal.option_symbol == expected  # the expiry is recorded
    assert signal.rationale.endswith("; no 0DTE listed: nearest expiry 2024-02-13")
    assert merged(outs, "intents")[0].option_symbol == expected
    assert fills(outs)[0].option_symbol == expected
    # with the 0DTE chain listed too, the 0DTE contract is chosen
    with_0dte = [MinuteSlice(s.bar, {**s.quotes, **chain(DAY, s.bar.start, STRIKES)}) for s in slices]
    outs = run(engine_for(), with_0dte)
    assert merged(outs, "signals")[0].option_symbol == P102
    assert "0DTE" not in merged(outs, "signals")[0].rationale


# ---- cooldown, single position, sizing, entry ------------------------------------------


# 100 x 9, 99, 102, 102, 102, 94: bullish at bar 10 (09:40, decided 09:41), bearish at bar
# 13 (09:43: MA9 899/9 = 99.889 < VWAP 1399/14 = 99.929), decided 09:44. The put sold at
# 09:41 (1.95) hits its target (0.975) at 09:42, so the book is flat at the second signal.
COOLDOWN_PATH = [100] * 9 + [99, 102, 102, 102, 94, 94]
COOLDOWN_PRICES = {**ENTRY_PRICES, "09:42": {("P", 102): (1.00, 1.00, 0.80, 0.90)}}


def test_cooldown_drops_signal_within_window():
    config = StrategyConfig(cooldown=dt.timedelta(minutes=10))
    outs = run(engine_for(config=config), build(COOLDOWN_PATH, prices=COOLDOWN_PRICES))
    first, second = merged(outs, "signals")
    assert first.acted and first.cooldown_until == at(DAY, "09:51")
    assert [(hm(e.est_timestamp), e.exit_reason) for e in fills(outs)] == [("09:41", None), ("09:42", "take_profit")]
    assert hm(second.est_timestamp) == "09:44" and second.signal_type is SignalType.BEARISH
    assert second.acted is False and second.drop_reason == "cooldown"
    assert second.option_symbol is None and second.cooldown_until == at(DAY, "09:51")
    assert "cooldown" in second.rationale
    assert [i.reason for i in merged(outs, "intents")] == ["entry", "take_profit"]
    # the same path with the default 30 s cooldown acts on the second signal
    outs = run(engine_for(), build(COOLDOWN_PATH, prices=COOLDOWN_PRICES))
    assert [s.acted for s in merged(outs, "signals")] == [True, True]
    assert merged(outs, "intents")[-1].option_symbol == option_symbol(DAY, "C", 94)


# UP_DOWN then up again: bullish at 09:40, bearish at 09:41 (a reversal), bullish at 09:42
# (MA9 902/9 = 100.222 > VWAP 1302/13 = 100.154). The put has no data at 09:42 and 09:43, so
# the reversal's close waits and the put is still open at the third signal.
REVERSAL_WAIT_PATH = UP_DOWN + [103, 103, 103]
PUT_GONE = {"09:42": [P102], "09:43": [P102]}


def test_single_position_same_direction_signal_dropped():
    engine = engine_for()
    outs = run(engine, build(REVERSAL_WAIT_PATH, prices={"09:44": {("P", 102): (1.30,)}}, drop=PUT_GONE))
    signals = merged(outs, "signals")
    assert [(hm(s.est_timestamp), s.signal_type, s.acted, s.drop_reason) for s in signals] == [
        ("09:41", SignalType.BULLISH, True, None),
        ("09:42", SignalType.BEARISH, True, None),
        ("09:43", SignalType.BULLISH, False, "position_open"),
    ]
    assert outs[12].position.symbol == P102 and outs[12].position.net_quantity == -QTY
    assert "dropped: position_open" in signals[2].rationale
    assert not any(i.est_timestamp == at(DAY, "09:43") for i in merged(outs, "intents"))


def test_rollover_never_opens_while_the_reversal_close_waits():
    """A rollover must not fill while the position it replaces is still open (found by the
    property tests: the call used to be sold at 09:42 with the put still short, and the
    engine crashed when the put's close filled at 09:44)."""
    engine = engine_for()
    outs = run(engine, build(REVERSAL_WAIT_PATH, prices={"09:44": {("P", 102): (1.30,)}}, drop=PUT_GONE))
    events = [(hm(e.est_timestamp), e.action, e.option_symbol, e.status, e.exit_reason) for e in merged(outs, "executions")]
    assert events == [
        ("09:41", Action.SELL_TO_OPEN, P102, OrderStatus.FILLED, None),
        ("09:42", Action.SELL_TO_OPEN, C98, OrderStatus.CANCELED, None),  # the rollover
        ("09:44", Action.BUY_TO_CLOSE, P102, OrderStatus.FILLED, "reversal"),
    ]
    assert all(len(o.broker_positions) <= 1 for o in outs)
    assert engine.position is None and engine.broker.positions() == []


def test_entry_size_reduced_by_capital_guard():
    # Naked put margin (risk.py, CBOE rule): (premium + max(20% of QQQ - OTM amount, 10% of
    # the strike)) * 100. P102 at bid 1.95 with QQQ at 102: OTM 0, so
    # (1.95 + max(20.40 - 0, 10.20)) * 100 = 2,235.00 per contract.
    margin = (1.95 + max(0.20 * 102 - 0.0, 0.10 * 102)) * 100
    assert margin == pytest.approx(2235.0)
    for capital, qty in [(10_000, 4), (7_000, 3), (2_235 * 30, QTY)]:
        config = StrategyConfig(risk=RiskConfig(trading_capital=capital))
        outs = run(engine_for(config=config), build(UP + [102], prices=ENTRY_PRICES))
        [intent] = merged(outs, "intents")
        assert intent.qty == qty == min(QTY, int(capital // margin))
        [fill] = fills(outs)
        assert fill.qty == qty and fill.fees == pytest.approx(qty * 0.65)
    # not even one contract: the signal is recorded and dropped
    config = StrategyConfig(risk=RiskConfig(trading_capital=2_000))
    outs = run(engine_for(config=config), build(UP + [102], prices=ENTRY_PRICES))
    [signal] = merged(outs, "signals")
    assert not signal.acted and signal.drop_reason == "capital" and merged(outs, "intents") == []
    # a call: C98 at bid 1.45, QQQ 98, OTM 0: (1.45 + max(19.60, 9.80)) * 100 = 2,105 -> 4
    config = StrategyConfig(risk=RiskConfig(trading_capital=10_000))
    outs = run(engine_for(config=config), build(DOWN + [98], prices={"09:40": {("C", 98): (1.50,)}}))
    assert merged(outs, "intents")[0].qty == 10_000 // ((1.45 + 0.20 * 98) * 100) == 4


def test_limit_price_is_the_bid():
    prices = {"09:40": {("P", 102): (2.30, 2.40, 2.00, 2.10)}, "09:41": {("P", 102): (2.20,)}}
    engine = engine_for()
    outs = run(engine, build(UP + [102], prices=prices))
    [intent] = merged(outs, "intents")
    assert intent.limit_price == 2.05  # the bid of the signal's minute: close 2.10 - 0.05
    assert intent.stop_loss == 4.10 and intent.take_profit == 1.025
    [fill] = fills(outs)
    assert fill.fill_price == 2.15  # the next bar's opening bid (2.20 - 0.05)
    # the position's brackets follow the credit actually received
    assert outs[-1].position.avg_price == 2.15
    assert (outs[-1].position.stop_loss, outs[-1].position.take_profit) == (4.30, 1.075)


@pytest.mark.parametrize("day", [DAY, EARLY_DAY], ids=["close-16:00", "close-13:00"])
def test_no_entry_in_last_minutes_before_close(day):
    sess = session(day)
    cutoff = sess.close - dt.timedelta(minutes=30)
    bars_to_cutoff = int((cutoff - sess.open) / MINUTE)
    # a crossing bar ending at the cutoff (decided at 15:30 / 12:30): no entry
    outs = run(engine_for(day), build([100] * (bars_to_cutoff - 2) + [99, 102] + [102] * 20, day=day))
    [signal] = merged(outs, "signals")
    assert signal.est_timestamp == cutoff
    assert not signal.acted and signal.drop_reason == "no_entry_window"
    assert merged(outs, "intents") == [] and merged(outs, "executions") == []
    # one bar earlier (decided a minute before the cutoff): an entry
    outs = run(engine_for(day), build([100] * (bars_to_cutoff - 3) + [99, 102] + [102] * 20, day=day))
    [signal] = merged(outs, "signals")
    assert signal.est_timestamp == cutoff - MINUTE and signal.acted
    assert [e.est_timestamp for e in fills(outs)][0] == cutoff - MINUTE
    # a reversal inside the window still closes, but opens nothing
    outs = run(engine_for(day), build([100] * (bars_to_cutoff - 3) + [99, 102, 98] + [98] * 20, day=day))
    first, second = merged(outs, "signals")
    assert second.est_timestamp == cutoff and second.acted and second.option_symbol is None
    assert "no rollover: no_entry_window" in second.rationale
    assert [(i.action, i.reason) for i in merged(outs, "intents")] == [
        (Action.SELL_TO_OPEN, "entry"), (Action.BUY_TO_CLOSE, "reversal")
    ]


# ---- exits -----------------------------------------------------------------------------


def test_take_profit_exit():
    # low 0.90 -> low ask 0.95 <= 0.975: bought back at the target (the open ask 1.55 is above)
    engine, outs = bracket_session((1.50, 1.50, 0.90, 1.00))
    exit_ = fills(outs)[1]
    assert (hm(exit_.est_timestamp), exit_.action, exit_.fill_price, exit_.exit_reason) == (
        "09:43", Action.BUY_TO_CLOSE, 0.975, "take_profit"
    )
    intent = merged(outs, "intents")[1]
    assert intent.reason == "take_profit" and intent.intent_id == exit_.intent_id
    assert engine.position is None
    # a minute opening below the target fills at the better opening ask
    _, outs = bracket_session((0.80,))
    assert fills(outs)[1].fill_price == 0.85 and fills(outs)[1].exit_reason == "take_profit"
    # just above the target: nothing
    _, outs = bracket_session((1.50, 1.50, 0.93, 1.00))  # low ask 0.98 > 0.975
    assert len(fills(outs)) == 1


def test_stop_loss_exit():
    # high 3.90 -> high ask 3.95 >= 3.90: bought back at the stop (the open ask 2.55 is below)
    engine, outs = bracket_session((2.50, 3.90, 2.40, 3.00))
    exit_ = fills(outs)[1]
    assert (hm(exit_.est_timestamp), exit_.fill_price, exit_.exit_reason) == ("09:43", 3.90, "stop_loss")
    # the stop is known once minute 09:43 is over: its intent is stamped at the minute's end
    intent = merged(outs, "intents")[1]
    assert intent.reason == "stop_loss" and intent.est_timestamp == at(DAY, "09:44")
    assert engine.position is None
    # a minute opening beyond the stop (a gap) fills at the opening ask
    _, outs = bracket_session((4.20, 4.30, 4.10, 4.20))
    assert fills(outs)[1].fill_price == 4.25 and fills(outs)[1].exit_reason == "stop_loss"
    # just below the stop: nothing
    _, outs = bracket_session((2.50, 3.84, 2.40, 3.00))  # high ask 3.89 < 3.90
    assert len(fills(outs)) == 1


def test_stop_assumed_when_both_touched_in_one_bar():
    # high ask 4.05 >= 3.90 and low ask 0.55 <= 0.975 in the same minute: assume the stop
    engine, outs = bracket_session((2.00, 4.00, 0.50, 1.00))
    exit_ = fills(outs)[1]
    assert exit_.exit_reason == "stop_loss" and exit_.fill_price == 3.90
    assert exit_.pnl_contrib == pytest.approx((1.95 - 3.90) * 100 * QTY - FEE)
    assert engine.realized_pnl == pytest.approx((1.95 - 3.90) * 100 * QTY - 2 * FEE)


REVERSAL_PRICES = {
    **ENTRY_PRICES,
    "09:41": {("P", 102): (2.00,), ("C", 98): (1.20,)},
    "09:42": {("P", 102): (1.40,), ("C", 98): (1.30,)},
}


def test_reversal_closes_and_rolls_over():
    engine = engine_for()
    outs = run(engine, build(UP_DOWN + [98, 98], prices=REVERSAL_PRICES))
    bullish, bearish = merged(outs, "signals")
    assert bearish.signal_type is SignalType.BEARISH and bearish.acted and bearish.option_symbol == C98
    assert [(hm(i.est_timestamp), i.action, i.option_symbol, i.reason) for i in outs[11].intents] == [
        ("09:42", Action.BUY_TO_CLOSE, P102, "reversal"),
        ("09:42", Action.SELL_TO_OPEN, C98, "rollover"),
    ]
    assert [(hm(e.est_timestamp), e.action, e.option_symbol, e.fill_price) for e in outs[12].executions] == [
        ("09:42", Action.BUY_TO_CLOSE, P102, 1.45),  # close first, at the ask
        ("09:42", Action.SELL_TO_OPEN, C98, 1.25),  # then the rollover, at the bid
    ]
    assert engine.position.symbol == C98 and engine.position.credit == 1.25
    assert outs[12].position.net_quantity == -QTY and outs[12].position.symbol == C98
    assert engine.realized_pnl == pytest.approx((1.95 - 1.45) * 100 * QTY - 3 * FEE)


def test_reversal_in_cooldown_closes_without_rollover():
    config = StrategyConfig(cooldown=dt.timedelta(minutes=10))
    engine = engine_for(config=config)
    outs = run(engine, build(UP_DOWN + [98, 98], prices=REVERSAL_PRICES))
    bullish, bearish = merged(outs, "signals")
    assert bearish.acted is True and bearish.drop_reason is None and bearish.option_symbol is None
    assert "no rollover: cooldown" in bearish.rationale
    assert [(i.action, i.reason) for i in merged(outs, "intents")] == [
        (Action.SELL_TO_OPEN, "entry"), (Action.BUY_TO_CLOSE, "reversal")
    ]
    assert [(hm(e.est_timestamp), e.action, e.fill_price) for e in fills(outs)] == [
        ("09:41", Action.SELL_TO_OPEN, 1.95), ("09:42", Action.BUY_TO_CLOSE, 1.45)
    ]
    assert engine.position is None and outs[-1].position.net_quantity == 0


def _flatten_case(day: dt.date, bars_before_cross: int):
    """Sell a put early enough, hold it (flat prices: no stop or target), then a late bearish
    crossover after the flatten: everything until the close is fed."""
    sess = session(day)
    n = sess.minutes
    closes = [100] * bars_before_cross + [99, 102]
    closes += [102] * (n - len(closes) - 4) + [95] * 4
    engine = engine_for(day)
    outs = run(engine, build(closes, day=day))
    return sess, engine, outs


@pytest.mark.parametrize("day, flat_by", [(DAY, "15:55")], ids=["close-16:00"])
def test_flatten_before_close_normal_day(day, flat_by):
    sess, engine, outs = _flatten_case(day, 300)
    assert not sess.early_close and hm(sess.close) == "16:00"
    _assert_flattened(sess, engine, outs, at(day, flat_by))


@pytest.mark.parametrize("day, flat_by", [(EARLY_DAY, "12:55")], ids=["close-13:00"])
def test_flatten_before_close_early_close_day(day, flat_by):
    sess, engine, outs = _flatten_case(day, 150)
    assert sess.early_close and hm(sess.close) == "13:00"
    _assert_flattened(sess, engine, outs, at(day, flat_by))


def _assert_flattened(sess, engine: Engine, outs: list[StepOutput], flat_by: dt.datetime) -> None:
    entry, exit_ = fills(outs)
    assert entry.action is Action.SELL_TO_OPEN
    assert exit_.action is Action.BUY_TO_CLOSE and exit_.exit_reason == "close"
    assert exit_.est_timestamp == flat_by - MINUTE < flat_by  # filled on the bar before
    flatten_intent = merged(outs, "intents")[-1]
    assert flatten_intent.reason == "close" and flatten_intent.est_timestamp == flat_by - MINUTE
    # nothing trades from the flatten time on; the late crossover is dropped
    late = [x for x in merged(outs, "intents") + merged(outs, "executions") if x.est_timestamp >= flat_by]
    assert late == []
    late_signals = [s for s in merged(outs, "signals") if s.est_timestamp >= flat_by]
    assert late_signals and all(not s.acted and s.drop_reason == "no_entry_window" for s in late_signals)
    assert all(o.position.net_quantity == 0 for o in outs if o.position.est_timestamp >= flat_by - MINUTE)
    assert engine.position is None and engine.broker.positions() == []
    assert len(outs) == sess.minutes and engine.finish(sess.close).executions == []


# ---- fills -----------------------------------------------------------------------------


def test_fill_on_next_bar_never_same_bar():
    prices = {
        "09:40": {("P", 102): (3.00,)},  # the decision bar: 2.95 bid, never used for the fill
        "09:41": {("P", 102): (2.00, 2.50, 1.80, 2.40), ("C", 98): (5.00,)},
        "09:42": {("P", 102): (1.60,), ("C", 98): (0.70,)},
    }
    outs = run(engine_for(), build(UP_DOWN + [98], prices=prices))
    assert outs[10].intents and outs[10].executions == []
    assert outs[11].intents and [e.action for e in outs[11].executions] == [Action.SELL_TO_OPEN]
    entry = outs[11].executions[0]
    assert entry.est_timestamp == at(DAY, "09:41") and entry.fill_price == 1.95  # 09:41's open bid
    assert [(e.action, e.fill_price) for e in outs[12].executions] == [
        (Action.BUY_TO_CLOSE, 1.65),  # 09:42's open ask, not 09:41's (2.45)
        (Action.SELL_TO_OPEN, 0.65),  # 09:42's open bid, not 09:41's (4.95)
    ]


def test_sells_at_bid_buys_at_ask_with_half_spread():
    # minute aggregates: bid/ask = price -/+ the half-spread (0.05), at the bar's opening price
    outs = run(engine_for(), build(UP_DOWN + [98], prices=REVERSAL_PRICES))
    assert [(e.action, e.fill_price) for e in fills(outs)] == [
        (Action.SELL_TO_OPEN, 2.00 - 0.05), (Action.BUY_TO_CLOSE, 1.40 + 0.05), (Action.SELL_TO_OPEN, 1.30 - 0.05),
    ]
    # real quotes: no half-spread, the quoted bid and ask
    slices = []
    for s in build(UP_DOWN + [98]):
        quotes = dict(s.quotes)
        quotes[P102] = real_quote(DAY, s.bar.start, "P", 102, 1.90, 2.10)
        quotes[C98] = real_quote(DAY, s.bar.start, "C", 98, 0.80, 0.90)
        slices.append(MinuteSlice(s.bar, quotes))
    outs = run(engine_for(), slices)
    assert [(e.action, e.option_symbol, e.fill_price) for e in fills(outs)] == [
        (Action.SELL_TO_OPEN, P102, 1.90), (Action.BUY_TO_CLOSE, P102, 2.10), (Action.SELL_TO_OPEN, C98, 0.80),
    ]


def test_entry_cancelled_when_contract_has_no_next_bar():
    engine = engine_for()
    # UP_DOWN: the put decided at 09:41 has no data in minute 09:41 -> cancelled; the bearish
    # crossover at 09:42 finds the book flat and opens a fresh call.
    outs = run(engine, build(UP_DOWN + [98, 98], drop={"09:41": [P102]}))
    events = merged(outs, "executions")
    cancelled = events[0]
    assert (cancelled.action, cancelled.status, cancelled.qty, cancelled.fees, cancelled.fill_price) == (
        Action.SELL_TO_OPEN, OrderStatus.CANCELED, 0, 0.0, None
    )
    assert cancelled.est_timestamp == at(DAY, "09:41") and cancelled.pnl_contrib == 0.0
    assert outs[11].position.net_quantity == 0 and outs[11].broker_positions == []
    assert [i.reason for i in merged(outs, "intents")] == ["entry", "entry"]  # no reversal
    assert [(e.action, e.option_symbol, e.status) for e in events[1:]] == [
        (Action.SELL_TO_OPEN, C98, OrderStatus.FILLED)
    ]
    assert engine.position.symbol == C98 and engine.realized_pnl == -FEE


def test_exit_waits_for_next_bar_with_data():
    config = StrategyConfig(cooldown=dt.timedelta(minutes=10))  # a plain close, no rollover
    engine = engine_for(config=config)
    prices = {**ENTRY_PRICES, "09:44": {("P", 102): (1.30, 5.00, 0.10, 1.30)}}
    outs = run(engine, build(UP_DOWN + [98] * 4, prices=prices, drop=PUT_GONE))
    # the close decided at 09:42 waits through 09:42 and 09:43 (no trades) ...
    assert [o.executions for o in outs[12:14]] == [[], []]
    assert [o.position.net_quantity for o in outs[11:14]] == [-QTY, -QTY, -QTY]
    # ... and fills at 09:44's opening ask, still a reversal exit (the wide range of 09:44
    # does not also trigger the stop: the position is already being closed)
    [exit_] = outs[14].executions
    assert (exit_.action, exit_.fill_price, exit_.exit_reason, exit_.status) == (
        Action.BUY_TO_CLOSE, 1.35, "reversal", OrderStatus.FILLED
    )
    assert exit_.intent_id == merged(outs, "intents")[1].intent_id
    assert engine.position is None and outs[14].position.net_quantity == 0
    assert len(fills(outs)) == 2


# ---- P/L -------------------------------------------------------------------------------


def test_fees_per_contract_and_regulatory():
    risk = RiskConfig(max_position_size=10, fee_per_contract=0.65, fee_regulatory_per_contract=0.02)
    engine = engine_for(config=StrategyConfig(risk=risk))
    prices = {**ENTRY_PRICES, "09:43": {("P", 102): (1.50, 1.50, 0.90, 1.00)}}
    outs = run(engine, build(UP + [102] * 4, prices=prices))
    entry, exit_ = fills(outs)
    assert entry.qty == exit_.qty == 10
    assert entry.fees == exit_.fees == 6.70  # 10 * (0.65 + 0.02)
    assert entry.pnl_contrib == -6.70
    assert exit_.pnl_contrib == pytest.approx((1.95 - 0.975) * 100 * 10 - 6.70)
    assert engine.realized_pnl == pytest.approx(975.00 - 13.40)


def test_round_trip_pnl_formula():
    # winner: credit 1.95, debit 0.975 (target), 25 contracts, fees 2 * 16.25
    engine, outs = bracket_session((1.50, 1.50, 0.90, 1.00))
    assert engine.realized_pnl == round((1.95 - 0.975) * 100 * 25 - 32.50, 2) == 2405.00
    assert sum(e.pnl_contrib for e in merged(outs, "executions")) == pytest.approx(2405.00)
    assert outs[-1].position.realized_pnl == 2405.00
    # loser: debit 3.90 (stop)
    engine, outs = bracket_session((2.50, 3.90, 2.40, 3.00))
    assert engine.realized_pnl == round((1.95 - 3.90) * 100 * 25 - 32.50, 2) == -4907.50
    assert round_trip_pnl(1.95, 3.90, 25) == -4875.00
    # while open, the position is marked at the ask: unrealized = (credit - ask) * 100 * qty
    engine, outs = bracket_session((1.50, 1.50, 1.20, 1.30))  # ask 1.35, no bracket touched
    assert outs[13].position.mark == 1.35
    assert outs[13].position.unrealized_pnl == pytest.approx((1.95 - 1.35) * 100 * 25)
    assert outs[13].position.realized_pnl == -FEE


# ---- bad input (the spec's safety rules) ---------------------------------------------------------------


def test_crossed_or_zero_quotes_rejected_with_reason():
    p101, p103 = option_symbol(DAY, "P", 101), option_symbol(DAY, "P", 103)
    slices = build(UP + [102] * 4, prices=ENTRY_PRICES)
    # at the signal minute the nearest puts are bad: crossed, zero ask, negative bid
    signal_bar = slices[10]
    bad = {
        P102: real_quote(DAY, signal_bar.bar.start, "P", 102, 2.10, 1.90),
        p101: real_quote(DAY, signal_bar.bar.start, "P", 101, 0.0, 0.0),
        p103: real_quote(DAY, signal_bar.bar.start, "P", 103, -0.10, 1.00),
    }
    slices[10] = MinuteSlice(signal_bar.bar, {**signal_bar.quotes, **bad})
    outs = run(engine_for(), slices)
    assert sorted(outs[10].rejections) == sorted([
        (P102, "crossed quote"), (p101, "zero or negative ask"), (p103, "negative bid"),
    ])
    assert outs[10].tick.quotes_in_slice == len(signal_bar.quotes)  # received; bad ones are rejected when read
    [intent] = merged(outs, "intents")
    assert intent.option_symbol not in bad  # a rejected quote is never traded on
    assert intent.option_symbol == option_symbol(DAY, "P", 100)  # the nearest sane strike

    # a crossed quote of the held contract is not a stop: its ask (4.50) is not used
    slices = build(UP + [102] * 4, prices=ENTRY_PRICES)
    held_bar = slices[12]
    slices[12] = MinuteSlice(held_bar.bar, {**held_bar.quotes, P102: real_quote(DAY, held_bar.bar.start, "P", 102, 5.0, 4.5)})
    engine = engine_for()
    outs = run(engine, slices)
    assert outs[12].rejections == [(P102, "crossed quote")]
    assert len(fills(outs)) == 1 and engine.position.symbol == P102


def test_duplicate_and_out_of_order_bars_rejected_without_state_change():
    clean = build(UP_DOWN + [98] * 3, prices=REVERSAL_PRICES)
    # a duplicate of 09:40 that would have crossed differently, with other option prices ...
    duplicate = MinuteSlice(flat_bar(clean[10].bar.start, 90.0, 5000.0), chain(DAY, clean[10].bar.start, STRIKES, 9.0))
    # ... and a late 09:35 bar arriving after 09:41
    late = MinuteSlice(flat_bar(clean[5].bar.start, 120.0), chain(DAY, clean[5].bar.start, STRIKES, 9.0))
    dirty = clean[:11] + [duplicate] + clean[11:12] + [late] + clean[12:]
    engine_clean, engine_dirty = engine_for(), engine_for()
    out_clean = run(engine_clean, clean)
    out_dirty = run(engine_dirty, dirty)
    rejected = [out_dirty[11], out_dirty[13]]
    assert rejected[0] == StepOutput(rejections=[("bar 09:40", "duplicate bar")])
    assert rejected[1] == StepOutput(rejections=[("bar 09:35", "out-of-order bar")])
    accepted = [o for i, o in enumerate(out_dirty) if i not in (11, 13)]
    assert accepted == out_clean  # every table's output is exactly the clean run's
    assert engine_dirty.realized_pnl == engine_clean.realized_pnl
    assert engine_dirty.last_bar_start == engine_clean.last_bar_start
    # other malformed bars are rejected the same way
    engine = engine_for()
    run(engine, clean[:3])
    t = clean[3].bar.start
    for bar, why in [
        (Bar("QQQ", t, 100, 99, 101, 100, 1000), "inconsistent OHLC"),
        (Bar("QQQ", t, 100, 100, 0, 100, 1000), "non-positive price or negative volume"),
        (Bar("QQQ", t, 100, 100, 100, 100, -5), "non-positive price or negative volume"),
        (Bar("QQQ", t + dt.timedelta(days=1), 100, 100, 100, 100, 1000), "bar from another session"),
        (Bar("QQQ", at(DAY, "09:29"), 100, 100, 100, 100, 1000), "out-of-order bar"),
        (Bar("QQQ", session(DAY).close, 100, 100, 100, 100, 1000), "bar after the close"),
    ]:
        assert engine.on_slice(MinuteSlice(bar, {})).rejections == [(f"bar {bar.start:%H:%M}", why)]
    assert engine_for().on_slice(MinuteSlice(flat_bar(at(DAY, "09:29"), 100), {})).rejections == [
        ("bar 09:29", "bar before the open")
    ]
    # and the engine carries on as if they never came
    assert run(engine, clean[3:]) == run(engine_for(), clean)[3:]


def test_stale_quotes_open_nothing_new():
    def stale(slices: list[MinuteSlice], minutes: set[str], age: int = 5) -> list[MinuteSlice]:
        """The option feed froze: these minutes carry the chain as it was `age` minutes ago."""
        out = []
        for s in slices:
            if hm(s.bar.start) in minutes:
                s = MinuteSlice(s.bar, chain(DAY, s.bar.start - age * MINUTE, STRIKES))
            out.append(s)
        return out

    # flat book: the crossing minute's quotes are 5 minutes old -> nothing is sold
    outs = run(engine_for(), stale(build(UP + [102]), {"09:40"}))
    [signal] = merged(outs, "signals")
    assert not signal.acted and signal.drop_reason == "stale_data"
    assert merged(outs, "intents") == [] and merged(outs, "executions") == []
    # quotes a minute or two old are still fresh enough (MARKET_DATA_STALE_SECONDS = 180)
    outs = run(engine_for(), stale(build(UP + [102]), {"09:40"}, age=2))
    assert merged(outs, "signals")[0].acted

    # open position: the bearish crossover at 09:43 comes with stale quotes -> the exit is
    # still attempted (and fills at 09:44), the rollover is not
    engine = engine_for()
    outs = run(engine, stale(build(COOLDOWN_PATH, prices=ENTRY_PRICES), {"09:42", "09:43"}))
    bullish, bearish = merged(outs, "signals")
    assert bearish.acted and bearish.option_symbol is None
    assert "no rollover: stale_data" in bearish.rationale
    assert [(i.action, i.reason) for i in merged(outs, "intents")] == [
        (Action.SELL_TO_OPEN, "entry"), (Action.BUY_TO_CLOSE, "reversal")
    ]
    assert [(hm(e.est_timestamp), e.action) for e in fills(outs)] == [
        ("09:41", Action.SELL_TO_OPEN), ("09:44", Action.BUY_TO_CLOSE)
    ]
    assert engine.position is None
