"""Schwab's secrets for the project's one redactor (`alphagen_core.operations.redaction`).

App key/secret, account numbers, account hashes and every token value are registered with
the redactor; a logging filter on the schwab-py, httpx, httpcore and authlib loggers replaces
them in every record (schwab-py logs whole response bodies at DEBUG, and Schwab's order and
account JSON carries the account number). Our own messages and exceptions never include them
in the first place.
"""

from __future__ import annotations

from typing import Any

from alphagen_core.adapters.schwab.config import SchwabConfig
from alphagen_core.operations.redaction import REDACTOR, redacting_logger

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
