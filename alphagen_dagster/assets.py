"""The eight tables as assets, written by one step per run so that a day is all or nothing,
and the dbt models downstream of them."""


import base64
import contextlib
import datetime as dt
import multiprocessing
import signal
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dagster import (
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
    TableColumn,
    TableColumnConstraints,
    TableSchema,
    multi_asset,
)
from pydantic import Field

from alphagen_core.adapters.polygon.flatfiles import DayData, FlatFileError, load_day
from alphagen_core.application.chart import write_day_chart
from alphagen_core.application.lease import live_writers_at
from alphagen_core.application.replay import SessionRun, replay_day
from alphagen_core.domain.calendar import is_trading_day, session
from alphagen_core.domain.clock import clock_from_settings
from alphagen_core.domain.engine import StrategyConfig
from alphagen_core.operations.settings import Settings
from alphagen_core.operations.variants import (
    BASE,
    VARIANT_KEYS,
    VariantError,
    sweep_variants,
    version_row,
)
from alphagen_core.persistence.store import RowMeta, Store, is_disk_full
from alphagen_core.persistence.tables import SOURCES, Table
from alphagen_dagster import stop
from alphagen_dagster.checks import CHECK_SPECS, CheckTally
from alphagen_dagster.dbt import (
    FAILED_DAYS_TAG,
    dbt_pnl_models,
    start_warm_dbt,
    stop_warm_dbt,
)
from alphagen_dagster.partitions import partition_days, trading_days
from alphagen_dagster.resources import (
    FlatFilesResource,
    SettingsResource,
    StoreResource,
)

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
    "versions": [],
}


# On every table's page, beside the Materialize button that dagster-webserver 1.13.27 cannot
# backfill for this multi-asset (ARCHITECTURE.md, "Decisions").
BACKFILL_HINT = ("To replay a range of days from the UI, open Jobs -> replay -> Materialize all: a backfill "
                 "launched from an asset's page is refused by Dagster 1.13.27.")


def table_asset_spec(table: Table, deps: list[str]) -> AssetSpec:
    """A table as an asset: its description and column schema come from the table contract."""
    columns = [
        TableColumn(c.name, c.type, description=c.description,
                    constraints=TableColumnConstraints(nullable=not c.not_null))
        for c in table.all_columns
    ]
    return AssetSpec(
        table.name,
        deps=deps,
        group_name=GROUP,
        description=f"{table.description}\n\n{BACKFILL_HINT}",
        metadata={"dagster/column_schema": TableSchema(columns)},
        kinds={"duckdb"},
        skippable=False,
    )


TABLE_SPECS = [table_asset_spec(SOURCES[name], deps) for name, deps in TABLE_DEPS.items()]


class ReplayConfig(Config):
    """The variant to replay: `base` is the environment's settings; another name runs them with
    `settings` (environment-variable name -> value) changed; or a `sweep`'s grid of variants.
    Validated as `alphagen replay` validates its options (`variants.variant_settings`)."""

    variant: str = Field(BASE, description="The variant's name (base: the environment's settings).")
    settings: dict[str, str] = Field(
        default_factory=dict, description="Settings the variant changes, by environment-variable name: "
        + ", ".join(VARIANT_KEYS) + ".")
    sweep: dict[str, list[str]] = Field(
        default_factory=dict, description="A grid instead of one variant: environment-variable name -> "
        "values; every combination is replayed as a variant named from its values.")


@dataclass(frozen=True)
class _Variant:
    name: str
    settings: Settings
    strategy: StrategyConfig
    recorded: dict[str, str]  # its versions row
    version: str


def _variants(config: ReplayConfig, settings: SettingsResource, version: str) -> list[_Variant]:
    """The variant the run config names, or its sweep's grid; a Failure with the CLI's message
    when one cannot run. A sweep's variants each get a version of their own."""
    try:
        if config.sweep and (config.variant != BASE or config.settings):
            raise VariantError("a sweep names its own variants: no variant or settings beside it")
        chosen = sweep_variants(config.sweep) if config.sweep else [(config.variant, config.settings)]
        resolved = [(name, settings.for_variant(name, overrides)) for name, overrides in chosen]
    except VariantError as exc:
        raise Failure(description=str(exc)) from None
    return [_Variant(name, cfg, cfg.strategy_config(), version_row(name, cfg),
                     f"{version}.{i}" if len(resolved) > 1 else version)
            for i, (name, cfg) in enumerate(resolved)]


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
    config: ReplayConfig,
    store: StoreResource,
    flatfiles: FlatFilesResource,
    settings: SettingsResource,
):
    """Replay each trading day of the partition range from Polygon flat files through the
    engine and append all eight tables under a new version, one transaction per day, under the
    variant the run config names (`ReplayConfig`; base: the environment's settings), or each
    variant of its sweep (a version each, every day's files read once).

    A day that cannot be replayed (a missing or corrupt file, data the engine refuses) fails
    alone: it writes nothing, its partition's metadata says why, and the other days go on.
    The run still fails in the end (the dbt step raises once the marts are built, so they
    match the days that landed); a full disk stops the range at once."""
    if not _runs_dbt(context):
        yield from _replay_days(context, config, store, flatfiles, settings, runs_dbt=False)
        return
    cfg, db_path = settings.get(), store.store().path
    start_warm_dbt(cfg, db_path)  # dbt gets ready on the other core while the days replay
    try:
        yield from _replay_days(context, config, store, flatfiles, settings, runs_dbt=True)
    except BaseException:
        stop_warm_dbt(cfg, db_path)  # no dbt step will take it
        raise


