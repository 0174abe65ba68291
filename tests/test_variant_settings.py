"""Variants' overrides are validated as the environment is (alphagen_core/operations/variants.py),
and a version records only the strategy and risk settings, never a secret."""

from __future__ import annotations

import json
import re
import subprocess
from importlib.metadata import version
from pathlib import Path

import pytest

from alphagen_core.operations.settings import load_settings
from alphagen_core.operations.variants import (
    BASE,
    VARIANT_KEYS,
    VariantError,
    checkout_version,
    code_version,
    parse_assignments,
    parse_sweep,
    sweep_variants,
    variant_settings,
    version_row,
)
from tests.test_settings import SENTINEL, clean_environment  # noqa: F401 (an autouse fixture)


def variant_error(variant: str, **overrides: str) -> str:
    with pytest.raises(VariantError) as exc:
        variant_settings(variant, overrides)
    return str(exc.value)


@pytest.mark.unit
def test_a_variant_runs_the_environments_settings_with_its_overrides(monkeypatch):
    monkeypatch.setenv("SIGNAL_COOLDOWN_SECONDS", "90")
    settings = variant_settings("sl3", {"RISK_STOP_LOSS_MULTIPLE": "3", "option_strike_offset": "2"})
    assert settings.risk_config().stop_loss_multiple == 3.0
    assert settings.strategy_config().strike_offset == 2
    assert settings.signal_cooldown_seconds == 90  # from the environment, not overridden


@pytest.mark.unit
def test_base_without_overrides_is_the_environments_settings():
    assert variant_settings(BASE, {}) == load_settings()


@pytest.mark.unit
def test_an_unknown_key_is_refused_naming_it_and_the_allowed_keys():
    message = variant_error("x", NOT_A_SETTING="1")
    assert message.startswith("not a strategy or risk setting: NOT_A_SETTING")
    assert all(key in message for key in VARIANT_KEYS)


@pytest.mark.unit
def test_a_secret_or_broker_setting_is_refused_without_echoing_its_value():
    message = variant_error("x", POLYGON_API_KEY=SENTINEL, SCHWAB_PAPER="false")
    assert message.startswith("not a strategy or risk setting: POLYGON_API_KEY, SCHWAB_PAPER")
    assert SENTINEL not in message


@pytest.mark.unit
def test_a_bad_value_gets_the_environments_message():
    assert variant_error("x", RISK_STOP_LOSS_MULTIPLE="0.5") == (
        "invalid setting RISK_STOP_LOSS_MULTIPLE: Input should be greater than 1")
    assert variant_error("x", RISK_MAX_POSITION_SIZE="2.5") == (
        "invalid setting RISK_MAX_POSITION_SIZE: must be a whole number of contracts")
    # the settings' own cross-field rule applies as well
    assert variant_error("x", FLATTEN_MINUTES_BEFORE_CLOSE="40") == (
        "invalid settings: FLATTEN_MINUTES_BEFORE_CLOSE must not exceed NO_ENTRY_MINUTES_BEFORE_CLOSE")


@pytest.mark.unit
def test_base_with_overrides_is_refused():
    assert "base" in variant_error(BASE, RISK_STOP_LOSS_MULTIPLE="3")


@pytest.mark.unit
@pytest.mark.parametrize("name", ["", "a b", "x/y", "-lead", "n" * 201])
def test_a_name_that_is_no_variant_name_is_refused(name):
    assert variant_error(name).startswith(f"variant name {name!r}")


@pytest.mark.unit
def test_assignments_parse_as_key_value_pairs():
    assert parse_assignments(["risk_stop_loss_multiple=1.5", "OPTION_STRIKE_OFFSET = 1"]) == {
        "RISK_STOP_LOSS_MULTIPLE": "1.5", "OPTION_STRIKE_OFFSET": "1"}
    for bad in ([SENTINEL], ["=1.5"]):
        with pytest.raises(VariantError, match="expected KEY=VALUE") as exc:
            parse_assignments(bad)
        assert SENTINEL not in str(exc.value)


