"""The trading state: `alphagen halt|flatten|resume` write control_events; a running
session trader obeys within 2 s and a relaunched one on start; the engine opens nothing while
halted. Real DuckDB file, the paper execution client, a real `alphagen` process."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from alphagen_core.application.control import current_state, set_state
from alphagen_core.application.live_minute import session_version
from alphagen_core.application.live_session import TraderTimings
from alphagen_core.domain.calendar import NY
from alphagen_core.domain.clock import SimClock
from alphagen_core.domain.engine import StrategyConfig
from alphagen_core.domain.models import Action, TradeIntent, TradingState
from alphagen_core.operations.alerts import Alerter
from alphagen_core.persistence.store import RowMeta
from tests.live.test_session_trader import DAY, SYMBOL, FixedQuotes, decided_entry, make
from tests.test_operations_units import Hook
from tests.test_strategy_rules import ENTRY_PRICES, UP, build, engine_for, merged, run

TEN = dt.datetime(2024, 11, 27, 10, 0, 5, tzinfo=NY)


def _later_entry(store, minute: int) -> TradeIntent:
    intent = TradeIntent(f"int-2024-11-27T10:{minute:02}-1", f"sig-{minute}", TEN.replace(minute=minute),
                         Action.SELL_TO_OPEN, SYMBOL, 5, 2.0, 4.0, 1.0, "entry")
    store.write({"trade_intents": [intent]}, RowMeta("paper", DAY, session_version(DAY), "run-0"))
    return intent


def _statuses(store, intent_id: str) -> list[str]:
    rows = store.query("SELECT status FROM executions WHERE intent_id = ? ORDER BY status", [intent_id])
    return rows["status"].to_list()


@pytest.mark.unit
def test_a_halt_drops_new_entries_also_after_a_relaunch_and_resume_trades_again(tmp_path):
    clock = SimClock(TEN, speed=1)
    store, _, trader = make(tmp_path, clock, FixedQuotes(2.0, 2.1))
    set_state(store, "paper", DAY, TradingState.HALTED, "test", "operator", clock.now())
    first = decided_entry(store)
    trader._read_control()
    trader.reconcile()
    trader.step(clock.now())
    assert _statuses(store, first.intent_id) == ["CANCELED"] and trader.held is None
    # a relaunched trader reads the state before anything else
    _, _, relaunched = make(tmp_path, clock, FixedQuotes(2.0, 2.1))
    second = _later_entry(store, 1)
    relaunched._read_control()
    relaunched.reconcile()
    relaunched.step(clock.now())
    assert _statuses(store, second.intent_id) == ["CANCELED"]
    set_state(store, "paper", DAY, TradingState.ACTIVE, "test", "operator", clock.now() + dt.timedelta(seconds=1))
    resumed = TradeIntent("int-2024-11-27T10:00-9", "sig-9", clock.now(), Action.SELL_TO_OPEN, SYMBOL, 5, 2.0,
                          4.0, 1.0, "entry")
    store.write({"trade_intents": [resumed]}, RowMeta("paper", DAY, session_version(DAY), "run-0"))
    relaunched._read_control()
    relaunched.step(clock.now())
    assert _statuses(store, resumed.intent_id) == ["FILLED", "SUBMITTED"]


@pytest.mark.e2e
def test_alphagen_flatten_closes_a_running_sessions_position_within_2_s_then_halts(tmp_path, alphagen):
    clock = SimClock(TEN, speed=1)
    store, _, trader = make(tmp_path, clock, FixedQuotes(2.0, 2.1))
    trader.t = TraderTimings()  # the service's own polling intervals
    decided_entry(store)
    stop = threading.Event()
    thread = threading.Thread(target=trader.run, kwargs={"stop": stop.is_set}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while trader.held is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert trader.held is not None
        done = alphagen("flatten", "--date", str(DAY), "--reason", "test",
                        env={"ALPHAGEN_DUCKDB_PATH": str(store.path), "ALPHAGEN_MODE": "paper"})
        assert done.returncode == 0, done.stderr
        deadline = time.monotonic() + 30
        while (trader.held is not None or trader.state is not TradingState.HALTED) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert trader.held is None
    exits = store.query("SELECT reason FROM trade_intents WHERE action = 'BUY_TO_CLOSE'")
    assert exits["reason"].to_list() == ["flatten"]
    asked = store.query("SELECT written_at FROM control_events WHERE state = 'flattening'")["written_at"][0]
    sent = store.query("""SELECT e.written_at FROM executions e JOIN trade_intents i USING (intent_id)
                          WHERE i.action = 'BUY_TO_CLOSE' AND e.status = 'SUBMITTED'""")["written_at"][0]
    assert (sent - asked).total_seconds() <= 2.0
    latest = current_state(store, "paper", DAY)
    assert (latest.state, latest.source, latest.reason) == (TradingState.HALTED, "trader", "flattened")


@pytest.mark.unit
def test_the_engine_opens_nothing_while_halted():
    engine = engine_for(config=StrategyConfig())
    engine.trading_state = TradingState.HALTED
    outs = run(engine, build(UP + [102], prices=ENTRY_PRICES))
    assert [i for i in merged(outs, "intents") if i.action is Action.SELL_TO_OPEN] == []
    [signal] = merged(outs, "signals")
    assert signal.drop_reason == "halted"


# ---- broker truth: the Schwab stand-in over real sockets ------------------------------------


def _schwab_trader(tmp_path, standin, clock, **settings):
    from alphagen_core.adapters.schwab import SchwabExecution
    from alphagen_core.application.live_session import SessionTrader
    from alphagen_core.domain.calendar import session
    from alphagen_core.operations.settings import Settings
    from alphagen_core.persistence.store import Store
    from tests.adapters.test_schwab_adapter import signed_in

    _, schwab = signed_in(standin, tmp_path, clock)
    cfg = Settings(_env_file=None, alphagen_mode="paper", alphagen_broker="schwab", schwab_base_url=standin.base_url,
                   alphagen_duckdb_path=tmp_path / "db.duckdb", **settings)
    store = Store(cfg.alphagen_duckdb_path)
    timings = TraderTimings(poll_s=0.01, order_poll_s=0.0, quote_poll_s=0.0, broker_poll_s=0.0)
    trader = SessionTrader(store, SchwabExecution(schwab, live_enabled=False), FixedQuotes(2.0, 2.1), cfg,
                           session(DAY), SimClock(TEN, speed=1), "run-1", timings=timings)
    return store, trader


@pytest.mark.integration
def test_a_position_that_appears_at_the_broker_mid_session_halts_at_the_second_poll(tmp_path):
    from tests.adapters.test_schwab_standin import SkippingClock, make_standin

    clock = SkippingClock()
    with make_standin(clock) as standin:
        store, trader = _schwab_trader(tmp_path, standin, clock)
        hook = Hook()
        alerter = Alerter(hook.url, tmp_path / "alerts.jsonl")
        trader.alert = lambda key, kind, title, **fields: alerter.send(key, kind, title, **fields)
        trader._read_control()
        trader.reconcile()  # flat and flat: poll 0
        trader.step(trader.clock.now())
        assert trader.state is TradingState.ACTIVE and trader.mismatches == 0
        standin.set_position("QQQ   241127P00490000", -3, 1.5)  # someone else's order
        trader.step(trader.clock.now())
        assert trader.mismatches == 1 and trader.state is TradingState.ACTIVE
        trader.step(trader.clock.now())
        assert trader.state is TradingState.HALTED
        for _ in range(3):  # the mismatch goes on, the state is re-read: nothing is alerted twice
            trader.step(trader.clock.now())
            trader._read_control()
        assert alerter.flush(10)
        hook.server.shutdown()
    assert [b["alphagen"]["kind"] for b in hook.bodies] == ["position_mismatch", "halt"]
    assert hook.bodies[1]["alphagen"]["reason"].startswith("position_mismatch")
    latest = current_state(store, "paper", DAY)
    assert latest.source == "trader" and latest.reason.startswith("position_mismatch")
    table3 = store.query("SELECT DISTINCT symbol, quantity FROM broker_positions WHERE symbol NOT LIKE '$%'")
    assert table3.rows() == [("O:QQQ241127P00490000", -3)]


@pytest.mark.integration
def test_an_unknown_short_at_start_halts(tmp_path):
    from tests.adapters.test_schwab_standin import SkippingClock, make_standin

    clock = SkippingClock()
    with make_standin(clock) as standin:
        standin.set_position("QQQ   241127P00490000", -3, 1.5)
        store, trader = _schwab_trader(tmp_path, standin, clock)
        trader._read_control()
        trader.reconcile()
    assert trader.held is None and trader.state is TradingState.HALTED
    assert current_state(store, "paper", DAY).reason.startswith("unknown_position")


@pytest.mark.integration
def test_an_unknown_short_at_start_is_adopted_when_allowed(tmp_path):
    from tests.adapters.test_schwab_standin import SkippingClock, make_standin

    clock = SkippingClock()
    with make_standin(clock) as standin:
        standin.set_position("QQQ   241127P00490000", -3, 1.5)
        _, trader = _schwab_trader(tmp_path, standin, clock, alphagen_adopt_unknown_positions=True)
        trader._read_control()
        trader.reconcile()
    assert trader.held is not None and trader.held.qty == 3 and trader.state is TradingState.ACTIVE
