"""The live service's code location: the minute and session jobs and their sensors.

It is separate from `definitions.py` so that every minute run (a fresh process importing its
code location) loads neither dbt nor the replay assets; its runs record materializations of
the same table assets, which the UI shows in the main location's lineage."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from alphagen_core.operations.logs import configure_logging
from alphagen_dagster.alert_sensors import (
    heartbeat_alert,
    run_failure_alert,
    token_expiry_alert,
)
from alphagen_dagster.jobs import control_job, minute_job, session_job
from alphagen_dagster.premarket import premarket_check_job, premarket_check_sensor
from alphagen_dagster.resources import default_resources
from alphagen_dagster.sensors import minute_sensor, session_sensor

configure_logging()  # every process that loads this location: JSON lines unless at a terminal

defs = Definitions(
    jobs=[minute_job, session_job, control_job, premarket_check_job],
    sensors=[minute_sensor, session_sensor, premarket_check_sensor, run_failure_alert, heartbeat_alert,
             token_expiry_alert],
    resources={k: v for k, v in default_resources().items() if k in ("store", "settings")},
    executor=in_process_executor,
)
