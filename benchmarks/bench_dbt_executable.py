"""`DbtCliResource.cli` with dbt itself against `alphagen-dbt` as its executable, and the step's
own resource (`alphagen-dbt`, without dbt's adapter in this process), in turns: the time until
dbt starts (the resource's `dbt --version` and the adapter) and until the build ends, on a
DuckDB file that has the tables (e.g. the demo's).

    .venv/bin/python benchmarks/bench_dbt_executable.py data/alphagen.duckdb [--runs 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from dagster_dbt import DbtCliResource

from alphagen_dagster.dbt import BUILD, dbt_project, dbt_resource, duckdb_path_for_dbt


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("db", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print("| run | executable | until dbt starts | until the build ends |\n|---:|---|---:|---:|")
    resources = {name: DbtCliResource(project_dir=dbt_project, dbt_executable=str(Path(sys.executable).with_name(name)))
                 for name in ("dbt", "alphagen-dbt")}
    resources["alphagen-dbt, no adapter (the step's)"] = dbt_resource()
    with tempfile.TemporaryDirectory() as target, duckdb_path_for_dbt(args.db):
        for run in range(args.runs):
            for executable, resource in resources.items():
                started = time.monotonic()
                invocation = resource.cli(list(BUILD), target_path=Path(target))
                dbt_started = time.monotonic()
                invocation.wait()
                print(f"| {run} | {executable} | {dbt_started - started:.1f} s | {time.monotonic() - started:.1f} s |",
                      flush=True)


if __name__ == "__main__":
    main()
