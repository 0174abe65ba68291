"""Client-side rate limiting and retries for every Schwab call.

Limiter. Schwab allows 120 requests per minute per app. `RateLimiter` is a sliding-window
log: it admits a request only while fewer than `max_requests` were admitted in the last
`period_s` (+ `margin_s`) seconds, and otherwise sleeps until the oldest one leaves the
window. It is thread-safe and sits inside the HTTP transport (see client.py), so market data,
trading and token refreshes all draw from the same budget, retries included. The small
margin absorbs the delay between our clock stamping a request and Schwab receiving it, so
the window measured at the server never holds more than 120 either.

Everything time-related goes through a `Timer` (`time()` and `sleep()`), so tests run a
simulated session's worth of calls without waiting real minutes, and an accelerated
`SimClock` session can drive it through `ClockTimer`.

One limiter per process (`default_limiter()`); several processes calling Schwab at once
must share the budget by other means (in this project the session job is the only caller
during the session).

Retries. `retry_idempotent` retries an idempotent request (GET, DELETE of an order) on 429,
5xx, timeouts and connection errors, with capped exponential backoff and jitter and a bounded
number of attempts, honouring `Retry-After`. Order submission never goes through it: see
execution.py, which looks the order up before it would ever send it again.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import httpx

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class Timer(Protocol):
    def time(self) -> float:
        """Seconds on a monotonic timeline."""
        ...

    def sleep(self, seconds: float) -> None: ...


class RealTimer:
    def time(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class ClockTimer:
    """A `Timer` on a sim clock (`alphagen_core.domain.clock`): clock seconds, real sleeps of
    `seconds / clock.speed`."""

    def __init__(self, clock: object) -> None:
        self._clock = clock

    def time(self) -> float:
        return self._clock.now().timestamp()  # type: ignore[attr-defined]

    def sleep(self, seconds: float) -> None:
        speed = float(getattr(self._clock, "speed", 1.0) or 1.0)
        if seconds > 0:
            time.sleep(seconds / speed)


class RateLimiter:
    def __init__(
        self,
        max_requests: int = 120,
        period_s: float = 60.0,
        *,
        timer: Timer | None = None,
        margin_s: float = 1.0,
    ) -> None:
        if max_requests <= 0 or period_s <= 0 or margin_s < 0:
            raise ValueError("RateLimiter needs max_requests > 0, period_s > 0, margin_s >= 0")
        self.max_requests = max_requests
        self.period_s = period_s
        self.margin_s = margin_s
        self.timer: Timer = timer or RealTimer()
        self._lock = threading.Lock()
        self._admitted: deque[float] = deque()
        self.waited_s = 0.0  # total time spent waiting, for diagnostics

    def _purge(self, now: float) -> None:
        horizon = now - (self.period_s + self.margin_s)
        while self._admitted and self._admitted[0] <= horizon:
            self._admitted.popleft()

    def try_acquire(self) -> float:
        """Admit a request now and return 0, or return how long to wait before trying again."""
        with self._lock:
            now = self.timer.time()
            self._purge(now)
            if len(self._admitted) < self.max_requests:
                self._admitted.append(now)
                return 0.0
            return max(self._admitted[0] + self.period_s + self.margin_s - now, 1e-3)

    def acquire(self) -> float:
        """Block until a request may be sent; returns the time waited."""
        waited = 0.0
        while True:
            wait = self.try_acquire()
            if wait == 0.0:
                if waited:
                    with self._lock:
                        self.waited_s += waited
                return waited
            self.timer.sleep(wait)
            waited += wait

    def in_window(self) -> int:
        with self._lock:
            self._purge(self.timer.time())
            return len(self._admitted)


_default_lock = threading.Lock()
_default: RateLimiter | None = None


def default_limiter() -> RateLimiter:
    """The process-wide limiter every Schwab session shares unless given its own."""
    global _default
    with _default_lock:
        if _default is None:
            _default = RateLimiter()
        return _default


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0
    max_retry_after_s: float = 60.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Backoff before retry number `attempt` (1-based): exponential, capped, with
        "equal jitter" (half fixed, half random) so clients do not retry in lockstep."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


def retry_after_s(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


def is_retryable_exception(exc: BaseException) -> bool:
    # TimeoutException, ConnectError, ReadError, RemoteProtocolError, ... are TransportErrors.
    return isinstance(exc, httpx.TransportError)


def retry_idempotent(
    send: Callable[[], httpx.Response],
    *,
    policy: RetryPolicy,
    timer: Timer,
    rng: random.Random,
    on_retry: Callable[[int, str, float], None] | None = None,
) -> httpx.Response:
    """Call `send` until it answers something other than 429/5xx, at most
    `policy.max_attempts` times. Returns the last response (possibly still 429/5xx when the
    attempts ran out) or re-raises the last transport error. Only for idempotent requests."""
    attempt = 0
    while True:
        attempt += 1
        try:
            response = send()
        except Exception as exc:
            if not is_retryable_exception(exc) or attempt >= policy.max_attempts:
                raise
            reason = type(exc).__name__
            delay = policy.delay(attempt, rng)
        else:
            if response.status_code not in RETRYABLE_STATUS or attempt >= policy.max_attempts:
                return response
            reason = f"HTTP {response.status_code}"
            delay = policy.delay(attempt, rng)
            hinted = retry_after_s(response)
            if hinted is not None:
                delay = max(delay, min(hinted, policy.max_retry_after_s))
            response.close()
        if on_retry is not None:
            on_retry(attempt, reason, delay)
        timer.sleep(delay)
