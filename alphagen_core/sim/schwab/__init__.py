"""The Schwab stand-in: OAuth, Trader API and market data on loopback (`server`), one module
per job, mirroring `alphagen_core/adapters/schwab/`. These three names are its public face."""

from alphagen_core.sim.schwab.faults import SchwabFaults
from alphagen_core.sim.schwab.quote_book import QuoteBook
from alphagen_core.sim.schwab.server import SchwabStandIn

__all__ = ["QuoteBook", "SchwabFaults", "SchwabStandIn"]
