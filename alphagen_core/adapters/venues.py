"""Which market data and which broker the live service uses, from settings (SPEC §4).

Real orders go to Schwab only through the live gate: ALPHAGEN_BROKER=schwab *and*
SCHWAB_PAPER=false *and* the confirmation phrase. Anything else trades on the paper fill model
(Schwab has no paper API), whatever ALPHAGEN_BROKER says, with one exception that moves no
money: ALPHAGEN_BROKER=schwab with SCHWAB_BASE_URL on a loopback address is the local Schwab
stand-in (`alphagen sim-session`), which fills by the paper rules.
"""

from __future__ import annotations

from typing import Literal

import structlog

from alphagen_core.interfaces import ExecutionClient, MarketDataClient
from alphagen_core.settings import Settings
from alphagen_core.sim.clock import Clock

log = structlog.get_logger(__name__)


def broker_name(settings: Settings) -> Literal["paper", "schwab"]:
    from alphagen_core.adapters.schwab.config import is_loopback_url  # schwab-py loads slowly

    if settings.alphagen_broker == "schwab" and (settings.live_enabled or is_loopback_url(settings.schwab_base_url)):
        return "schwab"
    if settings.alphagen_broker == "schwab":
        log.warning("broker.paper_instead_of_schwab",
                    reason="live trading needs SCHWAB_PAPER=false and SCHWAB_LIVE_CONFIRMATION")
    return "paper"


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
    if broker_name(settings) != "schwab":
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
