"""Fault switches for the local stand-ins: what can go wrong with a market-data venue.

A ``Faults`` value is plain configuration; the stand-in applies it. Every random choice is
drawn from ``random.Random`` seeded by ``seed`` (and, for websockets, the connection's
number), so a test that sends the same requests sees the same faults.

REST (each request):
    latency_s            added delay before every answer
    error_rate           probability of a 5xx answer (500/502/503/504)
    rate_limit_per_min   a 429 for every request past this many within ``rate_limit_window_s``
                         (a sliding window of real seconds; 60 like Polygon, smaller in tests)

Websocket (each data frame; status, auth and subscription frames are never touched):
    drop_after_messages  drop the connection after it sent this many frames past the auth
                         answer (injected ones included): a TCP reset with no close frame, or a
                         close frame with ``drop_code`` (e.g. 1011) when set
    half_close           at the drop point, send a TCP FIN (write_eof, no close frame) and stop
                         sending instead of resetting the connection
    stall_after_messages after this many frames go silent: stop sending and stop reading (so
                         pings go unanswered) while the TCP connection stays up
    max_drops            drops and stalls over the server's life, all connections together
                         (None: every connection, every time)
    malformed_rate       probability of an extra malformed frame before a data frame (broken
                         JSON, a non-list, or an event with missing or non-numeric fields)
    duplicate_rate       probability that a data frame is sent twice
    out_of_order_rate    probability that a data frame is held back and sent after the next one
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SERVER_ERRORS = (500, 502, 503, 504)


@dataclass(frozen=True)
class Faults:
    latency_s: float = 0.0
    error_rate: float = 0.0
    rate_limit_per_min: int | None = None
    drop_after_messages: int | None = None
    half_close: bool = False
    malformed_rate: float = 0.0
    duplicate_rate: float = 0.0
    out_of_order_rate: float = 0.0
    seed: int = 0
    # refinements beyond the basic switches
    drop_code: int | None = None
    max_drops: int | None = None
    stall_after_messages: int | None = None
    rate_limit_window_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("error_rate", "malformed_rate", "duplicate_rate", "out_of_order_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Faults.{name} must be within [0, 1], got {value!r}")
        if self.latency_s < 0:
            raise ValueError("Faults.latency_s must not be negative")
        if self.rate_limit_window_s <= 0:
            raise ValueError("Faults.rate_limit_window_s must be positive")
        for name in ("rate_limit_per_min", "drop_after_messages", "stall_after_messages"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"Faults.{name} must not be negative")

    def rng(self, *stream: object) -> random.Random:
        """A generator for one named stream of choices (e.g. ("ws", "stocks", 3))."""
        return random.Random(":".join(str(part) for part in (self.seed, *stream)))


NO_FAULTS = Faults()
