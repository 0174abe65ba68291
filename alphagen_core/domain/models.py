"""Typed domain models shared by the engine, the adapters and the store.

Every timestamp is a timezone-aware ``datetime`` in America/New_York. Prices are floats in
dollars per share (an option's premium is quoted per share; one contract is 100 shares).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

CONTRACT_MULTIPLIER = 100
MINUTE = dt.timedelta(minutes=1)


class Right(StrEnum):
    CALL = "C"
    PUT = "P"


class SignalType(StrEnum):
    BULLISH = "bullish"  # MA9 crossed above VWAP -> sell a put
    BEARISH = "bearish"  # MA9 crossed below VWAP -> sell a call


class Action(StrEnum):
    SELL_TO_OPEN = "SELL_TO_OPEN"
    BUY_TO_CLOSE = "BUY_TO_CLOSE"


class ExitReason(StrEnum):
    TAKE_PROFIT = "take_profit"
    STOP_LOSS = "stop_loss"
    REVERSAL = "reversal"
    CLOSE = "close"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    FLATTEN = "flatten"  # the operator's `alphagen flatten`


class TradingState(StrEnum):
    """`halted` opens nothing new (exits, stops and the flatten still run);
    `flattening` closes the position now, then halts."""

    ACTIVE = "active"
    HALTED = "halted"
    FLATTENING = "flattening"


class OrderStatus(StrEnum):
    SUBMITTED = "SUBMITTED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"


@dataclass(frozen=True, slots=True)
class OptionContract:
    root: str
    expiry: dt.date
    right: Right
    strike: float


@dataclass(frozen=True, slots=True)
class Bar:
    """A one-minute bar of the underlying, labelled by its window start."""

    symbol: str
    start: dt.datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    vwap: float | None = None  # the bar's own VWAP (Polygon `vw`), absent in flat files
    day_vwap: float | None = None  # the day's running VWAP as sent by the source (Polygon `a`)
    transactions: int | None = None

    @property
    def end(self) -> dt.datetime:
        """The moment the bar becomes usable: using it earlier would be look-ahead."""
        return self.start + MINUTE


@dataclass(frozen=True, slots=True)
class OptionQuote:
    """An option's quote for one minute: a real bid/ask, or a minute aggregate.

    For minute aggregates (flat files) the bid and ask are derived from the bar's prices
    and a configured half-spread, and ``high``/``low`` keep the bar's range so that stops
    and targets can be tested inside the minute. For real quotes, high and low are None.
    """

    symbol: str  # Polygon form, O:QQQ240212C00430000
    contract: OptionContract
    start: dt.datetime
    bid: float
    ask: float
    last: float | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    volume: float | None = None
    half_spread: float = 0.0  # > 0 only for quotes derived from aggregates
    # When the source stamped the quote, if `start` is not that moment: a live minute's chain
    # is filed under the minute it was used for, while its age is judged on the source's time.
    quoted_at: dt.datetime | None = None

    @property
    def source_time(self) -> dt.datetime:
        return self.quoted_at or self.start

    @property
    def open_bid(self) -> float:
        return self.bid if self.open is None else max(self.open - self.half_spread, 0.0)

    @property
    def open_ask(self) -> float:
        return self.ask if self.open is None else self.open + self.half_spread

    @property
    def high_ask(self) -> float:
        return self.ask if self.high is None else self.high + self.half_spread

    @property
    def low_ask(self) -> float:
        return self.ask if self.low is None else self.low + self.half_spread


@dataclass(frozen=True, slots=True)
class MinuteSlice:
    """What the engine is fed once a minute: the closed underlying bar and the option quotes
    of the same minute (the 0DTE chain, or at least the held contract)."""

    bar: Bar
    quotes: Mapping[str, OptionQuote] = field(default_factory=dict)


# ---- engine outputs: one dataclass per table 4-8 ------------------------------------------


@dataclass(frozen=True, slots=True)
class NormalizedTick:  # table 4
    slice_id: str
    period_start: dt.datetime
    underlying_price: float
    vwap: float | None
    ma9: float | None
    vwap_source: str  # "bar_vwap" (Polygon vw) or "typical_price"
    side: int  # sign(MA9 - VWAP) after the zero rule; 0 until both are defined
    quotes_in_slice: int
    held_symbol: str | None
    held_bid: float | None
    held_ask: float | None
    stale: bool


@dataclass(frozen=True, slots=True)
class PositionState:  # table 5
    est_timestamp: dt.datetime
    slice_id: str
    symbol: str | None
    net_quantity: int  # negative: short
    avg_price: float | None
    mark: float | None
    unrealized_pnl: float
    realized_pnl: float  # cumulative for the session, net of fees
    stop_loss: float | None
    take_profit: float | None


@dataclass(frozen=True, slots=True)
class ControlEvent:  # control_events
    est_timestamp: dt.datetime
    state: TradingState
    reason: str
    source: str  # operator | risk | trader


@dataclass(frozen=True, slots=True)
class Signal:  # table 6
    signal_id: str
    slice_id: str
    est_timestamp: dt.datetime  # when it was decided: the bar's end
    signal_type: SignalType
    option_symbol: str | None
    underlying_price: float
    vwap: float
    ma9: float
    rationale: str
    cooldown_until: dt.datetime | None
    acted: bool
    drop_reason: str | None


@dataclass(frozen=True, slots=True)
class TradeIntent:  # table 7
    intent_id: str
    signal_id: str | None
    est_timestamp: dt.datetime
    action: Action
    option_symbol: str
    qty: int
    limit_price: float
    stop_loss: float | None
    take_profit: float | None
    reason: str


@dataclass(frozen=True, slots=True)
class Execution:  # table 8
    execution_id: str
    intent_id: str
    position_id: str  # the entry intent that opened the round trip
    order_id: str
    est_timestamp: dt.datetime
    option_symbol: str
    action: Action
    status: OrderStatus
    fill_price: float | None
    qty: int
    fees: float
    pnl_contrib: float  # realized P/L of this event, net of its fees
    exit_reason: str | None


# ---- broker-facing models (adapters translate to and from these) ---------------------------


@dataclass(frozen=True, slots=True)
class BrokerPosition:  # table 3
    symbol: str  # Polygon form for options
    quantity: int  # negative: short
    avg_price: float | None
    market_value: float | None = None


@dataclass(frozen=True, slots=True)
class BrokerBalances:  # table 3, as rows named BALANCE_SYMBOLS
    cash: float
    buying_power: float  # what new margin the account can take on
    liquidation_value: float


# Table 3 keeps the account's balances beside its positions, one row each per poll, with the
# amount in market_value: a `$` never starts a security's symbol.
BALANCE_SYMBOLS = {"cash": "$CASH", "buying_power": "$BUYING_POWER", "liquidation_value": "$LIQUIDATION_VALUE"}


@dataclass(frozen=True, slots=True)
class OrderRequest:
    action: Action
    option_symbol: str  # Polygon form; adapters convert to their venue's form
    qty: int
    limit_price: float
    intent_id: str  # ours, for reconciliation; venues without client ids match on the fields


@dataclass(frozen=True, slots=True)
class Fill:
    price: float
    qty: int
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    order_id: str
    status: str  # the venue's status word (WORKING, FILLED, CANCELED, REJECTED, ...)
    filled_qty: int
    remaining_qty: int
    fills: tuple[Fill, ...] = ()
    entered_at: dt.datetime | None = None
    request: OrderRequest | None = None

    @property
    def is_final(self) -> bool:
        return self.status in {"FILLED", "CANCELED", "REJECTED", "EXPIRED"}
