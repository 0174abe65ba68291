"""Streamed market data for the session (alphagen_core.application.streaming) on the Polygon stand-in over
real sockets: streamed bars reach the minute runs through the spool, gapless across a
websocket drop; the trader's quotes come from the stream once the contract has quoted on the
current connection and from REST otherwise; a pushed quote wakes the trader."""

from __future__ import annotations

import threading
import time

import pytest

from alphagen_core.adapters.polygon.market_data import PolygonMarketData
from alphagen_core.adapters.polygon.stream import PolygonStream
from alphagen_core.application.streaming import (
    SPOOL_ALIVE,
    BarSpool,
    SpooledMarketData,
    StreamedMarketData,
)
from alphagen_core.domain.clock import SimClock
from alphagen_core.domain.models import MINUTE
from alphagen_core.sim import Faults
from tests.adapters.test_polygon_adapter import config_for, standin
from tests.adapters.test_polygon_standin import DAY, FROZEN, at, zero_dte_symbols

pytestmark = pytest.mark.integration


def _wait(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.02)
    return cond()


class CountingRest:
    """The REST client, counting the quote look-ups that reach it."""

    def __init__(self, rest: PolygonMarketData) -> None:
        self.rest, self.quote_calls = rest, 0

    def minute_bars(self, symbol, session_date):
        return self.rest.minute_bars(symbol, session_date)

    def option_chain(self, underlying, expiry):
        return self.rest.option_chain(underlying, expiry)

    def quotes(self, symbols):
        self.quote_calls += 1
        return self.rest.quotes(symbols)


def test_streamed_bars_reach_the_minute_runs_through_the_spool_gapless_across_a_drop(tmp_path):
    clock = SimClock(at(10, 0, 55.0), speed=300.0)  # a sim minute every 0.2 s
    with standin(clock, Faults(drop_after_messages=3, max_drops=1, seed=1)) as s:
        config = config_for(s)
        with PolygonMarketData(config, clock=clock) as rest:
            spool = BarSpool(tmp_path / "stream", DAY)
            stream = PolygonStream(config, rest, clock, backoff_s=0.3, ping_interval_s=0.3, ping_timeout_s=0.3)
            with StreamedMarketData(stream, rest, spool):
                assert _wait(lambda: s.stats["ws_drops"] == 1 and len(spool.read("QQQ")) >= 45, 15)
            spooled = spool.read("QQQ")
            from_rest = {b.start: b for b in rest.minute_bars("QQQ", DAY)}
            minute_runs = SpooledMarketData(rest, spool, clock)
            assert minute_runs.minute_bars("QQQ", DAY) == spooled  # fed: the spool
            clock_later = SimClock(spooled[-1].end + SPOOL_ALIVE + MINUTE, speed=FROZEN)
            assert SpooledMarketData(rest, spool, clock_later).minute_bars("QQQ", DAY) == \
                rest.minute_bars("QQQ", DAY)  # not fed: REST
    assert spooled[0].start == at(9, 30)  # the session so far, backfilled on start
    starts = [b.start for b in spooled]
    assert all(b - a == MINUTE for a, b in zip(starts, starts[1:]))  # no gap across the drop
    # the stand-in's AM and REST agree on what the engine reads (AM carries the day's VWAP `a`
    # and no trade count `n`; REST the reverse)
    engine_reads = ("start", "open", "high", "low", "close", "volume", "vwap")
    assert all([getattr(b, f) for f in engine_reads] == [getattr(from_rest[b.start], f) for f in engine_reads]
               for b in spooled)


def test_quotes_come_from_the_stream_once_quoted_on_this_connection_and_wake_the_trader(tmp_path):
    clock = SimClock(at(10, 0, 5.0), speed=30.0)  # Q events every 0.4 s
    symbol = zero_dte_symbols()[len(zero_dte_symbols()) // 2]
    with standin(clock) as s:
        config = config_for(s)
        with PolygonMarketData(config, clock=clock) as polygon_rest:
            rest = CountingRest(polygon_rest)
            stream = PolygonStream(config, polygon_rest, clock, backfill_on_start=False)
            with StreamedMarketData(stream, rest, rest_every_s=60) as market:
                first = market.quotes([symbol])  # not streamed yet: REST, and now watched
                assert symbol in first and rest.quote_calls == 1
                woke = threading.Event()
                waiter = threading.Thread(target=lambda: (market.wait_for_quote(10), woke.set()))
                waiter.start()
                assert _wait(woke.is_set, 10)  # a pushed quote ended the wait
                assert _wait(lambda: market.quotes([symbol]) and market.streamed_quotes > 0, 10)
                streamed = market.quotes([symbol])[symbol]
                calls = rest.quote_calls
                for _ in range(20):
                    market.quotes([symbol])
                assert rest.quote_calls == calls  # answered from memory
    assert streamed.start > first[symbol].start - MINUTE and streamed.start.tzinfo is not None
    assert streamed.start <= clock.now()  # the source's own time, not the time received


def test_the_stand_in_serves_an_option_contracts_minute_bars_up_to_now():
    clock = SimClock(at(10, 0, 30.0), speed=FROZEN)
    symbol = zero_dte_symbols()[len(zero_dte_symbols()) // 2]
    with standin(clock) as s, PolygonMarketData(config_for(s), clock=clock) as rest:
        bars = rest.minute_bars(symbol, DAY)
    assert bars and bars[-1].start <= at(9, 59) and all(b.symbol == symbol for b in bars)
    assert all(b.low <= min(b.open, b.close) <= max(b.open, b.close) <= b.high for b in bars)
