"""Simulation: the shared sim clock, fault switches, and local stand-ins for the venues.

``from alphagen_core.sim import SimClock`` is cheap; the stand-in (websockets, polars) is
imported only when ``PolygonStandIn`` is first used.
"""

from __future__ import annotations

from typing import Any

from alphagen_core.sim.clock import Clock, SimClock, WallClock, clock_from_env
from alphagen_core.sim.faults import Faults

__all__ = ["Clock", "Faults", "PolygonStandIn", "SimClock", "WallClock", "clock_from_env"]


def __getattr__(name: str) -> Any:
    if name == "PolygonStandIn":
        from alphagen_core.sim.polygon_server import PolygonStandIn

        return PolygonStandIn
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
