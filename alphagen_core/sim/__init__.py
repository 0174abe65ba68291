"""Local stand-ins for the venues (Polygon, Schwab), their fault switches and the sim days.

``from alphagen_core.sim import Faults`` is cheap; the stand-in (websockets, polars) is
imported only when ``PolygonStandIn`` is first used.
"""

from __future__ import annotations

from typing import Any

from alphagen_core.sim.faults import Faults

__all__ = ["Faults", "PolygonStandIn"]


def __getattr__(name: str) -> Any:
    if name == "PolygonStandIn":
        from alphagen_core.sim.polygon import PolygonStandIn

        return PolygonStandIn
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
