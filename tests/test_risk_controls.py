"""The engine's risk controls, as the spec lists them (the same engine in replay and in the minute runs):
the daily loss limit on realized plus unrealized P/L, the cap on entries, price sanity.

Paths and prices as in tests/test_strategy_rules.py: UP sells the 102 put at 1.95 (decided
09:41, filled 09:41); REVERSE then holds 102 for four minutes and falls to 95 twice, which
crosses MA9 below VWAP at the 09:46 bar (decided 09:47, filled 09:47): a reversal with a
rollover.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from alphagen_core.domain.engine import StrategyConfig
from alphagen_core.domain.models import Action, SignalType
from alphagen_core.domain.risk import RiskConfig
from tests.test_strategy_rules import (
    ENTRY_PRICES,
    UP,
    build,
    engine_for,
    fills,
    hm,
    merged,
    run,
)

pytestmark = pytest.mark.unit

REVERSE = UP + [102] * 4 + [95] * 4
SPIKE = {**ENTRY_PRICES, "09:43": {("P", 102): (2.00, 2.80, 2.00, 2.40)}}  # ask at the high 2.85


def _engine(**risk):
    return engine_for(config=StrategyConfig(risk=replace(RiskConfig(), **risk)))


def _entries(outs):
    return [i for i in merged(outs, "intents") if i.action is Action.SELL_TO_OPEN]


def test_without_limits_the_path_reverses_and_rolls_over():
    outs = run(_engine(), build(REVERSE, prices=SPIKE))
    assert [hm(i.est_timestamp) for i in _entries(outs)] == ["09:41", "09:47"]
    assert [e.exit_reason for e in fills(outs) if e.exit_reason] == ["reversal"]


def test_the_daily_loss_limit_closes_on_the_unrealized_loss_at_the_bar_high_and_opens_nothing_more():
    # at 09:43's high the short is worth (1.95 - 2.85) x 100 x 25 = -2,250, plus -16.25 of fees
    engine = _engine(max_daily_loss=2_200)
    outs = run(engine, build(REVERSE, prices=SPIKE))
    closes = [i for i in merged(outs, "intents") if i.action is Action.BUY_TO_CLOSE]
    assert [(hm(i.est_timestamp), i.reason) for i in closes] == [("09:44", "daily_loss_limit")]
    assert [e.exit_reason for e in fills(outs) if e.exit_reason] == ["daily_loss_limit"]
    assert [hm(i.est_timestamp) for i in _entries(outs)] == ["09:41"]
    [bearish] = [s for s in merged(outs, "signals") if s.signal_type is SignalType.BEARISH]
    assert bearish.drop_reason == "daily_loss_limit" and not bearish.acted
    assert engine.position is None


def test_a_loss_just_short_of_the_limit_changes_nothing():
    outs = run(_engine(max_daily_loss=2_300), build(REVERSE, prices=SPIKE))
    assert [hm(i.est_timestamp) for i in _entries(outs)] == ["09:41", "09:47"]


def test_entries_beyond_the_cap_are_dropped_but_the_exit_is_taken():
    outs = run(_engine(max_entries_per_day=1), build(REVERSE, prices=SPIKE))
    assert [hm(i.est_timestamp) for i in _entries(outs)] == ["09:41"]
    assert [e.exit_reason for e in fills(outs) if e.exit_reason][0] == "reversal"
    [bearish] = [s for s in merged(outs, "signals") if s.signal_type is SignalType.BEARISH]
    assert bearish.acted and "no rollover: entry_limit" in bearish.rationale


def test_an_entry_far_from_the_mid_is_not_sent():
    # the put's bid 1.95 is 2.5 % below its mid 2.00
    strict = run(_engine(order_max_deviation=0.02), build(UP + [102], prices=ENTRY_PRICES))
    assert _entries(strict) == []
    [signal] = merged(strict, "signals")
    assert signal.drop_reason.startswith("price_sanity") and "2.00" in signal.drop_reason
    loose = run(_engine(order_max_deviation=0.03), build(UP + [102], prices=ENTRY_PRICES))
    assert [hm(i.est_timestamp) for i in _entries(loose)] == ["09:41"]
