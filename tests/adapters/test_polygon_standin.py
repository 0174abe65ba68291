"""The Polygon stand-in against the official, unmodified massive clients, over real sockets."""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import functools
import json
import math
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from massive import RESTClient, WebSocketClient
from massive.exceptions import AuthError, BadResponse
from massive.websocket.models import EquityAgg, EquityQuote

from alphagen_core.adapters.polygon.flatfiles import LocalFlatFiles, load_day
from alphagen_core.domain.calendar import NY, session
from alphagen_core.domain.clock import (
    ENV_EPOCH,
    ENV_SPEED,
    ENV_START,
    SimClock,
    WallClock,
    clock_from_env,
)
from alphagen_core.sim import Faults
from alphagen_core.sim.polygon import PolygonStandIn
from alphagen_core.sim.sample import generate

pytestmark = pytest.mark.integration

DAY = dt.date(2024, 2, 12)
KEY = "standin-test-key"
FROZEN = 1e-9  # a clock speed at which sim time stands still for the length of a test


@functools.lru_cache(maxsize=1)
def sample_day() -> Any:
    """One generated trading day, loaded through the flat-file adapter (once per process)."""
    root = Path(tempfile.mkdtemp(prefix="alphagen-polygon-test-"))
    atexit.register(shutil.rmtree, root, True)
    generate(DAY, DAY, root, seed=7)
    return load_day(LocalFlatFiles(root), session(DAY), equity_ticker="QQQ", underlying="QQQ", cache_dir=root / "cache")


def at(hh: int, mm: int, ss: float = 0.0) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time(hh, mm), tzinfo=NY) + dt.timedelta(seconds=ss)


def ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def standin(clock: SimClock, faults: Faults | None = None, **kw: Any) -> PolygonStandIn:
    return PolygonStandIn(sample_day(), api_key=KEY, clock=clock, faults=faults, **kw)


def zero_dte_symbols() -> list[str]:
    opts = sample_day().options
    return sorted(opts.filter(pl.col("expiry") == DAY)["option_symbol"].unique().to_list())


def equity_rows(before: dt.datetime) -> list[dict[str, Any]]:
    eq = sample_day().equity
    return eq.filter((pl.col("symbol") == "QQQ") & (pl.col("est_timestamp") < before)).sort("est_timestamp").to_dicts()


# ---- clock ---------------------------------------------------------------------------------


def test_sim_clock_from_env_agrees_across_processes_and_wall_clock() -> None:
    env = {ENV_START: "2024-02-12T09:30:00", ENV_EPOCH: "1700000000.0", ENV_SPEED: "60"}
    a, b = SimClock.from_env(env), SimClock.from_env(dict(env))
    assert a is not None and b is not None
    assert a.start == at(9, 30) and a.start.tzinfo is not None
    assert abs((a.now() - b.now()).total_seconds()) < 0.5  # same numbers, same sim time
    # sim = start + (wall - epoch) * speed, and wall_time inverts it
    assert a.wall_time(at(9, 31)) == pytest.approx(1700000000.0 + 1.0)
    assert SimClock.from_env({}) is None
    assert isinstance(clock_from_env({}), WallClock)
    assert SimClock.from_env(a.env()) == a
    with pytest.raises(ValueError, match=ENV_SPEED):
        SimClock.from_env({ENV_START: "2024-02-12T09:30", ENV_SPEED: "fast"})
    assert WallClock().now().tzinfo is not None


# ---- REST -------------------------------------------------------------------------------------


def test_aggregates_page_through_next_url_and_serve_only_ended_bars() -> None:
    now = at(10, 0, 0.0)  # bar 09:59 ended exactly now; bar 10:00 is still forming
    with standin(SimClock(now, speed=FROZEN)) as s:
        client = RESTClient(api_key=KEY, base=s.rest_url)
        aggs = list(client.list_aggs("QQQ", 1, "minute", DAY.isoformat(), DAY.isoformat(), limit=7))
        pages = s.stats["http_200"]
        expected = equity_rows(before=at(9, 59, 1))
        assert len(aggs) == len(expected) > 7
        assert pages == math.ceil(len(expected) / 7)
        assert [a.timestamp for a in aggs] == [ms(r["est_timestamp"]) for r in expected]
        assert aggs[-1].timestamp == ms(at(9, 59))
        for a, r in zip(aggs, expected, strict=True):
            assert (a.open, a.high, a.low, a.close, a.volume) == (r["open"], r["high"], r["low"], r["close"], r["volume"])
            assert a.vwap == pytest.approx((r["high"] + r["low"] + r["close"]) / 3, abs=1e-4)
            assert a.timestamp + 60_000 <= ms(now)
        # unix-ms bounds, inclusive, and descending order
        window = list(client.list_aggs("QQQ", 1, "minute", ms(at(9, 40)), ms(at(9, 44)), sort="desc"))
        assert [a.timestamp for a in window] == [ms(at(9, m)) for m in (44, 43, 42, 41, 40)]
        # one millisecond earlier, the 09:59 bar has not ended yet
    with standin(SimClock(at(9, 59, 59.999), speed=FROZEN)) as s:
        aggs = RESTClient(api_key=KEY, base=s.rest_url).get_aggs("QQQ", 1, "minute", DAY, DAY)
        assert aggs[-1].timestamp == ms(at(9, 58))


