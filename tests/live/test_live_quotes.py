"""Live quotes keep the time their source gave them: a minute run files each quote under its
minute but judges staleness on the source's time, so a frozen feed opens nothing new; the
stored rows keep that time and a restored minute sees the same ages."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace

import duckdb
import pytest

from alphagen_core.application.control import set_state
from alphagen_core.application.live_minute import run_minute_increment, session_version
from alphagen_core.domain.calendar import session
from alphagen_core.domain.models import Bar, OptionQuote, TradingState
from alphagen_core.operations.settings import Settings
from alphagen_core.persistence.store import Store
from alphagen_core.persistence.tables import TABLES
from tests.test_strategy_rules import DAY, MINUTE, UP, UP_DOWN, build, hm

pytestmark = pytest.mark.unit


class FrozenChainMarket:
    """Bars as they close; the chain as the source last stamped it: `frozen_at` (or, when
    None, fresh each minute)."""

    def __init__(self, closes: list[float], frozen_at: dt.datetime | None) -> None:
        self.slices = build(closes)
        self.frozen_at = frozen_at
        self.upto = self.slices[0].bar.start

    def minute_bars(self, symbol: str, session_date: dt.date) -> list[Bar]:
        return [s.bar for s in self.slices if s.bar.start <= self.upto and s.bar.symbol == symbol]

    def option_chain(self, underlying: str, expiry: dt.date) -> list[OptionQuote]:
        current = next(s for s in self.slices if s.bar.start == self.upto)
        stamp = self.frozen_at or current.bar.end
        return [replace(q, start=stamp) for q in current.quotes.values()]

    def quotes(self, option_symbols: list[str]) -> dict[str, OptionQuote]:
        return {}


def _run_day(tmp_path, market: FrozenChainMarket) -> Store:
    store = Store(tmp_path / "live.duckdb")
    settings = Settings(_env_file=None, alphagen_mode="paper")
    for s in market.slices:
        market.upto = s.bar.start
        run_minute_increment(store, market, settings, session(DAY), s.bar.start, "run-1", wait_for_bar_s=0)
    return store


def test_a_frozen_chain_is_stale_on_its_source_time_and_opens_nothing(tmp_path):
    opened = session(DAY).open
    store = _run_day(tmp_path, FrozenChainMarket(UP + [102], frozen_at=opened + MINUTE))
    signal = store.query("SELECT acted, drop_reason FROM signals")
    assert signal.rows() == [(False, "stale_data")]
    assert store.query("SELECT count(*) AS n FROM trade_intents")["n"][0] == 0
    rows = store.query("SELECT DISTINCT quoted_at FROM option_quotes WHERE quote_kind = 'chain'")
    assert rows["quoted_at"].to_list() == [opened + MINUTE]  # the source's time, not the minute's


def test_a_fresh_chain_opens_and_is_filed_under_its_minute(tmp_path):
    store = _run_day(tmp_path, FrozenChainMarket(UP + [102], frozen_at=None))
    assert store.query("SELECT acted FROM signals")["acted"].to_list() == [True]
    # the session's version is base, recorded once with the session's settings
    [version] = store.query("SELECT mode, version, variant, settings FROM versions").rows()
    assert version[:3] == ("paper", session_version(DAY), "base")
    assert json.loads(version[3])["RISK_STOP_LOSS_MULTIPLE"] == Settings(_env_file=None).risk_stop_loss_multiple
    rows = store.query("""SELECT est_timestamp, quoted_at FROM option_quotes
                          WHERE quote_kind = 'chain' ORDER BY est_timestamp LIMIT 1""")
    minute, quoted = rows.row(0)
    assert hm(minute) == "09:30" and quoted == minute + MINUTE


def test_a_file_from_before_quoted_at_takes_the_column_on_first_use(tmp_path):
    path = tmp_path / "old.duckdb"
    table = TABLES["option_quotes"]
    old_ddl = replace(table, columns=tuple(c for c in table.columns if not c.added_later)).ddl
    assert "quoted_at" in table.ddl and "quoted_at" not in old_ddl
    with duckdb.connect(str(path)) as con:
        con.execute(old_ddl)
    store = Store(path)
    assert "quoted_at" in store.query("SELECT * FROM option_quotes LIMIT 0").columns


def test_a_restored_minute_is_replayed_under_the_trading_state_of_its_time(tmp_path):
    """Halted through the 09:40 crossover, resumed before the 09:41 one: the 09:41 run restores
    09:40 as halted (no phantom entry left pending), so the bearish crossover trades."""
    market = FrozenChainMarket(UP_DOWN, frozen_at=None)
    store = Store(tmp_path / "live.duckdb")
    settings = Settings(_env_file=None, alphagen_mode="paper")
    opened = session(DAY).open
    set_state(store, "paper", DAY, TradingState.HALTED, "test", "operator", opened)
    for s in market.slices:
        if hm(s.bar.start) == "09:41":
            set_state(store, "paper", DAY, TradingState.ACTIVE, "test", "operator", s.bar.start + MINUTE / 2)
        market.upto = s.bar.start
        run_minute_increment(store, market, settings, session(DAY), s.bar.start, "run-1", wait_for_bar_s=0)
    signals = store.query("SELECT signal_type, acted, drop_reason FROM signals ORDER BY est_timestamp")
    assert signals.rows() == [("bullish", False, "halted"), ("bearish", True, None)]
