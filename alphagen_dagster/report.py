"""The strategy's report: the figures of `performance_summary` and the curves of
`equity_curve` per (mode, variant), over every session (the marts) or over a date range (the
marts' own macros, `dbt_pnl/macros/performance.sql`, rendered over the range's rows), as text,
markdown and a PNG. Imports neither Dagster nor dbt, so `alphagen report` starts fast."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from alphagen_core.persistence.store import Store
from alphagen_dagster.instance import PROJECT_DIR

PERFORMANCE_MACROS = PROJECT_DIR / "dbt_pnl" / "macros" / "performance.sql"
PERFORMANCE_PNG = "performance.png"
NO_MARTS = "no P/L marts yet: run `alphagen replay` or `alphagen demo` first"
OLD_MARTS = ("the P/L marts were built by an earlier version (no {columns} in {mart}): any `alphagen replay` "
             "rebuilds them")
EXITS_PREFIX = "exits_"


class ReportError(Exception):
    """A report that cannot be made from what the DuckDB file holds; the message says why."""


@dataclass(frozen=True)
class Selection:
    """Which (mode, variant) rows and which sessions; empty tuples and None select all."""

    modes: tuple[str, ...] = ()
    variants: tuple[str, ...] = ()
    start: dt.date | None = None
    end: dt.date | None = None

    @property
    def is_range(self) -> bool:
        return self.start is not None or self.end is not None


@dataclass(frozen=True)
class Performance:
    summary: pl.DataFrame  # performance_summary's columns, a row per (mode, variant)
    curves: pl.DataFrame  # mode, variant, trade_date, cumulative_pnl, drawdown


def open_marts(db_path: Path) -> Store:
    """The DuckDB file at `db_path`, never created by reading it."""
    if not db_path.exists():
        raise ReportError(NO_MARTS)
    return Store(db_path)


def query_marts(store: Store, sql: str, params: list | dict | None = None) -> pl.DataFrame:
    try:
        return store.query(sql, params or None)
    except Exception as exc:  # the marts are missing until the first replay's dbt build
        if "does not exist" in str(exc):
            raise ReportError(NO_MARTS) from None
        raise


def read_performance(store: Store, selection: Selection) -> Performance:
    _check_variants(store, selection)
    filters, params = _filters(selection)
    if selection.is_range:
        summary_sql, curve_sql = _range_queries(store)
        params |= {"start": selection.start or dt.date.min, "end": selection.end or dt.date.max}
    else:
        summary_sql, curve_sql = "performance_summary", "equity_curve"
    summary = query_marts(store, f"SELECT * FROM {summary_sql} AS s{filters} ORDER BY mode, variant", params)
    if summary.is_empty():
        raise ReportError(_nothing_selected(store, selection))
    curves = query_marts(store, f"""SELECT mode, variant, trade_date, cumulative_pnl, drawdown
                                      FROM {curve_sql} AS c{filters} ORDER BY mode, variant, trade_date""", params)
    return Performance(summary, curves)


def _range_queries(store: Store) -> tuple[str, str]:
    """The marts' SQL over the sessions from $start to $end."""
    in_range = "WHERE trade_date BETWEEN $start AND $end"
    for mart, needed in (("daily_pnl", {"variant", "trading_capital"}), ("trades", {"variant"})):
        if missing := needed - set(query_marts(store, f"SELECT * FROM {mart} LIMIT 0").columns):
            raise ReportError(OLD_MARTS.format(columns=", ".join(sorted(missing)), mart=mart))
    summary, curve = performance_sql(f"(SELECT * FROM daily_pnl {in_range})", f"(SELECT * FROM trades {in_range})")
    return f"({summary})", f"({curve})"


def performance_sql(daily: str, trades: str) -> tuple[str, str]:
    """performance_summary's and equity_curve's SQL over the relations `daily` and `trades`:
    the marts' macros, rendered as dbt renders them."""
    import jinja2  # dbt's template engine; the macros use nothing of dbt's own

    macros = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(PERFORMANCE_MACROS.read_text()).module
    return (macros.performance_summary_rows(daily=daily, trades=trades),
            macros.equity_curve_rows(daily=daily))


