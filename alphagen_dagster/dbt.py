"""The dbt project (dbt_pnl) as Dagster assets downstream of the tables, through dagster-dbt.

`@dbt_assets` reads dbt's manifest with dagster-dbt's default translator: one asset per model
(key [schema, name] or [name], the `alphagen` group of `meta.dagster.group`, kinds, table and
column metadata), one asset check per dbt test, and the sources joined to the tables through
their `meta.dagster.asset_key`. `DbtCliResource.cli` runs dbt as a subprocess and streams its
results back as materializations and check results; everything here that runs dbt (the step,
the manifest's parse, the simulated session's summary, the benchmarks and tests) goes through it.

dbt is installed in an environment of its own, so dagster-dbt finds no dbt-core here and
imports none of it (`dbt_executable.py`). The live code location never imports this module
(import-linter contract).
"""

import base64
import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    Failure,
    MetadataValue,
    Output,
)
from dagster_dbt import DbtCliInvocation, DbtCliResource, DbtProject, dbt_assets

from alphagen_core.application.lease import live_writers_at
from alphagen_core.domain.clock import clock_from_settings
from alphagen_core.operations.settings import Settings
from alphagen_core.persistence.store import Store
from alphagen_dagster.dbt_executable import (
    DBT_PROJECT_DIR,
    DUCKDB_PATH_VARIABLE,
    PARSE_DUCKDB_PATH,
    WORKER_VARIABLE,
    WarmDbt,
    dbt_version,
)
from alphagen_dagster.report import (
    PERFORMANCE_PNG,
    Selection,
    read_performance,
    stats_markdown,
    write_performance_png,
)
from alphagen_dagster.resources import SettingsResource, StoreResource

# Set by the replay step on a run some of whose days failed: the dbt step still builds the
# marts (so they match the days that landed), then fails the run.
FAILED_DAYS_TAG = "alphagen/failed_days"
# Every build here: no dbt.log (dbt scrubs each of its lines for secrets), no run artifacts
# (the results arrive as events), no colour codes in the output; dbt's unit tests check the SQL
# on hand-made rows, not the data, so the test suite runs them, not the step.
BUILD = ("build", "--log-level-file", "none", "--no-write-json", "--no-use-colors",
         "--exclude-resource-type", "unit_test")
# dagster-dbt's metadata entry naming a spec's dbt node.
UNIQUE_ID = "dagster_dbt/unique_id"
# Its materialization carries the figures per (mode, variant) and the equity curve's chart.
PERFORMANCE_SUMMARY = AssetKey("performance_summary")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR)


class DbtCliWithoutAdapter(DbtCliResource):
    """DbtCliResource, less the dbt adapter its `cli` opens in this process before each run.

    dagster-dbt opens it only for `fetch_row_counts` and `fetch_column_metadata`, which nothing
    here calls. dbt-core is not installed here (its environment is its own), so the library's
    resource would try, fail, and log a warning with a traceback before every dbt command. This
    overrides a private method of dagster-dbt (ARCHITECTURE.md, "dbt's adapter not opened": the
    upgrade risk); `tests/test_dbt_pnl.py` compares a build's events with the library's own
    resource and fails if the method is gone."""

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        return None


