"""Polygon (Massive) adapter settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import SecretStr

if TYPE_CHECKING:
    from alphagen_core.operations.settings import Settings


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
            from alphagen_core.operations.settings import get_settings

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

