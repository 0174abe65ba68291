"""Which market data and which broker the live service uses, from settings (SPEC §4).

Real orders go to Schwab only through the live gate: ALPHAGEN_BROKER=schwab *and*
SCHWAB_PAPER=false *and* the confirmation phrase. Anything else trades on the paper fill model
(Schwab has no paper API), whatever ALPHAGEN_BROKER says.
"""

from __future__ import annotations

from typing import Literal

import structlog

from alphagen_core.interfaces import ExecutionClient, MarketDataClient
from alphagen_core.settings import Settings

log = structlog.get_logger(__name__)


def broker_name(settings: Settings) -> Literal["paper", "schwab"]:
    if settings.alphagen_broker == "schwab" and settings.live_enabled:
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


def execution_client(settings: Settings) -> ExecutionClient | None:
    """The Schwab client when the live gate is open; None means the paper fill model."""
    if broker_name(settings) != "schwab":
        return None
    from alphagen_core.adapters.schwab.auth import SchwabSession
    from alphagen_core.adapters.schwab.execution import SchwabExecution

    return SchwabExecution(SchwabSession.from_settings(settings), live_enabled=settings.live_enabled)
