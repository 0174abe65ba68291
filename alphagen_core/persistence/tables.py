"""The table contract: every table's name, description, columns (DuckDB type, NULL or not,
description) and natural key, written once.

Built from it: the DDL (`store.ensure_schema`), the Dagster asset descriptions and column
schemas (`alphagen_dagster.assets`) and dbt's sources (`dbt_sources`, which writes
`dbt_pnl/models/staging/_sources.yml`); `tests/test_table_contract.py` proves that the staging
models cast exactly these columns to these types and that the domain models map onto them.
"""

from __future__ import annotations

from dataclasses import dataclass

# DuckDB types the tables use
VARCHAR = "VARCHAR"
DATE = "DATE"
TIMESTAMPTZ = "TIMESTAMPTZ"
DOUBLE = "DOUBLE"
BIGINT = "BIGINT"
INTEGER = "INTEGER"
BOOLEAN = "BOOLEAN"


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    not_null: bool = False
    # Added after the table was first released (nullable): a file written by an older
    # version takes it on first use, and its old rows read NULL there.
    added_later: bool = False

    @property
    def ddl(self) -> str:
        return f'"{self.name}" {self.type}' + (" NOT NULL" if self.not_null else "")


def required(name: str, type_: str, description: str) -> Column:
    return Column(name, type_, description, not_null=True)


def optional(name: str, type_: str, description: str) -> Column:
    return Column(name, type_, description)


# The audit columns every row carries, first in every table.
META = (
    required("mode", VARCHAR, "replay, paper or live."),
    required("session_date", DATE, "The trading day (America/New_York) the row belongs to."),
    required("version", VARCHAR,
             "The replay that produced the row (replay) or the trading session (paper, live). "
             "Readers use max(version) in normalized_ticks per (mode, variant, session_date), a "
             "version's variant being its versions row's (base without one)."),
    required("run_id", VARCHAR, "The Dagster run that wrote the row (audit)."),
    required("written_at", TIMESTAMPTZ, "When the row was written."),
)
META_COLUMNS = tuple(c.name for c in META)


@dataclass(frozen=True)
class Table:
    name: str
    description: str
    columns: tuple[Column, ...]  # the table's own columns, after META
    key: tuple[str, ...]  # natural key within (mode, session_date, version)

    @property
    def all_columns(self) -> tuple[Column, ...]:
        return META + self.columns

    @property
    def ddl(self) -> str:
        body = ",\n    ".join(c.ddl for c in self.all_columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n    {body}\n)"


def _prices(what: str, names: tuple[str, ...]) -> tuple[Column, ...]:
    return tuple(optional(n, DOUBLE, f"The {what}'s {n} price.") for n in names)


EQUITY_BARS = Table(
    "equity_bars",
    "Table 1: QQQ minute bars as received (est_timestamp = bar start, NY time).",
    (
        required("symbol", VARCHAR, "The underlying's ticker."),
        required("est_timestamp", TIMESTAMPTZ, "The bar's start; usable from est_timestamp + 1 minute."),
        *_prices("bar", ("open", "high", "low", "close")),
        optional("volume", DOUBLE, "Shares traded in the minute."),
        optional("bar_vwap", DOUBLE, "The bar's own VWAP (Polygon `vw`); NULL in flat files."),
        optional("day_vwap", DOUBLE, "The day's running VWAP as the source sent it (Polygon `a`); NULL in flat files."),
        optional("transactions", BIGINT, "Trades in the minute, when the source counts them."),
        required("source", VARCHAR, "Where the bar came from: flatfiles:<source> or <provider>-live."),
    ),
    ("symbol", "est_timestamp"),
)

OPTION_QUOTES = Table(
    "option_quotes",
    "Table 2: option quotes or minute aggregates (bid/ask = price -/+ half-spread for aggregates).",
    (
        required("option_symbol", VARCHAR, "The contract in Polygon form (O:QQQ241127C00500000)."),
        required("est_timestamp", TIMESTAMPTZ, "The minute the quote is filed under (its start)."),
        required("underlying", VARCHAR, "The contract's root."),
        required("expiry", DATE, "The contract's expiry."),
        required("right", VARCHAR, "C (call) or P (put)."),
        required("strike", DOUBLE, "The strike price."),
        optional("bid", DOUBLE, "The bid (aggregates: close - half-spread, not below 0)."),
        optional("ask", DOUBLE, "The ask (aggregates: close + half-spread)."),
        optional("last", DOUBLE, "The last price (aggregates: the close)."),
        *_prices("minute aggregate", ("open", "high", "low")),
        optional("volume", DOUBLE, "Contracts traded in the minute."),
        required("quote_kind", VARCHAR,
                 "aggregate (a flat-file minute bar), chain (the live chain a minute's slice used) or "
                 "watch (the held contract's quote the session trader watched)."),
        required("source", VARCHAR, "Where the quote came from: flatfiles:<source> or <provider>-live."),
        Column("quoted_at", TIMESTAMPTZ,
               "Live quotes: when the source stamped it (a chain row's est_timestamp is its minute).",
               added_later=True),
    ),
    ("option_symbol", "est_timestamp"),
)

