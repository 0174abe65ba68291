"""The schwab-py client and the HTTP transport every Schwab call goes through.

Routing (how schwab-py reaches a local stand-in). schwab-py hard-codes
``https://api.schwabapi.com`` for API calls, for the token endpoint and in the regex that
reads an order id from ``Location``. We build authlib's ``OAuth2Client`` ourselves (as
``schwab.auth.client_from_access_functions`` does: ``TokenMetadata``, ``TOKEN_ENDPOINT``,
``leeway=300``) and give it a ``SchwabTransport``: an httpx transport that, when
``SCHWAB_BASE_URL`` is not the real host, rewrites scheme/host/port (and ``Host``) of every
request for ``api.schwabapi.com`` to the configured base URL. API calls, the token refresh
that authlib performs before a request, and the login's code exchange all pass through it,
so schwab-py itself runs unchanged. The same transport applies the shared rate limiter.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import schwab.auth
from authlib.integrations.httpx_client import OAuth2Client
from schwab.client import Client

from alphagen_core.adapters.schwab.config import UPSTREAM_HOST, SchwabConfig
from alphagen_core.adapters.schwab.errors import (
    REFRESH_EXPIRED_MESSAGE,
    SchwabAuthError,
)
from alphagen_core.adapters.schwab.ratelimit import RETRYABLE_STATUS, RateLimiter
from alphagen_core.adapters.schwab.tokens import TokenStore

TOKEN_ENDPOINT = schwab.auth.TOKEN_ENDPOINT  # https://api.schwabapi.com/v1/oauth/token
SCHWAB_LEEWAY_S = 300  # schwab-py's: refresh when the access token has < 5 min left


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


def token_response_guard(response: httpx.Response) -> httpx.Response:
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
    session.register_compliance_hook("refresh_token_response", token_response_guard)
    session.register_compliance_hook("access_token_response", token_response_guard)
    client = Client(api_key, session, token_metadata=metadata)
    client.set_timeout(config.request_timeout_s)  # schwab-py sets 30 s in its constructor
    return client
