"""The live session end to end: the real dagster-daemon and code location, the Polygon and
Schwab stand-ins, an accelerated clock, over the sim day (several crossovers in the first
half hour, then settled). Checked against a replay of the same day through the replay job."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from alphagen_core.lease import read_heartbeat
from alphagen_core.sim.days import write_sim_day
from alphagen_core.sim.venues import SimVenues
from alphagen_core.store import Store
from alphagen_dagster.service import PROJECT_DIR, service, sim_env, summarize

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
DAY = dt.date(2024, 12, 12)
START, UNTIL = dt.time(9, 34), dt.time(10, 1, 15)
BRACKETS = ("stop_loss", "take_profit")


def replay_orders(store: Store) -> list[tuple[str, str, int, str]]:
    """(action, contract, qty, minute decided) of every order the replay placed. A replay
    stamps a stop or target exit at the end of the bar it triggered in (its range is known
    only then); the live session decides it inside that bar, so compare that bar's minute."""
    intents = store.query("SELECT * FROM trade_intents WHERE mode = 'replay' ORDER BY est_timestamp, intent_id")
    out = []
    for r in intents.iter_rows(named=True):
        minute = r["est_timestamp"] - dt.timedelta(minutes=1 if r["reason"] in BRACKETS else 0)
        out.append((r["action"], r["option_symbol"], r["qty"], f"{minute:%H:%M}"))
    return out


def live_orders(summary: dict) -> list[tuple[str, str, int, str]]:
    return [(o["action"], o["option_symbol"], o["qty"], o["decided"]) for o in summary["orders"]]


def run_replay(env: dict[str, str], workdir: Path) -> None:
    replay_env = {**env, "ALPHAGEN_MODE": "replay", "DAGSTER_HOME": str(workdir / "replay_home")}
    subprocess.run([sys.executable, "-m", "alphagen_dagster.cli", "replay", "--start", DAY.isoformat()],
                   cwd=PROJECT_DIR, env=replay_env, check=True, capture_output=True, timeout=300)


def test_simulated_session_matches_the_replay(tmp_path):
    write_sim_day(DAY, tmp_path / "flatfiles")
    venues = SimVenues(day=DAY, source=str(tmp_path / "flatfiles"), cache_dir=tmp_path / "cache",
                       speed=6.0, start=START)
    end = dt.datetime.combine(DAY, UNTIL, tzinfo=venues.clock.start.tzinfo)
    with venues:
        # The second round trip reaches the daily loss limit (realized plus the open short at
        # the ask of its minute's high): both must stop at the same minute at the same price.
        env = {**sim_env(tmp_path, venues), "RISK_MAX_DAILY_LOSS": "5000"}
        with service(env, ui=False, log_dir=tmp_path / "logs"):
            while venues.clock.now() < end:
                time.sleep(0.5)
        summary = summarize(tmp_path, venues, env)
    run_replay(env, tmp_path)
    store = Store(env["ALPHAGEN_DUCKDB_PATH"])

    expected = replay_orders(store)
    assert len(expected) == 4 and live_orders(summary) == expected
    reasons = store.query("SELECT mode, reason FROM trade_intents WHERE action = 'BUY_TO_CLOSE' "
                          "ORDER BY mode, est_timestamp")
    assert reasons.rows() == [(m, r) for m in ("paper", "replay") for r in ("reversal", "daily_loss_limit")]
    later = store.query("SELECT mode, drop_reason FROM signals WHERE est_timestamp > ? ORDER BY mode",
                        [dt.datetime.combine(DAY, dt.time(9, 54), tzinfo=venues.clock.start.tzinfo)])
    assert later.rows() == [("paper", "daily_loss_limit"), ("replay", "daily_loss_limit")]
    assert all(o["status"] == "FILLED" for o in summary["orders"])

    fills = store.query("SELECT intent_id, count(*) AS n FROM executions "
                        "WHERE mode = 'paper' AND status = 'FILLED' GROUP BY intent_id")
    assert fills.height == len(expected) and set(fills["n"]) == {1}

    pnl = {r["mode"]: r for r in summary["daily_pnl"]}
    assert summary["daily_pnl"], "dbt built no daily_pnl"
    run_replay_pnl = Store(env["ALPHAGEN_DUCKDB_PATH"]).query(
        "SELECT realized_pnl, trades FROM daily_pnl WHERE mode = 'replay'")
    if run_replay_pnl.height:  # the replay job's own dbt build
        assert float(run_replay_pnl["realized_pnl"][0]) == pnl["paper"]["realized_pnl"]
    assert pnl["paper"]["realized_pnl"] == pytest.approx(
        float(store.query("SELECT sum(pnl_contrib) AS p FROM executions WHERE mode = 'replay' AND status = 'FILLED'")["p"][0]))
    assert pnl["paper"]["trades"] == sum(1 for o in expected if o[0] == "BUY_TO_CLOSE")

    lat = summary["latency"]
    assert lat["closed_bar_to_order_s"]["n"] >= 3 and lat["engine_ms_per_minute"]["n"] > 0


