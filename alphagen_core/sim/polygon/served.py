"""What the REST and websocket APIs serve from: the days, the sim clock, the quote rule, the
faults, the API key, and the counters tests and logs read."""

from __future__ import annotations

import collections
from dataclasses import dataclass

from alphagen_core.domain.clock import Clock
from alphagen_core.sim.faults import Faults
from alphagen_core.sim.polygon.day_index import DayStore


@dataclass(frozen=True, eq=False)
class ServedMarket:
    data: DayStore
    clock: Clock
    faults: Faults
    api_key: str
    stats: collections.Counter[str]
    half_spread: float
    quotes_per_minute: int

    def now_ms(self) -> int:
        return int(self.clock.now().timestamp() * 1000)
