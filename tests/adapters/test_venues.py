"""Settings choose the data provider and the broker (the route itself: tests/test_gate.py)."""

from __future__ import annotations

import pytest

from alphagen_core.adapters.polygon.market_data import PolygonMarketData
from alphagen_core.adapters.schwab.errors import SchwabAuthError
from alphagen_core.adapters.venues import market_data_client
from alphagen_core.operations.settings import Settings

pytestmark = pytest.mark.unit


def test_data_provider_from_settings(tmp_path):
    polygon = Settings(_env_file=None, alphagen_data_provider="polygon", polygon_api_key="k")
    assert isinstance(market_data_client(polygon), PolygonMarketData)
    schwab = Settings(_env_file=None, alphagen_data_provider="schwab", schwab_api_key="k",
                      schwab_api_secret="s", schwab_token_path=tmp_path / "token.json",
                      schwab_base_url="http://127.0.0.1:9")
    with pytest.raises(SchwabAuthError, match="alphagen schwab-login"):
        market_data_client(schwab)  # no token file yet: a clear message, not a stack trace
