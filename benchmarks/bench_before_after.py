"""Two checkouts' `alphagen replay` of the same 20 days, run in turns, for a before/after pair on
a shared, noisy machine.

    .venv/bin/python benchmarks/bench_before_after.py BEFORE_CHECKOUT [AFTER_CHECKOUT] [--runs 4]

Each checkout runs with its own venv (`CHECKOUT/.venv/bin/alphagen`), Dagster home, DuckDB file
(emptied before each run), flat-file cache and dbt target, after one warm-up run each (as a
user's replays keep them). Per run: the wall time, the CPU time of the process and the children
it waited for (dbt's processes, the chart worker), and the replay and dbt steps' durations from
the run's log file, with the load average when it started. AFTER_CHECKOUT defaults to this one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import resource
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.run import replay_env  # noqa: E402

START, END = dt.date(2024, 2, 1), dt.date(2024, 2, 29)  # 20 sessions


def step_seconds(log: Path, step: str) -> float:
    """The step's duration from the run's log file (its Dagster events' timestamps)."""
    text = log.read_text()

    def stamp(pattern: str) -> dt.datetime | None:
        found = re.search(r"^(\d\d:\d\d:\d\d\.\d+) \d+ " + pattern, text, re.M)
        return dt.datetime.strptime(found[1], "%H:%M:%S.%f") if found else None

    began = stamp(f'Started execution of step "{step}"')
    ended = stamp(f'Finished execution of step "{step}"') or stamp(f'Execution of step "{step}" failed')
    return (ended - began).total_seconds() if began and ended else float("nan")


def replay(checkout: Path, work: Path, flatfiles: Path, run: int, options: Sequence[str] = (),
           **settings: str) -> dict[str, float]:
    """One timed `alphagen replay` of the 20 days (`options` and `settings`: further options and
    environment variables)."""
    for stale in work.glob("replay.duckdb*"):
        stale.unlink()
    env = {**replay_env(work / "home", work / "replay.duckdb", work / "cache", work / f"charts{run}"), **settings}
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = dt.datetime.now()
    subprocess.run([str(checkout / ".venv" / "bin" / "alphagen"), "replay", "--start", str(START), "--end", str(END),
                    "--source", str(flatfiles), *options], check=True, env=env, cwd=checkout,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = (dt.datetime.now() - started).total_seconds()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    log = work / "home" / "logs" / f"replay-{START}-{END}.log"
    return {"wall": wall, "cpu": after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime,
            "replay step": step_seconds(log, "replay_tables"), "dbt step": step_seconds(log, "dbt_pnl_models"),
            "load": load}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path, nargs="?", default=ROOT)
    parser.add_argument("--runs", type=int, default=4)
    args = parser.parse_args()
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    with tempfile.TemporaryDirectory(prefix="alphagen-bench-before-after-") as tmp:
        flatfiles = Path(tmp) / "flatfiles"
        subprocess.run([str(ROOT / ".venv" / "bin" / "alphagen"), "sample", "--start", str(START), "--end", str(END),
                        "--out", str(flatfiles)], check=True, stdout=subprocess.DEVNULL)
        for side, checkout in sides.items():
            replay(checkout, Path(tmp) / side, flatfiles, -1)  # warm-up: home, caches, dbt target
        print("| run | side | wall | CPU (with children) | replay step | dbt step | load when it started |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for run in range(args.runs):
            for side, checkout in sides.items():
                r = replay(checkout, Path(tmp) / side, flatfiles, run)
                print(f"| {run} | {side} | {r['wall']:.1f} s | {r['cpu']:.1f} s | {r['replay step']:.1f} s "
                      f"| {r['dbt step']:.1f} s | {r['load']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
