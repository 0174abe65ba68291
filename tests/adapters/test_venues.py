"""Settings choose the data provider and the broker (the route itself: tests/test_gate.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from alphagen_core.adapters.polygon.market_data import PolygonMarketData
from alphagen_core.adapters.schwab.errors import SchwabAuthError
from alphagen_core.adapters.venues import (
    market_data_client,
    minute_market_data,
    streams,
)
from alphagen_core.application.streaming import SpooledMarketData
from alphagen_core.domain.clock import clock_from_settings
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


@pytest.mark.parametrize(("stream", "key", "streamed"), [(True, "k", True), (True, "", False), (False, "k", False)])
def test_market_data_is_streamed_only_when_asked_and_a_polygon_key_is_set(tmp_path, stream, key, streamed):
    """Without a Polygon key there is no websocket to open: the minute runs poll REST (and
    `alphagen doctor` names the missing key) rather than waiting on a spool nothing fills."""
    settings = Settings(_env_file=None, alphagen_market_stream=stream, polygon_api_key=key,
                        alphagen_cache_dir=tmp_path)
    assert streams(settings) is streamed
    client = minute_market_data(settings, clock_from_settings(settings), dt.date(2024, 12, 12))
    assert isinstance(client, SpooledMarketData) is streamed
