"""The live sensors. Both are active only inside a trading day's live window (NYSE calendar,
holidays and early closes included) on the system's one clock, and neither touches market
data or the DuckDB file: they only decide which runs to request.

They run by default when ALPHAGEN_MODE is paper or live (`alphagen run` sets it), and are
stopped otherwise, so a daemon started for replays does not trade."""


import datetime as dt

from dagster import (
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from alphagen_core.application.lease import read_heartbeat, session_dir
from alphagen_core.domain.calendar import live_session_at
from alphagen_core.domain.clock import clock_from_settings
from alphagen_core.domain.models import MINUTE
from alphagen_core.operations.settings import Mode, get_settings, load_settings
from alphagen_dagster.instance import BAR_CLOSE_TAG
from alphagen_dagster.jobs import minute_job, session_job

MAX_CATCH_UP_MINUTES = 1  # closed minutes the sensor missed (an outage) are caught up by one run
# A minute's run is requested this many real seconds before the minute closes: a run's
# process takes seconds to start (more on a busy machine), so it starts while the minute
# ends, and the run then waits for the closed bar (live_minute.closed_bars).
LEAD_SECONDS = 15.0
MAX_SESSION_ATTEMPTS = 50
HEARTBEAT_LOST_TAG = "alphagen/heartbeat_lost"
STARTUP_GRACE = dt.timedelta(seconds=60)  # a STARTED run gets this long to write a heartbeat
ACTIVE = (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
          DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING)


def _default_status() -> DefaultSensorStatus:
    live = get_settings().alphagen_mode in (Mode.PAPER, Mode.LIVE)
    return DefaultSensorStatus.RUNNING if live else DefaultSensorStatus.STOPPED


def closed_minutes(now: dt.datetime, cursor: str | None, lead: dt.timedelta = dt.timedelta(0)) -> list[dt.datetime]:
    """The bars closed (or closing within `lead`) since the cursor's minute: of those already
    closed, the newest MAX_CATCH_UP_MINUTES (its run catches up the others at once); each one
    still to close within `lead` has a run of its own, which decides it as its bar closes."""
    sess = live_session_at(now)
    if sess is None:
        return []
    closed = min(now.replace(second=0, microsecond=0) - MINUTE, sess.close - MINUTE)
    last = min((now + lead).replace(second=0, microsecond=0) - MINUTE, sess.close - MINUTE)
    first = sess.open
    if cursor:
        previous = dt.datetime.fromisoformat(cursor)
        if previous.date() == sess.date:
            first = max(first, previous + MINUTE)
    first = max(first, closed - (MAX_CATCH_UP_MINUTES - 1) * MINUTE)
    out = []
    while first <= last:
        out.append(first)
        first += MINUTE
    return out


@sensor(job=minute_job, minimum_interval_seconds=1, default_status=_default_status(),
        description="One run per newly closed minute of the live window (run key per minute).")
def minute_sensor(context: SensorEvaluationContext):
    clock = clock_from_settings(load_settings())
    now = clock.now()
    if live_session_at(now) is None:
        return SkipReason(f"outside the live window: {now:%a %Y-%m-%d %H:%M} ET")
    minutes = closed_minutes(now, context.cursor, dt.timedelta(seconds=LEAD_SECONDS * clock.speed))
    if not minutes:
        return SkipReason(f"no new closed minute at {now:%H:%M:%S} ET")
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=f"minute-{m:%Y-%m-%dT%H:%M}",
                run_config={"ops": {"minute_increment": {"config": {"minute": m.isoformat()}}}},
                tags={"alphagen/session_date": m.date().isoformat(), "alphagen/minute": f"{m:%H:%M}",
                      # the bar's close in real time: the minute-run lag and bar-to-order latency
                      BAR_CLOSE_TAG: f"{clock.wall_time(m + MINUTE):.3f}"},
            )
            for m in minutes
        ],
        cursor=minutes[-1].isoformat(),
    )


def session_in_live_window(settings):
    """The session whose live window the service's clock is in, or why the sensor skips."""
    now = clock_from_settings(settings).now()
    sess = live_session_at(now)
    return sess if sess is not None else SkipReason(f"outside the live window: {now:%a %Y-%m-%d %H:%M} ET")


@sensor(job=session_job, minimum_interval_seconds=1, default_status=_default_status(),
        description="Keeps exactly one session job alive per trading day; relaunches a dead one.")
def session_sensor(context: SensorEvaluationContext):
    settings = load_settings()
    sess = session_in_live_window(settings)
    if isinstance(sess, SkipReason):
        return sess
    day = sess.date.isoformat()
    runs = context.instance.get_runs(
        RunsFilter(job_name=session_job.name, tags={"alphagen/session_date": day}))
    if any(r.status is DagsterRunStatus.SUCCESS for r in runs):
        return SkipReason(f"the session job of {day} has finished")
    if clock_from_settings(settings).now() >= sess.close:
        return SkipReason(f"the session of {day} is over")
    beat = read_heartbeat(session_dir(settings.alphagen_cache_dir), day)
    for run in runs:
        if run.status not in ACTIVE:
            continue
        if run.status is DagsterRunStatus.STARTED and _dead(context, run.run_id, beat):
            # the heartbeat alert sensor (alert_sensors.py) reports runs with this tag
            context.instance.add_run_tags(run.run_id, {HEARTBEAT_LOST_TAG: "true"})
            context.instance.report_run_failed(run, "session job heartbeat lost; relaunching")
            continue
        return SkipReason(f"session job {run.run_id[:8]} is {run.status.value}")
    if len(runs) >= MAX_SESSION_ATTEMPTS:
        return SkipReason(f"gave up after {len(runs)} session runs today")
    return RunRequest(
        run_key=f"session-{day}-{len(runs) + 1}",
        run_config={"ops": {"trading_session": {"config": {"session_date": day}}}},
        tags={"alphagen/session_date": day, "alphagen/attempt": str(len(runs) + 1)},
    )


def _dead(context: SensorEvaluationContext, run_id: str, beat) -> bool:
    if beat is not None and beat.run_id == run_id:
        return not beat.alive()
    record = context.instance.get_run_record_by_id(run_id)
    started = record.start_time if record else None
    return started is not None and dt.datetime.now(dt.UTC).timestamp() - started > STARTUP_GRACE.total_seconds()
