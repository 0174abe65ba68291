"""Reading one flat file: the lines of the wanted ticker, parsed, out of a gzip CSV.

A file is decompressed in chunks (zlib, at most a few MB of output at a time) and only the
lines of the wanted ticker are kept: every chunk is searched for ``"\\n" + prefix``
(``"QQQ,"`` in the stocks file, ``"O:QQQ"`` in the options file) and the run of matching
lines between its first and last hit is sliced out (the files are sorted by ticker, so this
is one contiguous block; a chunk where unmatched lines sit in between falls back to a
line-by-line filter, so the result never depends on the sort order). Only those lines are
parsed, by polars. The whole file is still decompressed, so a truncated or corrupt gzip is
always detected (CRC and length are checked at the end of the stream), and the header is
validated before anything else. Speed and memory: BENCHMARKS.md, "Replay"
(`benchmarks/bench_flatfiles.py`).
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl

from alphagen_core.adapters.polygon.flatfiles.layout import COLUMNS, FlatFileError
from alphagen_core.adapters.polygon.flatfiles.sources import FlatFileSource

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


def read_filtered(source: FlatFileSource, key: str, path: Path, prefix: str) -> pl.DataFrame:
    where = source.where(key)
    try:
        header, body = _scan(path, where, prefix.encode())
        if not body:
            raise FlatFileError(where, f"no rows for {prefix.rstrip(',')}")
        return _parse(header, body, where)
    except FlatFileError:
        source.discard(key)  # a corrupt download is fetched again next time
        raise
