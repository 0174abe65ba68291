"""Jobs. Everything per-run is in-process: one process per step would cost seconds each."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job, in_process_executor, job

from alphagen_dagster.assets import replay_tables
from alphagen_dagster.dbt import dbt_pnl_models
from alphagen_dagster.ops import minute_increment, trading_session

replay_job = define_asset_job(
    "replay",
    selection=AssetSelection.assets(replay_tables) | AssetSelection.assets(dbt_pnl_models),
    executor_def=in_process_executor,
    description="Replay trading days from Polygon flat files into the eight tables, then dbt P/L.",
    tags={"alphagen/mode": "replay"},
)


@job(executor_def=in_process_executor, tags={"alphagen/live": "minute"},
     description="A newly closed minute through the engine: appends tables 1-7 (live/paper).")
def minute_job():
    minute_increment()


@job(executor_def=in_process_executor, tags={"alphagen/live": "session"},
     description="The session trader for one day: orders, fills, stops (tables 2, 7, 8).")
def session_job():
    trading_session()
