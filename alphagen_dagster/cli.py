"""`alphagen`: the command line. Heavy imports (Dagster, dbt) happen inside the commands that
need them, so `alphagen --help` and `alphagen report` start fast."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import click

from alphagen_core.operations.variants import BASE, VARIANT_KEYS
from alphagen_dagster.instance import PROJECT_DIR
from alphagen_dagster.teardown import exit_without_teardown

DEMO_DAYS = (dt.date(2024, 11, 25), dt.date(2024, 12, 2))  # five sessions, 11-29 closes at 13:00


def _date(_ctx: object, _param: object, value: str | None) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date like 2024-11-29") from None


class _Commands(click.Group):
    """Errors a user can cause end in a short message naming the cause, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        from alphagen_core.operations.settings import SettingsError
        from alphagen_core.persistence.store import StoreLockedError, StoreOpenError
        from alphagen_dagster.dbt_executable import DbtMissing
        from alphagen_dagster.health import HealthPortError
        from alphagen_dagster.instance import BrokenHomeError
        from alphagen_dagster.report import ReportError
        from alphagen_dagster.service import ServiceRunningError

        try:
            return super().invoke(ctx)
        except (SettingsError, BrokenHomeError, DbtMissing, HealthPortError, ReportError, StoreOpenError,
                StoreLockedError, ServiceRunningError) as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Alpha-Gen: VWAP/MA9 crossover on 0DTE QQQ options, replayed and traded via Dagster."""
    if hasattr(sys.stdout, "reconfigure"):  # a killed command still shows what it said
        sys.stdout.reconfigure(line_buffering=True)
    from alphagen_core.operations.logs import configure_logging

    configure_logging()  # ALPHAGEN_LOG_FORMAT / ALPHAGEN_LOG_LEVEL: readable at a terminal, JSON otherwise


@main.command()
@click.option("--start", required=True, callback=_date, help="First day (YYYY-MM-DD).")
@click.option("--end", required=True, callback=_date, help="Last day, inclusive.")
@click.option("--out", default="data/flatfiles", type=click.Path(path_type=Path), show_default=True)
@click.option("--seed", default=7, show_default=True)
@click.option("--full-size", is_flag=True, help="Pad the options file to 2M+ rows a day (benchmarks).")
def sample(start: dt.date, end: dt.date, out: Path, seed: int, full_size: bool) -> None:
    """Write deterministic sample Polygon flat files for every trading day in a range."""
    from alphagen_core.sim.sample import generate

    paths = generate(start, end, out, seed=seed, full_size=full_size, progress=click.echo)
    click.echo(f"wrote {len(paths)} files under {out}")


_VARIANT_HELP = ("Replay under a named variant of the strategy and risk settings (default: base, the "
                 "environment's settings); its days are reported apart from base's.")
_SET_HELP = ("With --variant: a setting the variant changes, KEY=VALUE by its environment-variable name, "
             "validated as the environment is; repeatable. Allowed: " + ", ".join(VARIANT_KEYS) + ".")


@main.command()
@click.option("--start", required=True, callback=_date)
@click.option("--end", callback=_date, help="Defaults to --start.")
@click.option("--source", help="A folder in flat-file key layout, or 's3'. Default: settings.")
@click.option("--variant", help=_VARIANT_HELP)
@click.option("--set", "assignments", multiple=True, metavar="KEY=VALUE", help=_SET_HELP)
@click.option("--sweep", "axes", multiple=True, metavar="KEY=V1,V2,...",
              help="Replay every combination of these values as a variant named from its values (e.g. "
              "risk_stop_loss_multiple=1.5), in one run: each day's files read once, one dbt build. "
              "Repeatable; the keys as for --set; not with --variant.")
def replay(start: dt.date, end: dt.date | None, source: str | None, variant: str | None,
           assignments: tuple[str, ...], axes: tuple[str, ...]) -> None:
    """Replay trading days through the Dagster replay job (one run for the whole range)."""
    config = _variant_config(variant, assignments, axes)
    exit_without_teardown(0 if run_replay(start, end or start, source, config) else 1)


def _variant_config(variant: str | None, assignments: tuple[str, ...], axes: tuple[str, ...]) -> dict:
    """The replay step's config for the options, validated as the step validates it."""
    from alphagen_core.operations.settings import load_settings
    from alphagen_core.operations.variants import (
        VariantError,
        parse_assignments,
        parse_sweep,
        sweep_variants,
        variant_settings,
    )

    load_settings()  # the environment's own problems first, as themselves (not usage errors)
    if assignments and variant is None:
        raise click.UsageError("--set needs --variant NAME: base is the environment's settings")
    if axes and variant is not None:
        raise click.UsageError("--sweep names its own variants: not with --variant")
    try:
        overrides, sweep = parse_assignments(assignments), parse_sweep(axes)
        names = [name for name, _ in sweep_variants(sweep)] if sweep else []
        variant_settings(variant or BASE, overrides)
    except VariantError as exc:
        raise click.UsageError(str(exc)) from None
    if names:
        click.echo(f"sweep of {len(names)} variants: {'; '.join(names)}", err=True)
    return {"variant": variant or BASE, "settings": overrides, "sweep": sweep}


