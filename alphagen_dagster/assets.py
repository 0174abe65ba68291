"""The eight tables as assets, written by one step per run so that a day is all or nothing,
and the dbt models downstream of them."""


import base64
import contextlib
import datetime as dt
import multiprocessing
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from alphagen_core.adapters.polygon.flatfiles import FlatFileError, load_day
from alphagen_core.calendar import is_trading_day, session
from alphagen_core.chart import write_day_chart
from alphagen_core.engine import StrategyConfig
from alphagen_core.replay import (
    SessionRun,
    build_slices,
    equity_bar_rows,
    option_quote_rows,
    run_session,
    tables_for,
)
from alphagen_core.store import RowMeta
from alphagen_dagster import dbt_process
from alphagen_dagster.checks import CHECK_SPECS, check_results
from alphagen_dagster.dbt import dbt_pnl_models
from alphagen_dagster.partitions import partition_days, trading_days
from alphagen_dagster.resources import FlatFilesResource, SettingsResource, StoreResource

GROUP = "alphagen"
TABLE_DEPS: dict[str, list[str]] = {  # how each table's rows are derived
    "equity_bars": [],
    "option_quotes": [],
    "normalized_ticks": ["equity_bars", "option_quotes"],
    "signals": ["normalized_ticks"],
    "trade_intents": ["signals"],
    "executions": ["trade_intents", "option_quotes"],
    "broker_positions": ["executions"],
    "position_state": ["normalized_ticks", "executions"],
}
TABLE_DESCRIPTIONS = {
    "equity_bars": "Table 1: QQQ minute bars as received (bar start, NY time).",
    "option_quotes": "Table 2: option quotes or minute aggregates (bid/ask = price -/+ half-spread).",
    "broker_positions": "Table 3: position lines of the broker's snapshots.",
    "normalized_ticks": "Table 4: one minute slice: bar, VWAP, MA9 and the quotes used.",
    "position_state": "Table 5: the position after each slice.",
    "signals": "Table 6: crossovers, acted on or dropped with the reason.",
    "trade_intents": "Table 7: orders the strategy wants, with reason and brackets.",
    "executions": "Table 8: order events at the broker, with fees and realized P/L.",
}
TABLE_SPECS = [
    AssetSpec(
        name,
        deps=deps,
        group_name=GROUP,
        description=TABLE_DESCRIPTIONS[name],
        kinds={"duckdb"},
        skippable=False,
    )
    for name, deps in TABLE_DEPS.items()
]


def replay_version(context: AssetExecutionContext) -> str:
    """One version per replay run: sortable by when the run was created."""
    record = context.instance.get_run_record_by_id(context.run.run_id)
    created = record.create_timestamp if record else dt.datetime.now(dt.UTC)
    return f"{created:%Y%m%dT%H%M%S%f}-{context.run.run_id[:8]}"