BROKER_POSITIONS = Table(
    "broker_positions",
    "Table 3: position lines of the broker's snapshots, and the account's balances as `$` rows.",
    (
        required("est_timestamp", TIMESTAMPTZ, "When the snapshot was taken."),
        required("symbol", VARCHAR,
                 "The security (Polygon form for options), or $CASH, $BUYING_POWER or $LIQUIDATION_VALUE."),
        required("quantity", BIGINT, "Contracts held, negative: short (0 on a balance row)."),
        optional("avg_price", DOUBLE, "The position's average price per share."),
        optional("market_value", DOUBLE, "The position's market value, or the balance's amount."),
        required("broker", VARCHAR, "The broker that reported it."),
    ),
    ("est_timestamp", "symbol"),
)

NORMALIZED_TICKS = Table(
    "normalized_ticks",
    "Table 4: one minute slice: the bar, VWAP, MA9 and the quotes used. Every run writes ticks, "
    "so max(version) here is the latest version of a (mode, session_date).",
    (
        required("slice_id", VARCHAR, "The minute slice's id."),
        required("period_start", TIMESTAMPTZ, "The start of the minute's bar."),
        required("underlying_price", DOUBLE, "The bar's close."),
        optional("vwap", DOUBLE, "The session VWAP, once defined."),
        optional("ma9", DOUBLE, "The nine-minute moving average of the close, once defined."),
        required("vwap_source", VARCHAR, "bar_vwap (Polygon `vw`) or typical_price."),
        required("side", INTEGER, "sign(MA9 - VWAP) after the zero rule; 0 until both are defined."),
        required("quotes_in_slice", INTEGER, "Option quotes received for the minute."),
        optional("held_symbol", VARCHAR, "The contract held, if any."),
        optional("held_bid", DOUBLE, "The held contract's bid."),
        optional("held_ask", DOUBLE, "The held contract's ask."),
        required("stale", BOOLEAN, "The held contract's quote was too old, or the minute had no quotes."),
    ),
    ("slice_id",),
)

POSITION_STATE = Table(
    "position_state",
    "Table 5: the position after each slice.",
    (
        required("slice_id", VARCHAR, "The minute slice's id."),
        required("est_timestamp", TIMESTAMPTZ, "The slice's time."),
        optional("symbol", VARCHAR, "The contract held; NULL when flat."),
        required("net_quantity", BIGINT, "Contracts held, negative: short."),
        optional("avg_price", DOUBLE, "The entry credit per share."),
        optional("mark", DOUBLE, "The price per share the position is valued at."),
        required("unrealized_pnl", DOUBLE, "The open position's P/L at the mark, in dollars."),
        required("realized_pnl", DOUBLE, "The session's realized P/L so far, net of fees, in dollars."),
        optional("stop_loss", DOUBLE, "The exit price per share that stops the loss."),
        optional("take_profit", DOUBLE, "The exit price per share that takes the profit."),
    ),
    ("slice_id",),
)

SIGNALS = Table(
    "signals",
    "Table 6: crossovers, acted on or dropped with the reason.",
    (
        required("signal_id", VARCHAR, "The signal's id."),
        required("slice_id", VARCHAR, "The minute slice it was decided in."),
        required("est_timestamp", TIMESTAMPTZ, "When it was decided: the bar's end."),
        required("signal_type", VARCHAR,
                 "bullish (MA9 crossed above VWAP: sell a put) or bearish (below: sell a call)."),
        optional("option_symbol", VARCHAR, "The contract chosen, if any."),
        required("underlying_price", DOUBLE, "The underlying's price at the crossover."),
        required("vwap", DOUBLE, "VWAP at the crossover."),
        required("ma9", DOUBLE, "MA9 at the crossover."),
        required("rationale", VARCHAR, "Why the signal fired, in words."),
        optional("cooldown_until", TIMESTAMPTZ, "No new entry before this time."),
        required("acted", BOOLEAN, "Whether an intent followed."),
        optional("drop_reason", VARCHAR, "Why it was not acted on."),
    ),
    ("signal_id",),
)

