"""The live session end to end: the real dagster-daemon and code locations, the Polygon and
Schwab stand-ins, an accelerated clock, over the sim day (several crossovers in the first
half hour, then settled), the session job killed twice on the way. Checked against a replay
of the same day through the replay job.

Operating the same service on the same session: a local webhook receiver gets each failed
run, each lost heartbeat and the session summary once; /health and /metrics, scraped while it
runs, show the minute runs advancing and the orders counted; after the close, the paper row of
daily_pnl appears without anyone running dbt."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from alphagen_core.application.lease import Heartbeat, read_heartbeat
from alphagen_core.persistence.store import Store
from alphagen_core.sim.days import write_sim_day
from alphagen_core.sim.venues import SimVenues
from alphagen_dagster.service import PROJECT_DIR, service, sim_env, summarize
from tests.processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.simulated_session, pytest.mark.timeout(900)]
DAY = dt.date(2024, 12, 12)
# The sim day of seed 18 (with the test's daily loss limit) decides an entry on the 09:39 bar, a
# reversal with its rollover on the 09:46 bar, the loss-limit exit at 09:50, and a crossover on
# the 09:53 bar that the limit drops; then it settles. At 12x a simulated minute takes 5 real
# seconds: the minute sensor's lead (15 real seconds) starts each minute's run before its bar
# closes, so only the decision itself (well under a second) falls inside the minute whose price
# the replay fills at. From 09:36 the service has until the 09:39 bar closes (20 s) to start.
SEED = 18
START, SPEED = dt.time(9, 36), 12.0
BRACKETS = ("stop_loss", "take_profit")


def sim_venues(tmp_path: Path) -> SimVenues:
    """The stand-ins on the sim day, on a clock that starts at START."""
    write_sim_day(DAY, tmp_path / "flatfiles", seed=SEED)
    return SimVenues(day=DAY, source=str(tmp_path / "flatfiles"), cache_dir=tmp_path / "cache",
                     speed=SPEED, start=START)


def summary_of(tmp_path: Path, venues: SimVenues, env: dict[str, str], monkeypatch) -> dict:
    """summarize (its `dbt build` writes its target under tmp_path), and DAGSTER_HOME, which
    it sets, restored after the test."""
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    return summarize(tmp_path, venues, env)


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


@contextmanager
def replaying(env: dict[str, str], workdir: Path) -> Iterator[subprocess.Popen[str]]:
    """`alphagen replay` of the day, started now; it must have ended with the block (it is
    killed if the block fails first)."""
    replay_env = {**env, "ALPHAGEN_MODE": "replay", "DAGSTER_HOME": str(workdir / "replay_home")}
    proc = subprocess.Popen([sys.executable, "-m", "alphagen_dagster.cli", "replay", "--start", DAY.isoformat()],
                            cwd=PROJECT_DIR, env=replay_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def _kill_session_job(workdir: Path) -> Heartbeat:
    """SIGKILL the session job; its last heartbeat (pid, run id)."""
    beat = read_heartbeat(workdir / "cache" / "session", DAY.isoformat())
    assert beat is not None and beat.alive(), "no live session job to kill"
    os.kill(beat.pid, signal.SIGKILL)
    return beat


def wait_for(condition, venues: SimVenues, until: dt.datetime, what: str = "the simulated session",
             every: float = 0.05):
    """Poll `condition` until it is truthy (returned), failing once the sim clock passes `until`."""
    while not (result := condition()):
        assert venues.clock.now() < until, f"timed out waiting for {what}"
        time.sleep(every)
    return result


def _wait(condition, venues: SimVenues, until: dt.datetime) -> None:
    wait_for(condition, venues, until)


class Relaunched:
    """True once a session job other than `killed` beats twice: its lease's first beat is
    written before it reconciles, the next ones from its trading loop, after."""

    def __init__(self, workdir: Path, killed: int) -> None:
        self.workdir, self.killed = workdir, killed
        self.first: float | None = None

    def __call__(self) -> bool:
        beat = read_heartbeat(self.workdir / "cache" / "session", DAY.isoformat())
        if beat is None or beat.pid == self.killed or not beat.alive():
            return False
        if self.first is None:
            self.first = beat.at
        return beat.at > self.first


class Receiver:
    """A Slack-style webhook on 127.0.0.1 that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_kind(self, kind: str) -> list[dict]:
        return [b for b in self.bodies if b.get("alphagen", {}).get("kind") == kind]

    def of_run(self, kind: str, run_id: str) -> list[dict]:
        return [b for b in self.of_kind(kind) if b["alphagen"].get("run_id") == run_id]