def test_option_chain_snapshot_pages_filters_and_quotes_from_bars() -> None:
    now = at(10, 15, 30.0)
    with standin(SimClock(now, speed=FROZEN)) as s:
        client = RESTClient(api_key=KEY, base=s.rest_url)
        snaps = list(client.list_snapshot_options_chain("QQQ", params={"expiration_date": DAY.isoformat(), "limit": 10}))
        symbols = zero_dte_symbols()
        assert sorted(x.details.ticker for x in snaps) == symbols
        assert s.stats["http_200"] == math.ceil(len(symbols) / 10)
        bars = sample_day().options
        for snap in snaps:
            d, q = snap.details, snap.last_quote
            assert d.expiration_date == DAY.isoformat()
            assert d.contract_type == {"C": "call", "P": "put"}[d.ticker[-9]]
            assert q is not None
            assert q.last_updated <= ms(now) * 1_000_000
            assert snap.underlying_asset.price > 0
            # the quote comes from the 10:15 bar (quotes at :12, :24 in the minute), the day
            # aggregate from bars that ended (up to 10:14)
            own = bars.filter(pl.col("option_symbol") == d.ticker)
            bar = own.filter(pl.col("est_timestamp") == at(10, 15)).to_dicts()[0]
            assert q.last_updated == ms(at(10, 15, 24)) * 1_000_000
            price = bar["low"] if bar["close"] >= bar["open"] else bar["high"]
            assert (q.bid, q.ask) == (pytest.approx(max(price - 0.02, 0.0)), pytest.approx(price + 0.02))
            ended = own.filter(pl.col("est_timestamp") < at(10, 15))
            assert snap.day.close == ended["close"][-1] and snap.day.high == ended["high"].max()

        puts = list(client.list_snapshot_options_chain("QQQ", params={
            "expiration_date": DAY.isoformat(), "contract_type": "put",
            "strike_price.gte": 495, "strike_price.lte": 500, "limit": 250,
        }))
        assert puts and all(p.details.contract_type == "put" and 495 <= p.details.strike_price <= 500 for p in puts)
        one = client.get_snapshot_option("QQQ", symbols[0])
        assert one.details.ticker == symbols[0]
        with pytest.raises(BadResponse, match="NOT_FOUND"):
            client.get_snapshot_option("QQQ", "O:QQQ240212C09990000")


def test_rest_api_key_checks() -> None:
    with standin(SimClock(at(10, 0), speed=FROZEN)) as s:
        with pytest.raises(BadResponse) as info:
            RESTClient(api_key="not-the-key", base=s.rest_url).get_aggs("QQQ", 1, "minute", DAY, DAY)
        assert json.loads(str(info.value))["error"] == "Unknown API Key"
        assert "not-the-key" not in str(info.value)
        url = f"{s.rest_url}/v2/aggs/ticker/QQQ/range/1/minute/{DAY}/{DAY}"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url, timeout=5)
        assert missing.value.code == 401
        assert json.loads(missing.value.read())["error"] == "API Key was not provided"
        with urllib.request.urlopen(f"{url}?apiKey={KEY}", timeout=5) as ok:  # the query form
            assert json.loads(ok.read())["resultsCount"] == 30


def test_rest_faults_are_deterministic_by_seed() -> None:
    faults = Faults(error_rate=0.5, seed=11)

    def statuses() -> list[int]:
        out = []
        with standin(SimClock(at(10, 0), speed=FROZEN), faults) as s:
            for _ in range(12):
                req = urllib.request.Request(f"{s.rest_url}/v2/aggs/ticker/QQQ/range/1/minute/{DAY}/{DAY}",
                                             headers={"Authorization": f"Bearer {KEY}"})
                try:
                    with urllib.request.urlopen(req, timeout=5) as r:
                        out.append(r.status)
                except urllib.error.HTTPError as e:
                    out.append(e.code)
        return out

    first = statuses()
    assert first == statuses()
    assert 200 in first and any(c >= 500 for c in first)


# ---- websocket ------------------------------------------------------------------------------


async def _collect(client: WebSocketClient, seconds: float, sink: list[Any]) -> None:
    async def handle(msgs: list[Any]) -> None:
        sink.extend(msgs)

    task = asyncio.create_task(client.connect(handle))
    await asyncio.sleep(seconds)
    await client.close()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)


