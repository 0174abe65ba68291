"""`SchwabSession`: the schwab-py client plus everything around it (routing, the shared
limiter, retries, forced refresh on 401, error mapping, the account hash).

Refresh. authlib refreshes the access token before a request once it is within 300 s of
expiry (access tokens last 30 min). A 401 does not make schwab-py refresh, so `call` forces
one refresh and retries once. Refresh tokens die after 7 days: the refresh then fails with
``invalid_grant`` and surfaces as ``SchwabAuthError(REFRESH_EXPIRED_MESSAGE)``, a one-line
instruction instead of a stack trace. A token file older than 7 days is refused up front.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections.abc import Callable
from typing import Any

import httpx
import structlog
from authlib.common.errors import AuthlibBaseError
from schwab.client import Client

from alphagen_core.adapters.schwab.client import (
    TOKEN_ENDPOINT,
    SchwabTransport,
    build_client,
)
from alphagen_core.adapters.schwab.config import SchwabConfig
from alphagen_core.adapters.schwab.errors import (
    LOGIN_COMMAND,
    SchwabAPIError,
    SchwabAuthError,
    SchwabError,
    SchwabUnavailable,
    oauth_message,
)
from alphagen_core.adapters.schwab.ratelimit import (
    RETRYABLE_STATUS,
    RateLimiter,
    RealTimer,
    RetryPolicy,
    Timer,
    default_limiter,
    retry_idempotent,
)
from alphagen_core.adapters.schwab.redaction import (
    install_log_redaction,
    register_config_secrets,
)
from alphagen_core.adapters.schwab.tokens import TokenStore
from alphagen_core.domain.clock import WallClock
from alphagen_core.operations.redaction import REDACTOR

log = structlog.get_logger(__name__)


def response_json(response: httpx.Response, op: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise SchwabAPIError(op, response.status_code, "the answer is not JSON") from None


def error_detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    detail = ""
    if isinstance(body, dict):
        if isinstance(body.get("message"), str):
            detail = body["message"]
        elif isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            if isinstance(first, dict):
                detail = str(first.get("detail") or first.get("title") or "")
        elif isinstance(body.get("error"), str):
            detail = body["error"]
    return REDACTOR.redact(detail)[:200]


class SchwabSession:
    """The schwab-py client plus everything around it: routing, the shared limiter, retries,
    forced refresh on 401, error mapping, and the account hash (looked up once).

    `timer` drives the limiter and the backoff sleeps; `clock` (``now()``, tz-aware) dates
    order submissions and lookups. Tests pass one accelerated object for both.
    """

    def __init__(
        self,
        config: SchwabConfig,
        *,
        limiter: RateLimiter | None = None,
        timer: Timer | None = None,
        clock: Any = None,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        install_log_redaction()
        register_config_secrets(config)
        self.config = config
        if limiter is None:
            limiter = (
                RateLimiter(config.max_requests_per_minute, 60.0, timer=timer)
                if timer is not None
                else default_limiter()
            )
        self.limiter = limiter
        self.timer: Timer = timer or limiter.timer or RealTimer()
        self.clock = clock or WallClock()
        self.retry = retry or RetryPolicy()
        self._rng = rng or random.Random()
        self.store = TokenStore(config.token_path)
        self.transport = SchwabTransport(config.base_url, limiter)
        self.client = build_client(config, self.store, self.transport)
        self._lock = threading.Lock()
        self._account_hash: str | None = None

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> SchwabSession:
        """One session for SCHWAB_* settings; share it between SchwabMarketData and
        SchwabExecution so both use one token (and one refresh)."""
        return cls(SchwabConfig.from_settings(settings), **kwargs)

    # -- plumbing

    def now(self) -> dt.datetime:
        return self.clock.now()

    def close(self) -> None:
        self.client.session.close()

    def __enter__(self) -> SchwabSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def backoff(self, attempt: int) -> None:
        """Sleep the retry policy's jittered backoff before attempt `attempt` + 1."""
        self.timer.sleep(self.retry.delay(attempt, self._rng))

    def send(self, fn: Callable[[Client], httpx.Response]) -> httpx.Response:
        """One attempt, no retry. OAuth failures become SchwabAuthError; a 429/5xx from the
        token endpoint (during an automatic refresh) comes back as that response."""
        try:
            return fn(self.client)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code in RETRYABLE_STATUS:
                return exc.response
            raise SchwabAuthError(
                f"Schwab's token endpoint answered HTTP {exc.response.status_code}: "
                f"run `{LOGIN_COMMAND}` if this persists"
            ) from None
        except AuthlibBaseError as exc:
            raise SchwabAuthError(oauth_message(exc)) from None

    def _retrying(self, op: str, fn: Callable[[Client], httpx.Response]) -> httpx.Response:
        def on_retry(attempt: int, reason: str, delay: float) -> None:
            log.info("schwab_retry", op=op, attempt=attempt, reason=reason, delay_s=round(delay, 3))

        try:
            return retry_idempotent(
                lambda: self.send(fn),
                policy=self.retry,
                timer=self.timer,
                rng=self._rng,
                on_retry=on_retry,
            )
        except httpx.TransportError as exc:
            raise SchwabUnavailable(
                f"Schwab {op}: no answer after {self.retry.max_attempts} attempts "
                f"({type(exc).__name__})"
            ) from None

    def call(self, op: str, fn: Callable[[Client], httpx.Response]) -> httpx.Response:
        """An idempotent request with retries; returns a 2xx response or raises."""
        response = self._retrying(op, fn)
        if response.status_code == 401:
            response.close()
            self.refresh_access_token()
            response = self._retrying(op, fn)
            if response.status_code == 401:
                raise SchwabAuthError(
                    "Schwab rejected the access token right after a refresh: "
                    f"run `{LOGIN_COMMAND}` to sign in again"
                )
        return self.check(op, response)

    def check(self, op: str, response: httpx.Response) -> httpx.Response:
        if response.status_code in RETRYABLE_STATUS:
            raise SchwabUnavailable(
                f"Schwab {op}: still HTTP {response.status_code} after "
                f"{self.retry.max_attempts} attempts"
            )
        if not response.is_success:
            raise SchwabAPIError(op, response.status_code, error_detail(response))
        return response

    def refresh_access_token(self) -> None:
        """Force a refresh now (after a 401), with the same bounded retries."""
        session = self.client.session
        attempt = 0
        while True:
            attempt += 1
            try:
                session.refresh_token(TOKEN_ENDPOINT)
                log.info("schwab_token_refreshed", forced=True)
                return
            except AuthlibBaseError as exc:
                raise SchwabAuthError(oauth_message(exc)) from None
            except httpx.HTTPStatusError as exc:
                status = exc.response.status_code
                if status not in RETRYABLE_STATUS:
                    raise SchwabAuthError(
                        f"Schwab's token endpoint answered HTTP {status}: "
                        f"run `{LOGIN_COMMAND}` if this persists"
                    ) from None
                reason = f"HTTP {status}"
            except httpx.TransportError as exc:
                reason = type(exc).__name__
            if attempt >= self.retry.max_attempts:
                raise SchwabUnavailable(
                    f"Schwab token refresh: no usable answer after {attempt} attempts ({reason})"
                )
            self.backoff(attempt)

    def account_hash(self) -> str:
        """The hash Schwab wants in account URLs, for SCHWAB_ACCOUNT_ID (looked up once)."""
        with self._lock:
            if self._account_hash is not None:
                return self._account_hash
        rows = response_json(
            self.call("account numbers", lambda c: c.get_account_numbers()), "account numbers"
        )
        if not isinstance(rows, list):
            raise SchwabAPIError("account numbers", 200, "unexpected answer shape")
        wanted = self.config.account_number.get_secret_value()
        found: str | None = None
        for row in rows:
            if not isinstance(row, dict):
                continue
            REDACTOR.add(row.get("accountNumber"), "account number")
            REDACTOR.add(row.get("hashValue"), "account hash")
            if str(row.get("accountNumber")) == wanted and row.get("hashValue"):
                found = str(row["hashValue"])
        if found is None:
            raise SchwabError(
                f"SCHWAB_ACCOUNT_ID is not among the {len(rows)} account(s) this Schwab "
                "sign-in can see"
            )
        with self._lock:
            self._account_hash = found
        return found


def open_session(config: SchwabConfig, **kwargs: Any) -> SchwabSession:
    return SchwabSession(config, **kwargs)