def metric(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not in /metrics")


def scrape(base: str) -> tuple[int, dict, str]:
    health = httpx.get(f"{base}/health", timeout=10)
    return health.status_code, health.json(), httpx.get(f"{base}/metrics", timeout=10).text


def test_a_session_killed_twice_recovers_alerts_once_and_matches_the_replay(tmp_path, monkeypatch):
    """SIGKILL of the session job while a position is open, and again right after the
    daily-loss-limit exit reaches the broker: the sensor relaunches the job each time, it
    reconciles (records the orders it had sent, never sends one twice) and trades on by the
    rules. The second round trip reaches the daily loss limit (realized plus the open short at
    the ask of its minute's high): the session and the replay stop at the same minute at the
    same price, and every order, fill and the P/L are the replay's.

    Each kill is alerted once (a failed run, a lost heartbeat), and /health and /metrics show
    the relaunched job and the minute runs going on. The service then stops at about 09:56 and starts
    again after the close (the catch-up path: it was down at the close), and builds the day's
    marts and sends the session summary by itself."""
    venues = sim_venues(tmp_path)
    at = lambda t: dt.datetime.combine(DAY, t, tzinfo=venues.clock.start.tzinfo)  # noqa: E731
    receiver = Receiver()
    health = f"http://127.0.0.1:{(health_port := free_port())}"
    beats = tmp_path / "cache" / "session"
    with venues:
        env = {**sim_env(tmp_path, venues), "RISK_MAX_DAILY_LOSS": "5000",
               "ALPHAGEN_ALERT_WEBHOOK_URL": receiver.url, "ALPHAGEN_HEALTH_PORT": str(health_port)}
        with service(env, ui=False, log_dir=tmp_path / "logs", health=True):
            _wait(lambda: any(o.status == "FILLED" for o in venues.schwab.orders), venues, at(dt.time(9, 45)))
            # the session job's figures reach /metrics within a second or two
            scraped_before = wait_for(
                lambda: (sc := scrape(health)) and metric(sc[2], "alphagen_orders_sent_total") >= 1 and sc,
                venues, at(dt.time(9, 45)), "the order in /metrics", every=0.2)
            first = _kill_session_job(tmp_path)  # a short position is open
            relaunched = wait_for(lambda: (b := read_heartbeat(beats, DAY.isoformat())) and b.run_id != first.run_id
                                  and b.alive() and b, venues, at(dt.time(9, 50)), "the relaunched job")
            wait_for(lambda: receiver.of_run("run_failed", first.run_id)
                     and receiver.of_run("heartbeat_lost", first.run_id),
                     venues, at(dt.time(9, 50)), "the first kill's alerts", every=0.2)
            # the relaunched job's status, and the minute runs going on
            done = metric(scraped_before[2], "alphagen_minute_runs_total", '{status="success"}')
            scraped_after = wait_for(
                lambda: (sc := scrape(health))
                and sc[1].get("session_job", {}).get("status_run_id") == relaunched.run_id
                and metric(sc[2], "alphagen_minute_runs_total", '{status="success"}') > done and sc,
                venues, at(dt.time(9, 50)), "the relaunched job and a new minute run in /metrics", every=0.2)
            assert len(venues.schwab.orders) < 4, "the loss-limit exit was sent before the relaunch was checked"
            _wait(lambda: len(venues.schwab.orders) == 4, venues, at(dt.time(9, 53)))  # the loss-limit exit
            second = _kill_session_job(tmp_path)  # right after an order was sent
            _wait(Relaunched(tmp_path, second.pid), venues, at(dt.time(9, 55)))
            while venues.clock.now() < at(dt.time(9, 55)):  # the 09:53 bar's run is done
                time.sleep(0.5)
            orders = venues.schwab.orders
            positions = venues.schwab.positions()
            wait_for(lambda: receiver.of_run("run_failed", second.run_id)
                     and receiver.of_run("heartbeat_lost", second.run_id),
                     venues, at(dt.time(10, 1)), "the second kill's alerts", every=0.2)
        # Down at the close; back at 16:31 (the same sim clock's speed, started later): past the
        # live window, so the marts build in one dbt run (test_replay_dagster.py checks the
        # per-model builds while a session may write). The replay the session is compared with
        # runs meanwhile, as a user's replay might.
        after_close = {**env, "ALPHAGEN_SIM_START": at(dt.time(16, 31)).isoformat(),
                       "ALPHAGEN_SIM_EPOCH": str(time.time())}
        with replaying(after_close, tmp_path) as replay, service(after_close, ui=False, log_dir=tmp_path / "logs"):
            deadline = time.monotonic() + 180
            while not receiver.of_kind("session_summary"):
                assert time.monotonic() < deadline, "no session summary after the close"
                time.sleep(0.5)
            time.sleep(6)  # a sensor tick or two more: nothing is sent twice
            replayed, _ = replay.communicate(timeout=300)
            assert replay.returncode == 0, replayed
        store = Store(env["ALPHAGEN_DUCKDB_PATH"])
        built_after_close = store.query("SELECT * FROM daily_pnl WHERE mode = 'paper' AND trade_date = ?", [DAY])
        summary = summary_of(tmp_path, venues, env, monkeypatch)
    receiver.server.shutdown()

    expected = replay_orders(store)
    assert len(expected) == 4 and live_orders(summary) == expected  # none twice, none missing
    # (a minute run may decide a second loss-limit close while the first one's fill is not yet
    # in table 8, its job killed right after sending; the trader does not send it: the orders
    # above match the replay's one for one)
    reasons = store.query("SELECT DISTINCT mode, reason FROM trade_intents WHERE action = 'BUY_TO_CLOSE' "
                          "ORDER BY mode, reason")
    assert reasons.rows() == [(m, r) for m in ("paper", "replay") for r in ("daily_loss_limit", "reversal")]
    later = store.query("SELECT mode, drop_reason FROM signals WHERE est_timestamp > ? ORDER BY mode",
                        [at(dt.time(9, 50))])
    assert later.rows() == [("paper", "daily_loss_limit"), ("replay", "daily_loss_limit")]
    assert all(o["status"] == "FILLED" for o in summary["orders"]) and positions == {}

    fills = store.query("SELECT intent_id, count(*) AS n FROM executions "
                        "WHERE mode = 'paper' AND status = 'FILLED' GROUP BY intent_id")
    assert fills.height == len(expected) and set(fills["n"]) == {1}

    pnl = {r["mode"]: r for r in summary["daily_pnl"]}
    replay_pnl = store.query("SELECT realized_pnl, trades FROM daily_pnl WHERE mode = 'replay'")  # the replay's dbt build
    assert replay_pnl.height == 1 and float(replay_pnl["realized_pnl"][0]) == pnl["paper"]["realized_pnl"]
    assert pnl["paper"]["realized_pnl"] == pytest.approx(
        float(store.query("SELECT sum(pnl_contrib) AS p FROM executions WHERE mode = 'replay' AND status = 'FILLED'")["p"][0]))
    assert pnl["paper"]["trades"] == sum(1 for o in expected if o[0] == "BUY_TO_CLOSE")

    # the kills: each relaunched job recorded what its predecessor had sent, and sent nothing twice
    assert first.pid != second.pid
    recorded = store.query("SELECT order_id FROM executions WHERE mode = 'paper' AND status = 'SUBMITTED'")
    assert sorted(str(o.order_id) for o in orders) == sorted(recorded["order_id"])
    exit_rows = store.query("""SELECT e.status FROM executions e JOIN trade_intents i USING (intent_id)
                               WHERE e.mode = 'paper' AND i.mode = 'paper' AND i.reason = 'daily_loss_limit'
                               AND e.order_id <> 'not-sent'""")
    assert sorted(exit_rows["status"]) == ["FILLED", "SUBMITTED"]
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:  # the sensor relaunched twice
        runs = instance.get_runs(RunsFilter(job_name="session_job"))
    assert len(runs) >= 3 and sum(r.status is DagsterRunStatus.FAILURE for r in runs) >= 2

    lat = summary["latency"]
    assert lat["closed_bar_to_order_s"]["n"] >= 3 and lat["engine_ms_per_minute"]["n"] > 0

    # /health and /metrics during the session, before the first kill and after its relaunch
    (code1, health1, text1), (code2, health2, text2) = scraped_before, scraped_after
    assert health1["session"]["date"] == DAY.isoformat() and "minute_runs" in health1
    for code, answer in ((code1, health1), (code2, health2)):
        assert (code == 200) == answer["ok"] == (not answer["reasons"]), answer
    assert health2["session_job"]["run_id"] == relaunched.run_id
    runs1 = metric(text1, "alphagen_minute_runs_total", '{status="success"}')
    runs2 = metric(text2, "alphagen_minute_runs_total", '{status="success"}')
    assert runs1 >= 1 and runs2 > runs1, (runs1, runs2)
    assert metric(text2, "alphagen_last_minute_processed_timestamp_seconds") > \
        metric(text1, "alphagen_last_minute_processed_timestamp_seconds")
    assert metric(text1, "alphagen_orders_sent_total") >= 1
    assert metric(text2, "alphagen_orders_sent_total") >= metric(text1, "alphagen_orders_sent_total")
    assert metric(text2, "alphagen_trading_state", '{state="active"}') == 1

    # the marts were built by the service after the close
    assert built_after_close.height == 1, "no paper row in daily_pnl after the close"
    paper_fills = store.query("SELECT sum(pnl_contrib) AS p FROM executions WHERE mode = 'paper' AND status = 'FILLED'")
    assert float(built_after_close["realized_pnl"][0]) == pytest.approx(float(paper_fills["p"][0]))

    # each alert exactly once, with the right content
    kinds = [(b["alphagen"]["kind"], b["alphagen"].get("run_id")) for b in receiver.bodies]
    for killed in (first, second):
        failed = receiver.of_run("run_failed", killed.run_id)
        assert len(failed) == 1 and failed[0]["alphagen"]["job"] == "session_job", kinds
        assert failed[0]["alphagen"]["message"] and failed[0]["text"].startswith("*Run failed: session_job")
    lost = receiver.of_kind("heartbeat_lost")
    assert sorted(b["alphagen"]["run_id"] for b in lost) == sorted([first.run_id, second.run_id]), kinds
    summaries = receiver.of_kind("session_summary")
    assert len(summaries) == 1, kinds
    s = summaries[0]["alphagen"]
    assert (s["mode"], s["session_date"]) == ("paper", DAY.isoformat())
    assert s["realized_pnl"] == pytest.approx(float(built_after_close["realized_pnl"][0]))
    assert s["trades"] == int(built_after_close["trades"][0])
    assert s["fees"] == pytest.approx(float(built_after_close["fees"][0]))
    assert sum(s["exits_by_reason"].values()) == s["trades"]
    assert s["orders_sent"] >= 1 and s["fills"] >= 1 and s["latency"]["closed_bar_to_order_s"]["n"] >= 1
    assert all(receiver.url not in json.dumps(b) for b in receiver.bodies)
