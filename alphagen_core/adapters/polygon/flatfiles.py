"""Polygon (Massive) flat files: minute aggregates of one trading day, from S3 or a folder.

Two files per day, in the bucket's key layout (FACTS 'Polygon / Massive'):

    us_stocks_sip/minute_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz    every stock ticker
    us_options_opra/minute_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz  every option contract (2M+ rows)

header ``ticker,volume,open,close,high,low,window_start,transactions``, ``window_start`` the
bar start in Unix nanoseconds, no VWAP column.

Reading. A file is decompressed in chunks (zlib, at most a few MB of output at a time) and
only the lines of the wanted ticker are kept: every chunk is searched for ``"\\n" + prefix``
(``"QQQ,"`` in the stocks file, ``"O:QQQ"`` in the options file) and the run of matching
lines between its first and last hit is sliced out (the files are sorted by ticker, so this
is one contiguous block; a chunk where unmatched lines sit in between falls back to a
line-by-line filter, so the result never depends on the sort order). Only those lines are
parsed, by polars. The whole file is still decompressed, so a truncated or corrupt gzip is
always detected (CRC and length are checked at the end of the stream), and the header is
validated before anything else. Measured with `benchmarks/bench_flatfiles.py` on a 2,060,347-row
options day (140 MB CSV, 22.6 MB gzip), 2 cores, medians of 3: `gzip -dc > /dev/null` 0.61 s;
load_day (both files, no cache) 0.42 s, 4.9M rows/s, peak RSS 114 MB (93 MB of it imports);
polars reading the whole file and filtering 0.75 s at 309 MB; a cached day 6-11 ms. Of the
0.42 s, zlib's inflate is ~0.27 s (python-isal would halve that) and the prefix search ~0.08 s.

Errors. Every problem raises `FlatFileError`, whose message starts with the file (local path,
or ``s3://bucket/key``) and says what is wrong. Secrets never appear in messages or logs.

Caches.
- `S3FlatFiles` downloads each key once into ``cache_dir/<key>`` (temporary file + atomic
  rename, size checked against the object's length) and reuses it afterwards; a download
  that turns out to be corrupt is deleted so that the next attempt fetches it again.
- `load_day` writes the filtered day as parquet under ``cache_dir/processed/YYYY/MM/DATE/``,
  keyed by both files' keys, sizes and mtimes, the tickers and the session, and reads it on
  later loads. An entry is a directory renamed into place only after everything in it is
  written, and only after both files were read without error.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import polars as pl
import structlog

from alphagen_core.domain.calendar import Session
from alphagen_core.operations.redaction import redact, register

log = structlog.get_logger(__name__)

NY_TZ = "America/New_York"
STOCKS_PREFIX = "us_stocks_sip/minute_aggs_v1"
OPTIONS_PREFIX = "us_options_opra/minute_aggs_v1"
COLUMNS = ("ticker", "volume", "open", "close", "high", "low", "window_start", "transactions")
DEFAULT_ENDPOINT = "https://files.massive.com"
DEFAULT_BUCKET = "flatfiles"

# Bump when the processed-cache content or layout changes: old entries are then ignored.
CACHE_FORMAT = 1

_READ_CHUNK = 1 << 18  # compressed bytes per read; 64-256 KB measured fastest
_MAX_OUT = 1 << 22  # decompressed bytes per zlib call: bounds memory even for a gzip bomb
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_LINE = 1 << 20  # a flat-file line is ~60 bytes; anything this long is not one

_RAW_SCHEMA: dict[str, Any] = {
    "ticker": pl.String,
    "volume": pl.Float64,
    "open": pl.Float64,
    "close": pl.Float64,
    "high": pl.Float64,
    "low": pl.Float64,
    "window_start": pl.Int64,
    "transactions": pl.Int64,
}
_REQUIRED_NOT_NULL = ("ticker", "volume", "open", "close", "high", "low", "window_start")

REJECTION_KINDS = (
    "equity_invalid",
    "equity_out_of_session",
    "equity_duplicate",
    "options_bad_ticker",
    "options_invalid",
    "options_out_of_session",
    "options_duplicate",
)


def stocks_key(d: dt.date) -> str:
    return f"{STOCKS_PREFIX}/{d:%Y}/{d:%m}/{d:%Y-%m-%d}.csv.gz"


def options_key(d: dt.date) -> str:
    return f"{OPTIONS_PREFIX}/{d:%Y}/{d:%m}/{d:%Y-%m-%d}.csv.gz"


class FlatFileError(RuntimeError):
    """A flat file that cannot be used. `file` names it (path or s3:// URL); `problem` says
    what is wrong. Never carries a credential."""

    def __init__(self, file: str, problem: str) -> None:
        super().__init__(f"{file}: {problem}")
        self.file = file
        self.problem = problem


# ---- sources ----------------------------------------------------------------------------


class FlatFileSource(Protocol):
    name: str

    def fetch(self, key: str) -> Path:
        """A local path holding the file of `key`; FlatFileError if it cannot be had."""
        ...

    def where(self, key: str) -> str:
        """How to name the file of `key` in messages: a path or an s3:// URL."""
        ...

    def discard(self, key: str) -> None:
        """Forget a local copy of `key` found to be corrupt (a no-op for a folder)."""
        ...


class LocalFlatFiles:
    """A folder in the bucket's key layout."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.name = f"local:{self.root}"

    def where(self, key: str) -> str:
        return str(self.root / key)

    def fetch(self, key: str) -> Path:
        path = self.root / key
        if not path.is_file():
            raise FlatFileError(str(path), "missing file" + ("" if self.root.is_dir() else f" (folder {self.root} does not exist)"))
        return path

    def discard(self, key: str) -> None:
        return None

    def __repr__(self) -> str:
        return f"LocalFlatFiles({str(self.root)!r})"


def _secret(value: Any) -> str:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value or "")


class S3FlatFiles:
    """The flat-file bucket over S3 (boto3), each key downloaded once into `cache_dir`."""

    def __init__(
        self,
        endpoint_url: str,
        bucket: str,
        access_key: Any,
        secret_key: Any,
        cache_dir: Path | str,
        *,
        timeout_seconds: float = 60.0,
        max_attempts: int = 5,
    ) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")
        self.bucket = bucket
        self.cache_dir = Path(cache_dir)
        self.name = f"s3://{bucket} at {self.endpoint_url}"
        self._access_key = _secret(access_key)
        self._secret_key = _secret(secret_key)
        register(self._access_key, self._secret_key)  # masked in every log line and error text
        self._timeout = timeout_seconds
        self._max_attempts = max_attempts
        self._client: Any = None

    def __repr__(self) -> str:  # never the keys
        return f"S3FlatFiles(endpoint_url={self.endpoint_url!r}, bucket={self.bucket!r}, cache_dir={str(self.cache_dir)!r})"

    def where(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def cached_path(self, key: str) -> Path:
        return self.cache_dir / key

    def _s3(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self._access_key,
                aws_secret_access_key=self._secret_key,
                region_name="us-east-1",
                config=Config(
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                    connect_timeout=self._timeout,
                    read_timeout=self._timeout,
                    retries={"max_attempts": self._max_attempts, "mode": "standard"},
                ),
            )
        return self._client

    def fetch(self, key: str) -> Path:
        dest = self.cached_path(key)
        if dest.is_file():
            return dest
        where = self.where(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        started = time.perf_counter()
        try:
            with os.fdopen(fd, "wb") as out:
                size, expected = self._download(key, where, out)
            if expected is not None and size != expected:
                raise FlatFileError(where, f"incomplete download: {size} of {expected} bytes")
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        log.info("flatfiles.downloaded", file=where, bytes=size, seconds=round(time.perf_counter() - started, 3))
        return dest

    def _download(self, key: str, where: str, out: io.BufferedWriter) -> tuple[int, int | None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self._s3().get_object(Bucket=self.bucket, Key=key)
            body = resp["Body"]
            size = 0
            for chunk in body.iter_chunks(1 << 20):
                out.write(chunk)
                size += len(chunk)
            return size, resp.get("ContentLength")
        except ClientError as e:
            err = e.response.get("Error", {})
            code = str(err.get("Code", "?"))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                problem = "missing file (no such key in the bucket)"
            elif code in ("NoSuchBucket",):
                problem = f"missing bucket {self.bucket!r}"
            elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403") or status == 403:
                problem = f"access denied ({code}); check POLYGON_S3_ACCESS_KEY and POLYGON_S3_SECRET_KEY"
            else:
                problem = f"download failed: {code} (HTTP {status}): {redact(str(err.get('Message', '')))}"
            raise FlatFileError(where, problem) from None
        except BotoCoreError as e:
            raise FlatFileError(where, f"download failed: {type(e).__name__}: {redact(str(e))}") from None
        except OSError as e:  # a dropped connection mid-body, a full disk
            raise FlatFileError(where, f"download failed: {type(e).__name__}: {redact(str(e))}") from None

    def discard(self, key: str) -> None:
        self.cached_path(key).unlink(missing_ok=True)


def flatfile_source(
    spec: str,
    *,
    cache_dir: Path | str,
    endpoint_url: str = DEFAULT_ENDPOINT,
    bucket: str = DEFAULT_BUCKET,
    access_key: Any = "",
    secret_key: Any = "",
) -> FlatFileSource:
    """`spec` is a folder path (bucket key layout) or the literal "s3"."""
    if spec.strip().lower() == "s3":
        if not _secret(access_key) or not _secret(secret_key):
            raise ValueError("the s3 flat-file source needs POLYGON_S3_ACCESS_KEY and POLYGON_S3_SECRET_KEY")
        return S3FlatFiles(endpoint_url, bucket, access_key, secret_key, Path(cache_dir))
    return LocalFlatFiles(Path(spec))


# ---- streaming filter -------------------------------------------------------------------


def _inflate(path: Path, where: str) -> Iterator[bytes]:
    """Yield the decompressed bytes of a gzip file (all members) in bounded pieces, raising
    FlatFileError on anything that is not a complete, valid gzip stream."""
    d = zlib.decompressobj(31)
    total_in = 0
    produced = 0
    magic = b""
    try:
        with open(path, "rb", buffering=0) as f:
            while raw := f.read(_READ_CHUNK):
                if total_in == 0:
                    magic = raw[:2]
                total_in += len(raw)
                while raw:
                    if d.eof:  # another gzip member, or trailing bytes
                        if raw[:2] == _GZIP_MAGIC or raw == _GZIP_MAGIC[:1]:
                            d = zlib.decompressobj(31)
                        elif raw.strip(b"\x00") == b"":
                            break  # zero padding after the stream, as gzip(1) accepts
                        else:
                            raise FlatFileError(where, "corrupt gzip: unexpected bytes after the end of the stream")
                    out = d.decompress(raw, _MAX_OUT)
                    raw = d.unused_data if d.eof else d.unconsumed_tail
                    if out:
                        produced += len(out)
                        yield out
    except zlib.error as e:
        what = "not a gzip file" if magic != _GZIP_MAGIC else f"corrupt gzip after {produced} decompressed bytes"
        raise FlatFileError(where, f"{what} ({e})") from None
    except OSError as e:
        raise FlatFileError(where, f"cannot read ({type(e).__name__}: {e.strerror or e})") from None
    if total_in == 0:
        raise FlatFileError(where, "empty file (0 bytes)")
    if not d.eof:
        raise FlatFileError(
            where, f"truncated gzip: the stream ends early ({total_in} bytes read, no end-of-stream marker)"
        )


def _scan(path: Path, where: str, prefix: bytes) -> tuple[bytes, bytes]:
    """(header line, matching lines) of a gzip CSV: every line starting with `prefix`, each
    preceded by a newline. The header is validated as soon as it is complete."""
    pat = b"\n" + prefix
    parts: list[bytes] = []
    tail = b""  # the unfinished last line of what was decompressed so far
    header: bytes | None = None

    def keep(region: bytes) -> None:
        # `region` starts at a "\n"+prefix and ends before a newline. Sorted files give a run
        # of matching lines; anything else is filtered line by line.
        if region.count(b"\n") == region.count(pat):
            parts.append(region)
        else:
            lines = [ln for ln in region.split(b"\n") if ln.startswith(prefix)]
            if lines:
                parts.append(b"\n" + b"\n".join(lines))

    for data in _inflate(path, where):
        nl = data.find(b"\n")
        if nl < 0:
            tail += data
            if header is None and len(tail) > 4096:
                raise FlatFileError(where, "not a CSV flat file: no header line in the first 4 KB")
            if len(tail) > _MAX_LINE:
                raise FlatFileError(where, f"not a CSV flat file: a line longer than {_MAX_LINE} bytes")
            continue
        first = tail + data[:nl]  # a line that was split across pieces
        if header is None:
            header = first
            _check_header(header, where)
        elif first.startswith(prefix):
            parts.append(b"\n" + first)
        last_nl = data.rfind(b"\n")
        i = data.find(pat, nl, last_nl)
        if i >= 0:
            j = data.rfind(pat, i, last_nl)
            e = data.find(b"\n", j + 1, last_nl + 1)
            keep(data[i:e])
        tail = data[last_nl + 1 :]
    if header is None:
        if not tail:
            raise FlatFileError(where, "empty CSV: no header line")
        header = tail
        _check_header(header, where)
    elif tail.startswith(prefix):
        parts.append(b"\n" + tail)
    return header, b"".join(parts)


def _header_columns(header: bytes) -> list[str]:
    return [c.strip().strip('"') for c in header.decode("utf-8", "replace").rstrip("\r").split(",")]


def _check_header(header: bytes, where: str) -> None:
    cols = _header_columns(header)
    missing = [c for c in COLUMNS if c not in cols]
    if missing or len(set(cols)) != len(cols):
        shown = ",".join(cols)
        if len(shown) > 200:
            shown = shown[:200] + "..."
        raise FlatFileError(where, f"wrong columns: missing {missing or 'none'} (expected {','.join(COLUMNS)}; found {shown!r})")


def _parse(header: bytes, body: bytes, where: str) -> pl.DataFrame:
    """Parse the kept lines with the header's column order; FlatFileError on bad values."""
    cols = _header_columns(header)
    schema = {c: _RAW_SCHEMA.get(c, pl.String) for c in cols}
    try:
        df = pl.read_csv(io.BytesIO(header + body), schema=schema, has_header=True, raise_if_empty=False)
    except (pl.exceptions.PolarsError, ValueError) as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FlatFileError(where, f"unparsable values: {message[:300]}") from None
    df = df.select(COLUMNS)
    nulls = {c: n for c in _REQUIRED_NOT_NULL if (n := df[c].null_count())}
    if nulls:
        raise FlatFileError(where, f"unparsable values: empty fields {nulls}")
    return df


# ---- the day ----------------------------------------------------------------------------


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


def _equity_frame(raw: pl.DataFrame, s: Session, ticker: str, where: str, rejected: dict[str, int]) -> pl.DataFrame:
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


def _options_frame(
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


def _read_filtered(source: FlatFileSource, key: str, path: Path, prefix: str) -> pl.DataFrame:
    where = source.where(key)
    try:
        header, body = _scan(path, where, prefix.encode())
        if not body:
            raise FlatFileError(where, f"no rows for {prefix.rstrip(',')}")
        return _parse(header, body, where)
    except FlatFileError:
        source.discard(key)  # a corrupt download is fetched again next time
        raise


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
    equity_raw = _read_filtered(source, skey, spath, f"{equity_ticker},")
    equity = _equity_frame(equity_raw, session, equity_ticker, swhere, rejected)
    t_equity = time.perf_counter()
    options_raw = _read_filtered(source, okey, opath, f"O:{underlying}")
    options, expiry = _options_frame(options_raw, session, underlying, owhere, rejected)
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
