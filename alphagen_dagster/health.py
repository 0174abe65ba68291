"""`GET /health` and `GET /metrics` while the service runs (`alphagen run`, `alphagen sim-session`),
on ALPHAGEN_HEALTH_HOST:ALPHAGEN_HEALTH_PORT (127.0.0.1 by default), served from the service's
own process on a thread.

Everything is read where it already is, and never from the DuckDB file (a scrape must not
take the lock from the trader): the Dagster instance (daemon heartbeats, sensor ticks, the
day's minute runs), the session job's heartbeat and its status file (alphagen_core.operations.telemetry:
orders, fills, rejections, realized P/L, trading state, broker reachability, latencies), and
the Schwab token file's timestamp.

`/health` answers 200 with `"ok": true` only when the service is fit to trade; otherwise 503
with the reasons, e.g. the daemon is down, the session job's heartbeat is stale, trading is
halted, the last minute run failed or is late, the broker did not answer, the token expired.
`/metrics` is Prometheus text made by the official client (prometheus-client)."""

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

from alphagen_core.application.lease import read_heartbeat, session_dir
from alphagen_core.domain.calendar import live_session_at
from alphagen_core.domain.clock import clock_from_settings
from alphagen_core.domain.models import MINUTE
from alphagen_core.operations.settings import Settings
from alphagen_core.operations.telemetry import read_session_status
from alphagen_dagster.instance import BAR_CLOSE_TAG, sensor_states

log = structlog.get_logger(__name__)

LIVE_SENSORS = ("minute_sensor", "session_sensor")
DAEMON_STALE_S = 60.0
SENSOR_STALE_S = 60.0
CACHE_S = 1.0
LATENCY_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0)


class HealthPortError(RuntimeError):
    """The health port cannot be bound: a message naming the setting."""


