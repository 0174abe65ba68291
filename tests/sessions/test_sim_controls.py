"""An operator's controls and a websocket drop in one simulated session (the real daemon and
code location, both stand-ins, an accelerated clock, streamed market data):

- `alphagen halt` while a short is open: the reversal still closes it, its rollover entry is
  not sent; the session job is then SIGKILLed and the relaunched one keeps the halt;
- `alphagen resume`: the next crossover trades;
- `alphagen flatten` while that short is open: the closing order reaches the broker within
  2 s, and the trader records `halted` once flat;
- Polygon's websocket drops mid-session: the stream reconnects, the bar spool has no gap, and
  every minute is processed.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from alphagen_core.application.control import current_state
from alphagen_core.application.streaming import BarSpool
from alphagen_core.domain.models import TradingState
from alphagen_core.persistence.store import Store
from alphagen_core.sim import Faults
from alphagen_core.sim.days import write_sim_day
from alphagen_core.sim.venues import SimVenues
from alphagen_dagster.service import service, sim_env
from tests.sessions.test_sim_session import DAY, SPEED, _kill_session_job, _wait

pytestmark = [pytest.mark.e2e, pytest.mark.simulated_session, pytest.mark.timeout(900)]
ALPHAGEN = Path(sys.executable).with_name("alphagen")
# The sim day of seed 5 decides an entry on the 09:39 bar and reversals with rollovers on the
# 09:47 and 09:53 bars (each sent a minute later), then settles at 10:00 (a short still open
# takes its profit on the 10:00 bar): the halt, the resume and the flatten all fit before.
SEED = 5
REVERSAL_BAR, RESUMED_ENTRY_BAR = dt.time(9, 47), dt.time(9, 53)


def _control(env: dict[str, str], command: str) -> None:
    done = subprocess.run([str(ALPHAGEN), command, "--date", DAY.isoformat(), "--reason", "test"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _orders(venues: SimVenues) -> list[tuple[str, str]]:
    return [(o.instruction, o.status) for o in venues.schwab.orders]


def test_halt_kill_resume_flatten_and_a_websocket_drop_in_one_session(tmp_path):
    write_sim_day(DAY, tmp_path / "flatfiles", seed=SEED)
    # the service has until the 09:39 bar closes (15 s at 12x) to start; the stocks feed drops
    # after its 6th message (the 09:44 bar or so), and the reconnect backfills
    venues = SimVenues(day=DAY, source=str(tmp_path / "flatfiles"), cache_dir=tmp_path / "cache", speed=SPEED,
                       start=dt.time(9, 37), polygon_faults=Faults(drop_after_messages=6, max_drops=1, seed=1))
    tz = venues.clock.start.tzinfo
    at = lambda t: dt.datetime.combine(DAY, t, tzinfo=tz)  # noqa: E731
    end = at(dt.time(9, 59))
    with venues:
        env = sim_env(tmp_path, venues)
        store = Store(env["ALPHAGEN_DUCKDB_PATH"])
        with service(env, ui=False, log_dir=tmp_path / "logs"):
            _wait(lambda: ("SELL_TO_OPEN", "FILLED") in _orders(venues), venues, end)  # the 09:40 entry
            _control(env, "halt")
            _kill_session_job(tmp_path)
            # the reversal closes the short; its rollover is not sent (two minutes on)
            _wait(lambda: ("BUY_TO_CLOSE", "FILLED") in _orders(venues)
                  and venues.clock.now() >= at(REVERSAL_BAR) + dt.timedelta(minutes=3), venues, end)
            after_halt = _orders(venues)
            _control(env, "resume")
            _wait(lambda: len(venues.schwab.orders) > len(after_halt)
                  and venues.schwab.orders[-1].status == "FILLED", venues, end)  # the resumed entry
            _control(env, "flatten")
            _wait(lambda: current_state(store, "paper", DAY).reason == "flattened", venues, end)
        dropped = venues.polygon.stats["ws_drops"]
    assert after_halt == [("SELL_TO_OPEN", "FILLED"), ("BUY_TO_CLOSE", "FILLED")]
    # the halted rollover never reached the broker (the minute run drops it, or the trader
    # records it as not sent: which one depends on the race, neither sends it)
    sent_rollovers = store.query("""SELECT e.order_id FROM trade_intents i JOIN executions e USING (intent_id)
                                    WHERE i.mode = 'paper' AND i.reason = 'rollover' AND i.est_timestamp < ?
                                    AND e.order_id <> 'not-sent'""", [at(RESUMED_ENTRY_BAR)])
    assert sent_rollovers.is_empty()
    exits = store.query("SELECT reason FROM trade_intents WHERE mode = 'paper' AND action = 'BUY_TO_CLOSE' "
                        "ORDER BY est_timestamp")["reason"].to_list()
    assert exits[0] == "reversal" and exits[-1] == "flatten"
    asked = store.query("SELECT written_at FROM control_events WHERE state = 'flattening'")["written_at"][0]
    sent = store.query("""SELECT e.written_at FROM executions e JOIN trade_intents i USING (intent_id)
                          WHERE i.reason = 'flatten' AND e.status = 'SUBMITTED'""")["written_at"][0]
    assert (sent - asked).total_seconds() <= 2.0
    latest = current_state(store, "paper", DAY)
    assert (latest.state, latest.source) == (TradingState.HALTED, "trader")
    assert venues.schwab.positions() == {}
    # the websocket dropped once; the spool and the minute runs have every minute
    assert dropped == 1
    spooled = [b.start for b in BarSpool(tmp_path / "cache" / "stream", DAY).read("QQQ")]
    assert all(b - a == dt.timedelta(minutes=1) for a, b in zip(spooled, spooled[1:]))
    processed = store.query("SELECT est_timestamp FROM equity_bars WHERE mode = 'paper' ORDER BY 1")
    minutes = processed["est_timestamp"].to_list()
    # (the service stops once flat, so the minute runs after the resumed entry's may not have happened)
    assert minutes[0].time() == dt.time(9, 30) and minutes[-1].time() >= RESUMED_ENTRY_BAR
    assert all(b - a == dt.timedelta(minutes=1) for a, b in zip(minutes, minutes[1:]))