def test_websocket_streams_am_bars_at_minute_end_and_q_quotes() -> None:
    clock = SimClock(at(10, 0, 50.0), speed=120.0)  # a sim minute every 0.5 s
    symbol = zero_dte_symbols()[len(zero_dte_symbols()) // 2]
    with standin(clock) as s:
        stocks = WebSocketClient(api_key=KEY, feed=s.ws_feed, secure=False, market="stocks", subscriptions=["AM.QQQ"])
        options = WebSocketClient(api_key=KEY, feed=s.ws_feed, secure=False, market="options", subscriptions=[f"Q.{symbol}"])
        got: list[Any] = []
        received_at: list[dt.datetime] = []

        async def main() -> None:
            async def stamp() -> None:
                seen = 0
                while True:
                    await asyncio.sleep(0.005)
                    while seen < len(got):
                        received_at.append(clock.now())
                        seen += 1

            stamper = asyncio.create_task(stamp())
            await asyncio.gather(_collect(stocks, 2.0, got), _collect(options, 2.0, got))
            stamper.cancel()

        asyncio.run(main())
    aggs = [(m, t) for m, t in zip(got, received_at) if isinstance(m, EquityAgg)]
    quotes = [m for m in got if isinstance(m, EquityQuote)]
    assert len(aggs) >= 3 and len(quotes) >= 8
    rows = {ms(r["est_timestamp"]): r for r in equity_rows(before=at(11, 0))}
    starts = [m.start_timestamp for m, _ in aggs]
    assert starts == sorted(starts) and all(b - a == 60_000 for a, b in zip(starts, starts[1:]))
    for m, received in aggs:
        assert m.symbol == "QQQ" and m.end_timestamp == m.start_timestamp + 60_000
        assert received >= dt.datetime.fromtimestamp(m.end_timestamp / 1000, NY)  # no look-ahead
        r = rows[m.start_timestamp]
        assert (m.open, m.high, m.low, m.close, m.volume) == (r["open"], r["high"], r["low"], r["close"], r["volume"])
        assert m.vwap is not None and m.aggregate_vwap is not None
    assert {q.symbol for q in quotes} == {symbol}
    assert all(q.ask_price - q.bid_price == pytest.approx(0.04) for q in quotes if q.bid_price > 0)
    times = [q.timestamp for q in quotes]
    assert times == sorted(times)


def test_websocket_auth_failed_raises_auth_error() -> None:
    with standin(SimClock(at(10, 0), speed=FROZEN)) as s:
        client = WebSocketClient(api_key="wrong-key", feed=s.ws_feed, secure=False, market="stocks", subscriptions=["AM.QQQ"])

        async def main() -> None:
            async def handle(msgs: list[Any]) -> None:
                pass

            try:
                await asyncio.wait_for(client.connect(handle), 5)
            finally:  # massive leaves the socket open when connect() raises
                if client.websocket is not None:
                    client.websocket.transport.abort()

        with pytest.raises(AuthError, match="authentication failed"):
            asyncio.run(main())
        assert s.stats["ws_auth_failed"] == 1


def test_massive_client_itself_reconnects_after_a_1011_drop() -> None:
    """What FACTS says of the client, against the stand-in's drop switch: a 1011 close is
    followed by a reconnect, a new handshake and the same subscriptions."""
    clock = SimClock(at(10, 0, 55.0), speed=240.0)
    faults = Faults(drop_after_messages=2, drop_code=1011, max_drops=1)
    with standin(clock, faults) as s:
        client = WebSocketClient(api_key=KEY, feed=s.ws_feed, secure=False, market="stocks", subscriptions=["AM.QQQ"])
        got: list[Any] = []
        asyncio.run(_collect(client, 2.0, got))
        assert s.stats["ws_drops"] == 1 and s.stats["ws_connections_stocks"] == 2
        assert len([m for m in got if isinstance(m, EquityAgg)]) >= 4


def test_market_status_follows_the_sim_clock_and_needs_the_key() -> None:
    def status(when: dt.datetime, key: str = KEY) -> tuple[int, dict[str, Any]]:
        with standin(SimClock(when, speed=FROZEN)) as s:
            request = urllib.request.Request(f"{s.rest_url}/v1/marketstatus/now", headers={"Authorization": f"Bearer {key}"})
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

    assert status(at(10, 0))[1]["market"] == "open"
    code, body = status(at(9, 0))
    assert code == 200 and body["market"] == "extended-hours" and body["earlyHours"] is True
    assert body["serverTime"] == "2024-02-12T09:00:00-05:00"
    assert status(at(16, 30))[1]["afterHours"] is True
    assert status(dt.datetime(2024, 2, 10, 12, 0, tzinfo=NY))[1]["market"] == "closed"  # a Saturday
    assert status(at(10, 0), key="wrong")[0] == 401
