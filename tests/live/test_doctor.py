"""`alphagen doctor` against the Polygon and Schwab stand-ins and a real dagster-daemon on
loopback: it passes while everything runs, and fails naming the check when the token has
expired or a stand-in stops. The service's own pre-market run of the same checks too."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import structlog.testing
from dagster import DagsterInstance, RunRequest, SkipReason, build_sensor_context

from alphagen_core.adapters.schwab.tokens import write_private_file
from alphagen_core.domain.calendar import NY
from alphagen_core.operations.settings import load_settings
from alphagen_core.sim.days import write_sim_day
from alphagen_core.sim.venues import SimVenues
from alphagen_dagster.doctor import LIVE_SENSORS, Status, offset_bounds, run_checks
from alphagen_dagster.instance import open_instance, prepare_home
from alphagen_dagster.service import PROJECT_DIR, service, sim_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]
DAY = dt.date(2024, 12, 12)
# After the live window (close + 30 min): the sensors run and skip, nothing trades, and the
# stand-ins serve the whole day's bars and the chain's last quotes.
AFTER_THE_SESSION = dt.time(16, 35)
CHECKS = ["settings", "schwab token", "polygon rest", "polygon websocket", "broker", "flat files", "clock",
          "disk space", "duckdb", "dagster instance", "dagster daemon", "live sensors"]


def doctor(env: dict[str, str]) -> tuple[int, dict[str, str]]:
    """Run `alphagen doctor`; its exit code and {check: its line}."""
    done = subprocess.run([str(Path(sys.executable).with_name("alphagen")), "doctor", "--min-free-gb", "0.01"],
                          cwd=PROJECT_DIR, env=env, capture_output=True, text=True, timeout=120)
    lines = {}
    for line in done.stdout.splitlines():
        for name in CHECKS:
            if line[2:].split(None, 1)[-1].startswith(name + " ") and name not in lines:
                lines[name] = line
    assert set(lines) == set(CHECKS), done.stdout + done.stderr
    return done.returncode, lines


def failed(lines: dict[str, str]) -> set[str]:
    return {name for name, line in lines.items() if "FAIL" in line.split()[:2]}


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """The stand-ins on one sim clock and the service (daemon only) on them, once the daemon
    has evaluated the live sensors."""
    workdir = tmp_path_factory.mktemp("doctor")
    write_sim_day(DAY, workdir / "flatfiles")
    venues = SimVenues(day=DAY, source=str(workdir / "flatfiles"), cache_dir=workdir / "cache", speed=1.0,
                       start=AFTER_THE_SESSION)
    with venues:
        env = sim_env(workdir, venues)
        with service(env, ui=False, log_dir=workdir / "logs"):
            _wait_for_sensor_ticks(Path(env["DAGSTER_HOME"]))
            yield venues, env, workdir


def _wait_for_sensor_ticks(home: Path, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with open_instance(home) as instance:
            ticked = {s.name for s in instance.all_instigator_state()
                      if getattr(s.instigator_data, "last_tick_timestamp", None)}
        if set(LIVE_SENSORS) <= ticked:
            return
        time.sleep(1)
    pytest.fail(f"the daemon did not evaluate {LIVE_SENSORS} within {timeout_s} s (logs: {home.parent / 'logs'})")


def test_doctor_passes_against_the_stand_ins(running):
    _, env, _ = running
    code, lines = doctor(env)
    assert code == 0 and not failed(lines), "\n".join(lines.values())
    assert "SKIP" not in lines["schwab token"] and "refresh token valid for 6d" in lines["schwab token"]
    assert "account found" in lines["broker"] and "stand-in" in lines["settings"]
    assert "bars of 2024-12-12" in lines["polygon rest"] and "0DTE contracts" in lines["polygon rest"]
    assert "sqlite storage" in lines["dagster instance"]
    assert "the market is extended-hours" in lines["clock"]  # the stand-in's /v1/marketstatus/now at 16:35
    assert "latest stocks day 2024-12-12" in lines["flat files"]


def test_the_services_premarket_run_passes_and_the_sensor_fires_once_a_day_at_open_minus_30(running, monkeypatch):
    _, env, _ = running
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from alphagen_dagster.premarket import premarket_check_job, premarket_check_sensor

    result = premarket_check_job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert result.success, [e.message for e in result.all_events if e.is_failure]

    with DagsterInstance.ephemeral() as instance:
        for when, kind, run_key in ((dt.datetime(2024, 12, 12, 9, 0, 5), RunRequest, "premarket-2024-12-12"),
                                    (dt.datetime(2024, 12, 12, 9, 29, 50), RunRequest, "premarket-2024-12-12"),
                                    (dt.datetime(2024, 12, 12, 9, 30, 0), SkipReason, None),
                                    (dt.datetime(2024, 12, 12, 8, 59, 0), SkipReason, None),
                                    (dt.datetime(2024, 12, 14, 9, 10, 0), SkipReason, None)):  # a Saturday
            monkeypatch.setenv("ALPHAGEN_SIM_START", when.replace(tzinfo=NY).isoformat())
            monkeypatch.setenv("ALPHAGEN_SIM_EPOCH", repr(time.time()))
            answer = premarket_check_sensor(build_sensor_context(instance=instance))
            assert (type(answer), getattr(answer, "run_key", None)) == (kind, run_key), when


def test_doctor_fails_naming_the_check_when_the_token_expired_or_a_stand_in_stops(running, monkeypatch):
    venues, env, workdir = running
    token = json.loads(Path(env["SCHWAB_TOKEN_PATH"]).read_text())
    token["creation_timestamp"] = int(time.time()) - 8 * 86400  # signed in 8 days ago
    expired = workdir / "secrets" / "expired_token.json"
    write_private_file(expired, json.dumps(token))
    code, lines = doctor({**env, "SCHWAB_TOKEN_PATH": str(expired)})
    assert code == 1 and failed(lines) == {"schwab token", "broker"}, "\n".join(lines.values())
    assert "expired" in lines["schwab token"] and "alphagen schwab-login" in lines["schwab token"]

    venues.polygon.stop()
    code, lines = doctor(env)
    assert code == 1 and failed(lines) == {"polygon rest", "polygon websocket", "clock"}, "\n".join(lines.values())

    for name, value in env.items():  # the service's run names the failed checks too
        monkeypatch.setenv(name, value)
    from alphagen_dagster.premarket import premarket_check_job

    with structlog.testing.capture_logs() as logged:
        result = premarket_check_job.execute_in_process(instance=DagsterInstance.ephemeral(), raise_on_error=False)
    assert not result.success
    assert {e["check"] for e in logged if e["event"] == "doctor_check_failed"} == {"polygon rest", "polygon websocket",
                                                                                   "clock"}
    [failure] = [e for e in result.all_events if e.is_step_failure]
    description = failure.step_failure_data.user_failure_data.description
    assert "polygon rest" in description and "polygon websocket" in description and "clock" in description

    venues.schwab.stop()
    code, lines = doctor(env)
    assert code == 1 and failed(lines) == {"polygon rest", "polygon websocket", "clock", "broker"}


def test_without_a_daemon_the_daemon_and_sensor_checks_fail(tmp_path, monkeypatch):
    home = prepare_home(tmp_path / "home")
    closed = f"127.0.0.1:{free_port()}"  # nothing listens: the venue checks fail at once, on loopback
    for name, value in {"ALPHAGEN_DUCKDB_PATH": str(tmp_path / "db.duckdb"), "POLYGON_REST_URL": f"http://{closed}",
                        "POLYGON_STOCK_WS_URL": f"ws://{closed}/stocks",
                        "POLYGON_OPTIONS_WS_URL": f"ws://{closed}/options"}.items():
        monkeypatch.setenv(name, value)
    results = {r.name: r for r in run_checks(load_settings(_env_file=None), home=home, timeout_s=1.0)}
    assert results["dagster instance"].status is Status.OK
    assert results["dagster daemon"].status is Status.FAIL and "alphagen run" in results["dagster daemon"].detail
    assert results["live sensors"].status is Status.FAIL and "never evaluated" in results["live sensors"].detail
    assert results["duckdb"].status is Status.OK and "not created yet" in results["duckdb"].detail
    assert {results[name].status for name in ("polygon rest", "polygon websocket", "clock")} == {Status.FAIL}

    # A heartbeat as the daemon writes it (`dagster-daemon debug heartbeat` writes the sensor
    # daemon's), then the same for every daemon the instance needs.
    subprocess.run([str(Path(sys.executable).with_name("dagster-daemon")), "debug", "heartbeat"],
                   env={**os.environ, "DAGSTER_HOME": str(home)}, check=True, capture_output=True, timeout=120)
    with open_instance(home) as instance:
        beat = instance.get_daemon_heartbeats()["SENSOR"]
        for daemon in instance.get_required_daemon_types():
            instance.add_daemon_heartbeat(beat._replace(daemon_type=daemon, timestamp=time.time()))
        assert run_checks(load_settings(_env_file=None), home=home)[CHECKS.index("dagster daemon")].status is Status.OK
        instance.add_daemon_heartbeat(beat._replace(timestamp=time.time() - 600))  # ten minutes silent
    [daemon] = [r for r in run_checks(load_settings(_env_file=None), home=home) if r.name == "dagster daemon"]
    assert daemon.status is Status.FAIL and "SENSOR" in daemon.detail


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_clock_offset_bounds_narrow_to_the_true_offset():
    """A server 2.4 s ahead, answering in whole seconds: the bounds contain 2.4 and are
    narrower than the header's one-second resolution once samples cross a second."""
    def header() -> str:
        import email.utils

        return email.utils.formatdate(time.time() + 2.4, usegmt=True)

    lo, hi = offset_bounds(header, samples=5, gap_s=0.27)
    assert lo <= 2.4 <= hi and hi - lo < 0.8


