"""Operating the service, on one short simulated session (the real daemon and
code locations, the Polygon and Schwab stand-ins, an accelerated clock): a local webhook
receiver gets a failed run, a lost heartbeat and the session summary once each; /health and
/metrics, scraped while it runs, show the minute runs advancing and the orders counted; after
the close, the paper row of daily_pnl appears without anyone running dbt."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from alphagen_core.application.lease import read_heartbeat
from alphagen_core.persistence.store import Store
from alphagen_core.sim.days import write_sim_day
from alphagen_core.sim.venues import SimVenues
from alphagen_dagster.service import service, sim_env

pytestmark = [pytest.mark.e2e, pytest.mark.simulated_session, pytest.mark.timeout(600)]
DAY = dt.date(2024, 12, 12)  # the sim day: crossovers in its first half hour
START = dt.time(9, 33)


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric(text: str, name: str, labels: str = "") -> float:
    for line in text.splitlines():
        if line.startswith(f"{name}{labels} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not in /metrics")


def scrape(base: str) -> tuple[int, dict, str]:
    health = httpx.get(f"{base}/health", timeout=10)
    return health.status_code, health.json(), httpx.get(f"{base}/metrics", timeout=10).text


def wait_for(condition, venues: SimVenues, until: dt.datetime, what: str, real_s: float = 0.0):
    deadline = time.monotonic() + real_s
    while not (result := condition()):
        assert venues.clock.now() < until or time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result


def test_alerts_health_metrics_and_pnl_after_the_close(tmp_path):
    """The session runs from 09:33 until its first fill; the job is then killed once, and
    relaunched. The service then stops and starts again after the close (the catch-up path:
    it was down at the close), and builds the day's marts and summary by itself."""
    write_sim_day(DAY, tmp_path / "flatfiles")
    receiver = Receiver()
    health_port = free_port()
    venues = SimVenues(day=DAY, source=str(tmp_path / "flatfiles"), cache_dir=tmp_path / "cache",
                       speed=6.0, start=START)
    tz = venues.clock.start.tzinfo
    at = lambda h, m: dt.datetime.combine(DAY, dt.time(h, m), tzinfo=tz)  # noqa: E731
    base = f"http://127.0.0.1:{health_port}"
    beats = tmp_path / "cache" / "session"
    scrapes = []
    with venues:
        env = sim_env(tmp_path, venues)
        env.update({"ALPHAGEN_ALERT_WEBHOOK_URL": receiver.url, "ALPHAGEN_HEALTH_PORT": str(health_port)})
        with service(env, ui=False, log_dir=tmp_path / "logs", health=True):
            wait_for(lambda: any(o.status == "FILLED" for o in venues.schwab.orders), venues, at(9, 56),
                     "a fill at the broker")
            # the session job's figures reach /metrics within a second or two
            scrapes.append(wait_for(lambda: (sc := scrape(base)) and metric(sc[2], "alphagen_orders_sent_total") >= 1
                                    and sc, venues, at(9, 58), "the order in /metrics"))
            # kill the session job (a short position is open); the session sensor relaunches it
            beat = read_heartbeat(beats, DAY.isoformat())
            assert beat is not None and beat.alive()
            os.kill(beat.pid, signal.SIGKILL)
            relaunched = wait_for(lambda: (b := read_heartbeat(beats, DAY.isoformat())) and b.run_id != beat.run_id
                                  and b.alive() and b, venues, at(10, 5), "the relaunched job")
            wait_for(lambda: receiver.of_kind("run_failed") and receiver.of_kind("heartbeat_lost"),
                     venues, at(10, 8), "the failure alerts")
            # the relaunched job's status, and the minute runs going on
            done = metric(scrapes[0][2], "alphagen_minute_runs_total", '{status="success"}')
            scrapes.append(wait_for(
                lambda: (sc := scrape(base)) and sc[1].get("session_job", {}).get("status_run_id") == relaunched.run_id
                and metric(sc[2], "alphagen_minute_runs_total", '{status="success"}') > done and sc,
                venues, at(10, 12), "the relaunched job and a new minute run in /metrics"))
        # down at the close; back at 16:01 (the same sim clock's speed, started later)
        env.update({"ALPHAGEN_SIM_START": at(16, 1).isoformat(), "ALPHAGEN_SIM_EPOCH": str(time.time())})
        with service(env, ui=False, log_dir=tmp_path / "logs"):
            deadline = time.monotonic() + 180
            while not receiver.of_kind("session_summary"):
                assert time.monotonic() < deadline, "no session summary after the close"
                time.sleep(0.5)
            time.sleep(6)  # a sensor tick or two more: nothing is sent twice
    receiver.server.shutdown()
    store = Store(env["ALPHAGEN_DUCKDB_PATH"])
    pnl = store.query("SELECT * FROM daily_pnl WHERE mode = 'paper' AND trade_date = ?", [DAY])

    # /health and /metrics during the session
    (code1, health1, text1), (code2, health2, text2) = scrapes
    assert health1["session"]["date"] == DAY.isoformat() and "minute_runs" in health1
    print("health during the session:", health1, health2)
    for code, health, _ in scrapes:
        assert (code == 200) == health["ok"] == (not health["reasons"]), health
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
    assert pnl.height == 1, "no paper row in daily_pnl"
    fills = store.query("SELECT sum(pnl_contrib) AS p FROM executions WHERE mode = 'paper' AND status = 'FILLED'")
    assert float(pnl["realized_pnl"][0]) == pytest.approx(float(fills["p"][0]))

    # each alert exactly once, with the right content
    failed = [b for b in receiver.of_kind("run_failed") if b["alphagen"]["run_id"] == beat.run_id]
    kinds = [(b["alphagen"]["kind"], b["alphagen"].get("run_id")) for b in receiver.bodies]
    assert len(failed) == 1 and failed[0]["alphagen"]["job"] == "session_job", kinds
    assert failed[0]["alphagen"]["message"] and failed[0]["text"].startswith("*Run failed: session_job")
    lost = receiver.of_kind("heartbeat_lost")
    assert len(lost) == 1 and lost[0]["alphagen"]["run_id"] == beat.run_id, kinds
    summaries = receiver.of_kind("session_summary")
    assert len(summaries) == 1, kinds
    s = summaries[0]["alphagen"]
    assert (s["mode"], s["session_date"]) == ("paper", DAY.isoformat())
    assert s["realized_pnl"] == pytest.approx(float(pnl["realized_pnl"][0]))
    assert s["trades"] == int(pnl["trades"][0]) and s["fees"] == pytest.approx(float(pnl["fees"][0]))
    assert sum(s["exits_by_reason"].values()) == s["trades"]
    assert s["orders_sent"] >= 1 and s["fills"] >= 1 and s["latency"]["closed_bar_to_order_s"]["n"] >= 1
    assert all(receiver.url not in json.dumps(b) for b in receiver.bodies)
