"""Benchmark: ingesting one full-size flat-file day (2M+ option rows) with `load_day`.

    .venv/bin/python benchmarks/bench_flatfiles.py [--runs 3] [--date 2024-02-14] [--keep DIR]

Generates a full-size sample day into a temporary folder, then prints (median of --runs):
- the options file's size (gzip and decompressed) and row count;
- `gzip -dc FILE > /dev/null` seconds, the yardstick;
- our ingest (load_day with the processed cache off: both files read, filtered to QQQ,
  parsed) in seconds, rows/s and MB/s of the options file, each run in a fresh subprocess
  so that its own peak RSS (VmHWM) can be reported, next to that process's peak after
  imports;
- for reference, polars reading the whole options file and filtering it (what the
  streaming reader avoids: the whole decompressed file in memory);
- a cached load (processed parquet cache) in a fresh process (cold) and again in the same
  process (warm).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_CHILD = r"""
import datetime as dt, json, sys, time
from pathlib import Path

def hwm_mb():  # this process's own peak RSS (VmHWM; ru_maxrss would carry the parent's over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

from alphagen_core.adapters.polygon.flatfiles import LocalFlatFiles, load_day
from alphagen_core.domain.calendar import session
folder, cache, day, use_cache, repeat = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", int(sys.argv[5])
s = session(dt.date.fromisoformat(day))
base = hwm_mb()
times = []
for _ in range(repeat):
    t = time.perf_counter()
    d = load_day(LocalFlatFiles(folder), s, cache_dir=Path(cache), use_cache=use_cache)
    times.append(time.perf_counter() - t)
peak = hwm_mb()
print(json.dumps({"times": times, "peak_mb": peak, "base_mb": base, "equity": len(d.equity),
                  "options": len(d.options), "from_cache": d.from_cache}))
"""


_POLARS_WHOLE = r"""
import json, sys, time
import polars as pl

def hwm_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
t = time.perf_counter()
df = pl.read_csv(sys.argv[1]).filter(pl.col("ticker").str.starts_with("O:QQQ"))
print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": hwm_mb(), "rows": len(df)}))
"""


def _polars_whole(path: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _POLARS_WHOLE, str(path)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child(folder: Path, cache: Path, day: dt.date, *, use_cache: bool, repeat: int = 1) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(folder), str(cache), day.isoformat(), "1" if use_cache else "0", str(repeat)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _gzip_dc(path: Path) -> float:
    t = time.perf_counter()
    with open("/dev/null", "wb") as null:
        subprocess.run(["gzip", "-dc", str(path)], check=True, stdout=null)
    return time.perf_counter() - t


def _decompressed_size_and_rows(path: Path) -> tuple[int, int]:
    d = zlib.decompressobj(31)
    size = lines = 0
    with open(path, "rb") as f:
        while raw := f.read(1 << 18):
            out = d.decompress(raw)
            size += len(out)
            lines += out.count(b"\n")
    return size, lines - 1  # minus the header


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--date", type=dt.date.fromisoformat, default=dt.date(2024, 2, 14))
    parser.add_argument("--keep", type=Path, default=None, help="generate into this folder and keep it")
    args = parser.parse_args()

    from alphagen_core.adapters.polygon.flatfiles import options_key

    tmp = Path(tempfile.mkdtemp(prefix="bench_flatfiles_"))
    folder = args.keep or tmp / "flatfiles"
    try:
        # In a subprocess, so that this process stays small (its children are measured).
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import datetime as dt, sys; from pathlib import Path; from alphagen_core.sim.sample import generate; "
             "d = dt.date.fromisoformat(sys.argv[1]); generate(d, d, Path(sys.argv[2]), full_size=True)", args.date.isoformat(), str(folder)],
            check=True, cwd=ROOT,
        )
        gen_s = time.perf_counter() - t
        opt = folder / options_key(args.date)
        gz_mb = opt.stat().st_size / 1e6
        raw_bytes, rows = _decompressed_size_and_rows(opt)
        raw_mb = raw_bytes / 1e6

        gzip_s = statistics.median(_gzip_dc(opt) for _ in range(args.runs))
        ingests = [_child(folder, tmp / f"cache-nocache-{i}", args.date, use_cache=False) for i in range(args.runs)]
        ingest_s = statistics.median(r["times"][0] for r in ingests)
        peak_mb = max(r["peak_mb"] for r in ingests)
        base_mb = statistics.median(r["base_mb"] for r in ingests)

        whole = [_polars_whole(opt) for _ in range(args.runs)]
        whole_s = statistics.median(w["seconds"] for w in whole)
        whole_mb = max(w["peak_mb"] for w in whole)

        cache = tmp / "cache"
        first = _child(folder, cache, args.date, use_cache=True)  # writes the processed cache
        cached = [_child(folder, cache, args.date, use_cache=True, repeat=2) for _ in range(args.runs)]
        assert all(c["from_cache"] for c in cached), "the second load did not come from the cache"
        cold_s = statistics.median(c["times"][0] for c in cached)
        warm_s = statistics.median(c["times"][1] for c in cached)

        r = ingests[0]
        print(f"day {args.date}: generated full-size in {gen_s:.2f} s")
        print(f"options file           {gz_mb:8.1f} MB gzip, {raw_mb:.1f} MB CSV, {rows:,} rows")
        print(f"kept                   {r['equity']:,} QQQ bars, {r['options']:,} QQQ option bars (one expiry)")
        print(f"gzip -dc > /dev/null   {gzip_s:8.3f} s   (median of {args.runs})")
        print(f"ingest (load_day)      {ingest_s:8.3f} s   (median of {args.runs}, no cache; both files)")
        print(f"  ratio to gzip -dc    {ingest_s / gzip_s:8.2f}")
        print(f"  rows/s               {rows / ingest_s:12,.0f}")
        print(f"  MB/s                 {raw_mb / ingest_s:8.1f} CSV, {gz_mb / ingest_s:.1f} gzip")
        print(f"  peak RSS             {peak_mb:8.1f} MB  (process after imports: {base_mb:.1f} MB)")
        print("reference: polars read_csv of the whole options file + filter (no validation, one file)")
        print(f"                       {whole_s:8.3f} s, peak RSS {whole_mb:.1f} MB")
        print(f"first load + cache     {first['times'][0]:8.3f} s")
        print(f"cached load, cold      {cold_s * 1000:8.1f} ms  (fresh process)")
        print(f"cached load, warm      {warm_s * 1000:8.1f} ms  (same process, second load)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
