"""The Dagster code location of Alpha-Gen."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from alphagen_dagster.assets import replay_tables
from alphagen_dagster.dbt import dbt_pnl_models, dbt_resource
from alphagen_dagster.jobs import minute_job, replay_job, session_job
from alphagen_dagster.resources import default_resources
from alphagen_dagster.sensors import minute_sensor, session_sensor

defs = Definitions(
    assets=[replay_tables, dbt_pnl_models],
    jobs=[replay_job, minute_job, session_job],
    sensors=[minute_sensor, session_sensor],
    resources={**default_resources(), "dbt": dbt_resource()},
    executor=in_process_executor,
)
