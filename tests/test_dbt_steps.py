"""The replay's dbt build runs one model per dbt invocation, in dependency order, so that a
live writer waits for one model at most: every model after its parents, each test with the
last of its models, nothing left out, nothing twice."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from alphagen_dagster.dbt import manifest

pytestmark = pytest.mark.unit


def _selected(models, checks):
    return SimpleNamespace(selected_asset_keys={manifest.keys[uid] for uid in models},
                           selected_asset_check_keys={manifest.checks[uid] for uid in checks})


def _fqn_to_uid():
    return {"fqn:" + ".".join(n["fqn"]): uid for uid, n in {**manifest.models, **manifest.tests}.items()}


def _uids(steps):
    by_fqn = _fqn_to_uid()
    return [[by_fqn[arg] for arg in step if arg.startswith("fqn:")] for step in steps]


def test_a_full_build_is_one_step_per_model_in_dependency_order_with_every_test_once():
    steps = _uids(manifest.steps(_selected(manifest.keys, manifest.checks)))
    assert sorted(step[0] for step in steps) == sorted(manifest.models)
    position = {step[0]: i for i, step in enumerate(steps)}
    for uid, i in position.items():
        assert all(position[p] < i for p in manifest.models[uid]["depends_on"]["nodes"] if p in position), uid
    placed = [t for step in steps for t in step[1:]]
    assert sorted(placed) == sorted(manifest.tests)  # every test once
    for i, step in enumerate(steps):
        for test in step[1:]:
            parents = [position[p] for p in manifest.tests[test]["depends_on"]["nodes"] if p in position]
            assert parents and max(parents) == i, test  # runs as soon as its last model is built


def test_a_subset_builds_only_its_models_and_checks():
    daily = next(uid for uid, n in manifest.models.items() if n["name"] == "daily_pnl")
    trades = next(uid for uid, n in manifest.models.items() if n["name"] == "trades")
    checks = [uid for uid, key in manifest.checks.items() if key.asset_key == manifest.keys[daily]]
    steps = _uids(manifest.steps(_selected([daily, trades], checks)))
    assert [s[0] for s in steps] == [trades, daily]
    assert sorted(steps[1][1:]) == sorted(checks) and steps[0][1:] == []