def _filters(selection: Selection) -> tuple[str, dict]:
    where, params = [], {}
    if selection.modes:
        where.append("list_contains($modes, mode)")
        params["modes"] = list(selection.modes)
    if selection.variants:
        where.append("list_contains($variants, variant)")
        params["variants"] = list(selection.variants)
    return (" WHERE " + " AND ".join(where) if where else ""), params


def _check_variants(store: Store, selection: Selection) -> None:
    if not selection.variants:
        return
    known = query_marts(store, "SELECT DISTINCT variant FROM daily_pnl ORDER BY variant")["variant"].to_list()
    if unknown := [v for v in selection.variants if v not in known]:
        raise ReportError(f"unknown variant(s) {', '.join(unknown)}; the marts hold: {', '.join(known) or 'none'}")


def _nothing_selected(store: Store, selection: Selection) -> str:
    first, last = query_marts(store, "SELECT min(trade_date), max(trade_date) FROM daily_pnl").row(0)
    of = "".join(f" of {name} {', '.join(values)}" for name, values in
                 (("mode", selection.modes), ("variant", selection.variants)) if values)
    between = (f" between {selection.start or 'the first session'} and {selection.end or 'the last session'}"
               if selection.is_range else "")
    held = f"the marts hold {first} .. {last}" if first else "the marts hold no sessions"
    return f"no sessions{of}{between} ({held})"


def _label(row: dict) -> str:
    return f"{row['mode']}/{row['variant']}"


def _figures(summary: pl.DataFrame) -> tuple[list[str], list[str]]:
    """performance_summary's figures and its exit counts, the key columns left out."""
    names = [c for c in summary.columns if c not in ("mode", "variant")]
    return [n for n in names if not n.startswith(EXITS_PREFIX)], [n for n in names if n.startswith(EXITS_PREFIX)]


def cell(value: object) -> str:
    from decimal import Decimal

    if value is None:
        return "-"  # an undefined ratio (no trades, no losses, no deviation)
    if isinstance(value, Decimal):
        return f"{value:,.2f}"
    if isinstance(value, float):
        return f"{value:,.4f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def stats_text(summary: pl.DataFrame) -> str:
    """One column per (mode, variant), one line per figure, then the exits by reason."""
    rows = list(summary.iter_rows(named=True))
    figures, exits = _figures(summary)
    width = max(16, *(len(_label(r)) + 2 for r in rows))

    def line(name: str, column: str) -> str:
        return f"{name:<24}" + "".join(f"{cell(r[column]):>{width}}" for r in rows)

    lines = [f"{'':<24}" + "".join(f"{_label(r):>{width}}" for r in rows)]
    lines += [line(name, name) for name in figures]
    lines.append("exits by reason")
    lines += [line("  " + name.removeprefix(EXITS_PREFIX), name) for name in exits]
    return "\n".join(lines)


def stats_markdown(summary: pl.DataFrame) -> str:
    rows = list(summary.iter_rows(named=True))
    figures, exits = _figures(summary)
    lines = ["| figure | " + " | ".join(_label(r) for r in rows) + " |", "|---|" + "---:|" * len(rows)]
    for name in figures + exits:
        title = f"exits: {name.removeprefix(EXITS_PREFIX)}" if name in exits else name
        lines.append(f"| {title} | " + " | ".join(cell(r[name]) for r in rows) + " |")
    return "\n".join(lines)


def performance_png(curves: pl.DataFrame) -> bytes:
    """The equity curve and drawdown of each (mode, variant), one line each."""
    from alphagen_core.application.chart import performance_chart_png

    return performance_chart_png({
        f"{mode}/{variant}": list(zip(group["trade_date"], group["cumulative_pnl"].cast(pl.Float64),
                                      group["drawdown"].cast(pl.Float64), strict=True))
        for (mode, variant), group in curves.group_by(["mode", "variant"], maintain_order=True)
    })


def write_performance_png(curves: pl.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(performance_png(curves))
    return path
