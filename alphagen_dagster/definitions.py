"""The Dagster code location of Alpha-Gen."""

from __future__ import annotations

from dagster import Definitions, colored_console_logger, in_process_executor

from alphagen_core.operations.logs import configure_logging
from alphagen_dagster.assets import replay_tables
from alphagen_dagster.dbt import dbt_pnl_models, dbt_resource
from alphagen_dagster.jobs import replay_job
from alphagen_dagster.loggers import progress_logger
from alphagen_dagster.post_close import pnl_after_close, pnl_job
from alphagen_dagster.resources import default_resources

configure_logging()  # every process that loads this location: JSON lines unless at a terminal

defs = Definitions(
    assets=[replay_tables, dbt_pnl_models],
    jobs=[replay_job, pnl_job],
    sensors=[pnl_after_close],
    resources={**default_resources(), "dbt": dbt_resource()},
    executor=in_process_executor,
    loggers={"console": colored_console_logger, "progress": progress_logger},
)
