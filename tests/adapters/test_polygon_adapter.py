"""PolygonMarketData and PolygonStream (official massive clients) against the stand-in."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import traceback
from collections.abc import Callable

import pytest
from pydantic import SecretStr

from alphagen_core.adapters.polygon.config import PolygonConfig, ws_endpoint
from alphagen_core.adapters.polygon.market_data import (
    PolygonAuthError,
    PolygonMarketData,
)
from alphagen_core.adapters.polygon.stream import PolygonStream
from alphagen_core.domain.clock import SimClock
from alphagen_core.domain.models import MINUTE, Bar, OptionQuote, Right
from alphagen_core.operations.settings import load_settings
from alphagen_core.sim import Faults
from alphagen_core.sim.polygon import PolygonStandIn
from tests.adapters.test_polygon_standin import (
    DAY,
    FROZEN,
    at,
    equity_rows,
    sample_day,
    zero_dte_symbols,
)

pytestmark = pytest.mark.integration

KEY = "adapter-test-key"
SENTINEL = "SENTINEL-9f3c2a7e-POLYGON-KEY"


def config_for(s: PolygonStandIn, key: str = KEY) -> PolygonConfig:
    return PolygonConfig(
        api_key=SecretStr(key),
        rest_url=s.rest_url,
        stock_ws_url=f"ws://{s.ws_feed}/stocks",
        options_ws_url=f"ws://{s.ws_feed}/options",
    )


def standin(clock: SimClock, faults: Faults | None = None, key: str = KEY) -> PolygonStandIn:
    return PolygonStandIn(sample_day(), api_key=key, clock=clock, faults=faults)


class Run:
    """A PolygonStream running in a thread, recording what it delivers and when."""

    def __init__(self, stream: PolygonStream) -> None:
        self.stream = stream
        self.bars: list[tuple[Bar, dt.datetime]] = []
        self.quotes: list[OptionQuote] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.stream.run(
                lambda b: self.bars.append((b, self.stream.clock.now())), self.quotes.append, self._stop.is_set
            )
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            self.error = exc

    def __enter__(self) -> Run:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        # the stop is checked between messages and REST calls; a backfill retrying injected
        # errors finishes its call first, which on a loaded machine took over 10 s once
        self._thread.join(30)
        assert not self._thread.is_alive(), "the stream did not stop"

    def wait_for(self, cond: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond() or not self._thread.is_alive():
                return cond()
            time.sleep(0.02)
        return cond()


def assert_gapless(bars: list[tuple[Bar, dt.datetime]]) -> None:
    starts = [b.start for b, _ in bars]
    assert len(starts) == len(set(starts)), "a minute was delivered twice"
    assert all(b - a == MINUTE for a, b in zip(starts, starts[1:])), f"gap or disorder in {starts}"
    for bar, delivered_at in bars:
        assert delivered_at >= bar.end, f"{bar.start} delivered before its window ended"
        assert bar.start.tzinfo is not None and bar.start.utcoffset() == at(10, 0).utcoffset()


# ---- config ----------------------------------------------------------------------------------


def test_config_from_settings_keeps_the_key_secret() -> None:
    settings = load_settings(
        polygon_api_key=SENTINEL, polygon_stock_ws_url="ws://127.0.0.1:9/stocks",
        polygon_options_ws_url="wss://socket.massive.com/options", polygon_rest_url="http://127.0.0.1:8/",
    )
    cfg = PolygonConfig.from_settings(settings)
    assert isinstance(cfg.api_key, SecretStr) and cfg.api_key.get_secret_value() == SENTINEL
    assert SENTINEL not in repr(cfg) and SENTINEL not in str(cfg)
    assert cfg.rest_url == "http://127.0.0.1:8" and cfg.equity_ticker == "QQQ"
    assert ws_endpoint(cfg.stock_ws_url) == ws_endpoint("ws://127.0.0.1:9/stocks")
    assert (cfg.stocks_endpoint.feed, cfg.stocks_endpoint.secure, cfg.stocks_endpoint.market) == ("127.0.0.1:9", False, "stocks")
    assert (cfg.options_endpoint.feed, cfg.options_endpoint.secure) == ("socket.massive.com", True)
    with pytest.raises(ValueError):
        ws_endpoint("https://socket.massive.com/stocks")


# ---- REST ------------------------------------------------------------------------------------


def test_minute_bars_option_chain_and_quotes() -> None:
    clock = SimClock(at(10, 30, 20.0), speed=FROZEN)
    with standin(clock) as s:
        md = PolygonMarketData(config_for(s), clock=clock)
        bars = md.minute_bars("QQQ", DAY)
        rows = equity_rows(before=at(10, 30))
        assert [b.start for b in bars] == [r["est_timestamp"] for r in rows]
        assert bars[0].start == at(9, 30) and bars[-1].start == at(10, 29)
        for b, r in zip(bars, rows, strict=True):
            assert b.start.tzinfo is not None and str(b.start.tzinfo) == "America/New_York"
            assert (b.open, b.high, b.low, b.close, b.volume) == (r["open"], r["high"], r["low"], r["close"], r["volume"])
            assert b.vwap == pytest.approx((r["high"] + r["low"] + r["close"]) / 3, abs=1e-4)
            assert b.end <= clock.now()

        chain = md.option_chain("QQQ", DAY)
        assert [q.symbol for q in chain] == zero_dte_symbols()
        for q in chain:
            assert q.contract.expiry == DAY and q.contract.right is Right(q.symbol[-9])
            assert 0 <= q.bid <= q.ask and q.start <= clock.now() and q.start.tzinfo is not None
        picked = [chain[0].symbol, chain[-1].symbol]
        quotes = md.quotes(picked + ["O:QQQ240212C09990000"])  # an unknown contract is left out
        assert set(quotes) == set(picked)
        assert quotes[picked[0]].bid == chain[0].bid and quotes[picked[0]].ask == chain[0].ask
        assert md.option_chain("QQQ", DAY + dt.timedelta(days=3)) == []


def test_rest_5xx_and_429_are_retried_and_results_complete() -> None:
    clock = SimClock(at(11, 0, 10.0), speed=FROZEN)
    with standin(clock) as s:
        clean = PolygonMarketData(config_for(s), clock=clock)
        want_bars, want_chain = clean.minute_bars("QQQ", DAY), clean.option_chain("QQQ", DAY)
    # 4 requests per 1.5 s: the test's dozen requests meet the limit however slowly a loaded
    # machine sends them (a 0.4 s window once saw none), and the client outlasts any window.
    faults = Faults(latency_s=0.01, error_rate=0.35, rate_limit_per_min=4, rate_limit_window_s=1.5, seed=5)
    with standin(clock, faults) as s, PolygonMarketData(config_for(s), clock=clock, attempts=8, backoff_s=0.05,
                                                        max_backoff_s=0.5) as md:
        for _ in range(3):
            assert md.minute_bars("QQQ", DAY) == want_bars
            assert md.option_chain("QQQ", DAY) == want_chain
        errors = sum(n for k, n in s.stats.items() if k.startswith("http_5"))
        assert errors >= 1 and s.stats["http_429"] >= 1, dict(s.stats)


def test_rest_bad_key_raises_auth_error_without_the_key() -> None:
    with standin(SimClock(at(10, 0), speed=FROZEN)) as s:
        md = PolygonMarketData(config_for(s, key=SENTINEL))
        with pytest.raises(PolygonAuthError) as info:
            md.minute_bars("QQQ", DAY)
        assert "API key rejected" in str(info.value)
        assert SENTINEL not in "".join(traceback.format_exception(info.value))


# ---- websocket stream ------------------------------------------------------------------------


def test_stream_delivers_bars_in_order_and_quotes_of_watched_contracts() -> None:
    clock = SimClock(at(9, 40, 30.0), speed=150.0)  # a sim minute every 0.4 s
    symbols = zero_dte_symbols()
    first, second = symbols[len(symbols) // 2], symbols[len(symbols) // 2 + 1]
    with standin(clock) as s:
        stream = PolygonStream(config_for(s), clock=clock)
        stream.watch([first])
        with Run(stream) as run:
            assert run.wait_for(lambda: len(run.bars) >= 14 and len(run.quotes) >= 8, 8), (len(run.bars), run.error)
            stream.watch([second])
            assert run.wait_for(lambda: any(q.symbol == second for q in run.quotes), 5)
            switched = len(run.quotes)
            assert run.wait_for(lambda: len(run.quotes) >= switched + 6, 5)
    assert run.error is None
    assert run.bars[0][0].start == at(9, 30)  # the session so far, backfilled from REST first
    assert stream.backfilled >= 10
    assert_gapless(run.bars)
    assert all(b.day_vwap is not None and b.vwap is not None for b, _ in run.bars[-3:])
    assert {q.symbol for q in run.quotes} == {first, second}
    assert all(q.symbol == second for q in run.quotes[switched + 1 :])
    for q in run.quotes:
        assert q.contract.expiry == DAY and 0 <= q.bid <= q.ask and q.start.tzinfo is not None
    assert not [r for r in stream.rejections if r[0] != "duplicate"]


@pytest.mark.parametrize(
    "mode",
    [
        Faults(drop_after_messages=3, max_drops=2, seed=1),  # TCP drop, no close frame
        Faults(drop_after_messages=3, max_drops=2, drop_code=1011, seed=2),
        Faults(drop_after_messages=3, max_drops=1, half_close=True, seed=3),
        Faults(stall_after_messages=3, max_drops=1, seed=4),  # silent: found by pings
    ],
    ids=["tcp-drop", "close-1011", "half-close", "stall"],
)
def test_stream_reconnects_and_backfills_missed_minutes(mode: Faults) -> None:
    clock = SimClock(at(10, 0, 55.0), speed=300.0)  # a sim minute every 0.2 s
    with standin(clock, mode) as s:
        stream = PolygonStream(
            config_for(s), clock=clock, backoff_s=0.5, backfill_on_start=False,
            ping_interval_s=0.3, ping_timeout_s=0.3,
        )
        with Run(stream) as run:
            drops = mode.max_drops or 1
            done = run.wait_for(lambda: sum(1 for e in stream.events if e[1:] == ("stocks", "connected")) > drops
                                and len(run.bars) >= 12, 12)
            assert done, (len(run.bars), stream.events, run.error)
    assert run.error is None
    assert s.stats["ws_drops"] + s.stats["ws_stalls"] == drops
    assert_gapless(run.bars)
    assert stream.backfilled >= 1  # minutes missed while disconnected came from REST
    # every reconnect within 5 s of the disconnect
    stocks = [(t, what) for t, market, what in stream.events if market == "stocks"]
    reconnects = [next((t2 - t for t2, w2 in stocks[i + 1 :] if w2 == "connected"), None)
                  for i, (t, what) in enumerate(stocks) if what.startswith("disconnected")]
    assert len(reconnects) == drops and all(r is not None and r < 5.0 for r in reconnects), stocks


def test_stream_rejects_malformed_duplicate_and_out_of_order_and_goes_on() -> None:
    clock = SimClock(at(10, 0, 55.0), speed=300.0)
    faults = Faults(malformed_rate=0.2, duplicate_rate=0.2, out_of_order_rate=0.2, seed=9)
    symbol = zero_dte_symbols()[len(zero_dte_symbols()) // 2]
    seen: list[tuple[str, str]] = []
    with standin(clock, faults) as s:
        stream = PolygonStream(config_for(s), clock=clock, backfill_on_start=False, on_rejection=lambda r, d: seen.append((r, d)))
        stream.watch([symbol])

        def enough() -> bool:
            reasons = {r for r, _ in stream.rejections}
            return {"malformed", "duplicate", "out_of_order"} <= reasons and len(run.bars) >= 10

        with Run(stream) as run:
            assert run.wait_for(enough, 10), (stream.rejections, len(run.bars))
    assert run.error is None and seen == stream.rejections
    assert_gapless(run.bars)
    times = [q.start for q in run.quotes]
    assert times == sorted(times) and len(run.quotes) >= 20
    assert all(isinstance(d, str) and d for _, d in stream.rejections)
    assert s.stats["ws_malformed"] >= 1 and s.stats["ws_out_of_order"] >= 1 and s.stats["ws_duplicates"] >= 1


def test_stream_auth_failed_raises() -> None:
    with standin(SimClock(at(10, 0), speed=FROZEN)) as s:
        stream = PolygonStream(config_for(s, key=SENTINEL), clock=s.clock)
        with Run(stream) as run:
            assert run.wait_for(lambda: run.error is not None, 5)
    assert isinstance(run.error, PolygonAuthError)
    assert SENTINEL not in "".join(traceback.format_exception(run.error))


def test_api_key_never_appears_in_logs_output_or_errors(caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)  # everything, the websockets frame dumps included
    # (our packages' loggers too: an earlier test in this process may have configured them to INFO)
    caplog.set_level(logging.DEBUG, logger="alphagen_core")
    clock = SimClock(at(10, 0, 55.0), speed=200.0)
    texts: list[str] = []
    with standin(clock, Faults(drop_after_messages=2, max_drops=1, error_rate=0.3, seed=3), key=SENTINEL) as s:
        md = PolygonMarketData(config_for(s, key=SENTINEL), clock=clock, backoff_s=0.05)
        md.minute_bars("QQQ", DAY)
        md.option_chain("QQQ", DAY)
        stream = PolygonStream(config_for(s, key=SENTINEL), md, clock, backoff_s=0.2)
        stream.watch(zero_dte_symbols()[:2])
        with Run(stream) as run:
            assert run.wait_for(lambda: len(run.bars) >= 4 and s.stats["ws_drops"] == 1, 8)
        texts += [repr(md), repr(stream), repr(s), str(stream.rejections), str(stream.events)]
        # a wrong key (the sentinel again, now refused) through REST and the websocket
    with standin(SimClock(at(10, 0), speed=FROZEN)) as other:
        bad = PolygonMarketData(config_for(other, key=SENTINEL))
        with pytest.raises(PolygonAuthError) as rest_err:
            bad.option_chain("QQQ", DAY)
        bad_stream = PolygonStream(config_for(other, key=SENTINEL), bad, other.clock)
        with Run(bad_stream) as bad_run:
            assert bad_run.wait_for(lambda: bad_run.error is not None, 5)
    for exc in (rest_err.value, bad_run.error):
        assert exc is not None
        texts += ["".join(traceback.format_exception(exc)), repr(exc)]
    out, err = capsys.readouterr()
    texts += [out, err, caplog.text] + [r.getMessage() for r in caplog.records]
    assert any("TEXT" in r.getMessage() for r in caplog.records), "websockets frame logs were not captured"
    assert len(caplog.records) > 20
    for text in texts:
        assert SENTINEL not in text
