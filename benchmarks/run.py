"""`make bench`: the replay's speed and memory, measured on this machine in one run.

    .venv/bin/python benchmarks/run.py [--runs 3] [--days 20] [--replay-only]

Prints a Markdown table (medians of --runs) to paste into BENCHMARKS.md:
- options flat-file ingest of a full-size day (2M+ rows): seconds, rows/s, MB/s of .csv.gz,
  against plain `gzip -dc` of the same file in the same run, and the ingest's peak RSS;
- a full-size day replayed end to end without Dagster (ingest, engine, DuckDB write): peak RSS;
- one cached day's replay (cached flat files -> slices -> engine -> all eight tables);
- the engine alone, per minute;
- `alphagen replay` of --days trading days as a whole process (Dagster run, single-run
  backfill, dbt build included), and seconds per day;
- `dbt build` alone on the resulting file, through DbtCliResource as the dbt step runs it.
Everything runs in temporary folders; nothing in data/ is touched.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent

from benchmarks.bench_flatfiles import _child, _gzip_dc  # noqa: E402

_FULL_DAY_REPLAY = r"""
import datetime as dt, sys, time
from pathlib import Path
from alphagen_core.adapters.polygon.flatfiles import LocalFlatFiles, load_day
from alphagen_core.domain.calendar import session
from alphagen_core.domain.engine import StrategyConfig
from alphagen_core.application.replay import build_slices, run_session, tables_for
from alphagen_core.persistence.rows import equity_bar_rows, option_quote_rows
from alphagen_core.persistence.store import RowMeta, Store
folder, cache, db, day = sys.argv[1:5]
s = session(dt.date.fromisoformat(day))
t = time.perf_counter()
d = load_day(LocalFlatFiles(folder), s, cache_dir=Path(cache), use_cache=False)
run = run_session(s, build_slices(d.equity, d.options, 0.02), StrategyConfig())
Store(db).write(tables_for(run, equity_bar_rows(d.equity, "b"), option_quote_rows(d.options, 0.02, "b")),
                RowMeta("replay", s.date, "v1", "bench"))
