"""The dbt project (dbt_pnl) as assets downstream of the tables, built after the executions.

dbt runs inside the Dagster step's process through dbt's programmatic entry point
(`dbtRunner`), not as a `dbt` subprocess: no second Python start and no second import of
dbt-core (about 5 s per run here). The manifest comes from dbt's own partial parse of a
target folder kept per DuckDB file, and every dbt result is turned into Dagster events by
dagster-dbt's own translation, so the models still materialize as the dagster-dbt assets of
group "alphagen" and dbt's tests still arrive as asset checks.
"""


import hashlib
import importlib.metadata
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from functools import cached_property
from pathlib import Path
from typing import Any

from packaging import version

from dagster import AssetExecutionContext, Failure
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

from alphagen_dagster.resources import SettingsResource, StoreResource

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_pnl"
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))
dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)

# dbt events dagster-dbt turns into asset events (DbtCoreCliEventMessage.is_result_event).
_RESULT_EVENTS = frozenset({"LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult"})
# In process: no dbt.log (dbt scrubs every line of it for secrets: ~0.4 s), no JSON artifacts
# (nothing reads run_results.json or manifest.json here), no colours. What dbt says goes to
# stdout through the callback below, as dagster-dbt echoes a subprocess's output.
_IN_PROCESS_FLAGS = ("--log-level", "none", "--log-level-file", "none", "--no-use-colors")


def ensure_manifest() -> Path:
    """`make setup` parses the project once; this parses again when the manifest is missing or
    older than a project file (an edited model or test), so the assets never lag the project.
    Nothing is parsed at import otherwise (runs start in a fresh process)."""
    manifest = dbt_project.manifest_path
    sources = [*DBT_PROJECT_DIR.glob("*.yml"),
               *(p for folder in ("models", "macros", "tests") for p in (DBT_PROJECT_DIR / folder).rglob("*.*"))]
    if not manifest.exists() or max(p.stat().st_mtime for p in sources) > manifest.stat().st_mtime:
        env = {**os.environ, "ALPHAGEN_DUCKDB_PATH": os.environ.get("ALPHAGEN_DUCKDB_PATH", "/tmp/alphagen-parse.duckdb")}
        if not env["ALPHAGEN_DUCKDB_PATH"].startswith("/"):
            env["ALPHAGEN_DUCKDB_PATH"] = str(Path(env["ALPHAGEN_DUCKDB_PATH"]).resolve())
        subprocess.run(
            [DBT_EXECUTABLE, "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
             "--profiles-dir", str(DBT_PROJECT_DIR)],
            check=True, env=env, cwd=DBT_PROJECT_DIR,
        )
    return manifest


def target_dir(cache_dir: Path | str, db_path: str) -> Path:
    """One dbt target folder per DuckDB file, kept between runs: dbt's partial parse is keyed
    on the profile (the file's path included), so a kept target skips the ~4 s full parse."""
    digest = hashlib.sha1(db_path.encode()).hexdigest()[:12]
    return Path(cache_dir).resolve() / "dbt-target" / digest


_prepared: dict[tuple[str, ...], "Future[Any]"] = {}


def _common_args(project_dir: Path, profiles_dir: Path | str, target: Path) -> list[str]:
    return ["--project-dir", str(project_dir), "--profiles-dir", str(profiles_dir),
            "--target-path", str(target), "--log-path", str(target), *_IN_PROCESS_FLAGS]


def prepare_dbt(db_path: str, cache_dir: Path | str) -> None:
    """Import dbt and parse the project in a background thread, so that the dbt step that
    follows the replay finds its manifest ready (about 2.5 s of import and partial parse,
    mostly hidden behind the replay's DuckDB and event-log I/O). Parsing reads only the
    project files, never the DuckDB file. Optional: without it the dbt step parses itself."""
    os.environ["ALPHAGEN_DUCKDB_PATH"] = db_path  # the profile (and so the parse) depends on it
    common = _common_args(DBT_PROJECT_DIR, DBT_PROJECT_DIR, target_dir(cache_dir, db_path))
    key = (db_path, *common)
    if key not in _prepared:
        future: Future[Any] = Future()
        _prepared[key] = future
        threading.Thread(target=_parse_into, args=(common, future), name="dbt-parse", daemon=True).start()


def _parse_into(common: list[str], future: "Future[Any]") -> None:
    try:
        from dbt.cli.main import dbtRunner

        parsed = dbtRunner().invoke(["parse", *common])
        future.set_result(parsed.result if parsed.success else None)
    except BaseException as exc:  # the dbt step parses again itself, and reports any error
        future.set_exception(exc)


def _take_prepared(db_path: str, common: list[str]) -> Any | None:
    """The manifest prepare_dbt parsed for exactly these arguments, or None."""
    future = _prepared.pop((db_path, *common), None)
    if future is None:
        return None
    try:
        return future.result()
    except BaseException:
        return None


# Not partitioned: the marts are rebuilt whole from every version's latest rows (and hold
# paper and live days too), so one materialization per build is what happens. Partitioned,
# each model was materialized once per day of the range (220 event-log writes for 20 days,
# ~2.5 s here), for no information.
@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
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
    target = target_dir(settings.get().alphagen_cache_dir, db_path)
    if isinstance(dbt, InProcessDbtResource):
        yield from dbt.build_in_process(context, target)
    else:  # a plain DbtCliResource (e.g. swapped in by a test): the dbt subprocess
        yield from dbt.cli(["build"], context=context, target_path=target).stream()


