"""The Polygon stand-in: REST and websockets on loopback (`server`), one module per job.
`PolygonStandIn` and `OPEN_ONLY` are its public face."""

from alphagen_core.sim.polygon.quotes import OPEN_ONLY
from alphagen_core.sim.polygon.server import PolygonStandIn

__all__ = ["OPEN_ONLY", "PolygonStandIn"]
