"""Reading flat files: local folder and S3 (a real moto server on loopback), the streaming
filter, every kind of bad file, and the caches. Real files throughout, no mocks."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import boto3
import polars as pl
import pytest
from moto.server import ThreadedMotoServer

from alphagen_core.adapters.polygon.flatfiles import (
    REJECTION_KINDS,
    DayData,
    FlatFileError,
    LocalFlatFiles,
    S3FlatFiles,
    flatfile_source,
    load_day,
    options_key,
    stocks_key,
)
from alphagen_core.domain.calendar import next_trading_day, session
from alphagen_core.sim import sample

DAYS = (dt.date(2024, 2, 12), dt.date(2024, 2, 13))
EARLY = dt.date(2024, 11, 29)
NY = "America/New_York"
ACCESS_KEY = "AKIATESTACCESSKEY123"
SECRET_KEY = "test-secret-key-must-never-leak-42"


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("flatfiles")
    sample.generate(DAYS[0], DAYS[-1], out)
    sample.generate(EARLY, EARLY, out)
    return out


@pytest.fixture
def copy(folder: Path, tmp_path: Path) -> Path:
    """A private copy of the sample folder, free to damage."""
    dest = tmp_path / "copy"
    shutil.copytree(folder, dest)
    return dest


def _cache_entries(cache: Path) -> list[Path]:
    return sorted((cache / "processed").rglob("meta.json")) if (cache / "processed").exists() else []


def _raw_csv(path: Path) -> pl.DataFrame:
    return pl.read_csv(path, schema_overrides={"volume": pl.Float64})


def _write_csv_gz(frame: pl.DataFrame, path: Path) -> None:
    path.write_bytes(_gz(frame.write_csv().encode()))


def _gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1)


def _assert_same_day(a: DayData, b: DayData) -> None:
    assert a.equity.equals(b.equity)
    assert a.options.equals(b.options)
    assert a.equity.schema == b.equity.schema and a.options.schema == b.options.schema
    assert (a.expiry, a.expiry_is_same_day, a.rejected) == (b.expiry, b.expiry_is_same_day, b.rejected)


# ---- the local folder -------------------------------------------------------------------


@pytest.mark.unit
def test_load_day_local_regular_session_ny_timestamps(folder: Path, tmp_path: Path) -> None:
    s = session(DAYS[0])
    day = load_day(LocalFlatFiles(folder), s, cache_dir=tmp_path)
    eq = day.equity
    assert eq.columns == ["symbol", "est_timestamp", "open", "high", "low", "close", "volume", "transactions"]
    assert eq.schema["est_timestamp"] == pl.Datetime("us", NY)
    assert eq.schema["volume"] == pl.Float64 and eq.schema["transactions"] == pl.Int64
    assert len(eq) == 390 and eq["symbol"].unique().to_list() == ["QQQ"]
    assert eq["est_timestamp"][0] == s.open and eq["est_timestamp"][-1] == s.close - dt.timedelta(minutes=1)
    assert eq["est_timestamp"].is_sorted() and eq["est_timestamp"].is_unique().all()
    # the pre- and post-market bars of the file were dropped and counted
    assert day.rejected["equity_out_of_session"] > 100
    assert set(day.rejected) == set(REJECTION_KINDS)

    opt = day.options
    assert opt.columns == [
        "option_symbol", "underlying", "expiry", "right", "strike", "est_timestamp",
        "open", "high", "low", "close", "volume", "transactions",
    ]
    assert opt.schema["expiry"] == pl.Date and opt.schema["strike"] == pl.Float64
    assert opt.schema["est_timestamp"] == pl.Datetime("us", NY)
    assert opt["underlying"].unique().to_list() == ["QQQ"]
    assert opt["option_symbol"].str.starts_with(f"O:QQQ{s.date:%y%m%d}").all()  # no QQQM, no next-day expiry
    assert opt["expiry"].unique().to_list() == [s.date]
    assert day.expiry == s.date and day.expiry_is_same_day
    assert set(opt["right"].unique()) == {"C", "P"}
    assert opt["est_timestamp"].min() == s.open and opt["est_timestamp"].max() < s.close
    assert opt.equals(opt.sort("est_timestamp", "option_symbol"))
    assert day.source_files == (str(folder / stocks_key(s.date)), str(folder / options_key(s.date)))
    # strike and right parsed from the ticker
    row = opt.row(0, named=True)
    assert row["option_symbol"] == sample.option_ticker("QQQ", s.date, row["right"], row["strike"])


@pytest.mark.unit
def test_streaming_filter_matches_a_whole_file_read(folder: Path, tmp_path: Path) -> None:
    """The chunked filter keeps exactly the rows a plain read of the whole file would."""
    s = session(DAYS[1])
    day = load_day(LocalFlatFiles(folder), s, cache_dir=tmp_path, use_cache=False)
    whole = _raw_csv(folder / options_key(s.date)).filter(pl.col("ticker").str.starts_with(f"O:QQQ{s.date:%y%m%d}"))
    assert len(whole) == len(day.options)
    assert whole.sort("window_start", "ticker")["close"].equals(day.options["close"])
    eq = _raw_csv(folder / stocks_key(s.date)).filter(pl.col("ticker") == "QQQ")
    assert len(eq) == len(day.equity) + day.rejected["equity_out_of_session"]


@pytest.mark.unit
def test_unsorted_file_gives_the_same_day(folder: Path, copy: Path, tmp_path: Path) -> None:
    s = session(DAYS[0])
    expected = load_day(LocalFlatFiles(folder), s, cache_dir=tmp_path / "a")
    for key in (stocks_key(s.date), options_key(s.date)):
        raw = _raw_csv(copy / key).with_columns(pl.col("volume").cast(pl.Int64))
        _write_csv_gz(raw.sample(fraction=1.0, shuffle=True, seed=3), copy / key)
    got = load_day(LocalFlatFiles(copy), s, cache_dir=tmp_path / "b")
    _assert_same_day(expected, got)


@pytest.mark.unit
def test_multi_member_gzip_reads_like_one_stream(folder: Path, copy: Path, tmp_path: Path) -> None:
    """gzip allows several members back to back (what `cat a.gz b.gz` makes); cut them
    mid-line and inside the QQQ block, and add the zero padding some writers leave."""
    s = session(DAYS[0])
    expected = load_day(LocalFlatFiles(folder), s, cache_dir=tmp_path / "a")
    for key in (stocks_key(s.date), options_key(s.date)):
        text = gzip.decompress((folder / key).read_bytes())
        at = text.find(b"\nQQQ,") + 1000 if key.startswith("us_stocks") else text.find(b"\nO:QQQ") + 50_001
        cuts = [0, 7, at, at + 3, len(text) * 3 // 4, len(text)]
        members = b"".join(_gz(text[a:b]) for a, b in zip(cuts, cuts[1:], strict=False))
        (copy / key).write_bytes(members + b"\x00" * 16)
    got = load_day(LocalFlatFiles(copy), s, cache_dir=tmp_path / "b")
    _assert_same_day(expected, got)


@pytest.mark.unit
def test_trailing_garbage_after_the_gzip_stream_is_an_error(copy: Path, tmp_path: Path) -> None:
    s = session(DAYS[0])
    path = copy / options_key(s.date)
    path.write_bytes(path.read_bytes() + b"this is not gzip")
    with pytest.raises(FlatFileError, match="unexpected bytes after the end of the stream") as err:
        load_day(LocalFlatFiles(copy), s, cache_dir=tmp_path)
    assert err.value.file == str(path)


@pytest.mark.unit
def test_early_close_day(folder: Path, tmp_path: Path) -> None:
    s = session(EARLY)
    day = load_day(LocalFlatFiles(folder), s, cache_dir=tmp_path)
    assert len(day.equity) == 210
    assert day.equity["est_timestamp"].max().time() == dt.time(12, 59)
    assert day.options["est_timestamp"].max().time() == dt.time(12, 59)


@pytest.mark.unit
def test_no_same_day_expiry_takes_the_next_one(folder: Path, copy: Path, tmp_path: Path) -> None:
    s = session(DAYS[0])
    key = options_key(s.date)
    raw = _raw_csv(copy / key).with_columns(pl.col("volume").cast(pl.Int64))
    _write_csv_gz(raw.filter(~pl.col("ticker").str.starts_with(f"O:QQQ{s.date:%y%m%d}")), copy / key)
    day = load_day(LocalFlatFiles(copy), s, cache_dir=tmp_path)
    nxt = next_trading_day(s.date)
    assert day.expiry == nxt and not day.expiry_is_same_day
    assert day.options["expiry"].unique().to_list() == [nxt]
    # the next-day contracts trade until 16:15: those bars are outside the session
    assert day.rejected["options_out_of_session"] > 0
    assert day.options["est_timestamp"].max() < s.close


@pytest.mark.unit
def test_duplicates_are_dropped_and_counted(folder: Path, copy: Path, tmp_path: Path) -> None:
    s = session(DAYS[0])
    clean = load_day(LocalFlatFiles(folder), s, cache_dir=tmp_path / "a")
    skey, okey = stocks_key(s.date), options_key(s.date)
    st = _raw_csv(copy / skey).with_columns(pl.col("volume").cast(pl.Int64))
    open_ns = int(s.open.timestamp()) * 10**9
    dup_eq = st.filter((pl.col("ticker") == "QQQ") & (pl.col("window_start") >= open_ns)).head(7)
    # a duplicate with different values: the first one in the file wins
    changed = dup_eq.head(1).with_columns(pl.col("close") + 1.0)
    _write_csv_gz(pl.concat([st, dup_eq, changed]).sort("ticker", "window_start", maintain_order=True), copy / skey)
    op = _raw_csv(copy / okey).with_columns(pl.col("volume").cast(pl.Int64))
    dup_op = op.filter(pl.col("ticker").str.starts_with(f"O:QQQ{s.date:%y%m%d}")).sample(n=11, seed=1)
    _write_csv_gz(pl.concat([op, dup_op]).sort("ticker", "window_start", maintain_order=True), copy / okey)
    day = load_day(LocalFlatFiles(copy), s, cache_dir=tmp_path / "b")
    assert day.rejected["equity_duplicate"] == 8
    assert day.rejected["options_duplicate"] == 11
    assert day.equity.equals(clean.equity) and day.options.equals(clean.options)


# ---- bad files --------------------------------------------------------------------------


def _damage(kind: str, path: Path) -> None:
    data = path.read_bytes()
    if kind == "missing":
        path.unlink()
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "trailer_cut":
        path.write_bytes(data[:-4])  # only the length field of the gzip trailer is lost
    elif kind == "garbage":
        path.write_bytes(os.urandom(len(data) // 3))
    elif kind == "not_gzip":
        path.write_bytes(gzip.decompress(data))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "flipped":  # a byte flipped inside the deflate stream: CRC or format error
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :])
    elif kind == "wrong_header":
        text = gzip.decompress(data).decode()
        path.write_bytes(_gz(text.replace("window_start", "timestamp", 1).encode()))
    elif kind == "no_header":
        text = gzip.decompress(data).decode()
        path.write_bytes(_gz(text.split("\n", 1)[1].encode()))
    elif kind == "unparsable":
        lines = gzip.decompress(data).decode().split("\n")
        i = next(i for i, ln in enumerate(lines) if ln.startswith(("QQQ,", "O:QQQ")))
        fields = lines[i + 5].split(",")
        fields[1] = "12x4"
        lines[i + 5] = ",".join(fields)
        path.write_bytes(_gz("\n".join(lines).encode()))
    elif kind == "empty_field":
        lines = gzip.decompress(data).decode().split("\n")
        i = next(i for i, ln in enumerate(lines) if ln.startswith(("QQQ,", "O:QQQ")))
        fields = lines[i + 5].split(",")
        fields[3] = ""
        lines[i + 5] = ",".join(fields)
        path.write_bytes(_gz("\n".join(lines).encode()))
    else:
        raise AssertionError(kind)


PROBLEMS = {
    "missing": "missing file",
    "truncated": "truncated gzip",
    "trailer_cut": "truncated gzip",
    "garbage": "not a gzip file",
    "not_gzip": "not a gzip file",
    "empty": "empty file",
    "flipped": "corrupt gzip",
    "wrong_header": "wrong columns",
    "no_header": "wrong columns",
    "unparsable": "unparsable values",
    "empty_field": "unparsable values",
}


@pytest.mark.unit
@pytest.mark.parametrize("which", ["stocks", "options"])
@pytest.mark.parametrize("kind", sorted(PROBLEMS))
def test_bad_file_raises_naming_the_file_and_writes_no_cache(copy: Path, tmp_path: Path, kind: str, which: str) -> None:
    s = session(DAYS[0])
    key = stocks_key(s.date) if which == "stocks" else options_key(s.date)
    _damage(kind, copy / key)
    cache = tmp_path / "cache"
    with pytest.raises(FlatFileError) as err:
        load_day(LocalFlatFiles(copy), s, cache_dir=cache)
    assert err.value.file == str(copy / key)
    assert str(copy / key) in str(err.value)
    assert PROBLEMS[kind] in err.value.problem, str(err.value)
    assert _cache_entries(cache) == []
    assert not list(cache.rglob("*.parquet"))


@pytest.mark.unit
def test_no_rows_for_the_ticker(folder: Path, tmp_path: Path) -> None:
    s = session(DAYS[0])
    with pytest.raises(FlatFileError, match="no rows for ZZZZ") as err:
        load_day(LocalFlatFiles(folder), s, equity_ticker="ZZZZ", cache_dir=tmp_path)
    assert err.value.file == str(folder / stocks_key(s.date))
    with pytest.raises(FlatFileError, match="no rows for O:ZZZ") as err:
        load_day(LocalFlatFiles(folder), s, underlying="ZZZ", cache_dir=tmp_path)
    assert err.value.file == str(folder / options_key(s.date))
    assert _cache_entries(tmp_path) == []


@pytest.mark.unit
def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(FlatFileError, match="does not exist"):
        load_day(LocalFlatFiles(tmp_path / "nope"), session(DAYS[0]), cache_dir=tmp_path)


# ---- the processed cache ----------------------------------------------------------------


@pytest.mark.unit
def test_cached_second_load_equals_the_first(folder: Path, copy: Path, tmp_path: Path) -> None:
    s = session(DAYS[1])
    first = load_day(LocalFlatFiles(copy), s, cache_dir=tmp_path)
    assert not first.from_cache
    assert len(_cache_entries(tmp_path)) == 1
    second = load_day(LocalFlatFiles(copy), s, cache_dir=tmp_path)
    assert second.from_cache
    _assert_same_day(first, second)
    assert second.source_files == first.source_files
    # a different ticker set is a different entry
    other = load_day(LocalFlatFiles(copy), s, equity_ticker="SPY", underlying="SPY", cache_dir=tmp_path)
    assert not other.from_cache and other.equity["symbol"].unique().to_list() == ["SPY"]
    assert len(_cache_entries(tmp_path)) == 2
    # a replaced file is a different entry: the cache never serves stale data
    key = options_key(s.date)
    raw = _raw_csv(copy / key).with_columns(pl.col("volume").cast(pl.Int64))
    qqq0 = pl.col("ticker").str.starts_with(f"O:QQQ{s.date:%y%m%d}")
    _write_csv_gz(raw.with_columns(pl.when(qqq0).then(pl.col("close") + 0.01).otherwise(pl.col("close")).alias("close")), copy / key)
    changed = load_day(LocalFlatFiles(copy), s, cache_dir=tmp_path)
    assert not changed.from_cache
    assert (changed.options["close"] - first.options["close"]).abs().min() > 0.009


@pytest.mark.unit
def test_cache_writes_are_never_partial(folder: Path, tmp_path: Path) -> None:
    """Only whole entries (meta.json written last, directory renamed in) exist; no temp
    directories are left behind."""
    s = session(DAYS[0])
    load_day(LocalFlatFiles(folder), s, cache_dir=tmp_path)
    entries = _cache_entries(tmp_path)
    assert len(entries) == 1
    entry = entries[0].parent
    assert sorted(p.name for p in entry.iterdir()) == ["equity.parquet", "meta.json", "options.parquet"]
    assert not [p for p in (tmp_path / "processed").rglob("*.tmp")]


# ---- S3, over a real moto server --------------------------------------------------------


@pytest.fixture
def moto_s3(folder: Path) -> Iterator[tuple[ThreadedMotoServer, str]]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
    )
    s3.create_bucket(Bucket="flatfiles")
    for d in DAYS:
        for key in (stocks_key(d), options_key(d)):
            s3.upload_file(str(folder / key), "flatfiles", key)
    try:
        yield server, endpoint
    finally:
        server.stop()


@pytest.mark.integration
def test_s3_gives_the_same_days_as_the_folder_and_downloads_once(folder: Path, moto_s3, tmp_path: Path) -> None:
    server, endpoint = moto_s3
    raw_cache = tmp_path / "raw"
    src = S3FlatFiles(endpoint, "flatfiles", ACCESS_KEY, SECRET_KEY, raw_cache)
    for d in DAYS:
        s = session(d)
        local = load_day(LocalFlatFiles(folder), s, cache_dir=tmp_path / "local")
        remote = load_day(src, s, cache_dir=tmp_path / "processed")
        _assert_same_day(local, remote)
        assert remote.source_files == (f"s3://flatfiles/{stocks_key(d)}", f"s3://flatfiles/{options_key(d)}")
        for key in (stocks_key(d), options_key(d)):
            assert (raw_cache / key).read_bytes() == (folder / key).read_bytes()
    assert not [p for p in raw_cache.rglob("*") if p.name.endswith(".part")]

    server.stop()  # from here on, nothing can come from the server
    again = S3FlatFiles(endpoint, "flatfiles", ACCESS_KEY, SECRET_KEY, raw_cache, max_attempts=1, timeout_seconds=2)
    s = session(DAYS[0])
    cached = load_day(again, s, cache_dir=tmp_path / "processed")
    assert cached.from_cache
    reparsed = load_day(again, s, cache_dir=tmp_path / "processed", use_cache=False)  # raw files reused
    _assert_same_day(cached, reparsed)
    # a day that was never downloaded now fails, naming the file, without any secret
    with pytest.raises(FlatFileError) as err:
        load_day(again, session(EARLY), cache_dir=tmp_path / "processed")
    assert err.value.file == f"s3://flatfiles/{stocks_key(EARLY)}"
    assert "download failed" in err.value.problem
    assert SECRET_KEY not in str(err.value) and ACCESS_KEY not in str(err.value)


@pytest.mark.integration
def test_s3_missing_key_and_corrupt_object(folder: Path, moto_s3, tmp_path: Path) -> None:
    _, endpoint = moto_s3
    src = S3FlatFiles(endpoint, "flatfiles", ACCESS_KEY, SECRET_KEY, tmp_path / "raw", max_attempts=1)
    with pytest.raises(FlatFileError) as err:
        load_day(src, session(EARLY), cache_dir=tmp_path)  # never uploaded
    assert err.value.file == f"s3://flatfiles/{stocks_key(EARLY)}"
    assert "missing file" in err.value.problem
    assert SECRET_KEY not in str(err.value) and ACCESS_KEY not in str(err.value)
    assert SECRET_KEY not in repr(src) and ACCESS_KEY not in repr(src)

    # a truncated object: the error names it, and neither the download nor a processed
    # entry is kept, so a fixed object is fetched again next time
    d = DAYS[0]
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="us-east-1"
    )
    good = (folder / options_key(d)).read_bytes()
    s3.put_object(Bucket="flatfiles", Key=options_key(d), Body=good[: len(good) // 2])
    with pytest.raises(FlatFileError, match="truncated gzip") as err:
        load_day(src, session(d), cache_dir=tmp_path)
    assert err.value.file == f"s3://flatfiles/{options_key(d)}"
    assert not (tmp_path / "raw" / options_key(d)).exists()
    assert _cache_entries(tmp_path) == []
    s3.put_object(Bucket="flatfiles", Key=options_key(d), Body=good)
    assert load_day(src, session(d), cache_dir=tmp_path).options.height > 0


@pytest.mark.unit
def test_flatfile_source_factory(folder: Path, tmp_path: Path) -> None:
    local = flatfile_source(str(folder), cache_dir=tmp_path)
    assert isinstance(local, LocalFlatFiles) and local.root == folder
    s3 = flatfile_source(
        "s3", cache_dir=tmp_path, endpoint_url="http://127.0.0.1:9", bucket="flatfiles", access_key=ACCESS_KEY, secret_key=SECRET_KEY
    )
    assert isinstance(s3, S3FlatFiles) and s3.cached_path("k/x.csv.gz") == tmp_path / "k/x.csv.gz"
    assert SECRET_KEY not in repr(s3) and SECRET_KEY not in s3.name
    with pytest.raises(ValueError, match="POLYGON_S3_ACCESS_KEY") as err:
        flatfile_source("s3", cache_dir=tmp_path, access_key="", secret_key=SECRET_KEY)
    assert SECRET_KEY not in str(err.value)