def run_replay(start: dt.date, end: dt.date, source: str | None = None, step_config: dict | None = None) -> bool:
    """`step_config`: the replay step's (`_variant_config`); default: base."""
    from alphagen_core.domain.calendar import NY
    from alphagen_core.operations.settings import load_settings
    from alphagen_dagster.instance import dagster_home

    days = _days_to_replay(start, end, load_settings().alphagen_flatfiles_first_day, dt.datetime.now(NY).date())
    if source:
        os.environ["ALPHAGEN_FLATFILES_SOURCE"] = source
    home = dagster_home()
    click.echo(f"replaying {len(days)} trading day(s) {days[0]} .. {days[-1]} in one Dagster run")
    started = time.perf_counter()
    # Dagster's own opt-in: one "materialization planned" event per asset for this range run
    # instead of one per asset and day (19 instead of 380 event-log writes for 20 days;
    # BENCHMARKS.md, "Year replay"). The trade-off Dagster names: if the run fails, the UI marks
    # the run failed but not each of its days' partitions (tables and P/L are unaffected).
    os.environ.setdefault("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "true")
    from alphagen_dagster.definitions import defs
    from alphagen_dagster.instance import (
        PROCESS_TAG,
        open_instance,
        release_dead_runs,
        this_process,
    )
    from alphagen_dagster.storage import shards_held_open

    job = defs.resolve_job_def("replay")
    log_dir = home / "logs"
    log_dir.mkdir(exist_ok=True)
    log_file = log_dir / f"replay-{days[0]}-{days[-1]}.log"
    run_id = str(uuid.uuid4())
    with open_instance(for_cli_run=True) as instance:
        release_dead_runs(instance, click.echo)
        _wait_for_the_duckdb_slot(instance)
        # The dbt step echoes dbt's output to stdout; keep it in a file, progress on stderr.
        with (
            shards_held_open(instance, run_id),
            open(log_file, "w") as out,
            contextlib.redirect_stdout(out),
        ):
            result = job.execute_in_process(
                instance=instance,
                run_id=run_id,
                raise_on_error=False,
                tags={
                    "dagster/asset_partition_range_start": days[0].isoformat(),
                    "dagster/asset_partition_range_end": days[-1].isoformat(),
                    PROCESS_TAG: this_process(),
                },
                run_config=replay_run_config(step_config or {"variant": BASE}),
            )
        _write_details(instance, result.run_id, log_file)
    elapsed = time.perf_counter() - started
    _print_outcome(result, days, elapsed, log_file)
    return result.success


def replay_run_config(step_config: dict) -> dict:
    """The replay job's run config: the variant (or sweep) goes to the replay step, as from the UI."""
    return {"loggers": {"progress": {}}, "ops": {"replay_tables": {"config": step_config}}}


def _days_to_replay(start: dt.date, end: dt.date, first_day: dt.date, today: dt.date) -> list[dt.date]:
    """The sessions of [start, end], or a one-line error that says what is wrong."""
    from alphagen_core.domain.calendar import trading_days

    if end < start:
        raise click.ClickException(f"the range is reversed: --start {start} is after --end {end}")
    if start < first_day:
        raise click.ClickException(
            f"{start} is before ALPHAGEN_FLATFILES_FIRST_DAY ({first_day}), the first day the flat files "
            "cover; set it earlier to replay older days")
    if end > today:
        raise click.ClickException(f"{end} is in the future: replay up to {today}")
    days = trading_days(start, end)
    if not days:
        raise click.ClickException(f"{start} .. {end} holds no NYSE trading day (weekends and holidays only)")
    return days


def _print_outcome(result, days: list[dt.date], elapsed: float, log_file: Path) -> None:
    """The last lines: the run's result and, for every day that failed, why."""
    failed, replayed = {}, 0
    for event in result.get_asset_materialization_events():
        if event.asset_key.path == ["executions"]:
            if "replay_failed" in (metadata := event.materialization.metadata):
                failed[event.partition] = metadata["replay_failed"].value
            else:
                replayed += 1
    if not result.success and not failed:
        for event in result.all_events:
            if event.is_step_failure:
                data = event.step_failure_data
                why = data.user_failure_data.description if data.user_failure_data else _user_error(data.error)
                click.echo(f"  {_first_lines(why or '')}", err=True)
    state = "succeeded" if result.success else "FAILED"
    click.echo(f"run {result.run_id} {state} in {elapsed:.1f}s: {replayed} of {len(days)} days replayed "
               f"(details: {log_file})")
    if failed:
        click.echo(f"{len(failed)} day(s) not replayed, nothing written for them (the P/L marts are built from "
                   "the others):", err=True)
        lines = _grouped(sorted(failed.items()))
        for line in lines[:_MAX_FAILURE_LINES]:
            click.echo(f"  {line}", err=True)
        if len(lines) > _MAX_FAILURE_LINES:
            click.echo(f"  ... {len(lines) - _MAX_FAILURE_LINES} more in {log_file}", err=True)


_MAX_FAILURE_LINES = 20


def _grouped(failures: list[tuple[str, str]]) -> list[str]:
    """One line per run of consecutive days that failed for the same reason (an interrupted
    year is one line, not two hundred)."""
    lines: list[tuple[str, str, str, int]] = []  # first, last, why, days
    for day, why in failures:
        if lines and lines[-1][2] == why:
            first, _, _, n = lines[-1]
            lines[-1] = (first, day, why, n + 1)
        else:
            lines.append((day, day, why, 1))
    return [f"{first}: {why}" if n == 1 else f"{first} .. {last} ({n} days): {why}" for first, last, why, n in lines]


def _user_error(error) -> str:
    """A step's error without Dagster's wrapping ("Error occurred while executing op ..."): the
    exception our code raised, which names the cause."""
    while error.cls_name.startswith("Dagster") and error.cause is not None:
        error = error.cause
    return error.message


def _first_lines(message: str, limit: int = 6) -> str:
    lines = message.strip().splitlines()
    return "\n  ".join(lines[:limit] + (["..."] if len(lines) > limit else []))


def _write_details(instance, run_id: str, log_file: Path) -> None:
    """Every event of the run, with tracebacks, after dbt's output in the run's log file."""
    with open(log_file, "a") as out:
        out.write("\n--- Dagster events ---\n")
        for entry in instance.all_logs(run_id):
            out.write(f"{dt.datetime.fromtimestamp(entry.timestamp):%H:%M:%S.%f} {entry.level} {entry.message}\n")
            error = getattr(entry.dagster_event.event_specific_data, "error", None) if entry.dagster_event else None
            if error is not None:
                out.write(error.to_string() + "\n")


def _wait_for_the_duckdb_slot(instance) -> None:
    """Wait here, not in Dagster's claim loop, while another live run holds the DuckDB pool's
    slot: that loop ignores SIGINT and SIGTERM, this wait ends on either."""
    from alphagen_dagster.instance import slot_holders

    holders = slot_holders(instance)
    if not holders:
        return
    click.echo(f"waiting for run {', '.join(holders)} to release the DuckDB file (Ctrl-C gives up)")
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while slot_holders(instance):
            time.sleep(0.5)
    except KeyboardInterrupt:
        raise click.ClickException("stopped while waiting for the DuckDB file; nothing was started") from None
    finally:
        signal.signal(signal.SIGTERM, previous)


@main.command()
@click.option("--for-date", callback=_date, help="One day; default: every day.")
@click.option("--mode", type=click.Choice(["replay", "paper", "live"]), help="Default: all modes.")
@click.option("--stats", is_flag=True, help="The performance summary per (mode, variant) side by side, the exits "
              "by reason, and the equity curve with its drawdown as a PNG.")
@click.option("--variant", "variants", multiple=True, help="With --stats: only this variant (repeatable).")
@click.option("--start", callback=_date, help="With --stats: the figures over the sessions from this day ...")
@click.option("--end", callback=_date, help="... to this day (either alone: from the first, to the last session).")
@click.option("--png", type=click.Path(path_type=Path), help="With --stats: where to write the chart; "
              "default: ALPHAGEN_CHART_DIR/performance.png")
@click.option("--compare-modes", is_flag=True, help="With --for-date: the day's round trips of paper (or live) "
              "beside the replay's, with the price differences.")
def report(for_date: dt.date | None, mode: str | None, stats: bool, variants: tuple[str, ...], start: dt.date | None,
           end: dt.date | None, png: Path | None, compare_modes: bool) -> None:
    """Print daily P/L from the dbt mart `daily_pnl` (or, with --stats, the performance summary)."""
    from alphagen_dagster.report import Selection

    if (variants or start or end or png) and not stats:
        raise click.UsageError("--variant, --start, --end and --png go with --stats")
    if start and end and start > end:
        raise click.UsageError(f"--start {start} is after --end {end}")
    if compare_modes:
        if for_date is None:
            raise click.UsageError("--compare-modes needs --for-date")
        click.echo(compare_table(for_date))
    elif stats:
        text, chart_png = stats_report(Selection((mode,) if mode else (), variants, start, end), png)
        click.echo(f"{text}\n\nequity curve and drawdown: {chart_png}")
    else:
        click.echo(pnl_table(for_date, mode))


def compare_table(day: dt.date) -> str:
    """The day's round trips, replay (base) beside paper and live, the i-th of each mode side by side
    in order of entry: the traded prices' differences are the slippage against the model."""
    frame = _mart("""SELECT mode, entry_time, option_symbol, qty, entry_price, exit_price, exit_reason, pnl
                     FROM trades WHERE trade_date = ? AND variant = ? ORDER BY mode, entry_time, position_id""",
                  [day, BASE])
    by_mode = {m: [r for r in frame.iter_rows(named=True) if r["mode"] == m] for m in ("replay", "paper", "live")}
    others = [m for m in ("paper", "live") if by_mode[m]]
    if not by_mode["replay"] or not others:
        have = ", ".join(m for m, rows in by_mode.items() if rows) or "no mode"
        return f"nothing to compare on {day}: round trips of {have} (a replay and a paper or live session are needed)"
    lines = []
    for other in others:
        lines.append(f"{day}: replay against {other} (difference = {other} - replay; a sold entry wants it "
                     "positive, a bought exit negative)")
        lines.append(f"{'#':>3}  {'entry':<6}{'contract':<22}{'entry':>8}{other:>8}{'diff':>8}  "
                     f"{'exit':>8}{other:>8}{'diff':>8}  {'reason':<13}{other + ' reason':<14}")
        pairs = list(zip(by_mode["replay"], by_mode[other]))
        for i, (r, o) in enumerate(pairs, start=1):
            same = r["option_symbol"] == o["option_symbol"]
            lines.append(
                f"{i:>3}  {r['entry_time']:%H:%M} {r['option_symbol'][-15:] + ('' if same else '*'):<22}"
                f"{r['entry_price']:>8.2f}{o['entry_price']:>8.2f}{o['entry_price'] - r['entry_price']:>+8.2f}  "
                f"{r['exit_price']:>8.2f}{o['exit_price']:>8.2f}{o['exit_price'] - r['exit_price']:>+8.2f}  "
                f"{r['exit_reason']:<13}{o['exit_reason']:<14}")
        extra = len(by_mode["replay"]) - len(by_mode[other])
        if extra:
            lines.append(f"  ({abs(extra)} more round trip(s) in {'replay' if extra > 0 else other})")
        if any(r["option_symbol"] != o["option_symbol"] for r, o in pairs):
            lines.append("  * the two modes traded different contracts for this round trip")
    return "\n".join(lines)


def _mart(sql: str, params: list | None = None):
    from alphagen_core.operations.settings import get_settings
    from alphagen_dagster.report import open_marts, query_marts

    return query_marts(open_marts(get_settings().alphagen_duckdb_path), sql, params)


def stats_report(selection, png: Path | None = None) -> tuple[str, Path]:
    """The summary of `selection` (a report.Selection) as text, and its chart, written."""
    from alphagen_core.operations.settings import get_settings
    from alphagen_dagster.report import (
        PERFORMANCE_PNG,
        open_marts,
        read_performance,
        stats_text,
        write_performance_png,
    )

    settings = get_settings()
    performance = read_performance(open_marts(settings.alphagen_duckdb_path), selection)
    out = write_performance_png(performance.curves, png or settings.alphagen_chart_dir / PERFORMANCE_PNG)
    return stats_text(performance.summary), out.resolve()


def pnl_table(for_date: dt.date | None = None, mode: str | None = None, variant: str | None = None) -> str:
    """daily_pnl, one block per (mode, variant) with its total: a variant's days never mix into base's."""
    where, params = [], []
    for column, value in (("trade_date", for_date), ("mode", mode), ("variant", variant)):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    sql = "SELECT * FROM daily_pnl" + (f" WHERE {' AND '.join(where)}" if where else "")
    frame = _mart(sql + " ORDER BY mode, variant, trade_date", params)
    if frame.is_empty():
        return "no P/L rows for that selection"
    header = (f"{'date':<12}{'mode':<8}{'variant':<16}{'trades':>7}{'wins':>6}{'losses':>7}{'fees':>12}"
              f"{'realized P/L':>16}")
    lines = [header]
    for (mode_, variant_), rows in frame.group_by(["mode", "variant"], maintain_order=True):
        lines.append("-" * len(header))
        for r in rows.iter_rows(named=True):
            lines.append(
                f"{r['trade_date']!s:<12}{r['mode']:<8}{r['variant']:<16}{r['trades']:>7}{r['wins']:>6}"
                f"{r['losses']:>7}{r['fees']:>12,.2f}{r['realized_pnl']:>16,.2f}")
        lines.append(f"{'total':<12}{mode_:<8}{variant_:<16}{rows['trades'].sum():>7}{rows['wins'].sum():>6}"
                     f"{rows['losses'].sum():>7}{rows['fees'].sum():>12,.2f}{rows['realized_pnl'].sum():>16,.2f}")
    return "\n".join(lines)


@main.command()
@click.option("--for-date", required=True, callback=_date)
@click.option("--mode", default="replay", type=click.Choice(["replay", "paper", "live"]), show_default=True)
@click.option("--variant", default=BASE, show_default=True, help="The replay variant to draw.")
@click.option("--out", type=click.Path(path_type=Path), help="Default: ALPHAGEN_CHART_DIR/<date>.png")
def chart(for_date: dt.date, mode: str, variant: str, out: Path | None) -> None:
    """Write the day's chart (QQQ, VWAP, MA9, entries and exits) as a PNG."""
    from alphagen_core.application.chart import day_chart_png
    from alphagen_core.operations.settings import get_settings
    from alphagen_core.persistence.rows import executions_from, ticks_from
    from alphagen_core.persistence.store import Store

    settings = get_settings()
    store = Store(settings.alphagen_duckdb_path)
    ticks = store.latest("normalized_ticks", mode, for_date, variant)
    if ticks.is_empty():
        raise click.ClickException(f"no {mode} data of variant {variant} for {for_date}: replay it first")
    execs = store.latest("executions", mode, for_date, variant)
    out = out or settings.alphagen_chart_dir / f"{for_date:%Y-%m-%d}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(day_chart_png(for_date, ticks_from(ticks), executions_from(execs)))
    click.echo(f"wrote {out}")


@main.command()
@click.option("--date", "day", default="2024-11-27", callback=_date, show_default=True, help="The session to serve.")
@click.option("--source", help="Flat files: a folder in key layout, or 's3'. Default: settings.")
@click.option("--speed", default=60.0, show_default=True, help="Sim seconds per real second.")
@click.option("--start", "start_time", default="09:25", show_default=True, help="Sim time at launch (ET).")
@click.option("--polygon-port", default=8801, show_default=True)
@click.option("--polygon-ws-port", default=8802, show_default=True)
@click.option("--schwab-port", default=8803, show_default=True)
def sim(day: dt.date, source: str | None, speed: float, start_time: str, polygon_port: int,
        polygon_ws_port: int, schwab_port: int) -> None:
    """Serve the Polygon (REST, websocket) and Schwab (OAuth, trader, market data) stand-ins on
    127.0.0.1, replaying one day of flat files on an accelerated clock, until Ctrl-C."""
    from alphagen_core.operations.settings import get_settings
    from alphagen_core.sim.venues import SimVenues

    settings = get_settings()
    venues = SimVenues(
        day=day, source=source or settings.alphagen_flatfiles_source, cache_dir=settings.alphagen_cache_dir,
        speed=speed, start=dt.time.fromisoformat(start_time), polygon_port=polygon_port,
        polygon_ws_port=polygon_ws_port, schwab_port=schwab_port,
    )
    with venues:
        click.echo(f"Polygon REST       {venues.polygon.rest_url}   (API key: sim-key)")
        click.echo(f"Polygon websocket  ws://{venues.polygon.ws_feed}/stocks  and  /options")
        click.echo(f"Schwab             {venues.schwab.base_url}   (app key sim-app-key, secret sim-app-secret)")
        click.echo(f"sim clock          {venues.clock.now():%Y-%m-%d %H:%M:%S} ET, x{speed:g}")
        click.echo("point the service at them with:")
        for name, value in venues.env().items():
            click.echo(f"  export {name}={value}")
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            click.echo("stopping")


@main.command()
@click.option("--mode", type=click.Choice(["paper", "live"]), default=None,
              help="Default: ALPHAGEN_MODE if paper or live, else paper. live needs the whole live gate.")
@click.option("--host", default="127.0.0.1", show_default=True, help="The UI's address.")
@click.option("--port", default=3000, show_default=True)
def run(mode: str | None, host: str, port: int) -> None:
    """Start the live or paper service: the Dagster daemon (minute and session sensors) and
    the webserver on the project's workspace, until Ctrl-C."""
    from alphagen_core.application.gate import route
    from alphagen_core.operations.settings import Mode, get_settings
    from alphagen_dagster.instance import dagster_home
    from alphagen_dagster.service import service

    settings = get_settings()
    mode = mode or _trading_mode(settings)
    traded = route(settings.model_copy(update={"alphagen_mode": Mode(mode)}))  # GateError: nothing starts
    home = dagster_home()
    env = {**os.environ, "ALPHAGEN_MODE": mode, "DAGSTER_HOME": str(home)}
    logs = home / "service-logs"
    with service(env, host=host, port=port, log_dir=logs, health=True) as procs:  # or refuses: nothing printed
        click.echo(f"mode {traded.mode.value}, broker {traded.broker}; DuckDB {settings.alphagen_duckdb_path.resolve()}")
        click.echo(f"Dagster UI on http://{host}:{port}; logs in {logs}; Ctrl-C stops")
        if settings.alphagen_health_port:
            click.echo(f"health: http://{settings.alphagen_health_host}:{settings.alphagen_health_port}/health "
                       "and /metrics")
        try:
            while all(p.poll() is None for p in procs):
                time.sleep(1)
        except KeyboardInterrupt:
            click.echo("stopping")
    if any(p.returncode not in (None, 0, -15) for p in procs):
        raise click.ClickException("a service process stopped on its own; see the logs")


def _trading_mode(settings) -> str:
    """The mode a live command means when none is given: ALPHAGEN_MODE if paper or live, else paper."""
    return settings.alphagen_mode.value if settings.alphagen_mode.value in ("paper", "live") else "paper"


def _control_command(state: str, summary: str):
    """`alphagen halt|flatten|resume`: one append-only row in control_events."""

    @click.option("--reason", default="operator command", show_default=True, help="Recorded with the change.")
    @click.option("--mode", type=click.Choice(["paper", "live"]), help="Default: ALPHAGEN_MODE if paper or live, else paper.")
    @click.option("--date", "day", callback=_date, help="The session (default: today's, on the service's clock).")
    def command(reason: str, mode: str | None, day: dt.date | None) -> None:
        from alphagen_core.application.control import set_state
        from alphagen_core.domain.clock import clock_from_settings
        from alphagen_core.domain.models import TradingState
        from alphagen_core.operations.settings import get_settings
        from alphagen_core.persistence.store import Store

        settings = get_settings()
        now = clock_from_settings(settings).now()
        mode = mode or _trading_mode(settings)
        day = day or now.date()
        set_state(Store(settings.alphagen_duckdb_path), mode, day, TradingState(state), reason, "operator", now)
        click.echo(f"{mode} session {day}: {state} ({reason}); a running session obeys within 2 s")

    command.__doc__ = summary
    return main.command(name={"halted": "halt", "flattening": "flatten", "active": "resume"}[state])(command)


halt = _control_command("halted", "Open nothing new this session (exits, stops and the flatten still run).")
flatten = _control_command("flattening", "Close the position now, then halt.")
resume = _control_command("active", "Trade again after a halt.")


@main.command("sim-session")
@click.option("--date", "day", default="2024-12-12", callback=_date, show_default=True)
@click.option("--source", help="Flat files to serve; default: the sim day built for this (alphagen_core/sim/days.py).")
@click.option("--speed", default=6.0, show_default=True, help="Sim seconds per real second.")
@click.option("--start", "start_time", default="09:36", show_default=True, help="Sim time at launch (ET).")
@click.option("--until", "until_time", default="10:03", show_default=True,
              help="Sim time to stop (ET); 16:05 for the whole session.")
@click.option("--workdir", type=click.Path(path_type=Path), help="Default: data/sim/<date>-<now>.")
@click.option("--ui/--no-ui", default=False, help="Also start the webserver (port --port).")
@click.option("--port", default=3000, show_default=True)
def sim_session(day: dt.date, source: str | None, speed: float, start_time: str, until_time: str,
                workdir: Path | None, ui: bool, port: int) -> None:
    """A whole simulated session on one machine: the Polygon and Schwab stand-ins and the
    service (daemon, sensors, minute and session runs) on an accelerated clock, in paper
    mode; prints the orders, fills, P/L (dbt daily_pnl) and latencies at the end."""
    from alphagen_dagster.service import run_sim_session

    workdir = workdir or PROJECT_DIR / "data" / "sim" / f"{day}-{dt.datetime.now():%Y%m%dT%H%M%S}"
    run_sim_session(day, workdir, source=source, speed=speed, start=dt.time.fromisoformat(start_time),
                    until=dt.time.fromisoformat(until_time), ui=ui, port=port, echo=click.echo)


@main.command()
@click.option("--mode", type=click.Choice(["paper", "live"]), default=None,
              help="The mode to check for. Default: ALPHAGEN_MODE if paper or live, else paper (as `alphagen run`).")
@click.option("--min-free-gb", default=2.0, show_default=True, help="Less free disk space than this fails.")
def doctor(mode: str | None, min_free_gb: float) -> None:
    """The pre-market check: settings, Schwab token, data sources, broker, clock, disk, DuckDB,
    Dagster daemon and sensors. One line per check; exit code 1 if any failed."""
    from alphagen_dagster.doctor import GIB, command

    exit_without_teardown(command(mode, int(min_free_gb * GIB), click.echo))


@main.command("schwab-login")
def schwab_login() -> None:
    """Sign in to Schwab once (OAuth in the browser); stores the token at SCHWAB_TOKEN_PATH (0600)."""
    from alphagen_core.adapters.schwab.auth import login_from_settings
    from alphagen_core.adapters.schwab.errors import SchwabAuthError
    from alphagen_core.operations.settings import get_settings

    try:
        path = login_from_settings(get_settings())
    except SchwabAuthError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"token stored at {path} (mode 0600); it refreshes itself for 7 days")


