"""The dbt project (dbt_pnl) as assets downstream of the tables, built after the executions.

The assets come from dbt's manifest (one asset per model, one asset check per dbt test, the
sources joined to the tables through their `meta.dagster.asset_key`), and `dbt build` runs in
a worker process (dbt_process) that a replay starts early. Not dagster-dbt: importing it
imports most of dbt-core (about 2.5 s on every process that loads these definitions: each
replay, each UI-launched run), and it runs dbt either as a fresh subprocess (dbt's import and
parse again, after the replay) or inside the step's process (the same cost, holding the GIL).
The keys, groups, kinds and check names are those dagster-dbt's default translator gives.
"""


import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import (
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    Failure,
    MaterializeResult,
    TableColumn,
    TableSchema,
    multi_asset,
)

from alphagen_dagster import dbt_process
from alphagen_dagster.dbt_process import DBT_PROJECT_DIR
from alphagen_dagster.resources import SettingsResource, StoreResource

MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"
# Set by the replay step on a run some of whose days failed: the dbt step still builds the
# marts (so they match the days that landed), then fails the run.
FAILED_DAYS_TAG = "alphagen/failed_days"


def ensure_manifest() -> Path:
    """`make setup` parses the project once; this parses again when the manifest is missing or
    older than a project file (an edited model or test), so the assets never lag the project."""
    sources = [*DBT_PROJECT_DIR.glob("*.yml"),
               *(p for folder in ("models", "macros", "tests") for p in (DBT_PROJECT_DIR / folder).rglob("*.*"))]
    if not MANIFEST.exists() or max(p.stat().st_mtime for p in sources) > MANIFEST.stat().st_mtime:
        db = Path(os.environ.get("ALPHAGEN_DUCKDB_PATH", "/tmp/alphagen-parse.duckdb")).resolve()
        subprocess.run(
            [str(Path(sys.executable).with_name("dbt")), "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
             "--profiles-dir", str(DBT_PROJECT_DIR)],
            check=True, env={**os.environ, "ALPHAGEN_DUCKDB_PATH": str(db)}, cwd=DBT_PROJECT_DIR,
        )
    return MANIFEST


class DbtManifest:
    """What the assets need from the manifest: specs, and unique_id -> asset or check."""

    def __init__(self, manifest: Mapping[str, Any]) -> None:
        nodes = manifest["nodes"]
        self.models = {uid: n for uid, n in nodes.items() if n["resource_type"] == "model"}
        self.sources = manifest["sources"]
        self.keys = {uid: _model_key(n) for uid, n in self.models.items()}
        self.checks: dict[str, AssetCheckKey] = {}
        self.tests = {uid: n for uid, n in nodes.items() if n["resource_type"] == "test"}
        for uid, test in self.tests.items():
            model = self._tested_model(test)
            if model in self.keys:
                self.checks[uid] = AssetCheckKey(self.keys[model], test["name"])

    def _tested_model(self, test: Mapping[str, Any]) -> str | None:
        """A generic test's model; a singular test names its model in meta.dagster.ref (as
        dagster-dbt reads it)."""
        if test.get("attached_node"):
            return test["attached_node"]
        ref = _dagster_meta(test).get("ref", {}).get("name")
        return next((uid for uid, n in self.models.items() if n["name"] == ref), None)

    def _dep_key(self, uid: str) -> AssetKey:
        if uid in self.keys:
            return self.keys[uid]
        source = self.sources[uid]
        return AssetKey(_dagster_meta(source).get("asset_key") or [source["source_name"], source["name"]])

    def asset_specs(self) -> list[AssetSpec]:
        return [
            AssetSpec(
                self.keys[uid],
                deps=[self._dep_key(dep) for dep in n["depends_on"]["nodes"]],
                description=n.get("description") or None,
                group_name=_dagster_meta(n).get("group"),
                kinds={"dbt", "duckdb"},
                skippable=True,  # `dbt build` skips the models downstream of a failure
                metadata={
                    "dbt_unique_id": uid,
                    "dagster/table_name": f"{n['schema']}.{n['alias'] or n['name']}",
                    "dagster/column_schema": TableSchema(columns=[
                        TableColumn(c["name"], c.get("data_type") or "?", description=c.get("description") or None)
                        for c in n["columns"].values()
                    ]),
                },
            )
            for uid, n in self.models.items()
        ]

    def check_specs(self) -> list[AssetCheckSpec]:
        return [AssetCheckSpec(key.name, asset=key.asset_key, description=self.tests[uid].get("description") or None)
                for uid, key in self.checks.items()]

    def selection(self, context: AssetExecutionContext) -> list[str]:
        """dbt's selection for the step's subset: none when it runs everything; else exactly
        the selected models and tests (by fully qualified name, no indirect selection)."""
        models = [uid for uid, key in self.keys.items() if key in context.selected_asset_keys]
        tests = [uid for uid, key in self.checks.items() if key in context.selected_asset_check_keys]
        if len(models) == len(self.keys) and len(tests) == len(self.checks):
            return []
        fqns = ["fqn:" + ".".join(self.models.get(uid, self.tests.get(uid))["fqn"]) for uid in models + tests]
        return ["--select", *fqns, "--indirect-selection", "empty"]


    def steps(self, context: AssetExecutionContext) -> list[list[str]]:
        """The step's build as one dbt invocation per model, in dependency order, each with the
        tests its model completes. dbt-duckdb holds the DuckDB file from its first node to its
        last, so a single `dbt build` keeps live writers waiting for the whole build; one model
        at a time, they wait for one model at most (the file is free between invocations)."""
        if not self.selection(context):
            models, tests = list(self.models), list(self.tests)
        else:
            models = [uid for uid, key in self.keys.items() if key in context.selected_asset_keys]
            tests = [uid for uid, key in self.checks.items() if key in context.selected_asset_check_keys]
        order = _dependency_order(models, {uid: self.models[uid]["depends_on"]["nodes"] for uid in models})
        step_of = {uid: i for i, uid in enumerate(order)}
        members: list[list[str]] = [[uid] for uid in order] or [[]]
        for uid in tests:
            parents = [step_of[d] for d in self.tests[uid]["depends_on"]["nodes"] if d in step_of]
            members[max(parents, default=len(members) - 1)].append(uid)
        nodes = {**self.models, **self.tests}
        return [["--select", *("fqn:" + ".".join(nodes[uid]["fqn"]) for uid in step), "--indirect-selection", "empty"]
                for step in members if step]


