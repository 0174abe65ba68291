"""The live service (`alphagen run`) and a whole simulated session (`alphagen sim-session`).

The service is two processes on the project's workspace and one DAGSTER_HOME: the Dagster
daemon (sensors, run queue; it launches the minute and session runs) and the webserver (the
UI), bound to 127.0.0.1 unless told otherwise. Both are started in their own process group,
so stopping the service stops every run they launched too. One service per DAGSTER_HOME: a
second daemon on it would evaluate every sensor twice. `alphagen run` and `make ui` both start
it here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alphagen_dagster.instance import PROJECT_DIR, prepare_home

BIN = Path(sys.executable).parent
# The operator's settings a simulated session keeps from the environment (health port,
# alerts, logs); everything else it sets itself.
OPS_SETTINGS = ("ALPHAGEN_HEALTH_", "ALPHAGEN_ALERT_", "ALPHAGEN_LOG_", "ALPHAGEN_TOKEN_ALERT_",
                "ALPHAGEN_MINUTE_LATE_")


# In DAGSTER_HOME: flock()ed by the service's processes while they live; holds its starter's pid.
SERVICE_LOCK = ".alphagen-service.lock"


class ServiceRunningError(RuntimeError):
    """Another service (`alphagen run`, `make ui`) already serves this Dagster home."""


def hold_service_lock(home: Path) -> int:
    """A descriptor holding `home`'s service lock. The lock lasts while any process holding the
    descriptor lives (the daemon and the webserver get it too), so a service whose starter was
    killed still keeps a second one out."""
    fd = os.open(home / SERVICE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        starter = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        started = f"started by pid {starter}"
        holders = _holders(home / SERVICE_LOCK)
        if starter not in (str(pid) for pid, _ in holders):  # killed: name what still holds it
            held = ", ".join(f"{pid} {name}" for pid, name in holders) or "unknown"
            started += f", which has exited; held by pid {held}"
        raise ServiceRunningError(
            f"another service ({started}) already serves the Dagster home {home}: a second daemon "
            "would run every sensor twice; stop that one first") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _holders(path: Path) -> list[tuple[int, str]]:
    """(pid, program) of each process with `path` open (this user's: /proc hides the rest)."""
    found, target = [], str(path.resolve())
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and any(os.readlink(fd) == target for fd in (proc / "fd").iterdir()):
                found.append((int(proc.name), (proc / "comm").read_text().strip()))
    return sorted(found)


def settings_from_env(env: dict[str, str]) -> Any:
    """The settings the service's processes will read from `env`."""
    from alphagen_core.operations.settings import Settings, load_settings

    fields = Settings.model_fields
    return load_settings(**{k.lower(): v for k, v in env.items() if k.lower() in fields})


@contextmanager
def service(env: dict[str, str], *, ui: bool = True, host: str = "127.0.0.1", port: int = 3000,
            log_dir: Path | None = None, health: bool = False) -> Iterator[list[subprocess.Popen]]:
    """Run the daemon (and the webserver) until the block ends; with `health`, also serve
    /health and /metrics (alphagen_dagster.health) on the settings' health port."""
    workspace = str(PROJECT_DIR / "workspace.yaml")
    commands = [[str(BIN / "dagster-daemon"), "run", "-w", workspace]]
    if ui:
        commands.append([str(BIN / "dagster-webserver"), "-w", workspace, "-h", host, "-p", str(port)])
    procs = []
    logs = []
    lock = hold_service_lock(Path(env["DAGSTER_HOME"]))
    # A SIGTERM to us must still stop the service's process group (the finally below).
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        for cmd in commands:
            out = subprocess.DEVNULL
            if log_dir is not None:
                log_dir.mkdir(parents=True, exist_ok=True)
                out = open(log_dir / f"{Path(cmd[0]).name}.log", "ab")  # noqa: SIM115 - closed below
                logs.append(out)
            procs.append(subprocess.Popen(cmd, cwd=PROJECT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True, pass_fds=(lock,)))
        if health:
            from alphagen_dagster.health import health_server

            with health_server(settings_from_env(env), Path(env["DAGSTER_HOME"])):
                yield procs
        else:
            yield procs
    finally:
        for proc in procs:
            _stop_group(proc)
        for f in logs:
            f.close()
        os.close(lock)
        signal.signal(signal.SIGTERM, previous)


def serve_ui() -> None:
    """`make ui`: the daemon and the webserver on the Dagster home (DAGSTER_HOME, default
    .dagster_home/) at ALPHAGEN_UI_HOST:ALPHAGEN_UI_PORT (127.0.0.1:3000), until Ctrl-C."""
    from alphagen_dagster.instance import dagster_home

    home = dagster_home()
    host, port = os.environ.get("ALPHAGEN_UI_HOST", "127.0.0.1"), int(os.environ.get("ALPHAGEN_UI_PORT", "3000"))
    logs = home / "ui-logs"
    try:
        with service(dict(os.environ), host=host, port=port, log_dir=logs) as procs:
            print(f"Dagster UI on http://{host}:{port}; the daemon's and the webserver's logs in {logs}; "
                  "Ctrl-C stops", flush=True)
            while all(p.poll() is None for p in procs):
                time.sleep(1)
    except ServiceRunningError as exc:
        sys.exit(str(exc))
    except KeyboardInterrupt:
        pass


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _stop_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            if sig is signal.SIGTERM:
                time.sleep(0.5)  # let the run workers of the group exit too
            else:
                return
        except subprocess.TimeoutExpired:
            continue
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# ---- the simulated session ---------------------------------------------------------------------


def sim_env(workdir: Path, venues: Any) -> dict[str, str]:
    """Settings for every process of a simulated session: paper mode, the stand-ins, the sim
    clock, and a DuckDB file, cache and Dagster instance of its own."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ALPHAGEN_", "POLYGON_", "SCHWAB_")) or k.startswith(OPS_SETTINGS)}
    env.update(venues.env())
    env.update(venues.sign_in(workdir / "secrets" / "schwab_token.json"))
    env.update({
        "POLYGON_API_KEY": venues.api_key,
        "ALPHAGEN_MODE": "paper",
        "ALPHAGEN_BROKER": "schwab",
        "ALPHAGEN_DATA_PROVIDER": "polygon",
        "ALPHAGEN_DUCKDB_PATH": str(workdir / "alphagen.duckdb"),
        "ALPHAGEN_CACHE_DIR": str(workdir / "cache"),
        "ALPHAGEN_FLATFILES_SOURCE": venues.source,
        "ALPHAGEN_CHART_DIR": str(workdir / "charts"),
        "DAGSTER_HOME": str(prepare_home(workdir / "dagster_home", storage="sqlite")),  # its own, embedded
        "PYTHONUNBUFFERED": "1",
    })
    return env


def run_sim_session(day: dt.date, workdir: Path, *, source: str | None, speed: float, start: dt.time,
                    until: dt.time, ui: bool, port: int, echo=print,
                    settings: dict[str, str] | None = None) -> dict[str, Any]:
    """`settings`: environment settings for the service beyond the sim's own (e.g.
    ALPHAGEN_MARKET_STREAM=false)."""
    from alphagen_core.sim.days import write_sim_day
    from alphagen_core.sim.venues import SimVenues

    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if source is None:
        source = str(write_sim_day(day, workdir / "flatfiles"))
    venues = SimVenues(day=day, source=source, cache_dir=workdir / "cache", speed=speed, start=start)
    end = dt.datetime.combine(day, until, tzinfo=venues.clock.start.tzinfo)
    with venues:
        env = {**sim_env(workdir, venues), **(settings or {})}
        echo(f"sim session {day} from {start:%H:%M} to {until:%H:%M} ET at x{speed:g}; work dir {workdir}")
        with service(env, ui=ui, port=port, log_dir=workdir / "logs", health=True):
            if ui:
                echo(f"Dagster UI: http://127.0.0.1:{port}")
            cfg = settings_from_env(env)
            if cfg.alphagen_health_port:
                echo(f"health: http://{cfg.alphagen_health_host}:{cfg.alphagen_health_port}/health and /metrics")
            shown = None
            while (now := venues.clock.now()) < end:
                if now.minute != shown:
                    shown = now.minute
                    echo(f"  {now:%H:%M} ET  orders at the broker: {len(venues.schwab.orders)}")
                time.sleep(0.2)
        summary = summarize(workdir, venues, env)
    (workdir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    echo(format_summary(summary))
    return summary


def summarize(workdir: Path, venues: Any, env: dict[str, str]) -> dict[str, Any]:
    """What the broker received, what table 8 recorded, the P/L (dbt daily_pnl) and the
    latencies, all read back from the stand-in, DuckDB and the Dagster instance."""
    from alphagen_core.domain.symbols import schwab_to_polygon
    from alphagen_core.persistence.store import Store

    clock = venues.clock
    store = Store(env["ALPHAGEN_DUCKDB_PATH"])
    intents = store.query("SELECT * FROM trade_intents WHERE mode = 'paper' ORDER BY est_timestamp, intent_id")
    fills = store.query("SELECT * FROM executions WHERE mode = 'paper' AND status = 'FILLED' ORDER BY est_timestamp")
    watched = store.query("SELECT * FROM option_quotes WHERE mode = 'paper' AND quote_kind = 'watch' ORDER BY est_timestamp")
    orders = []
    bar_to_order, stop_to_order = [], []
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in intents.iter_rows(named=True):
        by_key.setdefault((r["option_symbol"], r["action"]), []).append(r)
    for o in venues.schwab.orders:
        symbol = schwab_to_polygon(o.symbol)
        sent = o.entered_at
        # the intent this order carries out: the latest of its contract and side decided before it
        intent = max((r for r in by_key.get((symbol, o.instruction), []) if r["est_timestamp"] <= sent),
                     key=lambda r: r["est_timestamp"], default=None)
        orders.append({
            "decided": intent["est_timestamp"].strftime("%H:%M") if intent else None,
            "sent": sent.strftime("%H:%M:%S"), "action": o.instruction, "option_symbol": symbol,
            "qty": o.quantity, "status": o.status, "fill_price": o.fills[-1].price if o.fills else None,
            "reason": intent["reason"] if intent else None,
        })
        if intent is None:
            continue
        latency = clock.wall_time(sent) - clock.wall_time(intent["est_timestamp"])
        if intent["reason"] in ("take_profit", "stop_loss"):
            crossing = _crossing_time(watched, intent)
            stop_to_order.append(clock.wall_time(sent) - clock.wall_time(crossing))
        elif o.instruction == "SELL_TO_OPEN" or intent["reason"] == "reversal":
            bar_to_order.append(latency)
    pnl = _dbt_daily_pnl(workdir, env)
    return {
        "orders": orders,
        "fills": fills.height,
        "realized_pnl_table8": round(float(fills["pnl_contrib"].sum()), 2) if fills.height else 0.0,
        "daily_pnl": pnl,
        "latency": {
            "closed_bar_to_order_s": _stats(bar_to_order),
            "stop_to_closing_order_s": _stats(stop_to_order),
            **_run_figures(env["DAGSTER_HOME"]),
        },
    }


def _crossing_time(watched: Any, intent: dict[str, Any]) -> dt.datetime:
    """The first watched quote at or before the exit decision that was already beyond the
    level (the moment the session job could first have known), else the decision time."""
    rows = [r for r in watched.iter_rows(named=True)
            if r["option_symbol"] == intent["option_symbol"] and r["est_timestamp"] <= intent["est_timestamp"]]
    first = intent["est_timestamp"]
    for r in reversed(rows):
        if abs(r["ask"] - intent["limit_price"]) > 1e-9:
            break
        first = r["est_timestamp"]
    return first


def _stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "max": None}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"n": len(values), "p50": round(statistics.median(values), 3), "p95": round(p95, 3),
            "max": round(ordered[-1], 3)}


def _run_figures(home: str) -> dict[str, Any]:
    """Minute runs: the engine's time per minute (from the runs' materializations) and the
    start overhead (run created -> RUN_START, which includes the queue and process start)."""
    os.environ["DAGSTER_HOME"] = home
    from dagster import AssetKey, DagsterInstance, RunsFilter

    instance = DagsterInstance.get()
    try:
        runs = instance.get_run_records(RunsFilter(job_name="minute_job"))
        overhead, engine_ms = [], []
        for rec in runs:
            if rec.start_time is not None:
                overhead.append(rec.start_time - rec.create_timestamp.timestamp())
        events = instance.fetch_materializations(AssetKey("normalized_ticks"), limit=5000).records
        for ev in events:
            meta = ev.asset_materialization.metadata if ev.asset_materialization else {}
            if "engine_ms_per_minute" in meta:
                engine_ms.append(meta["engine_ms_per_minute"].value)
        return {"minute_runs": len(runs), "run_start_overhead_s": _stats(overhead),
                "engine_ms_per_minute": _stats(engine_ms)}
    finally:
        instance.dispose()


def _dbt_daily_pnl(workdir: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """daily_pnl built by dbt, the way the dbt step builds it (its output in the workdir)."""
    from alphagen_core.persistence.store import Store
    from alphagen_dagster.dbt import BUILD, run_dbt

    with open(workdir / "dbt.log", "w") as out, contextlib.redirect_stdout(out):
        run_dbt([*BUILD, "--select", "+daily_pnl"], env["ALPHAGEN_DUCKDB_PATH"], workdir / "dbt-target").wait()
    rows = Store(env["ALPHAGEN_DUCKDB_PATH"]).query("SELECT * FROM daily_pnl ORDER BY trade_date, mode")
    return [{k: (float(v) if k in ("realized_pnl", "fees") else v) for k, v in r.items()} for r in rows.iter_rows(named=True)]


def format_summary(s: dict[str, Any]) -> str:
    lines = ["", "orders the broker received:"]
    for o in s["orders"]:
        lines.append(f"  decided {o['decided']}  sent {o['sent']}  {o['action']:<13} {o['qty']:>3} "
                     f"{o['option_symbol']}  {o['status']} @ {o['fill_price']}  ({o['reason']})")
    lines.append(f"fills recorded in table 8: {s['fills']}")
    for r in s["daily_pnl"]:
        lines.append(f"daily_pnl {r['trade_date']} {r['mode']}: realized ${r['realized_pnl']:,.2f}, "
                     f"fees ${r['fees']:,.2f}, {r['trades']} trades")
    lat = s["latency"]
    for name in ("closed_bar_to_order_s", "stop_to_closing_order_s", "run_start_overhead_s", "engine_ms_per_minute"):
        lines.append(f"{name}: {lat[name]}")
    return "\n".join(lines)