@pytest.mark.unit
def test_a_sweep_is_every_combination_named_from_its_values():
    axes = parse_sweep(["risk_stop_loss_multiple=1.5,3", "SIGNAL_COOLDOWN_SECONDS=30, 60"])
    assert axes == {"RISK_STOP_LOSS_MULTIPLE": ["1.5", "3"], "SIGNAL_COOLDOWN_SECONDS": ["30", "60"]}
    assert sweep_variants(axes) == [
        ("risk_stop_loss_multiple=1.5,signal_cooldown_seconds=30", {"RISK_STOP_LOSS_MULTIPLE": "1.5",
                                                                  "SIGNAL_COOLDOWN_SECONDS": "30"}),
        ("risk_stop_loss_multiple=1.5,signal_cooldown_seconds=60", {"RISK_STOP_LOSS_MULTIPLE": "1.5",
                                                                  "SIGNAL_COOLDOWN_SECONDS": "60"}),
        ("risk_stop_loss_multiple=3,signal_cooldown_seconds=30", {"RISK_STOP_LOSS_MULTIPLE": "3",
                                                                "SIGNAL_COOLDOWN_SECONDS": "30"}),
        ("risk_stop_loss_multiple=3,signal_cooldown_seconds=60", {"RISK_STOP_LOSS_MULTIPLE": "3",
                                                                "SIGNAL_COOLDOWN_SECONDS": "60"}),
    ]


@pytest.mark.unit
def test_a_sweep_with_a_bad_value_or_key_or_no_value_is_refused():
    with pytest.raises(VariantError, match="invalid setting RISK_STOP_LOSS_MULTIPLE"):
        sweep_variants({"RISK_STOP_LOSS_MULTIPLE": ["1.5", "0.5"]})
    with pytest.raises(VariantError, match="not a strategy or risk setting: SCHWAB_PAPER"):
        sweep_variants({"SCHWAB_PAPER": ["true", "false"]})
    with pytest.raises(VariantError, match="at least one value"):
        sweep_variants(parse_sweep(["RISK_STOP_LOSS_MULTIPLE=1.5,"]))


@pytest.mark.unit
def test_each_allowed_key_changes_what_the_engine_or_the_fill_model_runs_with():
    base = load_settings()
    for key in VARIANT_KEYS:
        value = getattr(base, key.lower())
        other = value + 1 if isinstance(value, int) else value * 1.1 or 0.5
        changed = variant_settings("v", {key: str(other)})
        assert (changed.strategy_config(), changed.paper_half_spread) != (
            base.strategy_config(), base.paper_half_spread), key


@pytest.mark.unit
def test_the_version_row_holds_every_allowed_setting_and_no_secret(monkeypatch):
    monkeypatch.setenv("POLYGON_S3_SECRET_KEY", SENTINEL)
    monkeypatch.setenv("SCHWAB_API_SECRET", SENTINEL)
    row = version_row("sl3", variant_settings("sl3", {"RISK_STOP_LOSS_MULTIPLE": "3"}))
    assert row["variant"] == "sl3"
    settings = json.loads(row["settings"])
    assert set(settings) == set(VARIANT_KEYS)
    assert settings["RISK_STOP_LOSS_MULTIPLE"] == 3.0
    assert SENTINEL not in json.dumps(row)


@pytest.mark.integration  # git, in a subprocess
def test_the_code_version_is_the_package_version_and_the_checkout_commit(tmp_path):
    root = Path(__file__).resolve().parents[1]
    checkout = checkout_version(root)
    assert checkout is not None and re.fullmatch(r"[0-9a-f]{40}(\.dirty-[0-9a-f]{12})?", checkout)
    code_version.cache_clear()  # computed once per process: perhaps before a commit made since
    assert code_version() == f"{version('alphagen')}+{checkout}"
    assert checkout_version(tmp_path) is None  # not a checkout: the code version says +unknown


@pytest.mark.integration  # git, in a subprocess
def test_uncommitted_code_gets_a_code_version_of_its_own(tmp_path):
    """A run of edited code is never recorded as the commit's: the same edits, the same version."""
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                       check=True, capture_output=True, timeout=30)

    code = tmp_path / "alphagen_core" / "engine.py"
    code.parent.mkdir()
    code.write_text("STOP = 2.0\n")
    (tmp_path / "notes.txt").write_text("not code\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    commit = checkout_version(tmp_path)
    assert commit is not None and re.fullmatch(r"[0-9a-f]{40}", commit)
    (tmp_path / "notes.txt").write_text("edited, but not code\n")
    assert checkout_version(tmp_path) == commit
    code.write_text("STOP = 3.0\n")
    edited = checkout_version(tmp_path)
    assert edited is not None and edited.startswith(f"{commit}.dirty-")
    assert checkout_version(tmp_path) == edited  # the same edits
    code.write_text("STOP = 4.0\n")
    assert checkout_version(tmp_path) not in (edited, commit)
    code.write_text("STOP = 2.0\n")
    assert checkout_version(tmp_path) == commit  # back to the commit's code
    (code.parent / "new_rule.py").write_text("X = 1\n")  # a new, untracked module
    added = checkout_version(tmp_path)
    assert added is not None and added.startswith(f"{commit}.dirty-")
    (code.parent / "new_rule.py").write_text("X = 2\n")
    assert checkout_version(tmp_path) not in (added, commit)
