"""Schwab sign-in, tokens and the one HTTP session every Schwab call goes through.

Routing (how schwab-py reaches a local stand-in). schwab-py hard-codes
``https://api.schwabapi.com`` for API calls, for the token endpoint and in the regex that
reads an order id from ``Location``. We build authlib's ``OAuth2Client`` ourselves (as
``schwab.auth.client_from_access_functions`` does: ``TokenMetadata``, ``TOKEN_ENDPOINT``,
``leeway=300``) and give it a ``SchwabTransport``: an httpx transport that, when
``SCHWAB_BASE_URL`` is not the real host, rewrites scheme/host/port (and ``Host``) of every
request for ``api.schwabapi.com`` to the configured base URL. API calls, the token refresh
that authlib performs before a request, and the login's code exchange all pass through it,
so schwab-py itself runs unchanged. The same transport applies the shared rate limiter.

Tokens. The token file keeps schwab-py's format ``{"creation_timestamp", "token"}`` and is
only ever written by ``write_private_file``: created with ``os.open(..., 0o600)`` as a
temporary file, fsynced, then ``os.replace``d over the old one (atomic, never world-
readable, not even for a moment). schwab-py's own writer (plain ``open``) is never used,
because we hand ``TokenMetadata`` our writer; the mode is re-asserted on every read anyway.

Refresh. authlib refreshes the access token before a request once it is within 300 s of
expiry (access tokens last 30 min). A 401 does not make schwab-py refresh, so `call` forces
one refresh and retries once. Refresh tokens die after 7 days: the refresh then fails with
``invalid_grant`` and surfaces as ``SchwabAuthError(REFRESH_EXPIRED_MESSAGE)``, a one-line
instruction instead of a stack trace. A token file older than 7 days is refused up front.

Secrets. App key/secret, account numbers, account hashes and every token value are
registered with a redactor; a logging filter on the schwab-py, httpx, httpcore and authlib
loggers replaces them in every record (schwab-py logs whole response bodies at DEBUG, and
Schwab's order and account JSON carries the account number). Our own messages and
exceptions never include them in the first place.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import secrets
import threading
import time
import webbrowser
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import schwab.auth
import structlog
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import OAuth2Client
from schwab.client import Client

from alphagen_core.adapters.schwab.config import UPSTREAM_HOST, SchwabConfig
from alphagen_core.adapters.schwab.ratelimit import (
    RETRYABLE_STATUS,
    RateLimiter,
    RealTimer,
    RetryPolicy,
    Timer,
    default_limiter,
    retry_idempotent,
)
from alphagen_core.domain.clock import WallClock
from alphagen_core.operations.redaction import REDACTOR, redacting_logger

log = structlog.get_logger(__name__)

TOKEN_ENDPOINT = schwab.auth.TOKEN_ENDPOINT  # https://api.schwabapi.com/v1/oauth/token
LOGIN_COMMAND = "alphagen schwab-login"
REFRESH_EXPIRED_MESSAGE = (
    f"Schwab refresh token expired (they last 7 days): run `{LOGIN_COMMAND}` to sign in again"
)
TOKEN_FILE_MODE = 0o600
SCHWAB_LEEWAY_S = 300  # schwab-py's: refresh when the access token has < 5 min left


# ---- errors -------------------------------------------------------------------------------


class SchwabError(RuntimeError):
    """Base of every error the Schwab adapter raises. Messages never contain secrets."""


class SchwabAuthError(SchwabError):
    """Signing in is needed (or the app credentials are wrong): a message for a human."""


class SchwabAPIError(SchwabError):
    def __init__(self, op: str, status: int, detail: str = "") -> None:
        self.op = op
        self.status = status
        self.detail = detail
        text = f"Schwab {op} failed with HTTP {status}"
        super().__init__(f"{text}: {detail}" if detail else text)


class SchwabUnavailable(SchwabError):
    """Schwab did not give a usable answer within the bounded retries."""


# ---- secret redaction ---------------------------------------------------------------------


# One redactor for the whole project (alphagen_core.operations.redaction): REDACTOR here is that one.

_REDACTED_LOGGERS = (
    "schwab",
    "schwab.auth",
    "schwab.client",
    "schwab.client.base",
    "schwab.client.synchronous",
    "schwab.debug",
    "schwab.streaming",
    "schwab.utils",
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.connection_pool",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "authlib",
    "alphagen_core.adapters.schwab",
)


def install_log_redaction() -> None:
    """Attach the redacting filter to the third-party loggers that see Schwab traffic."""
    for name in _REDACTED_LOGGERS:
        redacting_logger(name)


def register_config_secrets(config: SchwabConfig) -> None:
    REDACTOR.add(config.app_key.get_secret_value(), "app key")
    REDACTOR.add(config.app_secret.get_secret_value(), "app secret")
    REDACTOR.add(config.account_number.get_secret_value(), "account number")


def register_token_secrets(token: Any) -> None:
    if isinstance(token, dict):
        for key in ("access_token", "refresh_token", "id_token"):
            REDACTOR.add(token.get(key), key.replace("_", " "))


# ---- the token file -----------------------------------------------------------------------


def write_private_file(path: Path, text: str) -> None:
    """Write `text` to `path` atomically with mode 0600 (temp file + os.replace)."""
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, TOKEN_FILE_MODE)
    try:
        os.fchmod(fd, TOKEN_FILE_MODE)  # whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.chmod(path, TOKEN_FILE_MODE)


class TokenStore:
    """The token file at SCHWAB_TOKEN_PATH, in schwab-py's wrapped format."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def ensure_private(self) -> None:
        with suppress(FileNotFoundError):
            if os.stat(self.path).st_mode & 0o777 != TOKEN_FILE_MODE:
                os.chmod(self.path, TOKEN_FILE_MODE)

    def read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SchwabAuthError(
                f"no Schwab token at {self.path}: run `{LOGIN_COMMAND}` to sign in"
            ) from None
        self.ensure_private()
        try:
            data = json.loads(text)
            token = data["token"]
            int(data["creation_timestamp"])
            if not isinstance(token, dict) or "access_token" not in token:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise SchwabAuthError(
                f"the Schwab token file {self.path} is not a valid token: "
                f"run `{LOGIN_COMMAND}` to sign in again"
            ) from None
        register_token_secrets(token)
        return data

    def write(self, wrapped: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        """schwab-py's token writer signature: (wrapped_token, *args, **kwargs)."""
        register_token_secrets(wrapped.get("token"))
        with self._lock:
            write_private_file(self.path, json.dumps(wrapped))


# ---- routing + limiting transport ---------------------------------------------------------


class SchwabTransport(httpx.BaseTransport):
    """Applies the rate limiter to every request and, for a non-upstream base URL, sends
    requests addressed to api.schwabapi.com to that base URL instead."""

    def __init__(
        self,
        base_url: str,
        limiter: RateLimiter | None,
        inner: httpx.BaseTransport | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        self._scheme = parts.scheme
        self._host = parts.hostname or UPSTREAM_HOST
        self._port = parts.port
        self._netloc = parts.netloc
        self._rewrite = not (
            parts.scheme == "https" and self._host == UPSTREAM_HOST and parts.port in (None, 443)
        )
        self._inner = inner or httpx.HTTPTransport()
        self.limiter = limiter

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.limiter is not None:
            self.limiter.acquire()
        if self._rewrite and request.url.host == UPSTREAM_HOST:
            request.url = request.url.copy_with(
                scheme=self._scheme, host=self._host, port=self._port
            )
            request.headers["Host"] = self._netloc
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def _token_response_guard(response: httpx.Response) -> httpx.Response:
    """authlib hook on token-endpoint answers: a 429/5xx or any non-OAuth error body becomes
    an HTTPStatusError (retryable upstream) instead of being stored as if it were a token."""
    if response.status_code == 200:
        return response
    if response.status_code in RETRYABLE_STATUS:
        response.raise_for_status()
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return response  # authlib raises OAuthError(error, description)
    response.raise_for_status()
    return response


def _oauth_message(exc: AuthlibBaseError) -> str:
    error = str(getattr(exc, "error", "") or "oauth_error")
    if error in ("invalid_grant", "refresh_token_authentication_error", "token_expired"):
        return REFRESH_EXPIRED_MESSAGE
    if error in ("invalid_client", "unauthorized_client"):
        return (
            f"Schwab rejected the app credentials ({error}): check SCHWAB_API_KEY and "
            "SCHWAB_API_SECRET"
        )
    return f"Schwab sign-in failed ({error}): run `{LOGIN_COMMAND}` to sign in again"


def build_client(
    config: SchwabConfig, store: TokenStore, transport: httpx.BaseTransport
) -> Client:
    """A schwab-py `Client` on the stored token, routed through `transport`."""
    wrapped = store.read()
    metadata = schwab.auth.TokenMetadata.from_loaded_token(wrapped, store.write)
    if metadata.token_age() >= config.refresh_token_max_age_s:
        raise SchwabAuthError(REFRESH_EXPIRED_MESSAGE)
    api_key = config.app_key.get_secret_value()
    session = OAuth2Client(
        api_key,
        client_secret=config.app_secret.get_secret_value(),
        token=metadata.token,
        token_endpoint=TOKEN_ENDPOINT,
        update_token=metadata.wrapped_token_write_func(),
        leeway=SCHWAB_LEEWAY_S,
        transport=transport,
        timeout=config.request_timeout_s,
    )
    session.register_compliance_hook("refresh_token_response", _token_response_guard)
    session.register_compliance_hook("access_token_response", _token_response_guard)
    client = Client(api_key, session, token_metadata=metadata)
    client.set_timeout(config.request_timeout_s)  # schwab-py sets 30 s in its constructor
    return client


# ---- the session --------------------------------------------------------------------------


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
            raise SchwabAuthError(_oauth_message(exc)) from None

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
                raise SchwabAuthError(_oauth_message(exc)) from None
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


# ---- first login --------------------------------------------------------------------------


def authorize_url_for(config: SchwabConfig, upstream_url: str) -> str:
    """schwab-py builds the authorize URL on api.schwabapi.com; for a stand-in, show the
    stand-in's address so the browser (or a test) goes there."""
    if config.is_upstream:
        return upstream_url
    parts = urlsplit(upstream_url)
    return f"{config.base_url}{parts.path}?{parts.query}"


def login(
    config: SchwabConfig,
    *,
    open_browser: bool = True,
    redirect_url_input: Callable[[str], str] = input,
    print_fn: Callable[[str], None] = print,
    limiter: RateLimiter | None = None,
) -> Path:
    """First sign-in (schwab-py's manual flow): show the authorize URL, take the address the
    browser was redirected to, exchange its code for tokens, store them at
    SCHWAB_TOKEN_PATH with mode 0600. Returns the token path.

    The authorize URL carries the app key as OAuth ``client_id``; it is printed for the
    user (that is how OAuth works) and never logged.
    """
    install_log_redaction()
    register_config_secrets(config)
    api_key = config.app_key.get_secret_value()
    context = schwab.auth.get_auth_context(api_key, config.callback_url)
    url = authorize_url_for(config, context.authorization_url)
    print_fn(
        "\nSchwab sign-in\n"
        " 1. Open this address in a browser, log in and allow access:\n\n"
        f"    {url}\n\n"
        " 2. The browser is then sent to your callback address (it may show an error page;\n"
        "    that is expected). Copy that ENTIRE address and paste it below.\n"
    )
    if open_browser:
        with suppress(Exception):
            webbrowser.open(url)
    received = redirect_url_input("Redirect URL> ").strip()
    for raw in urlsplit(received).query.split("&"):
        name, _, value = raw.partition("=")
        if name == "code":
            REDACTOR.add(value, "authorization code")
            REDACTOR.add(unquote(value), "authorization code")
    if "code=" not in received:
        raise SchwabAuthError(
            "the pasted address has no authorization code: copy the whole address the "
            f"browser was sent to after allowing access, and run `{LOGIN_COMMAND}` again"
        )
    transport = SchwabTransport(config.base_url, limiter or default_limiter())
    oauth = OAuth2Client(
        api_key,
        redirect_uri=config.callback_url,
        transport=transport,
        timeout=config.request_timeout_s,
    )
    oauth.register_compliance_hook("access_token_response", _token_response_guard)
    try:
        token = oauth.fetch_token(
            TOKEN_ENDPOINT,
            authorization_response=received,
            client_id=api_key,
            auth=(api_key, config.app_secret.get_secret_value()),
            state=context.state,
        )
    except AuthlibBaseError as exc:
        error = str(getattr(exc, "error", "") or "oauth_error")
        if error == "mismatching_state":
            raise SchwabAuthError(
                "the pasted address belongs to a different sign-in attempt: "
                f"run `{LOGIN_COMMAND}` again and paste the address from this one"
            ) from None
        if error in ("invalid_client", "unauthorized_client"):
            raise SchwabAuthError(_oauth_message(exc)) from None
        raise SchwabAuthError(
            f"Schwab refused the sign-in ({error}); authorization codes are single-use and "
            f"expire within minutes: run `{LOGIN_COMMAND}` again"
        ) from None
    except (httpx.HTTPStatusError, httpx.TransportError) as exc:
        raise SchwabAuthError(
            f"Schwab's token endpoint did not answer usably ({type(exc).__name__}): "
            f"run `{LOGIN_COMMAND}` again"
        ) from None
    finally:
        oauth.close()
    register_token_secrets(dict(token))
    store = TokenStore(config.token_path)
    store.write({"creation_timestamp": int(time.time()), "token": dict(token)})
    log.info("schwab_login_complete", token_path=str(config.token_path))
    print_fn(f"Signed in. Token saved to {config.token_path} (mode 0600); valid for 7 days.")
    return Path(config.token_path)


def login_from_settings(settings: Any, **kwargs: Any) -> Path:
    """`alphagen schwab-login`: the first sign-in with SCHWAB_* settings (see `login`)."""
    return login(SchwabConfig.from_settings(settings), **kwargs)