@main.command()
@click.option("--out", default="data/flatfiles", type=click.Path(path_type=Path), show_default=True)
def demo(out: Path) -> None:
    """The embedded default: sample flat files for five sessions (one closes early), replayed
    through Dagster into DuckDB, dbt P/L, and the charts. No credentials, no network."""
    from alphagen_core.operations.settings import get_settings
    from alphagen_core.sim.sample import generate
    from alphagen_dagster.report import Selection

    start, end = DEMO_DAYS
    click.echo(f"1/3 sample flat files {start} .. {end} -> {out}")
    generate(start, end, out)
    click.echo("2/3 replay through Dagster (tables 1-8, then dbt daily_pnl)")
    if not run_replay(start, end, str(out)):
        raise click.ClickException("the replay failed; see the messages above")
    settings = get_settings()
    click.echo("3/3 daily P/L (dbt mart daily_pnl) and the performance summary (performance_summary)\n")
    click.echo(pnl_table(mode="replay", variant=BASE))
    text, chart_png = stats_report(Selection(modes=("replay",)))
    click.echo("\n" + text)
    click.echo(f"\nDuckDB file: {settings.alphagen_duckdb_path.resolve()}")
    click.echo(f"charts:      {settings.alphagen_chart_dir.resolve()}/ (one per day)")
    click.echo(f"performance: {chart_png} (the equity curve and its drawdown)")
    click.echo("Dagster UI:  make ui  (then http://127.0.0.1:3000)")
    exit_without_teardown(0)


if __name__ == "__main__":
    main()
