"""Settings choose the data provider and the broker; real orders only through the live gate."""

from __future__ import annotations

import pytest

from alphagen_core.adapters.paper.execution import PaperExecution
from alphagen_core.adapters.polygon.market_data import PolygonMarketData
from alphagen_core.adapters.schwab.auth import SchwabAuthError
from alphagen_core.adapters.venues import broker_name, execution_client, market_data_client
from alphagen_core.settings import LIVE_CONFIRMATION_PHRASE, Settings
from alphagen_core.sim.clock import WallClock


@pytest.mark.parametrize(
    ("broker", "paper", "confirmation", "expected"),
    [
        ("paper", False, LIVE_CONFIRMATION_PHRASE, "paper"),
        ("schwab", True, LIVE_CONFIRMATION_PHRASE, "paper"),
        ("schwab", False, "", "paper"),
        ("schwab", False, "yes", "paper"),
        ("schwab", False, LIVE_CONFIRMATION_PHRASE, "schwab"),
    ],
)
def test_real_orders_only_through_the_live_gate(broker, paper, confirmation, expected):
    settings = Settings(_env_file=None, alphagen_broker=broker, schwab_paper=paper,
                        schwab_live_confirmation=confirmation)
    assert broker_name(settings) == expected
    if expected == "paper":
        assert isinstance(execution_client(settings, market=None, clock=WallClock()), PaperExecution)


def test_the_loopback_schwab_standin_takes_paper_orders():
    standin = Settings(_env_file=None, alphagen_broker="schwab", schwab_base_url="http://127.0.0.1:9")
    assert standin.trading_mode.value == "replay" and broker_name(standin) == "schwab"
    remote = Settings(_env_file=None, alphagen_broker="schwab", schwab_base_url="https://api.schwabapi.com")
    assert broker_name(remote) == "paper"


def test_data_provider_from_settings(tmp_path):
    polygon = Settings(_env_file=None, alphagen_data_provider="polygon", polygon_api_key="k")
    assert isinstance(market_data_client(polygon), PolygonMarketData)
    schwab = Settings(_env_file=None, alphagen_data_provider="schwab", schwab_api_key="k",
                      schwab_api_secret="s", schwab_token_path=tmp_path / "token.json",
                      schwab_base_url="http://127.0.0.1:9")
    with pytest.raises(SchwabAuthError, match="alphagen schwab-login"):
        market_data_client(schwab)  # no token file yet: a clear message, not a stack trace
