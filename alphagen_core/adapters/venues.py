"""Which market data and which broker the live service uses, from settings. The route (paper
fill model, the Schwab stand-in, or real Schwab orders) is the live gate's decision
(`alphagen_core.gate.route`, SPEC §4); an inconsistent combination raises GateError here.
"""

from __future__ import annotations

from alphagen_core.gate import route
from alphagen_core.interfaces import ExecutionClient, MarketDataClient
from alphagen_core.settings import Settings
from alphagen_core.sim.clock import Clock


def market_data_client(settings: Settings) -> MarketDataClient:
    if settings.alphagen_data_provider == "schwab":
        from alphagen_core.adapters.schwab.auth import SchwabSession
        from alphagen_core.adapters.schwab.market_data import SchwabMarketData

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
    from alphagen_core.adapters.schwab.auth import SchwabSession
    from alphagen_core.adapters.schwab.execution import SchwabExecution

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