class HealthMonitor:
    """Computes the service's state (cached for a second: scrapes are cheap)."""

    def __init__(self, settings: Settings, dagster_home: Path) -> None:
        from dagster import DagsterInstance

        self.settings = settings
        self.clock = clock_from_settings(settings)
        self.session_dir = session_dir(settings.alphagen_cache_dir)
        self.instance = DagsterInstance.from_config(str(dagster_home))
        self._lock = threading.Lock()
        self._cached: tuple[float, dict[str, Any]] | None = None

    def close(self) -> None:
        self.instance.dispose()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < CACHE_S:
                return self._cached[1]
            try:
                snap = self._compute()
            except Exception as exc:  # noqa: BLE001 - a broken check is itself a reason not to trade
                log.warning("health.check_failed", error=f"{type(exc).__name__}: {exc}")
                snap = {"ok": False, "reasons": [f"health check failed: {type(exc).__name__}"]}
            self._cached = (time.monotonic(), snap)
            return snap

    # ---- the checks ---------------------------------------------------------------------------

    def _compute(self) -> dict[str, Any]:
        now = self.clock.now()
        sess = live_session_at(now)
        reasons: list[str] = []
        snap: dict[str, Any] = {"at": now.isoformat(), "mode": self.settings.alphagen_mode.value}
        snap["daemon"] = self._daemon(reasons)
        snap["sensors"] = self._sensors(reasons)
        snap["token"] = self._token(reasons)
        if sess is None:
            snap["session"] = None
        else:
            day = sess.date.isoformat()
            snap["session"] = {"date": day, "open": sess.open.isoformat(), "close": sess.close.isoformat()}
            snap["minute_runs"] = self._minute_runs(sess, now, reasons)
            snap["session_job"] = self._session_job(day, now, sess, reasons)
        snap["ok"] = not reasons
        snap["reasons"] = reasons
        return snap

    def _daemon(self, reasons: list[str]) -> dict[str, Any]:
        beats = self.instance.get_daemon_heartbeats()
        sensor = beats.get("SENSOR")
        age = None if sensor is None else round(time.time() - sensor.timestamp, 1)
        if age is None or age > DAEMON_STALE_S:
            reasons.append("dagster daemon not running (no sensor daemon heartbeat"
                           + ("" if age is None else f" for {age:.0f} s") + ")")
        return {"sensor_daemon_heartbeat_age_s": age}

    def _sensors(self, reasons: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, state in sensor_states(self.instance).items():
            last = getattr(state.instigator_data, "last_tick_timestamp", None)
            out[name] = {
                "status": state.status.value,
                "last_tick_age_s": None if not last else round(time.time() - last, 1),
            }
        for name in LIVE_SENSORS:
            info = out.get(name)
            if info is None or info["last_tick_age_s"] is None:
                reasons.append(f"sensor {name} has not ticked yet")
            elif info["status"] != "RUNNING" and info["status"] != "DECLARED_IN_CODE":
                reasons.append(f"sensor {name} is {info['status']}")
            elif info["last_tick_age_s"] > SENSOR_STALE_S:
                reasons.append(f"sensor {name} last ticked {info['last_tick_age_s']:.0f} s ago")
        return out

    def _token(self, reasons: list[str]) -> dict[str, Any] | None:
        s = self.settings
        if s.alphagen_broker != "schwab" and s.alphagen_data_provider != "schwab":
            return None
        from alphagen_core.adapters.schwab.config import refresh_token_expires_at

        expires = refresh_token_expires_at(s.schwab_token_path)
        if expires is None:
            reasons.append("no Schwab token: run `alphagen schwab-login`")
            return {"expires_at": None, "seconds_left": None}
        left = expires - time.time()
        if left <= 0:
            reasons.append("Schwab refresh token expired: run `alphagen schwab-login`")
        return {"expires_at": dt.datetime.fromtimestamp(expires, dt.UTC).isoformat(), "seconds_left": round(left)}

    def _minute_runs(self, sess: Any, now: dt.datetime, reasons: list[str]) -> dict[str, Any]:
        from dagster import RunsFilter

        records = self.instance.get_run_records(
            RunsFilter(job_name="minute_job", tags={"alphagen/session_date": sess.date.isoformat()}))
        by_status: dict[str, int] = {}
        for rec in records:
            by_status[rec.dagster_run.status.value] = by_status.get(rec.dagster_run.status.value, 0) + 1
        done = [r for r in records if r.end_time is not None]
        succeeded = [r for r in done if r.dagster_run.status.value == "SUCCESS"]
        last_finished = max(done, key=lambda r: r.end_time, default=None)
        last_success = max(succeeded, key=lambda r: r.dagster_run.tags.get("alphagen/minute", ""), default=None)
        last_minute = lag = None
        if last_success is not None:
            minute = dt.time.fromisoformat(last_success.dagster_run.tags["alphagen/minute"])
            last_minute = dt.datetime.combine(sess.date, minute, tzinfo=sess.open.tzinfo)
            close = last_success.dagster_run.tags.get(BAR_CLOSE_TAG)
            close_at = float(close) if close else self.clock.wall_time(last_minute + MINUTE)
            lag = round(last_success.end_time - close_at, 3)
        if last_finished is not None and last_finished.dagster_run.status.value == "FAILURE":
            reasons.append(f"the last minute run failed ({last_finished.dagster_run.tags.get('alphagen/minute')}, "
                           f"run {last_finished.dagster_run.run_id[:8]})")
        late_after = dt.timedelta(minutes=self.settings.alphagen_minute_late_minutes)
        last_closed = min(now.replace(second=0, microsecond=0), sess.close) - MINUTE
        if now >= sess.open + late_after + MINUTE:
            behind = last_closed - (last_minute if last_minute is not None else sess.open - MINUTE)
            if behind >= late_after:
                reasons.append(f"minute runs late: last minute processed "
                               f"{'none' if last_minute is None else f'{last_minute:%H:%M}'}, "
                               f"{behind.total_seconds() / 60:.0f} min behind the last closed bar")
        return {
            "by_status": by_status,
            "completed": len(succeeded),
            "last_minute_processed": None if last_minute is None else last_minute.isoformat(),
            "last_run_status": None if last_finished is None else last_finished.dagster_run.status.value,
            "lag_s": lag,
        }

    def _session_job(self, day: str, now: dt.datetime, sess: Any, reasons: list[str]) -> dict[str, Any]:
        beat = read_heartbeat(self.session_dir, day)
        status = read_session_status(self.session_dir, day) or {}
        age = None if beat is None else round(time.time() - beat.at, 1)
        ended = bool(status.get("ended")) and status.get("run_id") == (beat.run_id if beat else None)
        if now < sess.close and not ended:
            if beat is None:
                reasons.append("no session job heartbeat yet")
            elif not beat.alive():
                reasons.append(f"session job heartbeat stale ({age:.0f} s old)")
        state = status.get("trading_state")
        if state and state != "active":
            reasons.append(f"trading {state}")
        if status.get("broker_reachable") is False:
            reasons.append("broker unreachable (its last positions poll failed)")
        return {**{k: v for k, v in status.items() if k != "run_id"}, "status_run_id": status.get("run_id"),
                "heartbeat_age_s": age, "run_id": beat.run_id if beat else None}


# ---- /metrics ---------------------------------------------------------------------------------


class _Collector:
    def __init__(self, monitor: HealthMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Any]:
        snap = self.monitor.snapshot()
        yield _gauge("alphagen_healthy", "1 when /health answers 200 (fit to trade)", 1 if snap.get("ok") else 0)
        runs = snap.get("minute_runs") or {}
        counts = CounterMetricFamily("alphagen_minute_runs", "The session's minute runs, by status", labels=["status"])
        for status, n in sorted((runs.get("by_status") or {}).items()):
            counts.add_metric([status.lower()], n)
        yield counts
        last = runs.get("last_minute_processed")
        if last:
            yield _gauge("alphagen_last_minute_processed_timestamp_seconds",
                         "Start of the last minute a minute run processed (session clock, unix time)",
                         dt.datetime.fromisoformat(last).timestamp())
        if runs.get("lag_s") is not None:
            yield _gauge("alphagen_minute_run_lag_seconds", "The last minute run's end minus its bar's close",
                         runs["lag_s"])
        job = snap.get("session_job") or {}
        for name, doc in (("orders_sent", "Orders sent to the broker this session"),
                          ("fills", "Fills recorded this session"),
                          ("rejections", "Intents not sent or refused this session")):
            c = CounterMetricFamily(f"alphagen_{name}", doc)
            c.add_metric([], job.get(name) or 0)
            yield c
        yield _gauge("alphagen_realized_pnl_dollars", "The session's realized P/L, net of fees",
                     job.get("realized_pnl") or 0.0)
        state = GaugeMetricFamily("alphagen_trading_state", "1 for the session's trading state", labels=["state"])
        for s in ("active", "halted", "flattening"):
            state.add_metric([s], 1 if job.get("trading_state") == s else 0)
        yield state
        if job.get("broker_reachable") is not None:
            yield _gauge("alphagen_broker_reachable", "1 when the broker's last positions poll answered",
                         1 if job["broker_reachable"] else 0)
        if job.get("heartbeat_age_s") is not None:
            yield _gauge("alphagen_session_heartbeat_age_seconds", "Age of the session job's heartbeat",
                         job["heartbeat_age_s"])
        token = snap.get("token") or {}
        if token.get("seconds_left") is not None:
            yield _gauge("alphagen_schwab_refresh_token_seconds_left", "Until the Schwab refresh token expires",
                         token["seconds_left"])
        yield _histogram("alphagen_bar_to_order_seconds", "Closed bar to order sent (entries and reversals)",
                         job.get("bar_to_order_s") or [])


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc)
    g.add_metric([], value)
    return g


