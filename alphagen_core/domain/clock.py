"""Clocks: the real one, and a simulated one every process agrees on without talking.

A ``SimClock`` maps wall-clock time onto session time linearly::

    sim_now = start + (time.time() - epoch) * speed

so any process given the same three numbers computes the same sim time. They come from the
environment::

    ALPHAGEN_SIM_START   ISO datetime; naive means America/New_York (e.g. 2024-02-12T09:25)
    ALPHAGEN_SIM_EPOCH   wall-clock unix time (seconds) at which sim time == start
    ALPHAGEN_SIM_SPEED   sim seconds per real second (1 = real time, 60 = a minute a second)

Both clocks only read ``time.time()``; nothing here sleeps, starts threads or does I/O.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from zoneinfo import ZoneInfo

NY = ZoneInfo("America/New_York")

ENV_START = "ALPHAGEN_SIM_START"
ENV_EPOCH = "ALPHAGEN_SIM_EPOCH"
ENV_SPEED = "ALPHAGEN_SIM_SPEED"


class Clock(Protocol):
    speed: float

    def now(self) -> dt.datetime:
        """The current time, timezone-aware America/New_York."""
        ...

    def wall_time(self, t: dt.datetime) -> float:
        """The unix time at which this clock shows ``t``."""
        ...


def _to_ny(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=NY) if t.tzinfo is None else t.astimezone(NY)


@dataclass(frozen=True, slots=True)
class WallClock:
    """Real time in New York, for paper and live."""

    speed: float = 1.0

    def now(self) -> dt.datetime:
        return dt.datetime.now(NY)

    def wall_time(self, t: dt.datetime) -> float:
        return _to_ny(t).timestamp()


@dataclass(frozen=True, slots=True)
class SimClock:
    """Session time running ``speed`` times faster than real time from ``start``.

    ``epoch`` is the unix time at which sim time equals ``start``; it defaults to the moment
    the clock is built. Naive ``start`` values are taken as America/New_York.
    """

    start: dt.datetime
    speed: float = 1.0
    epoch: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not isinstance(self.start, dt.datetime):
            raise TypeError("SimClock start must be a datetime")
        if not (self.speed > 0 and self.speed < float("inf")):
            raise ValueError(f"SimClock speed must be a positive number, got {self.speed!r}")
        object.__setattr__(self, "start", _to_ny(self.start))

    def now(self) -> dt.datetime:
        elapsed = (time.time() - self.epoch) * self.speed
        return self.start + dt.timedelta(seconds=elapsed)

    def wall_time(self, t: dt.datetime) -> float:
        return self.epoch + (_to_ny(t) - self.start).total_seconds() / self.speed

    def env(self) -> dict[str, str]:
        """The environment variables that make ``from_env`` rebuild this clock."""
        return {
            ENV_START: self.start.isoformat(),
            ENV_EPOCH: repr(self.epoch),
            ENV_SPEED: repr(self.speed),
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SimClock | None:
        """The clock described by ALPHAGEN_SIM_*, or None when ALPHAGEN_SIM_START is unset.

        A missing epoch means "now" (only sensible for a single process); a missing speed
        means 1. Bad values raise ValueError naming the variable.
        """
        env = os.environ if environ is None else environ
        start_text = (env.get(ENV_START) or "").strip()
        if not start_text:
            return None
        try:
            start = dt.datetime.fromisoformat(start_text)
        except ValueError:
            raise ValueError(f"{ENV_START} is not an ISO datetime: {start_text!r}") from None
        values: dict[str, float] = {}
        for name, default in ((ENV_EPOCH, None), (ENV_SPEED, 1.0)):
            text = (env.get(name) or "").strip()
            if not text:
                if default is not None:
                    values[name] = default
                continue
            try:
                values[name] = float(text)
            except ValueError:
                raise ValueError(f"{name} is not a number: {text!r}") from None
        if ENV_EPOCH in values:
            return cls(start=start, speed=values[ENV_SPEED], epoch=values[ENV_EPOCH])
        return cls(start=start, speed=values[ENV_SPEED])


def clock_from_env(environ: Mapping[str, str] | None = None) -> Clock:
    """The simulated clock when ALPHAGEN_SIM_START is set, otherwise the wall clock."""
    return SimClock.from_env(environ) or WallClock()


def clock_from_settings(settings: Any) -> Clock:
    """The one clock of the system, from settings (ALPHAGEN_SIM_* in the environment or .env)."""
    return clock_from_env({
        ENV_START: settings.alphagen_sim_start,
        ENV_EPOCH: settings.alphagen_sim_epoch,
        ENV_SPEED: settings.alphagen_sim_speed,
    })