def _replay_days(context: AssetExecutionContext, config: ReplayConfig, store: StoreResource,
                 flatfiles: FlatFilesResource, settings: SettingsResource, *, runs_dbt: bool):
    version = replay_version(context)
    variants = _variants(config, settings, version)
    cfg = variants[0].settings  # what all variants share: sources, paths, charts, clock
    sweep = len(variants) > 1
    source = flatfiles.open(cfg)
    db = store.store()
    days = [d for d in partition_days(context.partition_keys) if is_trading_day(d)]
    progress = _Progress(context, len(days) * len(variants))
    summaries: list[dict[str, object]] = []
    failures: dict[dt.date, str] = {}
    checks = CheckTally()
    charts: dict[dt.date, Future[str]] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(stop.watched())
        clock = clock_from_settings(cfg)
        opened = _OnFirstWrite(stack, db, cfg.feature_enable_chart and not sweep,
                               lambda: live_writers_at(cfg.alphagen_cache_dir, clock.now()))
        for i, day in enumerate(days):
            if (reason := stop.requested()) is not None:
                failures.update(dict.fromkeys(days[i:], f"not replayed: {reason}"))
                context.log.warning(f"stopping: {reason}; {i} of {len(days)} days done")
                break
            try:
                data = _load_day(day, source, Path(flatfiles.cache_dir), cfg)
            except _DayFailed as failed:
                _day_failed(context, progress, failures, day, failed, weight=len(variants))
                continue
            for variant in variants:
                label = f" {variant.name}" if sweep else ""
                try:
                    bars, run, added = _replay_variant_day(data, variant, f"flatfiles:{source.name}", opened,
                                                           RowMeta("replay", day, variant.version, context.run.run_id))
                except _DayFailed as failed:
                    _day_failed(context, progress, failures, day, failed, label=label)
                    continue
                checks.add(day, run, variant.strategy.flatten_before_close, label)
                if opened.renderer is not None:
                    path = cfg.alphagen_chart_dir / f"{day:%Y-%m-%d}.png"
                    charts[day] = opened.renderer.submit(write_day_chart, day, run.ticks, run.executions, str(path))
                summaries.append(
                    {"day": day, "variant": variant.name, "bars": bars, "signals": len(run.signals),
                     "round_trips": run.round_trips, "pnl": run.realized_pnl, "rows": added, "expiry": data.expiry,
                     "dropped": {k: v for k, v in data.rejected.items() if v}}
                )
                progress.replayed(day, bars, run, sum(added.values()), data, label)
        written = {day: Path(chart.result()) for day, chart in charts.items()}  # raises a render error
    for summary in summaries:
        summary["chart"] = written.get(summary["day"])

    if not summaries:
        raise Failure(description=_failure_list("no day was replayed", failures) if failures else "empty range")
    _add_day_metadata(context, summaries, failures, variants[0].name)
    if failures:
        context.instance.add_run_tags(context.run.run_id, {FAILED_DAYS_TAG: str(len(failures))})
    for spec in TABLE_SPECS:
        yield MaterializeResult(
            asset_key=spec.key,
            metadata={"version": variants[0].version, "variant": variants[0].name,
                      "replayed_days": len({s["day"] for s in summaries}), "failed_days": len(failures),
                      **({"variants": MetadataValue.json({v.name: v.version for v in variants})} if sweep else {})},
        )
    yield from checks.results()
    if failures and not runs_dbt:  # else the dbt step fails the run once the marts are built
        raise Failure(description=_failure_list(f"{len(failures)} of {len(days)} days failed", failures))


class _DayFailed(Exception):
    """One day could not be replayed; the message says why in a line."""