@multi_asset(
    name="replay_tables",
    specs=TABLE_SPECS,
    check_specs=CHECK_SPECS,
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    pool="duckdb",
    can_subset=False,
)
def replay_tables(
    context: AssetExecutionContext,
    store: StoreResource,
    flatfiles: FlatFilesResource,
    settings: SettingsResource,
):
    """Replay each trading day of the partition range from Polygon flat files through the
    engine and append all eight tables under a new version, one transaction per day."""
    cfg = settings.get()
    strategy = StrategyConfig.from_settings(cfg)
    source = flatfiles.open(cfg)
    db = store.store()
    db.ensure_schema()
    if _runs_dbt(context):  # dbt's import and parse, meanwhile, in a process of its own
        dbt_process.start(str(db.path), cfg.alphagen_cache_dir)
    version = replay_version(context)
    days = [d for d in partition_days(context.partition_keys) if is_trading_day(d)]
    summaries: list[dict[str, object]] = []
    failures: list[str] = []
    runs: dict[dt.date, SessionRun] = {}
    charts: dict[dt.date, Future[str]] = {}
    with contextlib.ExitStack() as stack:
        # Held open for the whole range: each day still commits its own transaction (a day is
        # all or nothing), but the file is opened, and its WAL checkpointed, once per run
        # instead of once per day (halves the write time). The step holds the "duckdb" pool.
        stack.enter_context(db.connect())
        # Charts are rendered in a worker process, beside the replay, not in its path (about
        # 0.25 s a day of matplotlib). Spawned, not forked: this process runs Dagster's threads.
        renderer = (
            stack.enter_context(ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")))
            if cfg.feature_enable_chart and days else None
        )
        for i, day in enumerate(days, start=1):
            started = time.perf_counter()
            sess = session(day)
            try:
                data = load_day(
                    source,
                    sess,
                    equity_ticker=cfg.polygon_equity_ticker,
                    underlying=cfg.polygon_options_underlying,
                    cache_dir=Path(flatfiles.cache_dir),
                )
            except FlatFileError as exc:
                context.log.error(f"[{i}/{len(days)}] {day}: {exc}; nothing written for this day")
                failures.append(f"{day}: {exc}")
                continue
            slices = build_slices(data.equity, data.options, cfg.paper_half_spread)
            run = run_session(sess, slices, strategy)
            src = f"flatfiles:{source.name}"
            batches = tables_for(
                run,
                equity_bar_rows(data.equity, src),
                option_quote_rows(data.options, cfg.paper_half_spread, src),
            )
            meta = RowMeta("replay", day, version, context.run.run_id)
            added = db.write(batches, meta)
            runs[day] = run
            if renderer is not None:
                path = cfg.alphagen_chart_dir / f"{day:%Y-%m-%d}.png"
                charts[day] = renderer.submit(write_day_chart, day, run.ticks, run.executions, str(path))
            elapsed = time.perf_counter() - started
            summaries.append(
                {"day": day, "bars": len(slices), "signals": len(run.signals),
                 "round_trips": run.round_trips, "pnl": run.realized_pnl, "rows": added}
            )
            context.log.info(
                f"[{i}/{len(days)}] {day}: {len(slices)} bars, {run.round_trips} round trips, "
                f"P/L ${run.realized_pnl:,.2f}, {sum(added.values())} rows in {elapsed:.2f}s"
            )
            if run.rejections:
                context.log.warning(f"{day}: {len(run.rejections)} inputs rejected, e.g. {run.rejections[:3]}")
        written = {day: Path(chart.result()) for day, chart in charts.items()}  # raises a render error
    for summary in summaries:
        summary["chart"] = written.get(summary["day"])

    if not summaries:
        raise Failure(description="no day was replayed:\n" + "\n".join(failures or ["empty range"]))
    _add_day_metadata(context, summaries)
    for spec in TABLE_SPECS:
        yield MaterializeResult(asset_key=spec.key, metadata={"version": version})
    yield from check_results(runs, strategy.flatten_before_close)
    if failures:
        raise Failure(
            description="some days failed and wrote nothing:\n" + "\n".join(failures),
            metadata={"failed_days": len(failures), "replayed_days": len(summaries)},
        )


def _runs_dbt(context: AssetExecutionContext) -> bool:
    """Whether this run also builds the dbt models (the replay job does; a tables-only
    selection does not)."""
    selected = context.run.asset_selection  # empty or None: the whole job
    return not selected or bool(selected & dbt_pnl_models.keys)


def _add_day_metadata(context: AssetExecutionContext, summaries: list[dict[str, object]]) -> None:
    """Each day's partition carries its own figures, and normalized_ticks its own chart. (A
    range's MaterializeResult metadata would be copied into every day's event.)"""
    for s in summaries:
        day = str(s["day"])
        for table, rows in s["rows"].items():
            meta: dict[str, object] = {"rows": rows}
            if table == "normalized_ticks":
                meta["bars"] = s["bars"]
                if (chart := s["chart"]) is not None:
                    png = base64.b64encode(chart.read_bytes()).decode()
                    meta["chart"] = MetadataValue.md(f"![chart {day}](data:image/png;base64,{png})")
                    meta["chart_file"] = MetadataValue.path(str(chart.resolve()))
            elif table == "signals":
                meta["signals"] = s["signals"]
            elif table == "executions":
                meta["round_trips"] = s["round_trips"]
                meta["realized_pnl"] = MetadataValue.float(s["pnl"])
            context.add_asset_metadata(meta, asset_key=table, partition_key=day)