elapsed = time.perf_counter() - t
peak = next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(f"{elapsed} {peak}")
"""


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def cached_day_replay(folder: Path, cache: Path, day: dt.date, runs: int) -> tuple[float, float]:
    from alphagen_core.adapters.polygon.flatfiles import LocalFlatFiles, load_day
    from alphagen_core.application.replay import build_slices, run_session, tables_for
    from alphagen_core.domain.calendar import session
    from alphagen_core.domain.engine import StrategyConfig
    from alphagen_core.persistence.rows import equity_bar_rows, option_quote_rows
    from alphagen_core.persistence.store import RowMeta, Store

    s = session(day)
    store = Store(cache.parent / "cached.duckdb")
    load_day(LocalFlatFiles(folder), s, cache_dir=cache)  # fills the processed cache
    totals, engine_per_minute = [], []
    for i in range(runs):
        t0 = time.perf_counter()
        d = load_day(LocalFlatFiles(folder), s, cache_dir=cache)
        slices = build_slices(d.equity, d.options, 0.02)
        t1 = time.perf_counter()
        run = run_session(s, slices, StrategyConfig())
        t2 = time.perf_counter()
        store.write(tables_for(run, equity_bar_rows(d.equity, "b"), option_quote_rows(d.options, 0.02, "b")),
                    RowMeta("replay", day, f"v{i}", "bench"))
        totals.append(time.perf_counter() - t0)
        engine_per_minute.append((t2 - t1) / len(slices) * 1000)
    return median(totals), median(engine_per_minute)


def replay_env(home: Path, db: Path, cache: Path, charts: Path) -> dict[str, str]:
    """The environment of a benchmarked `alphagen replay`: its own Dagster instance, DuckDB file,
    flat-file cache and chart folder."""
    return {**os.environ, "DAGSTER_HOME": str(home), "ALPHAGEN_DUCKDB_PATH": str(db),
            "ALPHAGEN_CACHE_DIR": str(cache), "ALPHAGEN_CHART_DIR": str(charts)}


def whole_process_replay(folder: Path, tmp: Path, cache: Path, start: dt.date, end: dt.date, runs: int) -> list[float]:
    """Each run starts from an empty DuckDB file at the same path, with the Dagster instance
    (DAGSTER_HOME), dbt's kept target and the flat-file cache of the runs before it, as a
    user's replays do (the warm-up run creates them)."""
    times = []
    db = tmp / "replay.duckdb"
    for i in range(runs):
        for stale in tmp.glob("replay.duckdb*"):
            stale.unlink()
        env = replay_env(tmp / "dagster_home", db, cache, tmp / f"charts{i}")
        t = time.perf_counter()
        subprocess.run([str(BIN / "alphagen"), "replay", "--start", str(start), "--end", str(end), "--source", str(folder)],
                       check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return times


def dbt_build(db: Path, runs: int) -> float:
    """The dbt step's `dbt build` outside Dagster: DbtCliResource's `dbt --version`, its adapter
    (in this process) and the dbt process, with a kept target."""
    from alphagen_dagster.dbt import BUILD, run_dbt

    times = []
    for _ in range(runs):
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # dbt's output, echoed by dagster-dbt
            run_dbt(BUILD, db, db.parent / "dbt_target").wait()
        times.append(time.perf_counter() - t)
    return median(times)


def replay_only(runs: int, n_days: int) -> None:
    from alphagen_core.domain.calendar import trading_days
    from alphagen_core.sim.sample import generate

    tmp = Path(tempfile.mkdtemp(prefix="alphagen-bench-"))
    try:
        days = trading_days(dt.date(2024, 2, 1), dt.date(2024, 4, 30))[:n_days]
        generate(days[0], days[-1], tmp / "days")
        print(f"replaying {len(days)} days as whole processes ...", file=sys.stderr)
        whole_process_replay(tmp / "days", tmp, tmp / "cache", days[0], days[-1], 1)  # fills the caches
        whole = whole_process_replay(tmp / "days", tmp, tmp / "cache", days[0], days[-1], runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n`.venv/bin/python benchmarks/run.py --replay-only --runs {runs} --days {n_days}` "
          f"({dt.date.today()}, {os.cpu_count()} cores)\n")
    print(f"| `alphagen replay` of {len(days)} days, whole process (Dagster + dbt) | {median(whole):.1f} s median "
          f"(runs: {', '.join(f'{t:.1f}' for t in whole)}) = {median(whole) / len(days):.2f} s/day | <= 14 s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--replay-only", action="store_true",
                        help="only the whole-process `alphagen replay` of --days days (after one warm-up run)")
    args = parser.parse_args()
    if args.replay_only:
        replay_only(args.runs, args.days)
        return

    from alphagen_core.adapters.polygon.flatfiles import options_key
    from alphagen_core.domain.calendar import trading_days
    from alphagen_core.sim.sample import generate

    tmp = Path(tempfile.mkdtemp(prefix="alphagen-bench-"))
    try:
        full_day = dt.date(2024, 2, 14)
        full = tmp / "full"
        print(f"generating a full-size day ({full_day}) ...", file=sys.stderr)
        generate(full_day, full_day, full, full_size=True)
        options_file = full / options_key(full_day)
        mb = options_file.stat().st_size / 1e6
        gz = median([_gzip_dc(options_file) for _ in range(args.runs)])
        ingests = [_child(full, tmp / "nocache", full_day, use_cache=False) for _ in range(args.runs)]
        ingest_s = median([r["times"][0] for r in ingests])
        ingest_peak = max(r["peak_mb"] for r in ingests)
        out = subprocess.run([sys.executable, "-c", _FULL_DAY_REPLAY, str(full), str(tmp / "fullcache"),
                              str(tmp / "full.duckdb"), str(full_day)], check=True, capture_output=True,
                             text=True, cwd=ROOT).stdout.strip().splitlines()[-1].split()
        full_replay_s, full_replay_peak = float(out[0]), float(out[1])
        rows = 2_000_000  # at least; the generator pads to this
        print("generating sample days ...", file=sys.stderr)
        days = trading_days(dt.date(2024, 2, 1), dt.date(2024, 4, 30))[: args.days]
        folder = tmp / "days"
        generate(days[0], days[-1], folder)
        cached_s, engine_ms = cached_day_replay(folder, tmp / "daycache", days[0], max(args.runs, 5))
        print(f"replaying {len(days)} days as whole processes ...", file=sys.stderr)
        whole_process_replay(folder, tmp, tmp / "cache", days[0], days[-1], 1)  # fills the caches
        whole = whole_process_replay(folder, tmp, tmp / "cache", days[0], days[-1], args.runs)
        dbt_s = dbt_build(tmp / "replay.duckdb", args.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    whole_s = median(whole)
    print(f"\n`.venv/bin/python benchmarks/run.py --runs {args.runs} --days {args.days}` "
          f"({dt.date.today()}, {os.cpu_count()} cores; medians)\n")
    print("| measure | result | target |\n|---|---:|---|")
    print(f"| `gzip -dc` of the full-size options file ({mb:.1f} MB .csv.gz) | {gz:.3f} s | yardstick |")
    print(f"| options ingest of that file (stream-filtered to QQQ) | {ingest_s:.3f} s = {ingest_s / gz:.2f}x gzip, "
          f"{rows / ingest_s / 1e6:.1f}M rows/s, {mb / ingest_s:.0f} MB/s | <= 1.0x gzip |")
    print(f"| peak RSS of the ingest | {ingest_peak:.0f} MB | < 1 GiB |")
    print(f"| full-size day end to end without Dagster (ingest, engine, write) | {full_replay_s:.2f} s, "
          f"peak RSS {full_replay_peak:.0f} MB | < 1 GiB |")
    print(f"| one cached day's replay (cache -> engine -> eight tables) | {cached_s:.3f} s | < 0.5 s |")
    print(f"| the engine alone, per minute | {engine_ms:.3f} ms | < 20 ms |")
    print(f"| `alphagen replay` of {len(days)} days, whole process (Dagster + dbt) | {whole_s:.1f} s = "
          f"{whole_s / len(days):.2f} s/day | <= 14 s (NautilusTrader 1.231, same machine class) |")
    print(f"| `dbt build` alone, through DbtCliResource | {dbt_s:.1f} s | |")


if __name__ == "__main__":
    main()