def _histogram(name: str, doc: str, values: list[float]) -> HistogramMetricFamily:
    buckets = [(str(b), sum(1 for v in values if v <= b)) for b in LATENCY_BUCKETS]
    buckets.append(("+Inf", len(values)))
    h = HistogramMetricFamily(name, doc)
    h.add_metric([], buckets, sum_value=sum(values))
    return h


# ---- the server -------------------------------------------------------------------------------


def _handler(monitor: HealthMonitor, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            if path == "/health":
                snap = monitor.snapshot()
                self._send(200 if snap.get("ok") else 503, "application/json",
                           json.dumps(snap, default=str, indent=1).encode())
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            else:
                self._send(404, "text/plain", b"GET /health or /metrics\n")

        def _send(self, code: int, kind: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    return Handler


@contextmanager
def health_server(settings: Settings, dagster_home: Path) -> Iterator[ThreadingHTTPServer | None]:
    """Serve /health and /metrics until the block ends (nothing when the port is 0)."""
    if not settings.alphagen_health_port:
        yield None
        return
    monitor = HealthMonitor(settings, dagster_home)
    registry = CollectorRegistry()
    registry.register(_Collector(monitor))
    try:
        server = ThreadingHTTPServer((settings.alphagen_health_host, settings.alphagen_health_port),
                                     _handler(monitor, registry))
    except OSError as exc:
        monitor.close()
        raise HealthPortError(
            f"cannot serve /health on {settings.alphagen_health_host}:{settings.alphagen_health_port} "
            f"({exc.strerror}): set ALPHAGEN_HEALTH_PORT to a free port, or 0 for none") from None
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="alphagen-health", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        monitor.close()
