"""Building the day's frames from the parsed rows: the equity ticker's bars and one
expiry of the underlying's option bars, regular session only, with every dropped row counted
by kind (`REJECTION_KINDS`)."""

from __future__ import annotations

import datetime as dt

import polars as pl

from alphagen_core.adapters.polygon.flatfiles.layout import FlatFileError
from alphagen_core.domain.calendar import Session

NY_TZ = "America/New_York"

REJECTION_KINDS = (
    "equity_invalid",
    "equity_out_of_session",
    "equity_duplicate",
    "options_bad_ticker",
    "options_invalid",
    "options_out_of_session",
    "options_duplicate",
)


def _ny_timestamp() -> pl.Expr:
    return (
        pl.from_epoch(pl.col("window_start"), time_unit="ns")
        .dt.cast_time_unit("us")
        .dt.replace_time_zone("UTC")
        .dt.convert_time_zone(NY_TZ)
        .alias("est_timestamp")
    )


def _valid_bar() -> pl.Expr:
    prices = [pl.col(c) for c in ("open", "high", "low", "close")]
    ok = pl.all_horizontal([p.is_finite() & (p > 0) for p in prices])
    return ok & (pl.col("high") >= pl.col("low")) & pl.col("volume").is_finite() & (pl.col("volume") >= 0)


def _in_session(s: Session) -> pl.Expr:
    return (pl.col("est_timestamp") >= s.open) & (pl.col("est_timestamp") < s.close)


_BAR_COLUMNS = ("open", "high", "low", "close", "volume", "transactions")


def equity_frame(raw: pl.DataFrame, s: Session, ticker: str, where: str, rejected: dict[str, int]) -> pl.DataFrame:
    df = raw.filter(pl.col("ticker") == ticker)
    if df.is_empty():
        raise FlatFileError(where, f"no rows for {ticker}")
    df = df.select(
        pl.col("ticker").alias("symbol"),
        _ny_timestamp(),
        *_BAR_COLUMNS,
    )
    df = _screen(df, s, "equity", ["est_timestamp"], rejected)
    if df.is_empty():
        raise FlatFileError(where, f"no regular-session rows for {ticker} ({s.open:%H:%M}-{s.close:%H:%M})")
    return df.sort("est_timestamp")


def _screen(df: pl.DataFrame, s: Session, kind: str, key: list[str], rejected: dict[str, int]) -> pl.DataFrame:
    """Drop invalid bars, bars outside the regular session and repeated bars (the first one
    in the file wins), counting each kind of rejection."""
    for reason, keep in (
        ("invalid", lambda d: d.filter(_valid_bar())),
        ("out_of_session", lambda d: d.filter(_in_session(s))),
        ("duplicate", lambda d: d.unique(subset=key, keep="first", maintain_order=True)),
    ):
        before = len(df)
        df = keep(df)
        rejected[f"{kind}_{reason}"] = before - len(df)
    return df


_OPTION_TAIL = r"^\d{6}[CP]\d{8}$"


def options_frame(
    raw: pl.DataFrame, s: Session, underlying: str, where: str, rejected: dict[str, int]
) -> tuple[pl.DataFrame, dt.date]:
    t = pl.col("ticker")
    tail = t.str.slice(-15)
    df = raw.with_columns(root=t.str.head(-15).str.slice(2), tail=tail).filter(pl.col("root") == underlying)
    n = len(df)
    df = df.with_columns(expiry=pl.col("tail").str.slice(0, 6).str.to_date("%y%m%d", strict=False)).filter(
        pl.col("tail").str.contains(_OPTION_TAIL) & pl.col("expiry").is_not_null()
    )
    rejected["options_bad_ticker"] = n - len(df)
    if df.is_empty():
        raise FlatFileError(where, f"no rows for {underlying} options")
    expiries = sorted(e for e in df["expiry"].unique().to_list() if e >= s.date)
    if not expiries:
        raise FlatFileError(where, f"no {underlying} options expiring on or after {s.date}")
    expiry = expiries[0]
    df = df.filter(pl.col("expiry") == expiry).select(
        pl.col("ticker").alias("option_symbol"),
        pl.lit(underlying).alias("underlying"),
        "expiry",
        pl.col("tail").str.slice(6, 1).alias("right"),
        (pl.col("tail").str.slice(7, 8).cast(pl.Int64) / 1000.0).alias("strike"),
        _ny_timestamp(),
        *_BAR_COLUMNS,
    )
    df = _screen(df, s, "options", ["option_symbol", "est_timestamp"], rejected)
    if df.is_empty():
        raise FlatFileError(where, f"no regular-session rows for {underlying} options expiring {expiry}")
    return df.sort("est_timestamp", "option_symbol"), expiry
