"""The Schwab stand-in's faults, and the request log they are decided on.

Faults (`SchwabFaults`; random draws come from `Faults.rng`, so a seed replays exactly):
    base.latency_s          delay before every answer
    base.error_rate         a 5xx instead of processing (nothing happens)
    rate limit              a 429 for every request past `rate_limit_per_min` (default 120,
                            or base.rate_limit_per_min) within base.rate_limit_window_s,
                            per app, on the stand-in's clock (every request counts, the
                            token endpoint too, except the browser's authorize page)
    throttle_rate           a random 429 (nothing happens)
    timeout_rate            the request is swallowed: the server sleeps `timeout_sleep_s`
                            (past the client timeout) and closes without answering
    drop_order_response_rate  POST /orders: the order IS created (and matched), then the
                            answer is lost, as a timeout or a 5xx (`drop_order_response_as`)
                            - the case that must never lead to a second order
    partial_fill_rate       probability that a fill is partial (`orders`)
OAuth endpoints only get random faults when `oauth_faults` is set; the rate limit always
applies. `inject(kind, method=..., path_contains=..., count=...)` scripts faults for the
next matching requests (checked before the random ones), for tests that need one exact
sequence: kinds "5xx", "throttle", "timeout", "drop_response_timeout", "drop_response_5xx"
(the last two only on POST .../orders).
"""

from __future__ import annotations

import copy
import random
import threading
from collections import deque
from dataclasses import dataclass

from alphagen_core.sim.faults import NO_FAULTS, SERVER_ERRORS, Faults
from alphagen_core.sim.schwab.wire import ORDERS_PATH

DEFAULT_RATE_LIMIT = 120
INJECTABLE = ("5xx", "throttle", "timeout", "drop_response_timeout", "drop_response_5xx")


@dataclass(frozen=True)
class SchwabFaults:
    base: Faults = NO_FAULTS
    throttle_rate: float = 0.0
    timeout_rate: float = 0.0
    timeout_sleep_s: float = 2.0
    drop_order_response_rate: float = 0.0
    drop_order_response_as: str = "mixed"  # "timeout" | "5xx" | "mixed"
    partial_fill_rate: float = 0.0
    oauth_faults: bool = False

    def __post_init__(self) -> None:
        rates = ("throttle_rate", "timeout_rate", "drop_order_response_rate", "partial_fill_rate")
        for name in rates:
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"SchwabFaults.{name} must be within [0, 1], got {value!r}")
        if self.timeout_sleep_s < 0:
            raise ValueError("SchwabFaults.timeout_sleep_s must not be negative")
        if self.drop_order_response_as not in ("timeout", "5xx", "mixed"):
            raise ValueError("SchwabFaults.drop_order_response_as: timeout, 5xx or mixed")

    @classmethod
    def of(cls, faults: Faults | SchwabFaults | None) -> SchwabFaults:
        if faults is None:
            return cls()
        if isinstance(faults, SchwabFaults):
            return faults
        return cls(base=faults)


@dataclass
class RequestRecord:
    at: float  # the stand-in clock's unix time at arrival
    method: str
    path: str
    app: str | None
    status: int | None = None
    fault: str | None = None
    forced_drop: str | None = None  # a scripted drop_response_* for this POST
    counted: bool = True  # against the rate limit (the browser's authorize page is not)


@dataclass
class _Scripted:
    kind: str
    method: str | None
    path_contains: str | None
    remaining: int

    def matches(self, method: str, path: str) -> bool:
        if self.kind.startswith("drop_response") and not (
            method == "POST" and ORDERS_PATH.match(path)
        ):
            return False
        return (self.method is None or self.method == method) and (
            self.path_contains is None or self.path_contains in path
        )


class RequestFaults:
    """Every request in arrival order, the rate limit over them, and the fault each one gets:
    the rate limit first, then a scripted fault, then the random ones."""

    def __init__(
        self,
        lock: threading.RLock,
        rng: random.Random,
        rate_limit_per_min: int | None,
        rate_window_s: float,
    ) -> None:
        self.rate_limit_per_min = rate_limit_per_min
        self.rate_window_s = rate_window_s
        self._lock = lock
        self._rng = rng
        self._requests: list[RequestRecord] = []
        self._arrivals: dict[str | None, deque[float]] = {}
        self._scripted: list[_Scripted] = []

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return [copy.copy(r) for r in self._requests]

    def max_requests_in_window(self, window_s: float | None = None, app: str | None = None) -> int:
        """The most rate-limited requests (all but the browser's authorize page) that arrived
        within any rolling window of the stand-in's clock."""
        window = self.rate_window_s if window_s is None else window_s
        times = sorted(
            r.at for r in self.requests if r.counted and (app is None or r.app == app)
        )
        best = 0
        lo = 0
        for hi, t in enumerate(times):
            while times[lo] <= t - window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    def inject(
        self,
        kind: str,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        count: int = 1,
    ) -> None:
        """Script `kind` for the next `count` requests matching method/path (in order)."""
        if kind not in INJECTABLE:
            raise ValueError(f"kind must be one of {INJECTABLE}")
        with self._lock:
            self._scripted.append(_Scripted(kind, method, path_contains, count))

    def clear_injected(self) -> None:
        with self._lock:
            self._scripted.clear()

    def fault_for(
        self, record: RequestRecord, faults: SchwabFaults, is_oauth: bool
    ) -> tuple[str | None, int]:
        """Log the request and decide its fault (None: none), with the status a "5xx" fault
        answers. A scripted drop_response_* is noted on the record for the order route."""
        with self._lock:
            self._requests.append(record)
            limited = record.counted and self._count_arrival(record.app, record.at)
            u_throttle, u_error, u_timeout = (self._rng.random() for _ in range(3))
            error_code = self._rng.choice(SERVER_ERRORS)
            scripted = None if limited else self._take_scripted(record.method, record.path)
        fault: str | None = None
        if limited:
            fault = "rate_limit"
        elif scripted is not None:
            if scripted.startswith("drop_response"):
                record.forced_drop = scripted
            else:
                fault = scripted
        elif not is_oauth or faults.oauth_faults:
            if u_throttle < faults.throttle_rate:
                fault = "throttle"
            elif u_error < faults.base.error_rate:
                fault = "5xx"
            elif u_timeout < faults.timeout_rate:
                fault = "timeout"
        return fault, error_code

    def _take_scripted(self, method: str, path: str) -> str | None:
        for item in self._scripted:
            if item.remaining > 0 and item.matches(method, path):
                item.remaining -= 1
                return item.kind
        return None

    def _count_arrival(self, app: str | None, arrival: float) -> bool:
        if self.rate_limit_per_min is None:
            return False
        window = self._arrivals.setdefault(app, deque())
        while window and window[0] <= arrival - self.rate_window_s:
            window.popleft()
        window.append(arrival)
        return len(window) > self.rate_limit_per_min
