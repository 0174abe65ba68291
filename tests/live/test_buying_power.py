"""Broker truth, balances: the trader polls the Schwab stand-in's balances with its positions
into table 3, and the buying power bounds an entry's size (cut to what it covers, or
rejected when it covers no contract). Real sockets, a real DuckDB file."""

from __future__ import annotations

import pytest

from alphagen_core.domain.models import BALANCE_SYMBOLS
from alphagen_core.domain.risk import naked_margin_per_contract
from alphagen_core.domain.symbols import parse_polygon, polygon_to_schwab
from tests.adapters.test_schwab_standin import SkippingClock, make_standin
from tests.live.test_control import _schwab_trader
from tests.live.test_session_trader import SYMBOL, decided_entry

pytestmark = pytest.mark.integration

LIMIT = 2.0 - 0.05  # FixedQuotes' bid less the default slippage allowance
# no bar in table 1: the trader takes the underlying at the strike (an at-the-money short)
MARGIN = naked_margin_per_contract(parse_polygon(SYMBOL).right, 500.0, 500.0, LIMIT)


def _trade_one_entry(tmp_path, cash: float):
    clock = SkippingClock()
    with make_standin(clock, starting_cash=cash) as standin:
        standin.quote_book.set_quote(polygon_to_schwab(SYMBOL), 2.0, 2.1)
        store, trader = _schwab_trader(tmp_path, standin, clock)
        intent = decided_entry(store)  # 5 contracts
        trader._read_control()
        trader.reconcile()  # the first poll reads the balances
        trader.step(trader.clock.now())
        orders = standin.orders
    return store, trader, intent, orders


def test_balances_are_polled_into_table_3_and_an_entry_is_cut_to_the_buying_power(tmp_path):
    cash = 3.5 * MARGIN  # covers three contracts of the five decided
    store, trader, intent, orders = _trade_one_entry(tmp_path, cash)
    assert [o.quantity for o in orders] == [3]
    assert trader.held is not None and trader.held.qty == 3
    balances = dict(store.query(
        "SELECT symbol, market_value FROM broker_positions WHERE symbol LIKE '$%' AND quantity = 0").rows())
    assert set(balances) == set(BALANCE_SYMBOLS.values())
    assert balances["$CASH"] == pytest.approx(cash) and balances["$BUYING_POWER"] == pytest.approx(cash)


def test_an_entry_the_buying_power_does_not_cover_is_rejected_with_its_reason(tmp_path):
    store, trader, intent, orders = _trade_one_entry(tmp_path, 0.5 * MARGIN)
    assert orders == [] and trader.held is None
    row = store.query("SELECT status, order_id FROM executions WHERE intent_id = ?", [intent.intent_id])
    assert row.rows() == [("REJECTED", "buying_power")]
