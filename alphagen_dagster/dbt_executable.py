"""`alphagen-dbt`, the dbt executable `DbtCliResource` runs: `--version` is answered from the
installed packages' metadata, anything else is dbt itself (`exec`, same process).

Why not dbt directly: DbtCliResource asks `dbt --version` once per resource instance (every
Dagster step) to tell dbt-core from dbt Fusion, and dbt answers by importing its whole CLI and
asking PyPI for the latest release, most of a dbt process start per step for one line. The
answer here has the same form (`Core: - installed: X.Y.Z`), from the same installed dbt-core.
"""

import os
import sys
from importlib.metadata import version
from pathlib import Path


def main() -> None:
    args = sys.argv[1:]
    if args in (["--version"], ["-v"]):
        print(f"Core:\n  - installed: {version('dbt-core')}\n\nPlugins:\n  - duckdb: {version('dbt-duckdb')}")
        return
    dbt = Path(sys.executable).with_name("dbt")
    os.execv(dbt, [str(dbt), *args])
