"""Jobs. Everything per-run is in-process: one process per step would cost seconds each."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job, in_process_executor

from alphagen_dagster.dbt import dbt_pnl_models
from alphagen_dagster.assets import replay_tables

replay_job = define_asset_job(
    "replay",
    selection=AssetSelection.assets(replay_tables) | AssetSelection.assets(dbt_pnl_models),
    executor_def=in_process_executor,
    description="Replay trading days from Polygon flat files into the eight tables, then dbt P/L.",
    tags={"alphagen/mode": "replay"},
)
