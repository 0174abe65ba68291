"""`load_day`: one session's flat-file data (`DayData`), from a source or the processed cache.

`load_day` writes the filtered day as parquet under ``cache_dir/processed/YYYY/MM/DATE/``,
keyed by both files' keys, sizes and mtimes, the tickers and the session, and reads it on
later loads. An entry is a directory renamed into place only after everything in it is
written, and only after both files were read without error.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import structlog

from alphagen_core.adapters.polygon.flatfiles.frames import (
    REJECTION_KINDS,
    equity_frame,
    options_frame,
)
from alphagen_core.adapters.polygon.flatfiles.layout import options_key, stocks_key
from alphagen_core.adapters.polygon.flatfiles.reader import read_filtered
from alphagen_core.adapters.polygon.flatfiles.sources import FlatFileSource
from alphagen_core.domain.calendar import Session

log = structlog.get_logger(__name__)

# Bump when the processed-cache content or layout changes: old entries are then ignored.
CACHE_FORMAT = 1


@dataclass(frozen=True, eq=False)
class DayData:
    """One session's flat-file data, filtered to the configured tickers.

    equity: symbol, est_timestamp (bar start, America/New_York), open, high, low, close,
        volume, transactions; regular session only, sorted, duplicates dropped.
    options: option_symbol, underlying, expiry, right ('C'/'P'), strike, est_timestamp,
        open, high, low, close, volume, transactions; one expiry only (`expiry`: the session
        date if listed, else the nearest later one), regular session only, sorted by
        est_timestamp then option_symbol.
    rejected: rows dropped, per kind (see REJECTION_KINDS).
    """

    session: Session
    equity_ticker: str
    underlying: str
    equity: pl.DataFrame
    options: pl.DataFrame
    expiry: dt.date
    expiry_is_same_day: bool
    rejected: dict[str, int]
    source_files: tuple[str, ...]
    from_cache: bool = field(default=False)


# ---- processed cache --------------------------------------------------------------------


def _cache_dir(cache_dir: Path, s: Session, parts: list[Any]) -> Path:
    digest = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:20]
    return Path(cache_dir) / "processed" / f"{s.date:%Y}" / f"{s.date:%m}" / f"{s.date:%Y-%m-%d}" / digest


def _read_cache(entry: Path, s: Session, equity_ticker: str, underlying: str) -> DayData | None:
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != CACHE_FORMAT:
            return None
        equity = pl.read_parquet(entry / "equity.parquet")
        options = pl.read_parquet(entry / "options.parquet")
    except (OSError, ValueError, pl.exceptions.PolarsError) as e:
        log.warning("flatfiles.cache_unreadable", entry=str(entry), error=type(e).__name__)
        return None
    return DayData(
        session=s,
        equity_ticker=equity_ticker,
        underlying=underlying,
        equity=equity,
        options=options,
        expiry=dt.date.fromisoformat(meta["expiry"]),
        expiry_is_same_day=bool(meta["expiry_is_same_day"]),
        rejected={k: int(v) for k, v in meta["rejected"].items()},
        source_files=tuple(meta["source_files"]),
        from_cache=True,
    )


def _write_cache(entry: Path, day: DayData) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".tmp", dir=entry.parent))
    try:
        day.equity.write_parquet(tmp / "equity.parquet", compression="zstd", statistics=False)
        day.options.write_parquet(tmp / "options.parquet", compression="zstd", statistics=False)
        meta = {
            "format": CACHE_FORMAT,
            "session_date": day.session.date.isoformat(),
            "equity_ticker": day.equity_ticker,
            "underlying": day.underlying,
            "expiry": day.expiry.isoformat(),
            "expiry_is_same_day": day.expiry_is_same_day,
            "rejected": day.rejected,
            "source_files": list(day.source_files),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, entry)
        except OSError:
            if not (entry / "meta.json").is_file():  # not a concurrent writer's entry
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_day(
    source: FlatFileSource,
    session: Session,
    *,
    equity_ticker: str = "QQQ",
    underlying: str = "QQQ",
    cache_dir: Path | str,
    use_cache: bool = True,
    on_timing: Callable[[str, float], None] | None = None,
) -> DayData:
    """The session's equity bars and one expiry of option bars, from the flat files of
    `source` (or the processed cache). Raises FlatFileError on any unusable file."""
    started = time.perf_counter()
    skey, okey = stocks_key(session.date), options_key(session.date)
    spath, opath = source.fetch(skey), source.fetch(okey)
    sstat, ostat = spath.stat(), opath.stat()
    entry = _cache_dir(
        Path(cache_dir),
        session,
        [CACHE_FORMAT, source.name, skey, sstat.st_size, sstat.st_mtime_ns, okey, ostat.st_size, ostat.st_mtime_ns,
         equity_ticker, underlying, session.open.isoformat(), session.close.isoformat()],
    )
    if use_cache:
        cached = _read_cache(entry, session, equity_ticker, underlying)
        if cached is not None:
            if on_timing:
                on_timing("cached", time.perf_counter() - started)
            return cached

    rejected = dict.fromkeys(REJECTION_KINDS, 0)
    swhere, owhere = source.where(skey), source.where(okey)
    equity_raw = read_filtered(source, skey, spath, f"{equity_ticker},")
    equity = equity_frame(equity_raw, session, equity_ticker, swhere, rejected)
    t_equity = time.perf_counter()
    options_raw = read_filtered(source, okey, opath, f"O:{underlying}")
    options, expiry = options_frame(options_raw, session, underlying, owhere, rejected)
    day = DayData(
        session=session,
        equity_ticker=equity_ticker,
        underlying=underlying,
        equity=equity,
        options=options,
        expiry=expiry,
        expiry_is_same_day=expiry == session.date,
        rejected=rejected,
        source_files=(swhere, owhere),
    )
    t_parsed = time.perf_counter()
    if use_cache:
        _write_cache(entry, day)
    log.info(
        "flatfiles.loaded",
        session_date=session.date.isoformat(),
        equity_rows=len(equity),
        option_rows=len(options),
        expiry=expiry.isoformat(),
        rejected={k: v for k, v in rejected.items() if v},
        seconds=round(time.perf_counter() - started, 3),
    )
    if on_timing:
        on_timing("equity", t_equity - started)
        on_timing("options", t_parsed - t_equity)
        on_timing("total", time.perf_counter() - started)
    return day