def test_a_token_within_a_day_of_expiry_warns_and_bad_settings_are_one_failed_line(tmp_path):
    from alphagen_dagster.doctor import Context, check_token

    token = tmp_path / "token.json"
    write_private_file(token, json.dumps({"creation_timestamp": int(time.time() - 6.5 * 86400),
                                          "token": {"access_token": "a-token-value", "expires_at": 0}}))
    settings = load_settings(_env_file=None, alphagen_broker="schwab", schwab_base_url="http://127.0.0.1:9",
                             schwab_token_path=token)
    status, detail = check_token(Context(settings, tmp_path))
    assert status is Status.WARN and "11h" in detail and "alphagen schwab-login" in detail
    token.unlink()
    status, detail = check_token(Context(settings, tmp_path))
    assert status is Status.FAIL and "no Schwab token" in detail

    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPHAGEN_")}
    done = subprocess.run([str(Path(sys.executable).with_name("alphagen")), "doctor"], cwd=tmp_path,
                          env={**env, "ALPHAGEN_MODE": "sideways"}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr
    assert done.stdout.startswith("✗ FAIL  settings") and "ALPHAGEN_MODE" in done.stdout


def test_flat_files_on_s3_name_the_latest_day_and_an_unreachable_bucket_only_warns():
    import boto3
    from moto.server import ThreadedMotoServer

    from alphagen_core.adapters.polygon.flatfiles import stocks_key
    from alphagen_dagster.doctor import Context, check_flatfiles

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s",
                          region_name="us-east-1")
        s3.create_bucket(Bucket="flatfiles")
        for day in (dt.date(2024, 12, 11), dt.date(2024, 12, 12)):
            s3.put_object(Bucket="flatfiles", Key=stocks_key(day), Body=b"")
        settings = load_settings(_env_file=None, alphagen_flatfiles_source="s3", polygon_s3_endpoint=endpoint,
                                 polygon_s3_access_key="k", polygon_s3_secret_key="s",
                                 alphagen_sim_start="2024-12-12T10:00")
        status, detail = check_flatfiles(Context(settings, Path("."), timeout_s=2))
        assert status is Status.OK and "latest stocks day 2024-12-12" in detail
    finally:
        server.stop()
    status, detail = check_flatfiles(Context(settings, Path("."), timeout_s=2))
    assert status is Status.WARN and "trading does not" in detail