def _load_day(day: dt.date, source, cache_dir: Path, cfg: Settings) -> DayData:
    """Read one day's flat files (once, whatever the variants), or _DayFailed; a full disk is a
    Failure of the whole range."""
    try:
        return load_day(source, session(day), equity_ticker=cfg.polygon_equity_ticker,
                        underlying=cfg.polygon_options_underlying, cache_dir=cache_dir)
    except FlatFileError as exc:
        raise _DayFailed(str(exc)) from None
    except OSError as exc:
        _raise_if_disk_full(exc, day, cache_dir)
        raise _DayFailed(f"{type(exc).__name__}: {exc}") from exc


def _replay_variant_day(data: DayData, variant: _Variant, source: str, opened: "_OnFirstWrite",
                        meta: RowMeta) -> tuple[int, SessionRun, dict[str, int]]:
    """A variant's day through the engine and into the eight tables and its versions row, in one
    transaction, or _DayFailed; a full disk is a Failure of the whole range.

    A sweep's variants run here one after another, on the day read once: the engine is the
    smaller part of a variant's day next to its DuckDB write (one writer at a time), and a
    process pool for the engines, measured, cost more (its start, each day's frames pickled to
    and from it) than it saved (BENCHMARKS.md, "Sweeps")."""
    db = opened.store()
    try:
        bars, run, batches = replay_day(session(meta.session_date), data.equity, data.options,
                                        variant.settings.paper_half_spread, variant.strategy, source)
        added = db.write({**batches, "versions": [variant.recorded]}, meta)
    except Exception as exc:  # one day's bad data must not take the range down
        _raise_if_disk_full(exc, meta.session_date, db.path)
        raise _DayFailed(f"{type(exc).__name__}: {exc}") from exc
    return bars, run, added


def _day_failed(context: AssetExecutionContext, progress: "_Progress", failures: dict[dt.date, str], day: dt.date,
                failed: "_DayFailed", *, label: str = "", weight: int = 1) -> None:
    if failed.__cause__ is not None:
        context.log.debug(f"{day}{label}: {''.join(traceback.format_exception(failed.__cause__))}")
    why = f"{label.strip()}: {failed}" if label else str(failed)
    failures[day] = f"{failures[day]}; {why}" if day in failures else why
    progress.failed(day, why, weight)


class _OnFirstWrite:
    """What a range opens once its first day has data to write, so that a range that replays
    nothing leaves nothing behind:
    - the DuckDB file, held open between days (each day still commits its own transaction,
      but the file is opened and its WAL checkpointed once per run: half the write time) while
      no live session writes. While one may (`live_writers_at`, asked before each day) it is
      opened for each day's write only, so a live minute run or the session trader waits for
      one day's commit at most, never for a whole range.
    - the chart renderer, a worker process beside the replay (about 0.1 s a day of matplotlib;
      spawned, not forked: this process runs Dagster's threads)."""

    def __init__(self, stack: contextlib.ExitStack, db: Store, charts: bool, live_writers: Callable[[], bool]) -> None:
        self._stack, self._db, self._charts, self._live_writers = stack, db, charts, live_writers
        self._started = False
        self._held: contextlib.ExitStack | None = None
        self.renderer: ProcessPoolExecutor | None = None

    def store(self) -> Store:
        if not self._started:
            self._started = True
            self._stack.callback(self._release)
            if self._charts:
                # Chart workers ignore Ctrl-C: the terminal sends it to the whole process group, and
                # the replay decides how to stop (they exit with it). The initializer is a builtin:
                # one of this module's would have the worker import Dagster and dbt.
                self.renderer = self._stack.enter_context(ProcessPoolExecutor(
                    1, mp_context=multiprocessing.get_context("spawn"), initializer=signal.signal,
                    initargs=(signal.SIGINT, signal.SIG_IGN)))
        if self._live_writers():
            self._release()
        elif self._held is None:
            self._held = contextlib.ExitStack()
            self._held.enter_context(self._db.connect())
        return self._db

    def _release(self) -> None:
        if self._held is not None:
            self._held.close()
            self._held = None


def _failure_list(headline: str, failures: dict[dt.date, str]) -> str:
    return headline + ":\n" + "\n".join(f"{day}: {why}" for day, why in failures.items())


def _raise_if_disk_full(exc: BaseException, day: dt.date, where: object) -> None:
    if is_disk_full(exc):
        raise Failure(
            description=f"disk full (No space left on device) at {where} while replaying {day}: "
            "nothing of that day was written; free space and replay again"
        ) from None


