"""The first Schwab sign-in (`alphagen schwab-login`): schwab-py's manual OAuth flow."""

from __future__ import annotations

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

from alphagen_core.adapters.schwab.client import (
    TOKEN_ENDPOINT,
    SchwabTransport,
    token_response_guard,
)
from alphagen_core.adapters.schwab.config import SchwabConfig
from alphagen_core.adapters.schwab.errors import (
    LOGIN_COMMAND,
    SchwabAuthError,
    oauth_message,
)
from alphagen_core.adapters.schwab.ratelimit import RateLimiter, default_limiter
from alphagen_core.adapters.schwab.redaction import (
    install_log_redaction,
    register_config_secrets,
    register_token_secrets,
)
from alphagen_core.adapters.schwab.tokens import TokenStore
from alphagen_core.operations.redaction import REDACTOR

log = structlog.get_logger(__name__)


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
    oauth.register_compliance_hook("access_token_response", token_response_guard)
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
            raise SchwabAuthError(oauth_message(exc)) from None
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
