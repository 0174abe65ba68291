"""Alerts (once, never blocking, bounded retries), the one redactor behind the structlog JSON
lines, a bad setting's one-line message, and which days the service builds after the close."""

from __future__ import annotations

import datetime as dt
import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dagster import DagsterInstance, DagsterRunStatus

from alphagen_core.domain.calendar import NY
from alphagen_core.operations.alerts import Alerter
from alphagen_dagster.instance import PROJECT_DIR

pytestmark = pytest.mark.integration


class Hook:
    """A webhook on 127.0.0.1 answering `status` (and counting the POSTs)."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_an_alert_goes_out_once_across_processes_and_alerters(tmp_path):
    hook = Hook()
    ledger = tmp_path / "alerts.jsonl"
    first = Alerter(hook.url, ledger)
    assert first.send("halt:paper:2024-12-12:x", "halt", "Trading halted", reason="position_mismatch")
    assert not first.send("halt:paper:2024-12-12:x", "halt", "Trading halted")
    # another process with the same ledger (the session job restarted, a sensor)
    code = ("from alphagen_core.operations.alerts import Alerter; import sys; "
            f"sys.exit(0 if Alerter({hook.url!r}, {str(ledger)!r}).send('halt:paper:2024-12-12:x', 'halt', 't') "
            "else 3)")
    assert subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR).returncode == 3
    assert first.flush(10)
    hook.server.shutdown()
    assert len(hook.bodies) == 1
    body = hook.bodies[0]
    assert body["text"].startswith("*Trading halted*") and body["alphagen"]["reason"] == "position_mismatch"
    statuses = [e["status"] for e in first.ledger.entries()]
    assert statuses == ["claimed", "delivered"]


def test_a_webhook_that_is_down_never_blocks_and_is_retried_a_bounded_number_of_times(tmp_path):
    failing = Hook(status=503)
    alerter = Alerter(failing.url, tmp_path / "a.jsonl", timeout_s=1.0, retries=2)
    started = time.monotonic()
    for i in range(5):
        alerter.send(f"k{i}", "halt", f"alert {i}")
    assert time.monotonic() - started < 1.0  # the caller only queues
    assert alerter.flush(60)
    failing.server.shutdown()
    assert len(failing.bodies) == 5 * 3  # each: one try and two retries, then given up
    assert [e["status"] for e in alerter.ledger.entries()].count("failed") == 5

    with socket.socket() as s:  # nothing listens there
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    alerter = Alerter(dead, tmp_path / "b.jsonl", timeout_s=0.5, retries=1)
    started = time.monotonic()
    assert alerter.send("k", "run_failed", "Run failed")
    assert time.monotonic() - started < 1.0
    assert alerter.flush(30)
    assert alerter.ledger.entries()[-1]["status"] == "failed"


def test_secrets_are_masked_by_one_redactor_in_json_log_lines(tmp_path):
    code = """
import logging, structlog
from alphagen_core.operations.logs import configure_logging, bind
from alphagen_core.adapters.schwab.redaction import REDACTOR as schwab_redactor, install_log_redaction
from alphagen_core.operations.redaction import REDACTOR, redacting_logger
assert schwab_redactor is REDACTOR
configure_logging("json")
bind(run_id="run-1", session_date="2024-12-12", mode="paper")
redacting_logger("massive", "POLYKEY-123456")
REDACTOR.add("SCHWAB-TOKEN-abcdef", "access token")
install_log_redaction()
structlog.get_logger("alphagen_core.test").info("order", detail="sent with POLYKEY-123456")
logging.getLogger("httpx").warning("GET /accounts Authorization: Bearer SCHWAB-TOKEN-abcdef")
logging.getLogger("massive").warning("url ?apiKey=WRONGKEY9999")
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, capture_output=True, text=True, check=True)
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 3, out.stdout
    for secret in ("POLYKEY-123456", "SCHWAB-TOKEN-abcdef", "WRONGKEY9999"):
        assert secret not in out.stdout + out.stderr
    assert lines[0]["event"] == "order" and lines[0]["detail"] == "sent with ***"
    assert all((r["run_id"], r["session_date"], r["mode"]) == ("run-1", "2024-12-12", "paper") for r in lines)
    assert lines[1]["level"] == "warning" and lines[1]["logger"] == "httpx"


def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path):
    out = subprocess.run([sys.executable, "-m", "alphagen_dagster.cli", "run"], cwd=tmp_path, capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "ALPHAGEN_HEALTH_PORT": "abc",
                                         "DAGSTER_HOME": str(tmp_path / "home"), "PYTHONPATH": str(PROJECT_DIR)})
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "Error: invalid setting ALPHAGEN_HEALTH_PORT: Input should be a valid integer, unable to parse string as "
        "an integer"]
    assert "Traceback" not in out.stdout + out.stderr


def test_the_marts_are_built_once_the_session_has_ended_and_for_missed_days(tmp_path):
    from alphagen_dagster.jobs import session_job
    from alphagen_dagster.post_close import days_to_build

    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        def session_run(day: str, status: DagsterRunStatus) -> None:
            instance.create_run_for_job(session_job, tags={"alphagen/session_date": day}, status=status,
                                        run_config={"ops": {"trading_session": {"config": {"session_date": day}}}})

        session_run("2024-12-10", DagsterRunStatus.FAILURE)  # the service was down at that close
        session_run("2024-12-12", DagsterRunStatus.STARTED)
        assert days_to_build(instance, dt.datetime(2024, 12, 12, 15, 59, tzinfo=NY)) == [dt.date(2024, 12, 10)]
        # the close has passed but the job still closes its position: wait for it
        assert days_to_build(instance, dt.datetime(2024, 12, 12, 16, 5, tzinfo=NY)) == [dt.date(2024, 12, 10)]
        # 20 minutes after the close, build whatever it is doing
        assert days_to_build(instance, dt.datetime(2024, 12, 12, 16, 21, tzinfo=NY))[-1] == dt.date(2024, 12, 12)
        session_run("2024-12-13", DagsterRunStatus.SUCCESS)
        assert days_to_build(instance, dt.datetime(2024, 12, 13, 16, 0, 30, tzinfo=NY)) == [
            dt.date(2024, 12, 10), dt.date(2024, 12, 12), dt.date(2024, 12, 13)]




def test_a_refresh_token_close_to_expiry_is_alerted_once(tmp_path, monkeypatch):
    from dagster import build_sensor_context

    from alphagen_core.operations import alerts
    from alphagen_dagster.alert_sensors import token_expiry_alert

    hook = Hook()
    token = tmp_path / "token.json"
    token.write_text(json.dumps({"creation_timestamp": int(time.time() - 6.5 * 24 * 3600),
                                 "token": {"access_token": "a" * 20, "refresh_token": "r" * 20}}))
    for name, value in {"ALPHAGEN_BROKER": "schwab", "SCHWAB_TOKEN_PATH": str(token),
                        "ALPHAGEN_CACHE_DIR": str(tmp_path / "cache"), "ALPHAGEN_ALERT_WEBHOOK_URL": hook.url}.items():
        monkeypatch.setenv(name, value)
    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as instance:
        for _ in range(3):
            token_expiry_alert(build_sensor_context(instance=instance))
    alerts.flush_all(10)
    hook.server.shutdown()
    assert len(hook.bodies) == 1
    body = hook.bodies[0]["alphagen"]
    assert body["kind"] == "token_expiry" and 11.5 < body["hours_left"] < 12.5
    assert "alphagen schwab-login" in hook.bodies[0]["text"]
