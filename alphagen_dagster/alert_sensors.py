"""The service's alert sensors: a failed run, a lost session heartbeat, a Schwab refresh token
close to its expiry. Each alert goes out once (alphagen_core.operations.alerts: a dedupe key in the
ledger; the run-failure sensor's own cursor also moves past every failure it saw), from the
sensor's process, on a background thread: a webhook that is down costs a sensor tick nothing.

Like the live sensors, they touch neither market data nor the DuckDB file, and run by default
only when ALPHAGEN_MODE is paper or live."""


import datetime as dt
import time

from dagster import (
    DagsterRunStatus,
    RunFailureSensorContext,
    RunsFilter,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from alphagen_core.application.lease import (
    HEARTBEAT_TIMEOUT_S,
    read_heartbeat,
    session_dir,
)
from alphagen_core.operations import alerts
from alphagen_core.operations.settings import load_settings
from alphagen_dagster.jobs import session_job
from alphagen_dagster.sensors import (
    ACTIVE,
    HEARTBEAT_LOST_TAG,
    _default_status,
    session_in_live_window,
)

TOKEN_CHECK_INTERVAL_S = 600
# Dagster's message for a run whose process got SIGTERM/SIGINT: the service was stopped.
INTERRUPTED = "Execution was interrupted unexpectedly"


def _first_line(text: str | None, limit: int = 300) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line[:limit]


@run_failure_sensor(monitor_all_code_locations=True, minimum_interval_seconds=5,
                    default_status=_default_status(), name="run_failure_alert")
def run_failure_alert(context: RunFailureSensorContext) -> None:
    """Any failed run of the instance (a minute run, the session job, the post-close build)."""
    run = context.dagster_run
    message = context.failure_event.message if context.failure_event else ""
    tags = run.tags
    if HEARTBEAT_LOST_TAG in tags:
        message = "the session job's heartbeat was lost (the process died); the session sensor relaunched it"
    elif INTERRUPTED in (message or ""):
        context.log.info(f"run {run.run_id} was interrupted (the service stopped): no alert")
        return
    alerts.send(
        load_settings(), f"run_failed:{run.run_id}", "run_failed",
        f"Run failed: {run.job_name} {run.run_id[:8]}",
        _first_line(message),
        run_id=run.run_id, job=run.job_name, session_date=tags.get("alphagen/session_date"),
        minute=tags.get("alphagen/minute"), message=_first_line(message),
    )


@sensor(minimum_interval_seconds=5, default_status=_default_status(),
        description="Alerts once per session run whose heartbeat stopped while it should be trading.")
def heartbeat_alert(context: SensorEvaluationContext):
    settings = load_settings()
    sess = session_in_live_window(settings)
    if isinstance(sess, SkipReason):
        return sess
    day = sess.date.isoformat()
    lost: dict[str, str] = {}
    # the session sensor found it dead (and relaunched it)
    for run in context.instance.get_runs(RunsFilter(job_name=session_job.name, tags={
            "alphagen/session_date": day, HEARTBEAT_LOST_TAG: "true"})):
        lost[run.run_id] = "the session sensor found its heartbeat stale and relaunched the job"
    # or the run monitor found its process gone and failed it first (the session sensor then
    # relaunched it without a tag, and the heartbeat file is already the new run's)
    for run in context.instance.get_runs(RunsFilter(job_name=session_job.name, statuses=[DagsterRunStatus.FAILURE],
                                                    tags={"alphagen/session_date": day})):
        if run.run_id not in lost and _died(context.instance, run.run_id):
            lost[run.run_id] = "its process vanished (the run monitor failed it); the session sensor relaunched the job"
    # or it is stale now, for a run that did not end normally: still "running" for Dagster,
    # or failed by dying (the run monitor noticed first). A run that failed by itself or was
    # stopped with the service is the run-failure sensor's business, not a lost heartbeat.
    beat = read_heartbeat(session_dir(settings.alphagen_cache_dir), day)
    if beat is not None and not beat.alive() and beat.run_id not in lost:
        run = context.instance.get_run_by_id(beat.run_id)
        if run is not None and (run.status in ACTIVE or (
                run.status is DagsterRunStatus.FAILURE and _died(context.instance, run.run_id))):
            lost[beat.run_id] = f"no heartbeat for {time.time() - beat.at:.0f} s (limit {HEARTBEAT_TIMEOUT_S:.0f} s)"
    if not lost:
        return SkipReason("session heartbeat fine")
    for run_id, why in lost.items():
        alerts.send(settings, f"heartbeat_lost:{day}:{run_id}", "heartbeat_lost",
                    f"Session heartbeat lost: {day} run {run_id[:8]}", why,
                    run_id=run_id, session_date=day, mode=settings.alphagen_mode.value)
    return SkipReason(f"{len(lost)} lost heartbeat(s) reported")


def _died(instance, run_id: str) -> bool:
    """The run was failed from outside (its process vanished), not by its own error or a stop."""
    from dagster import DagsterEventType

    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE, limit=1).records
    message = records[0].event_log_entry.dagster_event.message if records else ""
    return "from outside the execution context" in (message or "")


@sensor(minimum_interval_seconds=TOKEN_CHECK_INTERVAL_S, default_status=_default_status(),
        description="Alerts once per sign-in when the Schwab refresh token has less than "
                    "ALPHAGEN_TOKEN_ALERT_HOURS left.")
def token_expiry_alert(context: SensorEvaluationContext):
    from alphagen_core.adapters.schwab.config import refresh_token_expires_at

    settings = load_settings()
    if settings.alphagen_broker != "schwab" and settings.alphagen_data_provider != "schwab":
        return SkipReason("Schwab is not used")
    expires = refresh_token_expires_at(settings.schwab_token_path)
    if expires is None:
        return SkipReason(f"no Schwab token at {settings.schwab_token_path}")
    left_h = (expires - time.time()) / 3600
    if left_h > settings.alphagen_token_alert_hours:
        return SkipReason(f"the refresh token has {left_h:.1f} h left")
    when = dt.datetime.fromtimestamp(expires, dt.UTC)
    alerts.send(settings, f"token_expiry:{expires:.0f}", "token_expiry",
                "Schwab refresh token " + ("expired" if left_h <= 0 else f"expires in {left_h:.1f} h"),
                f"expires {when:%Y-%m-%d %H:%M} UTC: run `alphagen schwab-login` to sign in again",
                expires_at=when.isoformat(), hours_left=round(left_h, 2))
    return SkipReason(f"the refresh token has {left_h:.1f} h left: alerted")
