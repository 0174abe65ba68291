"""The small interfaces between the engine and the outside venues.

Each venue (polygon, schwab, paper) lives in `alphagen_core/adapters/<venue>/` with the same
files: `config.py` (its settings), `market_data.py` (a MarketDataClient) and, where the venue
takes orders, `execution.py` (an ExecutionClient). The engine imports none of them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Protocol

from alphagen_core.domain.models import (
    Bar,
    BrokerBalances,
    BrokerPosition,
    OptionQuote,
    OrderRequest,
    OrderUpdate,
)


class MarketDataClient(Protocol):
    def minute_bars(self, symbol: str, session_date: dt.date) -> list[Bar]:
        """The session's closed minute bars so far (REST; used to backfill gaps)."""
        ...

    def option_chain(self, underlying: str, expiry: dt.date) -> list[OptionQuote]:
        """Current quotes of every listed contract of one expiry."""
        ...

    def quotes(self, option_symbols: list[str]) -> dict[str, OptionQuote]:
        """Current quotes of the given contracts (Polygon-form symbols)."""
        ...


class MarketDataStream(Protocol):
    def run(
        self,
        on_bar: Callable[[Bar], None],
        on_quote: Callable[[OptionQuote], None],
        stop: Callable[[], bool],
    ) -> None:
        """Stream minute bars and option quotes until stop() is true; reconnects by itself."""
        ...

    def watch(self, option_symbols: list[str]) -> None:
        """Change the set of option contracts whose quotes are streamed."""
        ...

    def connected_at(self, market: str) -> float | None:
        """time.monotonic() of the current connection to `market` ("stocks", "options"), or
        None while it is down: quotes from before a reconnect may have been superseded."""
        ...


class ExecutionClient(Protocol):
    def positions(self) -> list[BrokerPosition]: ...

    def balances(self) -> BrokerBalances | None:
        """The account's balances; None where there is no account (the paper fill model,
        whose size bound is RISK_TRADING_CAPITAL in the engine)."""
        ...

    def submit(self, order: OrderRequest) -> str:
        """Send one order and return the venue's order id. Never retried blindly: after a
        timeout the venue is searched (find_order) before anything is sent again."""
        ...

    def order(self, order_id: str) -> OrderUpdate: ...

    def cancel(self, order_id: str) -> None: ...

    def open_orders(self, since: dt.datetime) -> list[OrderUpdate]:
        """Every order entered since `since` (any status), for reconciliation."""
        ...

    def find_order(self, order: OrderRequest, since: dt.datetime) -> OrderUpdate | None:
        """The venue's order matching `order`, if it was received after all."""
        ...
