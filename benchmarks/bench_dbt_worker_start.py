"""The warm dbt worker's start (importing dbt, parsing the project) in CPU-seconds, for a new
DuckDB file named as setup's parse file (parsed from setup's partial-parse state,
`dbt_executable.parse_path`) and for one of another name (parsed in full), in turns.

    .venv/bin/python benchmarks/bench_dbt_worker_start.py [--runs 4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from alphagen_dagster.dbt_executable import PARSE_DUCKDB_PATH, WarmDbt

NAMES = (PARSE_DUCKDB_PATH.name, "research.duckdb")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_start(name: str) -> float:
    """The CPU a new worker uses until it is idle (listening, its parse done)."""
    with tempfile.TemporaryDirectory() as folder:
        worker = WarmDbt(Path(folder) / name, Path(folder) / "target")
        try:
            while not worker.socket_path.exists():  # bound before it imports dbt
                time.sleep(0.05)
            used, previous = 0.0, -1.0
            while used != previous:  # no tick of CPU in half a second: parsed
                time.sleep(0.5)
                previous, used = used, cpu_seconds(worker.pid)
            return used
        finally:
            worker.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=4)
    runs = parser.parse_args().runs
    used: dict[str, list[float]] = {name: [] for name in NAMES}
    for _ in range(runs):
        for name in NAMES:
            used[name].append(worker_start(name))
    for name, values in used.items():
        print(f"{name:>16}: median {statistics.median(values):.2f} CPU-s ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