TRADE_INTENTS = Table(
    "trade_intents",
    "Table 7: orders the strategy wants, with reason and brackets; each links to its signal.",
    (
        required("intent_id", VARCHAR, "The intent's id."),
        optional("signal_id", VARCHAR, "The signal it came from; NULL for exits no signal caused."),
        required("est_timestamp", TIMESTAMPTZ, "When it was decided."),
        required("action", VARCHAR, "SELL_TO_OPEN (entry) or BUY_TO_CLOSE (exit)."),
        required("option_symbol", VARCHAR, "The contract in Polygon form."),
        required("qty", BIGINT, "Contracts."),
        required("limit_price", DOUBLE, "The limit price per share."),
        optional("stop_loss", DOUBLE, "An entry's stop-loss price per share."),
        optional("take_profit", DOUBLE, "An entry's take-profit price per share."),
        required("reason", VARCHAR, "Why: the entry, or the exit's reason."),
    ),
    ("intent_id",),
)

EXECUTIONS = Table(
    "executions",
    "Table 8: order events at the broker, with fees and realized P/L; each links to its intent.",
    (
        required("execution_id", VARCHAR, "The event's id; natural key within (mode, session_date, version)."),
        required("intent_id", VARCHAR, "The trade_intents row this order came from."),
        required("position_id", VARCHAR, "Groups the fills of one round trip (the entry and its exit share it)."),
        required("order_id", VARCHAR, "The broker's order id."),
        required("est_timestamp", TIMESTAMPTZ, "When the event happened."),
        required("option_symbol", VARCHAR, "The contract in Polygon form."),
        required("action", VARCHAR, "SELL_TO_OPEN (entry) or BUY_TO_CLOSE (exit)."),
        required("status", VARCHAR, "FILLED, CANCELED, REJECTED or SUBMITTED."),
        optional("fill_price", DOUBLE, "Per-share price of a fill (credit on entry, debit on exit)."),
        required("qty", BIGINT, "Contracts."),
        required("fees", DOUBLE, "The event's fees in dollars."),
        required("pnl_contrib", DOUBLE,
                 "Realized P/L of the event net of its fees, in dollars: an entry fill is -fees, an exit "
                 "fill is (entry credit - exit debit) * 100 * qty - exit fees, other events 0. A round "
                 "trip's P/L is the sum over its fills."),
        optional("exit_reason", VARCHAR,
                 "take_profit, stop_loss, reversal, close, daily_loss_limit or flatten (exit fills only)."),
    ),
    ("execution_id",),
)

# The eight tables a replay writes, in the order of the spec's numbering.
TABLES: dict[str, Table] = {
    t.name: t
    for t in (EQUITY_BARS, OPTION_QUOTES, BROKER_POSITIONS, NORMALIZED_TICKS, POSITION_STATE,
              SIGNALS, TRADE_INTENTS, EXECUTIONS)
}

VERSIONS = Table(
    "versions",
    "What each version ran with: its variant, the strategy and risk settings and the code version. "
    "A version without a row here (written before versions were recorded) is the variant base.",
    (
        required("variant", VARCHAR,
                 "The named set of strategy and risk settings; base: the environment's."),
        required("settings", VARCHAR,
                 "The strategy and risk settings the version ran with, JSON by environment-variable name."),
        required("code_version", VARCHAR, "The package version and git commit (+unknown outside a checkout; "
                 "+<commit>.dirty-<hash of the edits> when the code differs from the commit)."),
    ),
    ("variant",),
)

# The tables dbt reads and the replay step materializes: the eight and the versions.
SOURCES: dict[str, Table] = {**TABLES, VERSIONS.name: VERSIONS}

# Not one of the eight: no version of a replay writes it (its rows carry version "control").
CONTROL_EVENTS = Table(
    "control_events",
    "The trading state: one row per change (an operator command, a limit, the trader).",
    (
        required("est_timestamp", TIMESTAMPTZ, "When the change was made."),
        required("state", VARCHAR, "active, halted or flattening."),
        required("source", VARCHAR, "operator, risk or trader."),
        required("reason", VARCHAR, "Why, in words."),
    ),
    ("est_timestamp", "state", "source"),
)

ALL_TABLES: dict[str, Table] = {**SOURCES, CONTROL_EVENTS.name: CONTROL_EVENTS}
