"""After each session's close the service builds the P/L marts itself and sends the day's
summary, through Dagster so that the UI shows both.

`pnl_after_close` (a sensor of the main code location, which holds the dbt assets: the live
location's minute runs never load them) requests one run of `pnl_after_close` per (mode,
day): once the day's close has passed and its session job has ended (or 20 minutes after the
close, whatever it is doing), and, after an outage, for every recent day that had a session
but no build yet (run key per mode and day: Dagster never requests one twice). The run builds
every dbt model (`dbt_pnl_models`), whose step then reads the day's `daily_pnl` row, its round
trips and latencies (`send_session_summary`), logs them in the run and alerts them (once per
mode and day).
"""


import datetime as dt
import statistics
from typing import Any

from dagster import (
    AssetSelection,
    DagsterRunStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    define_asset_job,
    in_process_executor,
    sensor,
)

from alphagen_core.application.gate import route
from alphagen_core.domain.calendar import previous_trading_day, session, trading_days
from alphagen_core.domain.clock import clock_from_settings
from alphagen_core.operations import alerts
from alphagen_core.operations.settings import Mode, load_settings
from alphagen_dagster.dbt import dbt_pnl_models
from alphagen_dagster.instance import BAR_CLOSE_TAG
from alphagen_dagster.sensors import ACTIVE, _default_status

DAY_TAG, MODE_TAG = "alphagen/session_date", "alphagen/mode"
CATCH_UP_SESSIONS = 5  # an outage longer than a week is an operator's `alphagen replay`/dbt
SESSION_END_WAIT = dt.timedelta(minutes=20)  # the session job's own hard stop is 15 min after the close


def send_session_summary(context: Any, store: Any, cfg: Any) -> None:
    """After the dbt build of a `pnl_after_close` run: the day's summary, logged in the run (the
    UI shows it) and alerted once per mode and day. A summary that fails is logged, never
    fails the build."""
    tags = context.run.tags
    if DAY_TAG not in tags or MODE_TAG not in tags:
        return
    try:
        clock = clock_from_settings(cfg)
        day, mode = dt.date.fromisoformat(tags[DAY_TAG]), tags[MODE_TAG]
        figures = summary_figures(store, mode, day, clock, _bar_closes(context.instance, day))
        figures["latency"]["minute_run_lag_s"] = _minute_run_lag(context.instance, day, clock)
        text = format_summary(figures)
        context.log.info(f"session summary {mode} {day}:\n{text}")
        alerts.send(cfg, f"session_summary:{mode}:{day}", "session_summary",
                    f"Session summary {mode} {day}: P/L ${figures['realized_pnl']:,.2f}", text, **figures)
        alerts.flush_all(10.0)
    except Exception as exc:  # noqa: BLE001 - the marts are built; the summary is a report on them
        context.log.warning(f"no session summary: {type(exc).__name__}: {exc}")


pnl_job = define_asset_job(
    "pnl_after_close",
    selection=AssetSelection.assets(dbt_pnl_models),
    executor_def=in_process_executor,
    description="After a paper or live session's close: the dbt P/L marts, then the session summary alert.",
)


@sensor(job=pnl_job, minimum_interval_seconds=5, default_status=_default_status(),
        description="One P/L build and summary per (mode, day) after the close; catches up missed days.")
def pnl_after_close(context: SensorEvaluationContext):
    settings = load_settings()
    if settings.alphagen_mode not in (Mode.PAPER, Mode.LIVE):
        return SkipReason(f"ALPHAGEN_MODE is {settings.alphagen_mode.value}")
    mode = route(settings).mode.value
    now = clock_from_settings(settings).now()
    requests = [
        RunRequest(run_key=f"pnl-{mode}-{day}", tags={DAY_TAG: day.isoformat(), MODE_TAG: mode})
        for day in days_to_build(context.instance, now)
    ]
    return requests or SkipReason(f"no closed session to build at {now:%Y-%m-%d %H:%M} ET")


def days_to_build(instance: Any, now: dt.datetime) -> list[dt.date]:
    """Recent days with a session job whose close has passed and whose job has ended."""
    first = now.date()
    for _ in range(CATCH_UP_SESSIONS - 1):
        first = previous_trading_day(first)
    out = []
    for day in trading_days(first, now.date()):
        sess = session(day)
        if now < sess.close:
            continue
        runs = instance.get_runs(RunsFilter(job_name="session_job", tags={DAY_TAG: day.isoformat()}))
        if not runs:
            continue
        running = any(r.status in ACTIVE for r in runs)
        if running and day == now.date() and now < sess.close + SESSION_END_WAIT:
            continue
        out.append(day)
    return out


