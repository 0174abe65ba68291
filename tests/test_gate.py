"""The live gate (the spec's safety rules) over every combination of the settings that choose a route, and the
service refusing an inconsistent one before it starts anything."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from alphagen_core.adapters.paper.execution import PaperExecution
from alphagen_core.adapters.venues import execution_client
from alphagen_core.application.gate import GateError, Route, route
from alphagen_core.domain.clock import WallClock
from alphagen_core.operations.settings import LIVE_CONFIRMATION_PHRASE, Mode, Settings

REAL, STANDIN = "https://api.schwabapi.com", "http://127.0.0.1:9"
MODES, BROKERS, PAPER = list(Mode), ["paper", "schwab"], [True, False]
CONFIRMATIONS = ["", "yes", LIVE_CONFIRMATION_PHRASE.lower(), LIVE_CONFIRMATION_PHRASE]
URLS = [REAL, STANDIN]
COMBINATIONS = list(itertools.product(MODES, BROKERS, PAPER, CONFIRMATIONS, URLS))


def _settings(mode, broker, paper, confirmation, url) -> Settings:
    return Settings(_env_file=None, alphagen_mode=mode, alphagen_broker=broker, schwab_paper=paper,
                    schwab_live_confirmation=confirmation, schwab_base_url=url)


def _spec(mode, broker, paper, confirmation, url) -> Route | None:
    """The safety rules' gate as a table: the route, or None where the settings must be refused."""
    if mode is Mode.REPLAY:
        return Route(Mode.REPLAY, "paper")
    if mode is Mode.LIVE:
        whole_gate = broker == "schwab" and not paper and confirmation == LIVE_CONFIRMATION_PHRASE and url == REAL
        return Route(Mode.LIVE, "schwab") if whole_gate else None
    if not paper or (broker == "schwab" and url == REAL):
        return None
    return Route(Mode.PAPER, broker)


REFUSED = [c for c in COMBINATIONS if _spec(*c) is None]
ROUTED = [c for c in COMBINATIONS if _spec(*c) is not None]
ROUTED_TO_PAPER = [c for c in ROUTED if _spec(*c).broker == "paper"]


def _ids(combination) -> str:
    return "-".join(map(str, combination))


@pytest.mark.unit
@pytest.mark.parametrize("combination", REFUSED, ids=_ids)
def test_combinations_the_spec_refuses_are_refused(combination):
    with pytest.raises(GateError) as refused:
        route(_settings(*combination))
    assert "ALPHAGEN_MODE" in str(refused.value)
    assert LIVE_CONFIRMATION_PHRASE not in str(refused.value).replace("=" + LIVE_CONFIRMATION_PHRASE, "")


@pytest.mark.unit
@pytest.mark.parametrize("combination", ROUTED, ids=_ids)
def test_combinations_the_spec_allows_route_as_it_says(combination):
    assert route(_settings(*combination)) == _spec(*combination)


@pytest.mark.unit
@pytest.mark.parametrize("combination", ROUTED_TO_PAPER, ids=_ids)
def test_a_route_to_the_paper_broker_gets_the_paper_execution_client(combination):
    assert isinstance(execution_client(_settings(*combination), market=None, clock=WallClock()), PaperExecution)


@pytest.mark.unit
def test_exactly_one_combination_reaches_the_real_schwab_trader():
    real = [c for c in COMBINATIONS if _spec(*c) is not None and _spec(*c).broker == "schwab" and c[4] == REAL]
    assert real == [(Mode.LIVE, "schwab", False, LIVE_CONFIRMATION_PHRASE, REAL)]


@pytest.mark.unit
def test_the_two_reported_holes_are_refused():
    # paper mode, Schwab broker, the gate open: real orders while every row says paper
    with pytest.raises(GateError, match="SCHWAB_PAPER=false"):
        route(_settings(Mode.PAPER, "schwab", False, LIVE_CONFIRMATION_PHRASE, REAL))
    # live mode, the gate open, the paper broker: simulated fills labelled live
    with pytest.raises(GateError, match="ALPHAGEN_BROKER=schwab"):
        route(_settings(Mode.LIVE, "paper", False, LIVE_CONFIRMATION_PHRASE, REAL))


@pytest.mark.e2e
def test_alphagen_run_refuses_an_inconsistent_gate_before_starting_anything(tmp_path: Path, alphagen, port):
    env = {"DAGSTER_HOME": str(tmp_path / "home"), "ALPHAGEN_MODE": "paper",
           "ALPHAGEN_BROKER": "schwab", "SCHWAB_PAPER": "false", "SCHWAB_LIVE_CONFIRMATION": LIVE_CONFIRMATION_PHRASE,
           "SCHWAB_BASE_URL": REAL, "ALPHAGEN_DUCKDB_PATH": str(tmp_path / "a.duckdb")}
    done = alphagen("run", "--port", str(port), env=env, timeout=60)
    assert done.returncode != 0
    message = done.stdout + done.stderr
    assert "ALPHAGEN_MODE=paper with SCHWAB_PAPER=false" in message
    assert "Traceback" not in message and len(message.strip().splitlines()) <= 2
    assert not (tmp_path / "home").exists() and not (tmp_path / "a.duckdb").exists()
