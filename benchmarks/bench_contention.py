"""`make bench`, fourth step: how long a concurrent replay delays a live write to the DuckDB file.

    .venv/bin/python benchmarks/bench_contention.py [--days 20]

A 20-day `alphagen replay` runs as a whole process while this process writes one live row (a
broker position line, as the session trader does every 15 s) every 0.2 s to the same file
through `Store`, and times each write, lock wait included. Twice: with the service's clock
inside a session's live window and that session's job started on the replay's cache folder
(its lease held, as the service does: the replay then opens the file for each day's write
only and builds the marts one model at a time), and outside it (the replay holds the file
between days and builds once, the faster way when nothing else writes). Then once more inside
the window with no session on this cache folder (a research machine during market hours): the
replay behaves as outside it.
Prints the writes' median, p99 and max, and the longest wait while the days replay and while
the dbt step runs (from the replay's progress line that starts the dbt step). The flat files
come from bench_year's cache.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alphagen_core.application.lease import SessionLease, session_dir  # noqa: E402
from alphagen_core.domain.calendar import NY, trading_days  # noqa: E402
from alphagen_core.persistence.store import RowMeta, Store  # noqa: E402
from benchmarks.bench_year import flat_files  # noqa: E402
from benchmarks.run import replay_env  # noqa: E402

BIN = Path(sys.executable).parent
WRITE_EVERY_S = 0.2
LIMIT_S = 600  # the whole measurement ends by itself


def _live_write(store: Store, n: int) -> float:
    row = {"est_timestamp": dt.datetime(2024, 12, 2, 10, tzinfo=NY) + dt.timedelta(seconds=n),
           "symbol": "O:QQQ241202P00500000", "quantity": -5, "avg_price": 2.0, "market_value": None, "broker": "paper"}
    started = time.perf_counter()
    store.write({"broker_positions": [row]}, RowMeta("paper", dt.date(2024, 12, 2), "live-bench", "bench"))
    return time.perf_counter() - started


def measure(flatfiles: Path, days: list[dt.date], live_window: bool, session_started: bool,
            tmp: Path) -> tuple[list[tuple[float, float]], float, str]:
    """The live writes (start, duration), the replay's wall time and its output."""
    db = tmp / "alphagen.duckdb"
    Store(db).ensure_schema()
    env = replay_env(tmp / "dagster_home", db, tmp / "cache", tmp / "charts")
    # The service's clock: 10:00 on a trading day (inside the window) or 20:00 (outside).
    env.update(ALPHAGEN_SIM_START=f"2024-12-02T{'10' if live_window else '20'}:00:00",
               ALPHAGEN_SIM_EPOCH=str(time.time()), ALPHAGEN_SIM_SPEED="1")
    session = SessionLease(session_dir(tmp / "cache"), "2024-12-02", "bench") if session_started else contextlib.nullcontext()
    with session:
        return _replay_beside_writes(db, days, flatfiles, env)


def _replay_beside_writes(db: Path, days: list[dt.date], flatfiles: Path,
                          env: dict[str, str]) -> tuple[list[tuple[float, float]], float, str]:
    started = time.perf_counter()
    replay = subprocess.Popen([str(BIN / "alphagen"), "replay", "--start", str(days[0]), "--end", str(days[-1]),
                               "--source", str(flatfiles)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    store, waits, deadline = Store(db), [], time.monotonic() + LIMIT_S
    while replay.poll() is None and time.monotonic() < deadline:
        waits.append((time.time(), _live_write(store, len(waits))))
        time.sleep(WRITE_EVERY_S)
    out, _ = replay.communicate(timeout=60)
    if replay.returncode != 0:
        raise SystemExit(f"the replay failed:\n{out}")
    return waits, time.perf_counter() - started, out


def dbt_started(out: str) -> float:
    """When the replay's dbt step began: its first progress line ("HH:MM:SS dbt ...", local time)."""
    clock = re.search(r"^(\d\d:\d\d:\d\d) dbt", out, re.M)[1]
    return dt.datetime.combine(dt.date.today(), dt.time.fromisoformat(clock)).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=20)
    args = parser.parse_args()
    days = trading_days(dt.date(2024, 1, 2), dt.date(2024, 12, 31))[: args.days]
    flatfiles = ROOT / "data" / "bench" / "flatfiles-2024"
    flat_files(flatfiles, days, full_size=False)
    print(f"`.venv/bin/python benchmarks/bench_contention.py --days {args.days}` ({dt.date.today()})\n")
    print("| the replay's clock | live writes | median | p99 | max | max while the days replay | max in the dbt step "
          "| the replay took |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for live, started, label in ((True, True, "inside a live window, its session started (file opened per day)"),
                                 (False, True, "outside (file held between days)"),
                                 (True, False, "inside a live window, no session on this machine")):
        with tempfile.TemporaryDirectory(prefix="alphagen-bench-contention-") as tmp:
            timed, took, out = measure(flatfiles, days, live, started, Path(tmp))
        dbt_at = dbt_started(out)
        waits = sorted(w for _, w in timed)
        # a write that ends after the dbt step began waited on it (the days' last commit is done by then)
        days_max = max((w for at, w in timed if at + w < dbt_at), default=0.0)
        dbt_max = max((w for at, w in timed if at + w >= dbt_at), default=0.0)
        p99 = waits[min(len(waits) - 1, int(0.99 * len(waits)))]
        print(f"| {label} | {len(waits)} | {statistics.median(waits):.3f} s | {p99:.3f} s | {waits[-1]:.3f} s "
              f"| {days_max:.3f} s | {dbt_max:.3f} s | {took:.1f} s |")


if __name__ == "__main__":
    main()
