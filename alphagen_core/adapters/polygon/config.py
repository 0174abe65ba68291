"""Polygon (Massive) adapter settings, and the log redactor that keeps the API key out of logs."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import SecretStr

if TYPE_CHECKING:
    from alphagen_core.settings import Settings

MASK = "***"


@dataclass(frozen=True, slots=True)
class WsEndpoint:
    """What ``massive.WebSocketClient`` needs for one websocket URL."""

    feed: str  # host[:port][/prefix], without scheme and market
    secure: bool
    market: str  # "stocks" or "options"


def ws_endpoint(url: str) -> WsEndpoint:
    """``wss://socket.massive.com/stocks`` -> feed ``socket.massive.com``, secure, ``stocks``.

    massive builds its URL as ``ws[s]://{feed}/{market}``, so the last path segment is the
    market and anything before it stays in the feed.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"not a websocket URL (ws:// or wss://host/market): {url!r}")
    segments = [s for s in parts.path.split("/") if s]
    if not segments:
        raise ValueError(f"websocket URL has no market path (/stocks or /options): {url!r}")
    feed = "/".join([parts.netloc, *segments[:-1]])
    return WsEndpoint(feed=feed, secure=parts.scheme == "wss", market=segments[-1])


@dataclass(frozen=True, slots=True)
class PolygonConfig:
    api_key: SecretStr
    rest_url: str = "https://api.massive.com"
    stock_ws_url: str = "wss://socket.massive.com/stocks"
    options_ws_url: str = "wss://socket.massive.com/options"
    equity_ticker: str = "QQQ"
    underlying: str = "QQQ"

    def __post_init__(self) -> None:
        if not isinstance(self.api_key, SecretStr):
            object.__setattr__(self, "api_key", SecretStr(str(self.api_key)))
        object.__setattr__(self, "rest_url", self.rest_url.rstrip("/"))
        ws_endpoint(self.stock_ws_url)
        ws_endpoint(self.options_ws_url)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> PolygonConfig:
        if settings is None:
            from alphagen_core.settings import get_settings

            settings = get_settings()
        return cls(
            api_key=settings.polygon_api_key,
            rest_url=settings.polygon_rest_url,
            stock_ws_url=settings.polygon_stock_ws_url,
            options_ws_url=settings.polygon_options_ws_url,
            equity_ticker=settings.polygon_equity_ticker,
            underlying=settings.polygon_options_underlying,
        )

    @property
    def stocks_endpoint(self) -> WsEndpoint:
        return ws_endpoint(self.stock_ws_url)

    @property
    def options_endpoint(self) -> WsEndpoint:
        return ws_endpoint(self.options_ws_url)


# ---- keeping secrets out of logs -------------------------------------------------------------

# The auth frame as the websockets library logs it at DEBUG, an HTTP bearer header, an
# apiKey query parameter: masked whatever the key is, even a wrong one.
_PATTERNS = (
    re.compile(r"""(["']action["']\s*:\s*["']auth["']\s*,\s*["']params["']\s*:\s*["'])[^"']*"""),
    re.compile(r"(Bearer\s+)[^\s'\",}]+", re.IGNORECASE),
    re.compile(r"((?:\?|&|\b)apiKey=)[^&\s'\"]+"),
)


class SecretRedactor(logging.Filter):
    """A logging filter that masks the given secrets (and auth frames, bearer headers and
    apiKey parameters) in a record's message before any handler sees it.

    Attach it to the logger that creates the records (a filter on a logger does not apply to
    its children's records).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets: set[str] = {s for s in secrets if s}
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        if secret:
            with self._lock:
                self._secrets.add(secret)

    def redact(self, text: str) -> str:
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is passed on untouched
            return True
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_installed: dict[str, SecretRedactor] = {}
_installed_lock = threading.Lock()


def redacting_logger(name: str, *secrets: str) -> logging.Logger:
    """The logger ``name`` with a SecretRedactor (shared per logger) that masks ``secrets``."""
    logger = logging.getLogger(name)
    with _installed_lock:
        redactor = _installed.get(name)
        if redactor is None:
            redactor = _installed[name] = SecretRedactor()
            logger.addFilter(redactor)
    for secret in secrets:
        redactor.add(secret)
    return logger


def redact(text: str, *secrets: str) -> str:
    """``text`` with the secrets and anything that looks like a credential masked."""
    return SecretRedactor(secrets).redact(text)
