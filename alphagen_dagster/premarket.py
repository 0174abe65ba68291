"""The service's own pre-market check: at open - 30 min of every trading day (on the system's
clock, so a simulated session gets one too) the sensor requests one run of
`premarket_check_job`, which runs `alphagen doctor`'s checks, logs each one, and fails when any
check failed, so that the failure is a failed run in Dagster (and reaches whatever alerts on
failed runs) naming the checks."""

import datetime as dt

from dagster import (
    Failure,
    MetadataValue,
    OpExecutionContext,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    in_process_executor,
    job,
    op,
    sensor,
)

from alphagen_core.domain.calendar import is_trading_day, session
from alphagen_core.domain.clock import clock_from_settings
from alphagen_core.operations.settings import load_settings
from alphagen_dagster.sensors import _default_status

LEAD = dt.timedelta(minutes=30)


@op(tags={"alphagen/kind": "premarket"})
def premarket_checks(context: OpExecutionContext) -> None:
    """`alphagen doctor`'s checks; the run fails when any of them failed."""
    from alphagen_dagster.doctor import failures, format_report, log_results, run_checks

    results = run_checks(load_settings())
    log_results(results)
    context.log.info("pre-market check:\n" + format_report(results))
    bad = failures(results)
    if bad:
        raise Failure(
            description=f"pre-market check failed: {', '.join(f'{r.name} ({r.detail})' for r in bad)}",
            metadata={r.name: MetadataValue.text(f"{r.status.value}: {r.detail}") for r in results},
        )


@job(executor_def=in_process_executor, tags={"alphagen/live": "premarket"},
     description="`alphagen doctor` run by the service at open - 30 min; fails when a check fails.")
def premarket_check_job():
    premarket_checks()


def premarket_day(now: dt.datetime) -> dt.date | None:
    """The trading day whose pre-market window [open - 30 min, open) contains `now`."""
    if not is_trading_day(now.date()):
        return None
    sess = session(now.date())
    return sess.date if sess.open - LEAD <= now < sess.open else None


@sensor(job=premarket_check_job, minimum_interval_seconds=10, default_status=_default_status(),
        description="One pre-market check run per trading day, at open - 30 min.")
def premarket_check_sensor(context: SensorEvaluationContext):
    now = clock_from_settings(load_settings()).now()
    day = premarket_day(now)
    if day is None:
        return SkipReason(f"outside the pre-market window: {now:%a %Y-%m-%d %H:%M} ET")
    return RunRequest(run_key=f"premarket-{day}", tags={"alphagen/session_date": day.isoformat()})