def _dependency_order(nodes: list[str], parents: Mapping[str, list[str]]) -> list[str]:
    """`nodes` with every node after its parents (those among `nodes`), otherwise as given."""
    done: list[str] = []
    pending = list(nodes)
    while pending:
        ready = next(uid for uid in pending if all(p in done or p not in nodes for p in parents[uid]))
        done.append(ready)
        pending.remove(ready)
    return done


def _dagster_meta(node: Mapping[str, Any]) -> Mapping[str, Any]:
    """A node's `meta.dagster` settings (asset_key, group, ref), as dagster-dbt reads them."""
    return node["config"].get("meta", {}).get("dagster", {})


def _model_key(node: Mapping[str, Any]) -> AssetKey:
    """dagster-dbt's default key: [configured schema, name], or [name]."""
    configured = _dagster_meta(node).get("asset_key")
    if configured:
        return AssetKey(configured)
    schema = node["config"].get("schema")
    return AssetKey([schema, node["name"]] if schema else [node["name"]])


manifest = DbtManifest(json.loads(ensure_manifest().read_text()))


# Not partitioned: the marts are rebuilt whole from every version's latest rows (and hold
# paper and live days too), so one materialization per build is what happens.
@multi_asset(
    name="dbt_pnl_models",
    specs=manifest.asset_specs(),
    check_specs=manifest.check_specs(),
    can_subset=True,
    pool="duckdb",
)
def dbt_pnl_models(context: AssetExecutionContext, store: StoreResource, settings: SettingsResource):
    """Daily P/L and the trades mart over every version's latest rows (marts are rebuilt whole:
    they are small, and a full build cannot drift from the tables)."""
    worker = dbt_process.take(str(store.store().path), settings.get().alphagen_cache_dir)
    steps = manifest.steps(context)
    context.log.info(f"dbt build, {len(steps)} models one at a time (in a worker process; target {worker.target})")
    errors: list[str] = []
    for message in worker.build(steps):
        if "log" in message:
            print(message["log"])  # dbt's own output, as a `dbt build` in a terminal prints it
        elif "parsed" in message:
            context.log.info(f"dbt's worker loaded dbt and parsed the project in {message['seconds']}s")
        elif "result" in message:
            yield from _dagster_events(context, message["result"])
        elif not message["done"]:
            errors = message["errors"]
    if errors:
        raise Failure(description="`dbt build` failed:\n" + "\n".join(errors),
                      metadata={"dbt_target": str(worker.target)})
    if context.run.job_name == "pnl_after_close":  # a paper or live session's close
        from alphagen_dagster.post_close import send_session_summary

        send_session_summary(context, store.store(), settings.get())
    run = context.instance.get_run_by_id(context.run.run_id)
    if failed := (run.tags.get(FAILED_DAYS_TAG) if run else None):
        raise Failure(description=f"the marts are built from the days that landed, but {failed} day(s) of this "
                      "run failed and wrote nothing (see the replay_tables step and its partitions' metadata)")


def _dagster_events(context: AssetExecutionContext, result: Mapping[str, Any]) -> Iterator[Any]:
    uid, status = result["unique_id"], result["status"]
    metadata = {"dbt_unique_id": uid, "dbt_status": status, "execution_duration_s": result["seconds"]}
    if uid in manifest.keys and status == "success":
        yield MaterializeResult(asset_key=manifest.keys[uid], metadata=metadata)
    elif (check := manifest.checks.get(uid)) is not None and check in context.selected_asset_check_keys:
        yield AssetCheckResult(
            asset_key=check.asset_key,
            check_name=check.name,
            passed=status == "pass",
            severity=AssetCheckSeverity.WARN if status == "warn" else AssetCheckSeverity.ERROR,
            metadata={**metadata, "failures": result["failures"] or 0},
        )
