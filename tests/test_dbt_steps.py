"""Inside a live window the dbt step runs one model per dbt invocation, in dependency order, so
that a live writer waits for one model at most: every model after its parents, each test with
the last of its models, nothing left out, nothing twice; and each invocation's arguments select
exactly its nodes, even with the selection dagster-dbt adds to them."""

from __future__ import annotations

import json

import pytest

from alphagen_dagster.dbt import (
    UNIQUE_ID,
    build_args,
    dbt_pnl_models,
    manifest,
    model_steps,
    run_dbt,
)

pytestmark = pytest.mark.spare_cpu
MODELS = [spec.metadata[UNIQUE_ID] for spec in dbt_pnl_models.specs]
TESTS = [spec.metadata[UNIQUE_ID] for spec in dbt_pnl_models.check_specs]
NODES = manifest["nodes"]


def _parents(uid: str) -> list[str]:
    return NODES[uid]["depends_on"]["nodes"]


@pytest.mark.unit
def test_a_full_build_is_one_step_per_model_in_dependency_order_with_every_test_once():
    steps = model_steps(manifest, MODELS, TESTS)
    assert sorted(step[0] for step in steps) == sorted(MODELS)
    position = {step[0]: i for i, step in enumerate(steps)}
    for uid, i in position.items():
        assert all(position[p] < i for p in _parents(uid) if p in position), uid
    placed = [t for step in steps for t in step[1:]]
    assert sorted(placed) == sorted(TESTS)  # every test once
    for i, step in enumerate(steps):
        for test in step[1:]:
            parents = [position[p] for p in _parents(test) if p in position]
            assert parents and max(parents) == i, test  # runs as soon as its last model is built


@pytest.mark.unit
def test_a_subset_builds_only_its_models_and_checks():
    daily = next(uid for uid in MODELS if NODES[uid]["name"] == "daily_pnl")
    trades = next(uid for uid in MODELS if NODES[uid]["name"] == "trades")
    checks = [spec.metadata[UNIQUE_ID] for spec in dbt_pnl_models.check_specs if spec.asset_key.path == ["daily_pnl"]]
    steps = model_steps(manifest, [daily, trades], checks)
    assert steps == [[trades], [daily, *checks]]


@pytest.mark.integration
def test_each_invocation_selects_exactly_its_step_beside_dagster_dbts_own_selection(tmp_path, capsys):
    """`dbt ls` (real dbt, through the resource) with the step's arguments and the `--select
    fqn:*` dagster-dbt adds to them when the step runs everything."""
    steps = model_steps(manifest, MODELS, TESTS)
    step = next(s for s in steps if len(s) > 2)  # a model and tests of it
    args = [arg if arg != "build" else "ls" for arg in build_args(step, manifest)]
    ls = run_dbt([*args, "--select", "fqn:*", "--output", "json", "--output-keys", "unique_id"],
                 tmp_path / "unused.duckdb", tmp_path / "target")
    capsys.readouterr()
    ls.wait()  # dagster-dbt echoes what dbt prints, `ls`'s JSON lines included
    listed = {json.loads(line)["unique_id"] for line in capsys.readouterr().out.splitlines()
              if line.startswith('{"unique_id"')}
    assert listed == set(step)