# A day's chart is embedded in its partition's metadata (the UI shows it) for ranges up to a
# month; a longer range links each day's PNG instead: embedded, a year's 252 charts were most of
# its event log and held in memory until the step's outputs (BENCHMARKS.md, "Year replay").
EMBEDDED_CHARTS_UP_TO = 31


class _Progress:
    """One line per day: its figures, the rows it dropped, and the time left for the range."""

    def __init__(self, context: AssetExecutionContext, total: int) -> None:
        self.context, self.total, self.done = context, total, 0
        self.started = time.perf_counter()
        self.last = self.started

    def _prefix(self, day: dt.date, weight: int = 1) -> str:
        self.done += weight
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        left = (now - self.started) / self.done * (self.total - self.done)
        return f"[{self.done}/{self.total}] {day} ({seconds:.2f}s, ~{_duration(left)} left)"

    def replayed(self, day: dt.date, bars: int, run: SessionRun, rows: int, data: DayData, label: str = "") -> None:
        """`label`: the variant's name, in a sweep (a line per variant and day)."""
        notes = []
        if not data.expiry_is_same_day:
            notes.append(f"no 0DTE listed: expiry {data.expiry}")
        # Pre- and post-market bars are expected in the files; anything else dropped is news.
        if bad := {k: v for k, v in data.rejected.items() if v and not k.endswith("out_of_session")}:
            notes.append("dropped " + ", ".join(f"{v} {k}" for k, v in bad.items()))
        self.context.log.info(
            f"{self._prefix(day)}{label}: {bars} bars, {run.round_trips} round trips, "
            f"P/L ${run.realized_pnl:,.2f}, {rows} rows" + "".join(f"; {n}" for n in notes)
        )
        if run.rejections:
            self.context.log.warning(f"{day}{label}: {len(run.rejections)} inputs rejected, e.g. {run.rejections[:3]}")

    def failed(self, day: dt.date, why: str, weight: int = 1) -> None:
        """`weight`: the variant-days it stands for (a day whose files failed, in a sweep)."""
        self.context.log.error(f"{self._prefix(day, weight)}: FAILED, nothing written: {why}")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _runs_dbt(context: AssetExecutionContext) -> bool:
    """Whether this run also builds the dbt models (the replay job does; a tables-only
    selection does not)."""
    selected = context.run.asset_selection  # empty or None: the whole job
    return not selected or bool(selected & dbt_pnl_models.keys)


def _add_day_metadata(context: AssetExecutionContext, summaries: list[dict[str, object]],
                      failures: dict[dt.date, str], first_variant: str) -> None:
    """Each day's partition carries its own figures, and normalized_ticks its own chart (a
    range's MaterializeResult metadata would be copied into every day's event). In a sweep the
    figures are the first variant's, the rows those of every variant, and executions has each
    variant's round trips and P/L (`by_variant`). A failed day's partition says why it failed
    and that its previous version, if any, still stands."""
    by_day: dict[object, list[dict[str, object]]] = {}
    for summary in summaries:
        by_day.setdefault(summary["day"], []).append(summary)
    for of_day in by_day.values():
        s = next((v for v in of_day if v["variant"] == first_variant), of_day[0])
        day = str(s["day"])
        for table in s["rows"]:
            meta: dict[str, object] = {"rows": sum(v["rows"].get(table, 0) for v in of_day)}
            if table == "normalized_ticks":
                meta["bars"] = s["bars"]
                meta["option_expiry"] = MetadataValue.text(str(s["expiry"]))
                meta["dropped_rows"] = MetadataValue.json(s["dropped"])
                if (chart := s["chart"]) is not None:
                    if len(by_day) <= EMBEDDED_CHARTS_UP_TO:
                        png = base64.b64encode(chart.read_bytes()).decode()
                        meta["chart"] = MetadataValue.md(f"![chart {day}](data:image/png;base64,{png})")
                    meta["chart_file"] = MetadataValue.path(str(chart.resolve()))
            elif table == "signals":
                meta["signals"] = s["signals"]
            elif table == "executions":
                meta["round_trips"] = s["round_trips"]
                meta["realized_pnl"] = MetadataValue.float(float(s["pnl"]))
                if len(of_day) > 1:
                    meta["by_variant"] = MetadataValue.json(
                        {v["variant"]: {"round_trips": v["round_trips"], "realized_pnl": float(v["pnl"])}
                         for v in of_day})
            context.add_asset_metadata(meta, asset_key=table, partition_key=day)
    for day, why in failures.items():
        for spec in TABLE_SPECS:
            context.add_asset_metadata(
                {"replay_failed": MetadataValue.text(why), "rows": 0}, asset_key=spec.key, partition_key=str(day)
            )
