"""The session trader's own rules, on a real DuckDB file and the paper execution client."""

from __future__ import annotations

import datetime as dt

import pytest

from alphagen_core.adapters.paper.execution import PaperExecution
from alphagen_core.application.live_minute import session_version
from alphagen_core.application.live_session import SessionTrader, TraderTimings
from alphagen_core.domain.calendar import NY, session
from alphagen_core.domain.clock import SimClock
from alphagen_core.domain.models import (
    Action,
    OptionContract,
    OptionQuote,
    OrderRequest,
    Right,
    TradeIntent,
)
from alphagen_core.operations.settings import Settings
from alphagen_core.persistence.store import RowMeta, Store

pytestmark = pytest.mark.unit

DAY = dt.date(2024, 11, 27)
SYMBOL = "O:QQQ241127P00500000"


class FixedQuotes:
    """Market data for a pure test: one contract at a fixed bid/ask."""

    def __init__(self, bid: float, ask: float) -> None:
        self.bid, self.ask = bid, ask

    def quotes(self, symbols):
        contract = OptionContract("QQQ", DAY, Right.PUT, 500.0)
        return {s: OptionQuote(s, contract, dt.datetime(2024, 11, 27, 10, tzinfo=NY), self.bid, self.ask) for s in symbols}


def decided_entry(store: Store) -> TradeIntent:
    """A minute run's entry intent of 5 contracts, decided at 10:00, in table 7."""
    intent = TradeIntent("int-2024-11-27T09:59-1", "sig-1", dt.datetime(2024, 11, 27, 10, tzinfo=NY),
                         Action.SELL_TO_OPEN, SYMBOL, 5, 2.0, 4.0, 1.0, "entry")
    store.write({"trade_intents": [intent]}, RowMeta("paper", DAY, session_version(DAY), "run-0"))
    return intent


def make(tmp_path, clock, market, broker=None):
    settings = Settings(_env_file=None, alphagen_mode="paper", alphagen_duckdb_path=tmp_path / "db.duckdb")
    store = Store(settings.alphagen_duckdb_path)
    broker = broker or PaperExecution(market, clock)
    timings = TraderTimings(poll_s=0.01, order_poll_s=0.0, quote_poll_s=0.0)
    return store, broker, SessionTrader(store, broker, market, settings, session(DAY), clock, "run-1", timings=timings)


def test_the_trader_ends_by_itself_after_the_close(tmp_path):
    clock = SimClock(dt.datetime(2024, 11, 27, 15, 59, 58, tzinfo=NY), speed=60)
    _, _, trader = make(tmp_path, clock, FixedQuotes(1.0, 1.1))
    stats = trader.run()
    assert clock.now() >= session(DAY).close and stats.orders_sent == 0


def test_an_order_sent_before_a_crash_is_recorded_not_resent(tmp_path):
    clock = SimClock(dt.datetime(2024, 11, 27, 10, 0, 5, tzinfo=NY), speed=1)
    market = FixedQuotes(2.0, 2.1)
    store, broker, trader = make(tmp_path, clock, market)
    intent = decided_entry(store)
    # the crashed process got this far: the order reached the broker, table 8 has nothing
    order_id = broker.submit(OrderRequest(Action.SELL_TO_OPEN, SYMBOL, 5, 1.95, intent.intent_id))
    trader.reconcile()
    trader.step(clock.now())
    rows = store.query("SELECT status, order_id, fill_price, pnl_contrib FROM executions ORDER BY status")
    assert rows["order_id"].to_list() == [order_id, order_id]
    assert rows["status"].to_list() == ["FILLED", "SUBMITTED"]
    assert trader.stats.orders_sent == 0 and trader.stats.reconciled_orders == 1
    assert len(broker.open_orders(dt.datetime(2024, 11, 27, tzinfo=NY))) == 1  # nothing resent
    assert trader.held is not None and trader.held.credit == 2.0


def test_a_stop_is_taken_between_minute_runs(tmp_path):
    clock = SimClock(dt.datetime(2024, 11, 27, 10, 0, 5, tzinfo=NY), speed=1)
    market = FixedQuotes(2.0, 2.1)
    store, broker, trader = make(tmp_path, clock, market)
    decided_entry(store)
    trader.reconcile()
    trader.step(clock.now())
    assert trader.held is not None and trader.held.stop_loss == 4.0  # 2x the 2.00 credit
    market.bid, market.ask = 4.0, 4.1  # the quote crosses the stop
    trader.step(clock.now())
    trader.step(clock.now())
    exits = store.query("SELECT reason FROM trade_intents WHERE action = 'BUY_TO_CLOSE'")
    assert exits["reason"].to_list() == ["stop_loss"]
    fills = store.query("SELECT action, fill_price, pnl_contrib FROM executions WHERE status = 'FILLED' ORDER BY est_timestamp, action DESC")
    assert fills["fill_price"].to_list() == [2.0, 4.1] and trader.held is None
    assert round(sum(fills["pnl_contrib"]), 2) == round(-(4.1 - 2.0) * 5 * 100 - 2 * 5 * 0.65, 2)


def test_an_entry_whose_marketable_limit_is_far_from_the_mid_is_rejected_not_sent(tmp_path):
    clock = SimClock(dt.datetime(2024, 11, 27, 10, 0, 5, tzinfo=NY), speed=1)
    store, broker, trader = make(tmp_path, clock, FixedQuotes(0.10, 0.30))  # limit 0.05 vs mid 0.20
    intent = decided_entry(store)
    trader.reconcile()
    trader.step(clock.now())
    rows = store.query("SELECT status, order_id FROM executions WHERE intent_id = ?", [intent.intent_id])
    assert rows.rows() == [("REJECTED", "price_sanity")]
    assert broker.open_orders(dt.datetime(2024, 11, 27, tzinfo=NY)) == [] and trader.held is None