def dbt_resource() -> DbtCliResource:
    """The venv's dbt, whether or not the venv is on PATH, behind `alphagen-dbt`
    (`dbt_executable.py`: it answers the resource's `dbt --version` without starting dbt)."""
    return DbtCliWithoutAdapter(project_dir=dbt_project,
                                dbt_executable=str(Path(sys.executable).with_name("alphagen-dbt")))


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    """`name` set to `value` inside the block (DbtCliResource hands dbt this process's environment)."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            del os.environ[name]
        else:
            os.environ[name] = previous


def duckdb_path_for_dbt(db_path: str | Path) -> contextlib.AbstractContextManager[None]:
    """The dbt processes started inside this block use the DuckDB file `db_path` (absolute:
    dbt runs in the project folder)."""
    return _environ(DUCKDB_PATH_VARIABLE, str(Path(db_path).resolve()))


_warm: dict[tuple[Path, Path], WarmDbt] = {}


def start_warm_dbt(cfg: Settings, db_path: Path) -> None:
    """Start the dbt worker that the dbt step's builds go to later in this process
    (`dbt_executable.py`): it imports dbt and parses the project while the days replay."""
    key = _worker_key(cfg, db_path)
    if key not in _warm:
        with contextlib.suppress(OSError):  # no temp folder or process for it: dbt starts as usual
            _warm[key] = WarmDbt(*key)


def stop_warm_dbt(cfg: Settings, db_path: Path) -> None:
    if worker := _warm.pop(_worker_key(cfg, db_path), None):
        worker.close()


@contextlib.contextmanager
def warm_dbt_builds(cfg: Settings, db_path: Path) -> Iterator[bool]:
    """The builds inside this block go to the worker `start_warm_dbt` started for this file, if
    any (yields whether there is one; else dbt starts as usual); it ends with the block."""
    worker = _warm.get(_worker_key(cfg, db_path))
    try:
        with _environ(WORKER_VARIABLE, str(worker.socket_path)) if worker else contextlib.nullcontext():
            yield worker is not None
    finally:
        stop_warm_dbt(cfg, db_path)


def _worker_key(cfg: Settings, db_path: Path) -> tuple[Path, Path]:
    return Path(db_path).resolve(), target_dir(cfg.alphagen_cache_dir, db_path)


def run_dbt(args: Sequence[str], db_path: str | Path, target: Path, *, raise_on_error: bool = True) -> DbtCliInvocation:
    """dbt outside a Dagster step, the way the step runs it; started, not waited for."""
    with duckdb_path_for_dbt(db_path):
        return dbt_resource().cli(list(args), target_path=target, raise_on_error=raise_on_error)


def target_dir(cache_dir: Path | str, db_path: str | Path) -> Path:
    """One dbt target folder per DuckDB file, kept between runs: dbt's partial parse is keyed
    on the profile (the file's path included), so a kept target skips dbt's full parse."""
    digest = hashlib.sha1(str(db_path).encode()).hexdigest()[:12]
    return Path(cache_dir).resolve() / "dbt-target" / digest


def prepare_manifest() -> dict[str, Any]:
    """dbt's manifest, parsed again when it is missing, older than a project file (an edited
    model or test) or from another dbt version, so the assets never lag the project."""
    if not _manifest_is_current():
        with duckdb_path_for_dbt(PARSE_DUCKDB_PATH):
            dbt_resource().cli(["parse", "--quiet"], target_path=dbt_project.target_path).wait()
    return json.loads(dbt_project.manifest_path.read_text())


def _manifest_is_current() -> bool:
    manifest = dbt_project.manifest_path
    if not manifest.exists():
        return False
    sources = [*DBT_PROJECT_DIR.glob("*.yml"),
               *(p for folder in ("models", "macros", "tests") for p in (DBT_PROJECT_DIR / folder).rglob("*.*"))]
    if max(p.stat().st_mtime for p in sources) > manifest.stat().st_mtime:
        return False
    return json.loads(manifest.read_text())["metadata"]["dbt_version"] == dbt_version("dbt-core")


manifest = prepare_manifest()


# Not partitioned: the marts are rebuilt whole from every version's latest rows (and hold
# paper and live days too), so one materialization per build is what happens.
@dbt_assets(manifest=manifest, project=dbt_project, name="dbt_pnl_models", pool="duckdb")
def dbt_pnl_models(context: AssetExecutionContext, dbt: DbtCliResource, store: StoreResource,
                   settings: SettingsResource):
    """Daily P/L and the trades mart over every version's latest rows (marts are rebuilt whole:
    they are small, and a full build cannot drift from the tables)."""
    cfg = settings.get()
    db = store.store()
    db.ensure_schema()  # a file from before a table (versions) was added gets it before dbt reads it
    db_path = db.path
    target = target_dir(cfg.alphagen_cache_dir, db_path)
    live_writers = live_writers_at(cfg.alphagen_cache_dir, clock_from_settings(cfg).now())
    builds = one_model_at_a_time(context) if live_writers else [list(BUILD)]
    how = "one per model: a live session may be writing" if live_writers else "one for the whole selection"
    # performance_summary's events wait for the end of dbt: dbt holds the DuckDB file until its
    # process ends, and the materialization's figures are read from the file.
    held: list[Output | AssetCheckResult] = []
    failure: Exception | None = None
    with duckdb_path_for_dbt(db_path), warm_dbt_builds(cfg, db_path) as warm:
        where = "in the dbt worker started with the run" if warm else "in new dbt processes"
        context.log.info(f"dbt build: {len(builds)} build(s), {how}, {where}; target {target}")
        try:
            for args in builds:  # the first that fails raises, with dbt's errors
                for event in dbt.cli(args, context=context, target_path=target).stream():
                    if _asset_key(context, event) == PERFORMANCE_SUMMARY:
                        held.append(event)
                    else:
                        yield event
        except Exception as exc:
            failure = exc
    yield from with_performance(context, held, db, cfg)
    if failure is not None:
        raise failure
    if context.run.job_name == "pnl_after_close":  # a paper or live session's close
        from alphagen_dagster.post_close import send_session_summary

        send_session_summary(context, db, cfg)
    run = context.instance.get_run_by_id(context.run.run_id)
    if failed := (run.tags.get(FAILED_DAYS_TAG) if run else None):
        raise Failure(description=f"the marts are built from the days that landed, but {failed} day(s) of this "
                      "run failed and wrote nothing (see the replay_tables step and its partitions' metadata)")


def _asset_key(context: AssetExecutionContext, event: object) -> AssetKey | None:
    if isinstance(event, Output):
        return context.assets_def.keys_by_output_name.get(event.output_name)
    return getattr(event, "asset_key", None)


def with_performance(context: AssetExecutionContext, held: Sequence[Output | AssetCheckResult], store: Store,
                     cfg: Settings) -> Iterator[Output | AssetCheckResult]:
    """performance_summary's materialization, when dbt built it, with the figures per (mode,
    variant) and the equity curve's chart; then its checks."""
    for event in held:
        if isinstance(event, Output):
            event = event.with_metadata({**event.metadata, **_performance_metadata(context, store, cfg)})
        yield event


