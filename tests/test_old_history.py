"""Replaying history from before QQQ had daily expirations (the spec: "If the session date has no
listed expiry, use the nearest later expiry and record it").

2016-03-08 is a Tuesday: QQQ then listed Friday expiries only, so the nearest chain expires
Friday 2016-03-11 and every trade of the day is in that chain, the signals saying so. On the
Friday itself the same chain is 0DTE.
"""

from __future__ import annotations

import datetime as dt

import pytest

from alphagen_core.adapters.polygon.flatfiles import DayData, LocalFlatFiles, load_day
from alphagen_core.application.replay import SessionRun, build_slices, run_session
from alphagen_core.domain.calendar import session
from alphagen_core.domain.engine import StrategyConfig
from alphagen_core.domain.models import Action, OrderStatus
from alphagen_core.sim import sample

pytestmark = pytest.mark.unit

TUESDAY, FRIDAY = dt.date(2016, 3, 8), dt.date(2016, 3, 11)
HALF_SPREAD = 0.02
NOTE = "; no 0DTE listed: nearest expiry 2016-03-11"


@pytest.fixture(scope="module")
def replays(tmp_path_factory: pytest.TempPathFactory) -> dict[dt.date, tuple[DayData, SessionRun]]:
    out = tmp_path_factory.mktemp("flatfiles")
    sample.generate(TUESDAY, FRIDAY, out)
    config = StrategyConfig()
    result = {}
    for d in (TUESDAY, FRIDAY):
        s = session(d)
        day = load_day(LocalFlatFiles(out), s, cache_dir=out / "cache", use_cache=False)
        result[d] = day, run_session(s, build_slices(day.equity, day.options, HALF_SPREAD), config)
    return result


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        (dt.date(2016, 3, 8), [dt.date(2016, 3, 11), dt.date(2016, 3, 18)]),  # Fridays only
        (dt.date(2016, 3, 11), [dt.date(2016, 3, 11), dt.date(2016, 3, 18)]),
        (dt.date(2016, 3, 21), [dt.date(2016, 3, 24), dt.date(2016, 4, 1)]),  # Good Friday -> Thursday
        (dt.date(2018, 12, 4), [dt.date(2018, 12, 4), dt.date(2018, 12, 7)]),  # Wed 12-05 closed (Bush)
        (dt.date(2019, 2, 19), [dt.date(2019, 2, 20), dt.date(2019, 2, 22)]),  # Mon/Wed/Fri
        (dt.date(2022, 11, 10), [dt.date(2022, 11, 11), dt.date(2022, 11, 14)]),
        (dt.date(2022, 11, 14), [dt.date(2022, 11, 14), dt.date(2022, 11, 15)]),  # daily from here
        (dt.date(2024, 3, 28), [dt.date(2024, 3, 28), dt.date(2024, 4, 1)]),
    ],
)
def test_qqq_listed_expiries(d: dt.date, expected: list[dt.date]) -> None:
    assert sample.qqq_expiries(d, 2) == expected
    assert sample.nearest_qqq_expiry(d) == expected[0]


def test_old_sample_day_has_only_later_qqq_chains_around_a_2016_price(replays) -> None:
    day, _ = replays[TUESDAY]
    stocks, options = sample.day_frames(TUESDAY)
    qqq = stocks.filter(stocks["ticker"] == "QQQ")
    assert 85 < qqq["low"].min() and qqq["high"].max() < 115  # QQQ's level in 2016
    roots = options["ticker"].str.extract(r"^O:QQQ(\d{6})").drop_nulls().unique().sort().to_list()
    assert roots == ["160311", "160318"]  # no 2016-03-08 chain
    strikes = day.options["strike"]
    assert strikes.min() < day.equity["low"].min() and day.equity["high"].max() < strikes.max()
    # Three days before expiry an at-the-money option is worth about a dollar, not cents.
    first = day.options.filter(day.options["est_timestamp"] == session(TUESDAY).open)
    atm = first.filter((first["strike"] - day.equity["open"][0]).abs() < 0.5)
    assert ((atm["close"] > 0.4) & (atm["close"] < 3.0)).all() and len(atm) == 2


def test_loader_picks_the_nearest_later_expiry(replays) -> None:
    tuesday, _ = replays[TUESDAY]
    assert tuesday.expiry == FRIDAY and tuesday.expiry_is_same_day is False
    assert tuesday.options["expiry"].unique().to_list() == [FRIDAY]
    friday, _ = replays[FRIDAY]
    assert friday.expiry == FRIDAY and friday.expiry_is_same_day is True


def test_tuesday_trades_the_friday_chain_and_says_so(replays) -> None:
    _, run = replays[TUESDAY]
    opens = [e for e in run.executions if e.action is Action.SELL_TO_OPEN and e.status is OrderStatus.FILLED]
    assert len(opens) >= 2
    traded = {e.option_symbol for e in run.executions} | {i.option_symbol for i in run.intents}
    assert traded and all(sym.startswith("O:QQQ160311") for sym in traded)
    opened_by = {i.signal_id for i in run.intents if i.action is Action.SELL_TO_OPEN}
    signals = {s.signal_id: s for s in run.signals}
    for signal_id in opened_by:
        assert signals[signal_id].rationale.endswith(NOTE), signals[signal_id].rationale
    # signals that chose no contract make no claim about one
    assert all(s.rationale.endswith(NOTE) == (s.option_symbol is not None) for s in run.signals)


def test_friday_trades_0dte_without_the_note(replays) -> None:
    _, run = replays[FRIDAY]
    assert any(e.action is Action.SELL_TO_OPEN for e in run.executions)
    assert all(e.option_symbol.startswith("O:QQQ160311") for e in run.executions)
    assert not any("0DTE" in s.rationale for s in run.signals)


@pytest.mark.parametrize("d", [TUESDAY, FRIDAY])
def test_flat_at_the_flatten_time(replays, d: dt.date) -> None:
    _, run = replays[d]
    flatten_at = session(d).close - StrategyConfig().flatten_before_close
    fills = [e for e in run.executions if e.status is OrderStatus.FILLED]
    assert sum(e.qty for e in fills if e.action is Action.SELL_TO_OPEN) == sum(
        e.qty for e in fills if e.action is Action.BUY_TO_CLOSE
    )
    assert all(e.est_timestamp < flatten_at for e in fills)
    after = [p for p in run.positions if p.est_timestamp >= flatten_at]
    assert after and all(p.net_quantity == 0 and p.symbol is None for p in after)
    assert run.round_trips >= 1