def summary_figures(store: Any, mode: str, day: dt.date, clock: Any,
                    bar_closes: dict[str, float] | None = None) -> dict[str, Any]:
    """The day's figures from daily_pnl, trades and table 8. Bar-to-order latency: the order's
    SUBMITTED row written minus the close of the bar whose minute run wrote the intent (the
    run's tag, in real time; else the clock's mapping of the intent's time)."""
    pnl = store.query("SELECT realized_pnl, fees, trades, wins, losses FROM daily_pnl "
                      "WHERE trade_date = ? AND mode = ? AND variant = 'base'", [day, mode])
    row = pnl.row(0, named=True) if pnl.height else {"realized_pnl": 0, "fees": 0, "trades": 0, "wins": 0, "losses": 0}
    exits = store.query("SELECT exit_reason, count(*) AS n FROM trades WHERE trade_date = ? AND mode = ? "
                        "GROUP BY exit_reason ORDER BY exit_reason", [day, mode])
    sent = store.query(
        """SELECT i.est_timestamp AS decided, i.run_id AS decided_by, e.written_at AS sent
           FROM executions e JOIN trade_intents i
             ON i.intent_id = e.intent_id AND i.mode = e.mode AND i.session_date = e.session_date
            AND i.version = e.version
           WHERE e.mode = ? AND e.session_date = ? AND e.status = 'SUBMITTED'
             AND (i.action = 'SELL_TO_OPEN' OR i.reason = 'reversal')""", [mode, day])
    bar_closes = bar_closes or {}
    latencies = [max(0.0, r["sent"].timestamp() - bar_closes.get(r["decided_by"], clock.wall_time(r["decided"])))
                 for r in sent.iter_rows(named=True)]
    orders = store.query("SELECT status, count(*) AS n FROM executions WHERE mode = ? AND session_date = ? "
                         "GROUP BY status", [mode, day])
    by_status = {r["status"]: r["n"] for r in orders.iter_rows(named=True)}
    return {
        "session_date": day.isoformat(), "mode": mode,
        "realized_pnl": round(float(row["realized_pnl"] or 0), 2), "fees": round(float(row["fees"] or 0), 2),
        "trades": int(row["trades"] or 0), "wins": int(row["wins"] or 0), "losses": int(row["losses"] or 0),
        "orders_sent": by_status.get("SUBMITTED", 0), "fills": by_status.get("FILLED", 0),
        "not_sent_or_rejected": by_status.get("CANCELED", 0) + by_status.get("REJECTED", 0),
        "exits_by_reason": {r["exit_reason"]: r["n"] for r in exits.iter_rows(named=True) if r["exit_reason"]},
        "latency": {"closed_bar_to_order_s": _stats(latencies)},
    }


def _minute_records(instance: Any, day: dt.date) -> list[Any]:
    return list(instance.get_run_records(RunsFilter(job_name="minute_job", tags={DAY_TAG: day.isoformat()},
                                                    statuses=[DagsterRunStatus.SUCCESS])))


def _bar_close(rec: Any, day: dt.date, clock: Any) -> float | None:
    tags = rec.dagster_run.tags
    if BAR_CLOSE_TAG in tags:
        return float(tags[BAR_CLOSE_TAG])
    minute = tags.get("alphagen/minute")
    if not minute:
        return None
    return clock.wall_time(dt.datetime.combine(day, dt.time.fromisoformat(minute)) + dt.timedelta(minutes=1))


def _bar_closes(instance: Any, day: dt.date) -> dict[str, float]:
    """Minute run id -> the real time its bar closed (runs tagged by the minute sensor)."""
    return {rec.dagster_run.run_id: float(rec.dagster_run.tags[BAR_CLOSE_TAG])
            for rec in _minute_records(instance, day) if BAR_CLOSE_TAG in rec.dagster_run.tags}


def _minute_run_lag(instance: Any, day: dt.date, clock: Any) -> dict[str, Any]:
    """Each minute run: its end minus its bar's close (real seconds)."""
    lags = []
    for rec in _minute_records(instance, day):
        close = _bar_close(rec, day, clock)
        if close is not None and rec.end_time:
            lags.append(rec.end_time - close)
    return _stats(lags)


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "max": None}
    return {"n": len(values), "p50": round(statistics.median(values), 3), "max": round(max(values), 3)}


def format_summary(f: dict[str, Any]) -> str:
    exits = ", ".join(f"{k} {v}" for k, v in f["exits_by_reason"].items()) or "none"
    lat = f["latency"]

    def line(name: str, s: dict[str, Any]) -> str:
        return f"{name}: n={s['n']}" + (f" p50 {s['p50']:.2f}s max {s['max']:.2f}s" if s["n"] else "")

    return "\n".join([
        f"realized P/L ${f['realized_pnl']:,.2f} (net of fees ${f['fees']:,.2f}); {f['trades']} round trips, "
        f"{f['wins']} won, {f['losses']} lost",
        f"orders sent {f['orders_sent']}, fills {f['fills']}, not sent or rejected {f['not_sent_or_rejected']}",
        f"exits by reason: {exits}",
        line("closed bar to order", lat["closed_bar_to_order_s"]),
        *([line("minute run lag", lat["minute_run_lag_s"])] if "minute_run_lag_s" in lat else []),
    ])
