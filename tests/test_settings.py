from __future__ import annotations

import os
from pathlib import Path

import pytest

from alphagen_core.operations.settings import (
    Mode,
    Settings,
    SettingsError,
    load_settings,
)

pytestmark = pytest.mark.unit

SENTINEL = "SENTINEL-s3cr3t-7f3a9c"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable of ours from the outer environment, and no `.env` in the working dir."""
    monkeypatch.chdir(tmp_path)
    names = {name.upper() for name in Settings.model_fields}
    for key in list(os.environ):
        if key.upper() in names:
            monkeypatch.delenv(key)


def settings_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as exc:
        load_settings()
    return str(exc.value)


# ---- defaults (the spec's configuration) -----------------------------------------------------


def test_defaults_match_the_spec() -> None:
    s = load_settings()
    assert s.risk_stop_loss_multiple == 2.0
    assert s.risk_take_profit_multiple == 0.5
    assert s.risk_max_position_size == 25
    assert s.risk_trading_capital == 5_000_000
    assert s.schwab_paper is True
    assert s.signal_cooldown_seconds == 30
    assert s.no_entry_minutes_before_close == 30
    assert s.flatten_minutes_before_close == 5
    assert s.fee_per_contract == 0.65
    assert s.polygon_equity_ticker == "QQQ"
    assert s.polygon_options_underlying == "QQQ"
    assert s.option_strike_offset == 0
    assert s.alphagen_mode is Mode.REPLAY
    assert s.alphagen_duckdb_path == Path("data/alphagen.duckdb")
    assert not s.live_enabled
    assert s.secret_values() == []


# ---- reading the environment ---------------------------------------------------------------


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISK_STOP_LOSS_MULTIPLE", "3.5")
    monkeypatch.setenv("RISK_TAKE_PROFIT_MULTIPLE", "0.25")
    monkeypatch.setenv("RISK_MAX_POSITION_SIZE", "10")
    monkeypatch.setenv("RISK_TRADING_CAPITAL", "250000")
    monkeypatch.setenv("SIGNAL_COOLDOWN_SECONDS", "60")
    monkeypatch.setenv("NO_ENTRY_MINUTES_BEFORE_CLOSE", "45")
    monkeypatch.setenv("FLATTEN_MINUTES_BEFORE_CLOSE", "10")
    monkeypatch.setenv("FEE_PER_CONTRACT", "0.5")
    monkeypatch.setenv("SCHWAB_PAPER", "false")
    monkeypatch.setenv("POLYGON_EQUITY_TICKER", "SPY")
    monkeypatch.setenv("ALPHAGEN_MODE", "paper")
    monkeypatch.setenv("SCHWAB_API_KEY", "key-123")
    s = load_settings()
    assert s.risk_stop_loss_multiple == 3.5
    assert s.risk_take_profit_multiple == 0.25
    assert s.risk_max_position_size == 10
    assert s.risk_trading_capital == 250_000
    assert s.signal_cooldown_seconds == 60
    assert s.no_entry_minutes_before_close == 45
    assert s.flatten_minutes_before_close == 10
    assert s.fee_per_contract == 0.5
    assert s.schwab_paper is False
    assert s.polygon_equity_ticker == "SPY"
    assert s.alphagen_mode is Mode.PAPER
    assert s.schwab_api_key.get_secret_value() == "key-123"
    assert s.secret_values() == ["key-123"]
    assert "key-123" not in repr(s)


def test_variable_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("risk_max_position_size", "7")
    assert load_settings().risk_max_position_size == 7


def test_dotenv_in_the_working_directory_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("RISK_MAX_POSITION_SIZE=12\nFEE_PER_CONTRACT=0.5\n")
    monkeypatch.setenv("FEE_PER_CONTRACT", "0.4")  # the environment wins over .env
    s = load_settings()
    assert s.risk_max_position_size == 12
    assert s.fee_per_contract == 0.4


@pytest.mark.parametrize(("raw", "expected"), [("30", 30), (" 30 ", 30), ("+30", 30)])
def test_whole_position_sizes_are_accepted(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: int
) -> None:
    monkeypatch.setenv("RISK_MAX_POSITION_SIZE", raw)
    assert load_settings().risk_max_position_size == expected


def test_whole_float_position_size_override_is_accepted() -> None:
    assert load_settings(risk_max_position_size=3.0).risk_max_position_size == 3


# ---- bad values ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "raw", "problem"),
    [
        ("RISK_STOP_LOSS_MULTIPLE", "-2", "greater than 1"),
        ("RISK_TAKE_PROFIT_MULTIPLE", "-0.5", "greater than 0"),
        ("RISK_TAKE_PROFIT_MULTIPLE", "1.5", "less than 1"),
        ("RISK_TAKE_PROFIT_MULTIPLE", "1", "less than 1"),
        ("RISK_STOP_LOSS_MULTIPLE", "1", "greater than 1"),
        ("RISK_STOP_LOSS_MULTIPLE", "0.8", "greater than 1"),
        ("RISK_MAX_POSITION_SIZE", "2.5", "whole number of contracts"),
        ("RISK_MAX_POSITION_SIZE", "abc", "whole number of contracts"),
        ("RISK_MAX_POSITION_SIZE", "", "whole number of contracts"),
        ("RISK_MAX_POSITION_SIZE", "0", "greater than 0"),
        ("RISK_MAX_POSITION_SIZE", "-3", "greater than 0"),
        ("RISK_TRADING_CAPITAL", "0", "greater than 0"),
        ("FEE_PER_CONTRACT", "-0.65", "greater than or equal to 0"),
        ("SCHWAB_PAPER", "maybe", "valid boolean"),
        ("ALPHAGEN_MODE", "yolo", "'replay', 'paper' or 'live'"),
    ],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, raw: str, problem: str
) -> None:
    message = settings_error(monkeypatch, **{variable: raw})
    assert f"{variable}: " in message
    assert problem in message


def test_every_bad_variable_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(
        monkeypatch, RISK_STOP_LOSS_MULTIPLE="1", RISK_TAKE_PROFIT_MULTIPLE="2"
    )
    assert "RISK_STOP_LOSS_MULTIPLE" in message
    assert "RISK_TAKE_PROFIT_MULTIPLE" in message
    assert "RISK_MAX_POSITION_SIZE" not in message


@pytest.mark.parametrize("value", [2.5, True])
def test_fractional_or_boolean_position_size_override_is_refused(value: object) -> None:
    with pytest.raises(SettingsError, match="RISK_MAX_POSITION_SIZE: .*whole number"):
        load_settings(risk_max_position_size=value)


def test_flatten_must_not_come_before_the_entry_cutoff(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(
        monkeypatch, NO_ENTRY_MINUTES_BEFORE_CLOSE="10", FLATTEN_MINUTES_BEFORE_CLOSE="15"
    )
    assert "FLATTEN_MINUTES_BEFORE_CLOSE must not exceed NO_ENTRY_MINUTES_BEFORE_CLOSE" in message


def test_settings_error_is_a_value_error() -> None:
    assert issubclass(SettingsError, ValueError)


# ---- secrets never leak --------------------------------------------------------------------


def test_error_never_contains_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHWAB_API_SECRET", SENTINEL)
    monkeypatch.setenv("SCHWAB_ACCOUNT_ID", SENTINEL + "-acct")
    monkeypatch.setenv("RISK_STOP_LOSS_MULTIPLE", "-1")
    with pytest.raises(SettingsError) as exc:
        load_settings()
    assert "RISK_STOP_LOSS_MULTIPLE" in str(exc.value)
    assert SENTINEL not in str(exc.value)
    assert SENTINEL not in repr(exc.value)


def test_error_never_echoes_the_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    # a secret pasted into the wrong variable must not come back in the error, nor ride
    # along in the exception chain (a ValidationError quotes its input)
    with pytest.raises(SettingsError) as exc:
        load_settings(risk_trading_capital=SENTINEL, risk_max_position_size=SENTINEL)
    err = exc.value
    assert "RISK_TRADING_CAPITAL" in str(err)
    assert "RISK_MAX_POSITION_SIZE" in str(err)
    assert SENTINEL not in str(err)
    assert err.__cause__ is None
    assert err.__context__ is None


