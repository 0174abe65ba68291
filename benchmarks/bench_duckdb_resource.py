"""The cost of opening the DuckDB file through `StoreResource.store().connect()` (the Store's own
lock wait) against dagster-duckdb's `DuckDBResource.get_connection()` (the library's backoff).

    .venv/bin/python benchmarks/bench_duckdb_resource.py [--runs 5]

1. Uncontended: open, one query, close; median of 200 each, taken in turn.
2. Another process holds the file for H seconds (a replayed day's commit is ~0.05-0.3 s, a dbt
   model's build longer): the time from then until each way has the file open, and how long
   after the holder let go that was (median of --runs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from alphagen_dagster.resources import StoreResource  # noqa: E402
from tests.processes import hold_duckdb_lock  # noqa: E402

HOLDS_S = (0.05, 0.2, 0.5, 1.0, 2.0)


def _open_once(open_file) -> float:
    started = time.perf_counter()
    with open_file() as con:
        con.execute("SELECT 1").fetchall()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "alphagen.duckdb"
        resource = StoreResource(database=str(db))
        resource.store().ensure_schema()
        ways = {"Store (StoreResource.store().connect)": lambda: resource.store().connect(),
                "DuckDBResource.get_connection": resource.get_connection}
        opens = {name: [] for name in ways}
        for _ in range(200):  # the two ways in turn, so that the machine's load falls on both alike
            for name, open_file in ways.items():
                opens[name].append(_open_once(open_file))
        print("| way | uncontended open + query + close (median of 200) |\n|---|---:|")
        for name, times in opens.items():
            print(f"| {name} | {1000 * statistics.median(times):.2f} ms |")
        print("\n| held by another process | " + " | ".join(ways) + " |\n|---:|---:|---:|")
        for hold in HOLDS_S:
            waits = {name: [] for name in ways}
            for _ in range(args.runs):
                for name, open_file in ways.items():
                    holder = hold_duckdb_lock(db, hold)
                    waits[name].append(_open_once(open_file))
                    holder.wait(timeout=60)
            cells = [f"{statistics.median(w):.2f} s (+{statistics.median(w) - hold:.2f})" for w in waits.values()]
            print(f"| {hold:.2f} s | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
