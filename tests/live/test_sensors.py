"""The live sensors request runs only inside a trading day's live window, one per closed
minute (run key per minute), and keep one session job per day."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
from dagster import (
    DagsterInstance,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from alphagen_core.domain.calendar import NY
from alphagen_dagster.sensors import closed_minutes, minute_sensor, session_sensor

pytestmark = pytest.mark.integration


@pytest.fixture
def instance(tmp_path):
    with DagsterInstance.ephemeral(tempdir=str(tmp_path)) as inst:
        yield inst


def at(monkeypatch, tmp_path, when: dt.datetime) -> None:
    """Freeze the system clock at `when` (a sim clock at speed 1 that starts now)."""
    monkeypatch.setenv("ALPHAGEN_SIM_START", when.isoformat())
    monkeypatch.setenv("ALPHAGEN_SIM_SPEED", "1")
    monkeypatch.delenv("ALPHAGEN_SIM_EPOCH", raising=False)
    monkeypatch.setenv("ALPHAGEN_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize(
    "when",
    [
        dt.datetime(2024, 11, 23, 10, 0, 5, tzinfo=NY),  # Saturday
        dt.datetime(2024, 11, 28, 10, 0, 5, tzinfo=NY),  # Thanksgiving
        dt.datetime(2024, 11, 27, 17, 0, 5, tzinfo=NY),  # 17:00 on a trading day
        dt.datetime(2024, 11, 29, 13, 45, 5, tzinfo=NY),  # after an early close's window
        dt.datetime(2024, 11, 27, 8, 0, 5, tzinfo=NY),  # before the window opens
    ],
)
def test_outside_the_live_window_the_sensors_request_nothing(monkeypatch, tmp_path, instance, when):
    at(monkeypatch, tmp_path, when)
    for sensor in (minute_sensor, session_sensor):
        result = sensor(build_sensor_context(instance=instance))
        assert isinstance(result, SkipReason), (sensor.name, result)
        assert "outside the live window" in result.skip_message


def test_one_run_per_newly_closed_minute(monkeypatch, tmp_path, instance):
    at(monkeypatch, tmp_path, dt.datetime(2024, 11, 27, 10, 15, 3, tzinfo=NY))
    first = minute_sensor(build_sensor_context(instance=instance))
    assert isinstance(first, SensorResult)
    # the first tick of the day: one run, which catches up every earlier minute
    assert [r.run_key for r in first.run_requests] == ["minute-2024-11-27T10:14"]
    assert first.cursor == dt.datetime(2024, 11, 27, 10, 14, tzinfo=NY).isoformat()
    again = minute_sensor(build_sensor_context(instance=instance, cursor=first.cursor))
    assert isinstance(again, SkipReason)  # the 10:15 bar is still forming
    at(monkeypatch, tmp_path, dt.datetime(2024, 11, 27, 10, 15, 50, tzinfo=NY))
    ahead = minute_sensor(build_sensor_context(instance=instance, cursor=first.cursor))
    # requested LEAD_SECONDS before 10:15 closes; the run waits for the bar
    assert [r.run_key for r in ahead.run_requests] == ["minute-2024-11-27T10:15"]


def test_closed_minutes_stop_at_the_close_and_cap_the_catch_up():
    early_close = dt.datetime(2024, 11, 29, 13, 20, tzinfo=NY)
    assert closed_minutes(early_close, None)[-1] == dt.datetime(2024, 11, 29, 12, 59, tzinfo=NY)
    assert closed_minutes(dt.datetime(2024, 11, 27, 9, 30, 30, tzinfo=NY), None) == []
    assert closed_minutes(dt.datetime(2024, 11, 27, 9, 31, 0, tzinfo=NY), None) == [
        dt.datetime(2024, 11, 27, 9, 30, tzinfo=NY)]
    cursor = dt.datetime(2024, 11, 27, 9, 45, tzinfo=NY).isoformat()
    assert closed_minutes(dt.datetime(2024, 11, 27, 9, 46, 59, tzinfo=NY), cursor) == []


def test_a_first_tick_catches_up_in_one_run_and_each_minute_still_to_close_has_its_own():
    """A restart: the newest closed minute's run catches up the ones before it at once, and
    each minute closing within the lead gets a run that decides it as its bar closes (one run
    for the newest minute alone would decide the minutes before it only when that one closed)."""
    at = lambda h, m: dt.datetime(2024, 11, 27, h, m, tzinfo=NY)  # noqa: E731
    restart = dt.datetime(2024, 11, 27, 10, 15, 50, tzinfo=NY)  # 10 s before 10:15 closes, at 1x
    assert closed_minutes(restart, None, dt.timedelta(seconds=15)) == [at(10, 14), at(10, 15)]
    sim = dt.datetime(2024, 11, 27, 9, 38, 24, tzinfo=NY)  # at 12x the lead is three simulated minutes
    assert closed_minutes(sim, None, dt.timedelta(minutes=3)) == [at(9, 37), at(9, 38), at(9, 39), at(9, 40)]
    assert closed_minutes(sim + dt.timedelta(seconds=12), at(9, 40).isoformat(), dt.timedelta(minutes=3)) == []


def test_session_sensor_launches_one_job_and_relaunches_a_dead_one(monkeypatch, tmp_path, instance):
    at(monkeypatch, tmp_path, dt.datetime(2024, 11, 27, 9, 40, tzinfo=NY))
    request = session_sensor(build_sensor_context(instance=instance))
    assert isinstance(request, RunRequest) and request.run_key == "session-2024-11-27-1"
    # a run of that key that started and then died without a heartbeat
    from dagster import DagsterRunStatus

    from alphagen_dagster.jobs import session_job

    run = instance.create_run_for_job(session_job, run_config=request.run_config, tags=request.tags,
                                      status=DagsterRunStatus.STARTED)
    alive = session_sensor(build_sensor_context(instance=instance))
    assert isinstance(alive, SkipReason) and "STARTED" in alive.skip_message  # within its startup grace
    (tmp_path / "cache" / "session").mkdir(parents=True)
    write_dead_heartbeat(tmp_path / "cache" / "session", "2024-11-27", run.run_id)
    relaunch = session_sensor(build_sensor_context(instance=instance))
    assert isinstance(relaunch, RunRequest) and relaunch.run_key == "session-2024-11-27-2"
    assert instance.get_run_by_id(run.run_id).status is DagsterRunStatus.FAILURE


def write_dead_heartbeat(directory, day: str, run_id: str) -> None:
    """A recent heartbeat of a session job on this host whose process is gone."""
    (directory / f"session-{day}.heartbeat").write_text(
        f'{{"pid": 999999999, "host": "{socket.gethostname()}", "run_id": "{run_id}", "at": 1e10}}')


def test_a_live_session_may_write_from_its_jobs_start_until_it_ends_after_the_close(tmp_path):
    """What tells a replay or dbt build to leave the DuckDB file free between days and models."""
    from alphagen_core.application.lease import (
        SessionLease,
        live_writers_at,
        session_dir,
    )

    cache, day = tmp_path / "cache", dt.date(2024, 11, 27)
    at = lambda h, m: dt.datetime.combine(day, dt.time(h, m), tzinfo=NY)  # noqa: E731
    assert not live_writers_at(cache, at(10, 0))  # the service has not traded here today
    with SessionLease(session_dir(cache), day.isoformat(), "the-session-run"):
        assert not live_writers_at(cache, at(8, 59))  # before the live window
        assert live_writers_at(cache, at(9, 0)) and live_writers_at(cache, at(16, 10))  # alive after the close
        assert not live_writers_at(cache, at(16, 30))  # the window is over
    # the job has ended (its process gone): relaunched until the close, the last minute run just after
    write_dead_heartbeat(session_dir(cache), day.isoformat(), "the-session-run")
    assert live_writers_at(cache, at(15, 59)) and live_writers_at(cache, at(16, 4))
    assert not live_writers_at(cache, at(16, 5))