def _kill_session_job(workdir: Path) -> int:
    beat = read_heartbeat(workdir / "cache" / "session", DAY.isoformat())
    assert beat is not None and beat.alive(), "no live session job to kill"
    os.kill(beat.pid, signal.SIGKILL)
    return beat.pid


def _wait(condition, venues: SimVenues, until: dt.datetime) -> None:
    while not condition():
        assert venues.clock.now() < until, "timed out waiting in the simulated session"
        time.sleep(0.05)


def test_session_job_killed_twice_recovers_without_duplicate_orders(tmp_path):
    """SIGKILL while a position is open, and again right after an order reaches the broker:
    the sensor relaunches the job, it reconciles (records the order it had sent), exits the
    position by the rules, and the broker never receives an order twice."""
    write_sim_day(DAY, tmp_path / "flatfiles")
    venues = SimVenues(day=DAY, source=str(tmp_path / "flatfiles"), cache_dir=tmp_path / "cache",
                       speed=6.0, start=dt.time(9, 36))
    # the second kill is at the 09:51 reversal; the rollover it opens is all this test needs
    end = dt.datetime.combine(DAY, dt.time(9, 54, 30), tzinfo=venues.clock.start.tzinfo)
    with venues:
        env = sim_env(tmp_path, venues)
        with service(env, ui=False, log_dir=tmp_path / "logs"):
            _wait(lambda: any(o.status == "FILLED" for o in venues.schwab.orders), venues, end)
            first_pid = _kill_session_job(tmp_path)  # a short position is open
            seen = len(venues.schwab.orders)
            _wait(lambda: len(venues.schwab.orders) > seen, venues, end)
            second_pid = _kill_session_job(tmp_path)  # right after an order was sent
            while venues.clock.now() < end:
                time.sleep(0.5)
            orders = venues.schwab.orders
        summary = summarize(tmp_path, venues, env)
    assert first_pid != second_pid
    keys = [(o["action"], o["option_symbol"], o["qty"], o["decided"]) for o in summary["orders"]]
    assert len(keys) == len(set(keys)), f"an order was sent twice: {keys}"
    store = Store(env["ALPHAGEN_DUCKDB_PATH"])
    recorded = store.query("SELECT order_id FROM executions WHERE mode = 'paper' AND status = 'SUBMITTED'")
    assert {str(o.order_id) for o in orders} <= set(recorded["order_id"])  # every sent order recorded
    # The position open at the first kill was exited by the rules: the 09:51 reversal, whose
    # order the second kill interrupted and the relaunched job recorded. The rollover entry
    # decided with it is sent once, or, if the relaunch took longer than an entry's time to
    # live, recorded as not sent (its price is gone); never twice.
    actions = [(o["action"], o["reason"], o["status"]) for o in summary["orders"]]
    assert actions[:2] == [("SELL_TO_OPEN", "entry", "FILLED"), ("BUY_TO_CLOSE", "reversal", "FILLED")]
    assert actions[2:] in ([], [("SELL_TO_OPEN", "rollover", "FILLED")])
    assert list(venues.schwab.positions().values()) == ([-25] if actions[2:] else [])
    rollover = store.query("SELECT status FROM executions WHERE mode = 'paper' AND intent_id = 'int-2024-12-12T09:50-2'")
    assert set(rollover["status"]) in ({"SUBMITTED", "FILLED"}, {"CANCELED"})
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:  # the sensor relaunched twice
        runs = instance.get_runs(RunsFilter(job_name="session_job"))
    assert len(runs) >= 3 and sum(r.status is DagsterRunStatus.FAILURE for r in runs) >= 2
