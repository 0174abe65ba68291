"""Which market data and which broker the live service uses, from settings. The route (paper
fill model, the Schwab stand-in, or real Schwab orders) is the live gate's decision
(`alphagen_core.application.gate.route`); an inconsistent combination raises GateError here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alphagen_core.application.gate import route
from alphagen_core.application.interfaces import ExecutionClient, MarketDataClient
from alphagen_core.application.streaming import (
    BarSpool,
    SpooledMarketData,
    StreamedMarketData,
)
from alphagen_core.domain.clock import Clock
from alphagen_core.operations.settings import Settings


def market_data_client(settings: Settings) -> MarketDataClient:
    if settings.alphagen_data_provider == "schwab":
        from alphagen_core.adapters.schwab.market_data import SchwabMarketData
        from alphagen_core.adapters.schwab.session import SchwabSession

        return SchwabMarketData(SchwabSession.from_settings(settings))
    from alphagen_core.adapters.polygon.config import PolygonConfig
    from alphagen_core.adapters.polygon.market_data import PolygonMarketData

    return PolygonMarketData(PolygonConfig.from_settings(settings))


def execution_client(settings: Settings, market: MarketDataClient, clock: Clock) -> ExecutionClient:
    """The Schwab client through the live gate (or the loopback stand-in); otherwise the paper
    fill model on the market data's quotes."""
    if route(settings).broker != "schwab":
        from alphagen_core.adapters.paper.execution import PaperExecution

        return PaperExecution(market, clock)
    from alphagen_core.adapters.schwab.execution import SchwabExecution
    from alphagen_core.adapters.schwab.session import SchwabSession

    return SchwabExecution(SchwabSession.from_settings(settings), live_enabled=settings.live_enabled)


def broker_quotes(broker: ExecutionClient, market: MarketDataClient) -> MarketDataClient:
    """The quotes orders are priced and stops watched on: the executing venue's own (Schwab's
    quotes for Schwab orders, on the same signed-in session), or the market data the paper
    fill model fills on."""
    session = getattr(broker, "session", None)
    if session is None:
        return market
    from alphagen_core.adapters.schwab.market_data import SchwabMarketData

    return SchwabMarketData(session)


def bar_spool(settings: Settings, session_date: dt.date) -> BarSpool:
    return BarSpool(Path(settings.alphagen_cache_dir) / "stream", session_date)


def streams(settings: Settings) -> bool:
    return settings.alphagen_market_stream and bool(settings.polygon_api_key.get_secret_value())


def minute_market_data(settings: Settings, clock: Clock, session_date: dt.date) -> MarketDataClient:
    """A minute run's market data: the session job's streamed bars, or REST."""
    rest = market_data_client(settings)
    return SpooledMarketData(rest, bar_spool(settings, session_date), clock) if streams(settings) else rest


@contextmanager
def session_market_data(settings: Settings, quotes: MarketDataClient, clock: Clock,
                        session_date: dt.date) -> Iterator[MarketDataClient]:
    """The session job's quotes: Polygon's stream (spooling its bars for the minute runs) over
    `quotes` as the REST fallback, or `quotes` alone when not streaming."""
    if not streams(settings):
        yield quotes
        return
    from alphagen_core.adapters.polygon.config import PolygonConfig
    from alphagen_core.adapters.polygon.market_data import PolygonMarketData
    from alphagen_core.adapters.polygon.stream import PolygonStream

    config = PolygonConfig.from_settings(settings)
    with PolygonMarketData(config, clock=clock) as rest_bars:
        stream = PolygonStream(config, rest_bars, clock)
        with StreamedMarketData(stream, quotes, bar_spool(settings, session_date)) as streamed:
            yield streamed
