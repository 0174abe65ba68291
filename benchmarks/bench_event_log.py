"""`alphagen replay` with the project's event log (`alphagen_dagster/storage.py`, as dagster.yaml
names it) against Dagster's own SqliteEventLogStorage (the same dagster.yaml without
`event_log_storage`): is the one module with Dagster internals still worth it?

    .venv/bin/python benchmarks/bench_event_log.py --storage ours|dagster [--start 2024-01-02]
        [--end 2024-12-31] [--source DIR] [--runs 1] [--env KEY=VALUE ...]

Each run is a whole process from a fresh Dagster home, DuckDB file and flat-file cache (the
flat files: bench_year's cache, data/bench/flatfiles-2024/). One JSON line per run: wall and
CPU seconds (the process and the children it waited for), the load average before and after
(the machine is shared), the event log's rows and bytes (after a WAL checkpoint), the asset
check rows left PLANNED, where the time went (bench_year.phases) and the executions' count and
P/L (the same for both, or the storages changed behaviour). `--env DAGSTER_EVENT_BATCH_SIZE=0`
with `--storage ours` keeps one planned row per check but writes event by event.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent

from benchmarks.bench_year import phases  # noqa: E402
from benchmarks.run import replay_env  # noqa: E402


def _home(storage: str, home: Path) -> None:
    """A new home with the project's dagster.yaml, or that without its event log."""
    home.mkdir(parents=True)
    config = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    if storage == "dagster":
        del config["event_log_storage"]
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))


def _event_log(history: Path) -> dict:
    rows, planned_checks = 0, 0
    for db in history.rglob("*.db"):
        con = sqlite3.connect(db)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "event_logs" in tables:
                rows += con.execute("SELECT count(*) FROM event_logs").fetchone()[0]
            if "asset_check_executions" in tables:
                planned_checks += con.execute(
                    "SELECT count(*) FROM asset_check_executions WHERE execution_status = 'PLANNED'").fetchone()[0]
        finally:
            con.close()
    size = sum(p.stat().st_size for p in history.rglob("*") if p.is_file())
    return {"event_rows": rows, "event_log_mb": round(size / 1e6, 1), "planned_check_rows": planned_checks}


def run_once(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"bench-event-log-{args.storage}-"))
    try:
        _home(args.storage, work / "dagster_home")
        env = replay_env(work / "dagster_home", work / "replay.duckdb", work / "cache", work / "charts")
        env.update(kv.split("=", 1) for kv in args.env)
        load, before = os.getloadavg(), resource.getrusage(resource.RUSAGE_CHILDREN)
        started_at, t = time.time(), time.perf_counter()
        done = subprocess.run([str(BIN / "alphagen"), "replay", "--start", args.start, "--end", args.end,
                               "--source", str(args.source)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        seconds, after = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN)
        out = {"storage": args.storage, "env": args.env, "range": f"{args.start}..{args.end}", "rc": done.returncode,
               "seconds": round(seconds, 1),
               "cpu_s": round(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, 1),
               "load": [round(load[0], 1), round(os.getloadavg()[0], 1)],
               **_event_log(work / "dagster_home" / "history"),
               "phases": [(name.split(" (")[0], round(sec, 1)) for name, sec in
                          phases({"home": work / "dagster_home", "started_at": started_at, "seconds": seconds})]}
        if done.returncode == 0:
            with duckdb.connect(str(work / "replay.duckdb"), read_only=True) as con:
                out["executions"], out["pnl"] = con.execute(
                    "SELECT count(*), round(sum(pnl_contrib), 2) FROM executions").fetchone()
        else:
            out["stderr"] = done.stderr[-2000:]
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", choices=["ours", "dagster"], required=True)
    parser.add_argument("--start", default="2024-01-02")
    parser.add_argument("--end", default="2024-12-31")
    parser.add_argument("--source", type=Path, default=ROOT / "data" / "bench" / "flatfiles-2024",
                        help="flat files (make them with bench_year.py, or `alphagen sample`)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the replay's environment")
    args = parser.parse_args()
    for _ in range(args.runs):
        print(json.dumps(run_once(args)), flush=True)


if __name__ == "__main__":
    main()
