"""Jobs. Everything per-run is in-process: one process per step would cost seconds each."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job, in_process_executor, job

from alphagen_dagster.ops import minute_increment, set_trading_state, trading_session

# Selected by group, not by importing the assets: this module is also loaded by the live
# code location, whose minute runs must not import dbt.
replay_job = define_asset_job(
    "replay",
    selection=AssetSelection.groups("alphagen"),
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


@job(executor_def=in_process_executor, tags={"alphagen/live": "control"},
     description="Halt, flatten or resume today's session (config: state, reason): `alphagen halt|flatten|resume`.")
def control_job():
    set_trading_state()