def _performance_metadata(context: AssetExecutionContext, store: Store, cfg: Settings) -> dict[str, MetadataValue]:
    """Never fails the build: a report that cannot be made is a warning."""
    try:
        performance = read_performance(store, Selection())
        meta = {"performance": MetadataValue.md(stats_markdown(performance.summary))}
        if cfg.feature_enable_chart:
            png = write_performance_png(performance.curves, cfg.alphagen_chart_dir / PERFORMANCE_PNG)
            data = base64.b64encode(png.read_bytes()).decode()
            meta["equity_curve_chart"] = MetadataValue.md(f"![equity curve and drawdown](data:image/png;base64,{data})")
            meta["equity_curve_png"] = MetadataValue.path(str(png.resolve()))
        return meta
    except Exception as exc:
        context.log.warning(f"performance_summary is built, but its figures and chart are not attached: {exc}")
        return {}


def one_model_at_a_time(context: AssetExecutionContext) -> list[list[str]]:
    """The step's selection as one `dbt build` per model, so that a live writer waits for one
    model at most: dbt-duckdb holds the DuckDB file from its first node to its last, and the
    file is free between invocations."""
    assets = context.assets_def
    models = [spec.metadata[UNIQUE_ID] for spec in assets.specs if spec.key in context.selected_asset_keys]
    tests = [spec.metadata[UNIQUE_ID] for spec in assets.check_specs if spec.key in context.selected_asset_check_keys]
    return [build_args(step, manifest) for step in model_steps(manifest, models, tests)]


def model_steps(manifest: Mapping[str, Any], models: Sequence[str], tests: Sequence[str]) -> list[list[str]]:
    """`models` one per step, every model after its parents, each with the tests it is the last
    of `models` to complete (a test of no model in `models` goes last)."""
    nodes = manifest["nodes"]
    order = list(TopologicalSorter({uid: [p for p in nodes[uid]["depends_on"]["nodes"] if p in models]
                                    for uid in models}).static_order())
    step_of = {uid: i for i, uid in enumerate(order)}
    steps: list[list[str]] = [[uid] for uid in order] or [[]]
    for uid in tests:
        parents = [step_of[d] for d in nodes[uid]["depends_on"]["nodes"] if d in step_of]
        steps[max(parents, default=len(steps) - 1)].append(uid)
    return [step for step in steps if step]


def build_args(step: Sequence[str], manifest: Mapping[str, Any]) -> list[str]:
    """`dbt build` of exactly the nodes of `step`. dagster-dbt adds the step's own selection
    (`fqn:*`, or the subset the run selected) to ours, and dbt takes the union of selections,
    so everything else is excluded; no indirect selection, so a test runs in its own step only."""
    nodes = manifest["nodes"]
    others = [uid for uid, n in nodes.items() if n["resource_type"] in ("model", "test") and uid not in step]
    return [*BUILD, "--select", " ".join(_fqn(nodes[uid]) for uid in step),
            "--exclude", " ".join(_fqn(nodes[uid]) for uid in others), "--indirect-selection", "empty"]


def _fqn(node: Mapping[str, Any]) -> str:
    return "fqn:" + ".".join(node["fqn"])

