"""The dbt project (dbt_pnl) as assets downstream of the tables, built after the executions."""


import os
import hashlib
import importlib.metadata
import subprocess
import sys
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from packaging import version

from dagster import AssetExecutionContext, BackfillPolicy
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

from alphagen_dagster.partitions import trading_days
from alphagen_dagster.resources import SettingsResource, StoreResource

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_pnl"
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))
dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def ensure_manifest() -> Path:
    """`make setup` parses the project once; this covers a checkout where it did not run.
    Nothing is parsed at import when the manifest exists (runs start in a fresh process)."""
    manifest = dbt_project.manifest_path
    if not manifest.exists():
        env = {**os.environ, "ALPHAGEN_DUCKDB_PATH": os.environ.get("ALPHAGEN_DUCKDB_PATH", "/tmp/alphagen-parse.duckdb")}
        if not env["ALPHAGEN_DUCKDB_PATH"].startswith("/"):
            env["ALPHAGEN_DUCKDB_PATH"] = str(Path(env["ALPHAGEN_DUCKDB_PATH"]).resolve())
        subprocess.run(
            [DBT_EXECUTABLE, "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
             "--profiles-dir", str(DBT_PROJECT_DIR)],
            check=True, env=env, cwd=DBT_PROJECT_DIR,
        )
    return manifest


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    partitions_def=trading_days,
    backfill_policy=BackfillPolicy.single_run(),
    pool="duckdb",
    name="dbt_pnl_models",
)
def dbt_pnl_models(
    context: AssetExecutionContext, dbt: DbtCliResource, store: StoreResource, settings: SettingsResource
):
    """Daily P/L and the trades mart over every version's latest rows (marts are rebuilt whole:
    they are small, and a full build cannot drift from the tables)."""
    db_path = str(store.store().path)
    os.environ["ALPHAGEN_DUCKDB_PATH"] = db_path  # the profile needs it absolute
    # One target folder per DuckDB file, kept between runs: dbt's partial parse is keyed on
    # the profile (the file's path included), so a kept target skips the ~4 s full parse.
    digest = hashlib.sha1(db_path.encode()).hexdigest()[:12]
    target = Path(settings.get().alphagen_cache_dir).resolve() / "dbt-target" / digest
    yield from dbt.cli(["build"], context=context, target_path=target).stream()


class PinnedDbtCliResource(DbtCliResource):
    """dagster-dbt (0.29.27, pinned) runs `dbt --version` in a subprocess and builds an
    in-process dbt adapter (used only to fetch column metadata and row counts, which we do
    not ask for) before every invocation: about 6 s per run here. The dbt it runs is this
    environment's pinned dbt-core, so the version is known without asking."""

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        return None


def dbt_resource() -> DbtCliResource:
    return PinnedDbtCliResource(
        project_dir=dbt_project, profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=DBT_EXECUTABLE
    )