class InProcessDbtResource(DbtCliResource):
    """dagster-dbt's resource (same project, profiles and selection rules), plus
    `build_in_process`, which runs `dbt build` in this process instead of a subprocess.

    `_cli_version` and `_initialize_dbt_core_adapter` are dagster-dbt internals (0.29.27,
    pinned) that the subprocess path `cli()` calls before every invocation: a `dbt --version`
    subprocess and an in-process adapter used only for column metadata and row counts, which
    we do not ask for (about 6 s per run). The dbt is this environment's pinned dbt-core, so
    the version is known without asking."""

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:
        return None

    def build_in_process(self, context: AssetExecutionContext, target: Path) -> Iterator[Any]:
        """`dbt build` of the models and tests this step selected, as dagster-dbt events
        (Output per model, AssetCheckResult per test), streamed while dbt runs."""
        # dagster-dbt (0.29.27) only runs dbt as a subprocess. These two helpers are what its
        # DbtCliResource.cli() and DbtCliInvocation use to compute the dbt selection for the
        # step's asset/check subset and to turn dbt's result events into Dagster events; they
        # are reused so that selection and events are exactly the subprocess path's. Neither
        # is re-exported at the package top level (hence the module paths).
        from dagster_dbt.asset_utils import get_updated_cli_invocation_params_for_context
        from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage

        params = get_updated_cli_invocation_params_for_context(
            context=context, manifest={}, dagster_dbt_translator=None,  # taken from the assets def
        )
        project_dir = Path(params.dbt_project.project_dir if params.dbt_project else self.project_dir)
        common = _common_args(project_dir, self.profiles_dir or project_dir, target)
        waited = time.perf_counter()
        manifest = _take_prepared(os.environ["ALPHAGEN_DUCKDB_PATH"], common)
        waited = time.perf_counter() - waited
        build = ["build", *common, "--no-write-json", *params.selection_args]
        if params.indirect_selection:
            build += ["--indirect-selection", params.indirect_selection]
        context.log.info(
            f"Running dbt in process: `dbt {' '.join(build)}` "
            + (f"(project parsed during the replay; waited {waited:.2f}s)" if manifest else "(parsing first)")
        )

        events: queue.Queue[dict[str, Any] | BaseException | None] = queue.Queue()
        errors: list[str] = []
        thread = threading.Thread(target=_run_dbt, args=(common, build, manifest, events, errors), name="dbt", daemon=True)
        thread.start()
        while (item := events.get()) is not None:
            if isinstance(item, BaseException):
                raise Failure(description=f"dbt could not run: {item}") from item
            message = DbtCoreCliEventMessage(raw_event=item, event_history_metadata={})
            yield from message.to_default_asset_events(
                manifest=params.manifest,
                dagster_dbt_translator=params.dagster_dbt_translator,
                context=context,
                target_path=target,
                project=params.dbt_project,
            )
        thread.join()
        if errors:
            raise Failure(
                description=f"`dbt {' '.join(build)}` failed:\n" + "\n".join(errors),
                metadata={"dbt_target": str(target)},
            )


def _run_dbt(common: list[str], build: list[str], manifest: Any | None, out: "queue.Queue[Any]",
             errors: list[str]) -> None:
    """In a worker thread: parse unless prepare_dbt did (dbt's partial parse, from the kept
    target), then build with that manifest; result events go to `out` as dbt's structured-log
    dicts, then None."""
    try:
        from dbt.cli.main import dbtRunner
        from dbt_common.events.functions import msg_to_dict

        def on_event(msg: Any) -> None:
            level = msg.info.level
            if level in ("info", "warn", "error") and msg.info.msg:
                print(msg.info.msg, flush=False)  # the dbt log a subprocess would have printed
            if level == "error":
                errors.append(msg.info.msg)
            if msg.info.name in _RESULT_EVENTS:
                out.put(msg_to_dict(msg))

        if manifest is None:
            parsed = dbtRunner(callbacks=[on_event]).invoke(["parse", *common])
            if not parsed.success:
                raise parsed.exception or RuntimeError("dbt parse failed:\n" + "\n".join(errors))
            manifest = parsed.result
        try:
            built = dbtRunner(manifest=manifest, callbacks=[on_event]).invoke(build)
        finally:  # dbt-duckdb keeps the file open until process exit otherwise; others wait for it
            from dbt.adapters.duckdb.connections import DuckDBConnectionManager

            DuckDBConnectionManager.close_all_connections()
        if built.exception is not None:
            raise built.exception
        if not built.success and not errors:
            errors.append("dbt build reported failure (see the dbt output above)")
        sys.stdout.flush()
        out.put(None)
    except BaseException as exc:  # handed to the step, which raises it as a Failure
        out.put(exc)


def dbt_resource() -> DbtCliResource:
    return InProcessDbtResource(
        project_dir=dbt_project, profiles_dir=str(DBT_PROJECT_DIR), dbt_executable=DBT_EXECUTABLE
    )
