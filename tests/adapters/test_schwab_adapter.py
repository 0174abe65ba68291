"""The Schwab adapters (schwab-py underneath) against the local stand-in, over real sockets.

Nothing of ours is mocked. Time: the stand-in, the rate limiter and the backoff share one
`SkippingClock`, so a session's worth of calls (with minutes of rate-limit waits) runs in
seconds; only client timeouts are real (kept under half a second).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import stat
import threading
import time
import traceback
from collections import Counter
from pathlib import Path

import pytest
import structlog
from pydantic import SecretStr

from alphagen_core.adapters.schwab import (
    REFRESH_EXPIRED_MESSAGE,
    LiveTradingDisabledError,
    RateLimiter,
    SchwabAPIError,
    SchwabAuthError,
    SchwabConfig,
    SchwabExecution,
    SchwabMarketData,
    SchwabOrderStateUnknown,
    SchwabSession,
    SchwabUnavailable,
    login,
)
from alphagen_core.adapters.schwab.execution import format_price
from alphagen_core.adapters.schwab.ratelimit import RetryPolicy
from alphagen_core.adapters.schwab.tokens import write_private_file
from alphagen_core.domain.clock import NY
from alphagen_core.domain.models import Action, BrokerPosition, OrderRequest
from alphagen_core.domain.symbols import schwab_to_polygon
from alphagen_core.operations.settings import LIVE_CONFIRMATION_PHRASE, Settings
from alphagen_core.sim.faults import Faults
from alphagen_core.sim.schwab import QuoteBook, SchwabFaults, SchwabStandIn
from tests.adapters.test_schwab_standin import (
    APP_KEY,
    CALL_430,
    CALL_430_SCHWAB,
    CALLBACK,
    HTTP,
    PUT_430,
    SkippingClock,
    make_standin,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

EXPIRY = dt.date(2024, 2, 12)
CALL_431 = "O:QQQ240212C00431000"
PUT_429 = "O:QQQ240212P00429000"
BASE_QUOTES = {CALL_430: (1.20, 1.25), PUT_430: (1.10, 1.15), CALL_431: (0.80, 0.84), PUT_429: (0.70, 0.74)}


def config_for(standin: SchwabStandIn, tmp_path: Path, **overrides) -> SchwabConfig:
    values = dict(
        app_key=SecretStr(standin.app_key),
        app_secret=SecretStr(standin.app_secret),
        account_number=SecretStr(standin.account_number),
        base_url=standin.base_url,
        callback_url=CALLBACK,
        token_path=tmp_path / "secrets" / "schwab_token.json",
        request_timeout_s=2.0,
    )
    values.update(overrides)
    return SchwabConfig(**values)


def follow_login(config: SchwabConfig, limiter: RateLimiter | None = None) -> list[str]:
    """Run `login` non-interactively: follow the shown authorize URL ourselves (as the
    browser would) and paste the address it redirects to. Returns what login showed."""
    shown: list[str] = []

    def paste(prompt: str) -> str:
        url = next(
            line.strip()
            for text in shown
            for line in text.splitlines()
            if line.strip().startswith("http")
        )
        response = HTTP.get(url)
        assert response.status_code == 302
        return response.headers["location"]

    login(config, open_browser=False, redirect_url_input=paste, print_fn=shown.append, limiter=limiter)
    return shown


def signed_in(standin: SchwabStandIn, tmp_path: Path, clock: SkippingClock, **overrides):
    config = config_for(standin, tmp_path, **overrides)
    follow_login(config)
    session = SchwabSession(config, timer=clock, clock=clock, rng=random.Random(7))
    return config, session


def token_file(config: SchwabConfig) -> dict:
    return json.loads(config.token_path.read_text())


def file_mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def seed_quotes(standin: SchwabStandIn) -> None:
    standin.quote_book.set_quote("QQQ", 430.00, 430.02, 430.01)
    for symbol, (bid, ask) in BASE_QUOTES.items():
        standin.quote_book.set_quote(symbol, bid, ask, round((bid + ask) / 2, 3))


# ---- sign-in and tokens -------------------------------------------------------------------


def test_login_writes_token_file_with_mode_0600(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # the usual umask: a plain open() would give 0644
    try:
        with make_standin() as s:
            config = config_for(s, tmp_path)
            shown = follow_login(config)
            assert any(s.base_url + "/v1/oauth/authorize?" in text for text in shown)
            assert file_mode(config.token_path) == 0o600
            stored = token_file(config)
            assert isinstance(stored["creation_timestamp"], int)
            assert {"access_token", "refresh_token", "expires_at", "expires_in"} <= stored["token"].keys()
            assert [p.name for p in config.token_path.parent.iterdir()] == [config.token_path.name]

            # a token file left 0644 by someone else (e.g. schwab-py's own writer) is fixed
            os.chmod(config.token_path, 0o644)
            SchwabSession(config).close()
            assert file_mode(config.token_path) == 0o600

            # a second login replaces the file atomically, still 0600
            follow_login(config)
            assert file_mode(config.token_path) == 0o600
            assert token_file(config)["token"]["access_token"] != stored["token"]["access_token"]
    finally:
        os.umask(old_umask)


def test_login_rejects_bad_pasted_addresses(tmp_path: Path) -> None:
    with make_standin() as s:
        config = config_for(s, tmp_path)
        with pytest.raises(SchwabAuthError, match="no authorization code"):
            login(config, open_browser=False, redirect_url_input=lambda _: CALLBACK, print_fn=lambda _: None)

        # an address from another sign-in attempt (different state)
        other = HTTP.get(
            f"{s.base_url}/v1/oauth/authorize",
            params={"client_id": APP_KEY, "redirect_uri": CALLBACK, "response_type": "code", "state": "x"},
        ).headers["location"]
        with pytest.raises(SchwabAuthError, match="different sign-in attempt"):
            login(config, open_browser=False, redirect_url_input=lambda _: other, print_fn=lambda _: None)
        assert not config.token_path.exists()


def test_access_token_is_refreshed_after_expiry(tmp_path: Path) -> None:
    clock = SkippingClock()
    # 302 s tokens: schwab-py refreshes when < 300 s are left, i.e. about 2 s after issue
    with make_standin(clock, access_token_lifetime_s=302) as s:
        config, session = signed_in(s, tmp_path, clock)
        broker = SchwabExecution(session, live_enabled=False)
        first_access = token_file(config)["token"]["access_token"]
        time.sleep(2.2)
        assert broker.positions() == []
        assert s.stats["token_refresh"] == 1
        stored = token_file(config)
        assert stored["token"]["access_token"] != first_access
        assert stored["token"]["access_token"] in s.issued_secrets()
        assert file_mode(config.token_path) == 0o600
        broker.positions()
        assert s.stats["token_refresh"] == 1  # the new token is good for a while


def test_a_401_forces_one_refresh(tmp_path: Path) -> None:
    clock = SkippingClock()
    with make_standin(clock) as s:
        config, session = signed_in(s, tmp_path, clock)
        broker = SchwabExecution(session, live_enabled=False)
        broker.positions()
        assert s.stats["token_refresh"] == 0
        s.revoke_access_tokens()
        broker.positions()
        assert s.stats["token_refresh"] == 1
        assert file_mode(config.token_path) == 0o600


def test_expired_refresh_token_gives_the_documented_message(tmp_path: Path) -> None:
    clock = SkippingClock()
    with make_standin(clock) as s:
        seed_quotes(s)
        config, session = signed_in(s, tmp_path, clock)
        data = SchwabMarketData(session)
        data.quotes([CALL_430])

        # eight days later: the access token is refused (401), the forced refresh too
        clock.sleep(8 * 24 * 3600)
        with pytest.raises(SchwabAuthError) as info:
            data.quotes([CALL_430])
        assert str(info.value) == REFRESH_EXPIRED_MESSAGE
        assert info.value.__cause__ is None and info.value.__suppress_context__
        assert "alphagen schwab-login" in str(info.value)

        # a stale token loaded from disk: schwab-py refreshes before the request, and fails
        stored = token_file(config)
        stored["token"]["expires_at"] = int(time.time()) - 60
        write_private_file(config.token_path, json.dumps(stored))
        stale = SchwabMarketData(SchwabSession(config, timer=clock, clock=clock))
        with pytest.raises(SchwabAuthError) as info:
            stale.quotes([CALL_430])
        assert str(info.value) == REFRESH_EXPIRED_MESSAGE
        assert s.stats["token_refresh_refused"] == 2

        # a token file older than seven days is refused before any request
        before = len(s.requests)
        stored["creation_timestamp"] = int(time.time()) - 8 * 24 * 3600
        write_private_file(config.token_path, json.dumps(stored))
        with pytest.raises(SchwabAuthError, match="refresh token expired"):
            SchwabSession(config, timer=clock, clock=clock)
        assert len(s.requests) == before

        config.token_path.unlink()
        with pytest.raises(SchwabAuthError, match="run `alphagen schwab-login`"):
            SchwabSession(config)


# ---- trading ------------------------------------------------------------------------------


def test_positions_become_broker_positions(tmp_path: Path) -> None:
    clock = SkippingClock()
    with make_standin(clock) as s:
        seed_quotes(s)
        s.set_position(CALL_430, -25, 1.20)
        s.set_position(PUT_429, 3, 0.65)
        s.set_position("QQQ", 100, 425.5)
        _, session = signed_in(s, tmp_path, clock)
        positions = {p.symbol: p for p in SchwabExecution(session, live_enabled=False).positions()}
        assert positions[CALL_430] == BrokerPosition(CALL_430, -25, 1.20, round(-25 * 1.225 * 100, 2))
        assert positions[PUT_429].quantity == 3 and positions[PUT_429].avg_price == 0.65
        assert positions["QQQ"].quantity == 100 and positions["QQQ"].avg_price == 425.5
        assert set(positions) == {CALL_430, PUT_429, "QQQ"}


def test_place_status_cancel(tmp_path: Path) -> None:
    clock = SkippingClock()
    with make_standin(clock) as s:
        s.quote_book.set_quote(CALL_430, 1.15, 1.20, 1.17)
        _, session = signed_in(s, tmp_path, clock)
        broker = SchwabExecution(session, live_enabled=False)
        since = clock.now()

        # 1.15 as a float would reach Schwab as "1.14" through schwab-py: we send a string
        sell = OrderRequest(Action.SELL_TO_OPEN, CALL_430, 25, 1.15, "intent-sell")
        sell_id = broker.submit(sell)
        (received,) = s.orders
        assert received.spec["price"] == "1.15"
        assert received.spec["orderLegCollection"][0]["instrument"]["symbol"] == CALL_430_SCHWAB
        assert received.spec["orderLegCollection"][0]["instruction"] == "SELL_TO_OPEN"
        assert (received.spec["orderType"], received.spec["duration"]) == ("LIMIT", "DAY")
        update = broker.order(sell_id)
        assert update.status == "FILLED" and update.is_final
        assert (update.filled_qty, update.remaining_qty) == (25, 0)
        assert [(f.price, f.qty) for f in update.fills] == [(1.15, 25)]
        assert update.fills[0].at.tzinfo is not None
        assert update.request == sell
        assert [(p.symbol, p.quantity) for p in broker.positions()] == [(CALL_430, -25)]

        buy = OrderRequest(Action.BUY_TO_CLOSE, CALL_430, 25, 1.00, "intent-buy")
        buy_id = broker.submit(buy)
        assert broker.order(buy_id).status == "WORKING"
        broker.cancel(buy_id)
        assert broker.order(buy_id).status == "CANCELED"
        broker.cancel(buy_id)  # cancelling a final order is not an error
        broker.cancel(sell_id)

        listed = broker.open_orders(since)
        assert [u.order_id for u in listed] == [sell_id, buy_id]
        assert broker.find_order(buy, since).order_id == buy_id
        assert broker.find_order(OrderRequest(Action.BUY_TO_CLOSE, CALL_430, 24, 1.00, "x"), since) is None

        unknown = broker.submit(OrderRequest(Action.SELL_TO_OPEN, PUT_430, 1, 1.0, "intent-unquoted"))
        assert broker.order(unknown).status == "REJECTED"
        with pytest.raises(SchwabAPIError) as info:
            broker.order("999")
        assert info.value.status == 404
        with pytest.raises(ValueError):
            broker.submit(OrderRequest(Action.SELL_TO_OPEN, CALL_430, 0, 1.0, "bad-qty"))
        assert format_price(1.005) == "1.01" and format_price(2) == "2.00"


def test_submission_is_looked_up_before_it_is_ever_resent(tmp_path: Path) -> None:
    clock = SkippingClock()
    with make_standin(clock, faults=SchwabFaults(timeout_sleep_s=0.8)) as s:
        seed_quotes(s)
        _, session = signed_in(s, tmp_path, clock, request_timeout_s=0.4)
        broker = SchwabExecution(session, live_enabled=False)
        broker.positions()

        def posts() -> int:
            return sum(1 for r in s.requests if r.method == "POST" and r.path.endswith("/orders"))

        cases = [
            ("drop_response_timeout", 1),  # accepted, the answer never came: found, not resent
            ("drop_response_5xx", 1),  # accepted, answered 5xx: found, not resent
            ("5xx", 2),  # refused before processing: absent, so sent once more
            ("timeout", 2),  # swallowed before processing: absent, so sent once more
        ]
        for qty, (kind, expected_posts) in enumerate(cases, start=1):
            s.inject(kind, method="POST")
            before_posts, before_orders = posts(), len(s.orders)
            order_id = broker.submit(OrderRequest(Action.SELL_TO_OPEN, CALL_430, qty, 1.20, kind))
            assert posts() - before_posts == expected_posts, kind
            assert len(s.orders) == before_orders + 1, kind
            assert str(s.orders[-1].order_id) == order_id

        # an identical earlier order is not mistaken for the new one
        twin = OrderRequest(Action.SELL_TO_OPEN, CALL_431, 5, 0.80, "twin-a")
        first = broker.submit(twin)
        s.inject("drop_response_5xx", method="POST")
        second = broker.submit(OrderRequest(Action.SELL_TO_OPEN, CALL_431, 5, 0.80, "twin-b"))
        assert first != second
        assert sum(1 for o in s.orders if o.symbol == "QQQ   240212C00431000") == 2

        # the answer is lost and the lookup fails too: never resent, the caller must reconcile
        s.inject("drop_response_5xx", method="POST")
        s.inject("5xx", method="GET", path_contains="/orders", count=50)
        lost = OrderRequest(Action.SELL_TO_OPEN, PUT_429, 7, 0.70, "lost")
        before_posts, before_orders = posts(), len(s.orders)
        since = clock.now()
        with pytest.raises(SchwabOrderStateUnknown):
            broker.submit(lost)
        assert posts() - before_posts == 1
        assert len(s.orders) == before_orders + 1
        s.clear_injected()
        found = broker.find_order(lost, since)
        assert found is not None and found.order_id == str(s.orders[-1].order_id)


def test_idempotent_requests_retry_with_backoff_then_give_up(tmp_path: Path) -> None:
    clock = SkippingClock()
    with make_standin(clock) as s:
        seed_quotes(s)
        _, session = signed_in(s, tmp_path, clock)
        broker = SchwabExecution(session, live_enabled=False)
        s.inject("5xx", method="GET", path_contains="accountNumbers", count=2)
        s.inject("throttle", method="GET", path_contains="accountNumbers")
        broker.positions()
        numbers = [r for r in s.requests if r.path.endswith("accountNumbers")]
        assert [r.status for r in numbers][-1] == 200 and len(numbers) == 4

        order_id = broker.submit(OrderRequest(Action.SELL_TO_OPEN, CALL_430, 1, 1.20, "r"))
        s.inject("5xx", method="GET", path_contains="/orders/", count=10)
        skipped = clock.skipped
        with pytest.raises(SchwabUnavailable, match="still HTTP 5"):
            broker.order(order_id)
        gets = [r for r in s.requests if r.method == "GET" and r.path.endswith(f"/orders/{order_id}")]
        assert len(gets) == RetryPolicy().max_attempts
        # exponential backoff with jitter: 4 waits of [0.25-0.5] [0.5-1] [1-2] [2-4] seconds
        waited = clock.skipped - skipped
        assert 3.75 <= waited <= 7.5


def test_rate_limiter_sliding_window() -> None:
    clock = SkippingClock()
    limiter = RateLimiter(120, 60.0, timer=clock, margin_s=1.0)
    stamps = []
    for _ in range(300):
        limiter.acquire()
        stamps.append(clock.time())
    worst = max(sum(1 for t in stamps if s - 60.0 < t <= s) for s in stamps)
    assert worst == 120
    assert 120 <= clock.skipped <= 125  # two full waits of about 61 s, no more

    # thread-safe: many threads racing for one window get exactly the budget
    racer = RateLimiter(120, 60.0, timer=SkippingClock())
    admitted = Counter()

    def grab() -> None:
        for _ in range(100):
            if racer.try_acquire() == 0.0:
                admitted[threading.get_ident()] += 1

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted.values()) == 120


def test_live_gate_refuses_real_orders_unless_enabled(tmp_path: Path) -> None:
    token_path = tmp_path / "token.json"
    write_private_file(
        token_path,
        json.dumps(
            {
                "creation_timestamp": int(time.time()),
                "token": {
                    "access_token": "a" * 20,
                    "refresh_token": "r" * 20,
                    "token_type": "Bearer",
                    "expires_in": 1800,
                    "expires_at": int(time.time()) + 1800,
                },
            }
        ),
    )
    common = dict(
        schwab_api_key="k" * 16,
        schwab_api_secret="s" * 16,
        schwab_account_id="12345678",
        schwab_token_path=token_path,
        schwab_base_url="https://api.schwabapi.com",
    )
    paper = Settings(**common, schwab_paper=True)
    assert not paper.live_enabled
    with pytest.raises(LiveTradingDisabledError, match="live trading is off"):
        SchwabExecution.from_settings(paper)
    half = Settings(**common, schwab_paper=False)  # no confirmation phrase
    with pytest.raises(LiveTradingDisabledError):
        SchwabExecution.from_settings(half)
    live = Settings(**common, schwab_paper=False, schwab_live_confirmation=LIVE_CONFIRMATION_PHRASE)
    assert live.live_enabled
    SchwabExecution.from_settings(live).session.close()  # constructed; nothing was sent
    SchwabMarketData.from_settings(paper).session.close()  # market data needs no gate

    with pytest.raises(ValueError, match="loopback"):
        SchwabConfig(
            app_key=SecretStr("k"), app_secret=SecretStr("s"), account_number=SecretStr("1"),
            base_url="http://schwab.example.com",
        )


# ---- market data --------------------------------------------------------------------------


def test_market_data_quotes_chain_and_minute_bars(tmp_path: Path) -> None:
    clock = SkippingClock()  # 09:35 on 2024-02-12
    with make_standin(clock) as s:
        seed_quotes(s)
        s.quote_book.set_quote("O:QQQ240216C00431000", 2.0, 2.1)  # another expiry
        for minute in range(7):  # 09:30 .. 09:36
            start = dt.datetime(2024, 2, 12, 9, 30 + minute, tzinfo=NY)
            o = 430 + minute
            s.quote_book.add_candle("QQQ", start, o, o + 1, o - 1, o + 0.5, 1000 * (minute + 1))
        _, session = signed_in(s, tmp_path, clock)
        data = SchwabMarketData(session)

        quotes = data.quotes([CALL_430, PUT_429, "O:QQQ240212C00999000"])
        assert set(quotes) == {CALL_430, PUT_429}
        q = quotes[CALL_430]
        assert (q.bid, q.ask, q.last) == (1.20, 1.25, 1.225)
        assert q.contract.strike == 430.0 and q.contract.expiry == EXPIRY
        assert q.start.tzinfo is not None and q.high is None

        chain = data.option_chain("QQQ", EXPIRY)
        assert sorted(c.symbol for c in chain) == sorted(BASE_QUOTES)
        assert all(c.contract.expiry == EXPIRY for c in chain)
        assert {c.symbol: (c.bid, c.ask) for c in chain} == BASE_QUOTES

        bars = data.minute_bars("QQQ", EXPIRY)
        # 09:35 is still open at 09:35:0x: only bars whose minute has ended are returned
        assert [b.start.strftime("%H:%M") for b in bars] == ["09:30", "09:31", "09:32", "09:33", "09:34"]
        assert bars[0].open == 430 and bars[0].volume == 1000 and bars[0].vwap is None


# ---- a faulty session ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [11, 23, 37])
def test_faulty_session_no_duplicates_no_lost_executions_rate_respected(tmp_path: Path, seed: int) -> None:
    clock = SkippingClock()
    faults = SchwabFaults(
        base=Faults(error_rate=0.10, seed=seed),
        throttle_rate=0.05,
        timeout_rate=0.015,
        timeout_sleep_s=0.6,
        drop_order_response_rate=0.25,
        partial_fill_rate=0.3,
    )
    with make_standin(clock, faults=faults) as s:
        seed_quotes(s)
        config = config_for(s, tmp_path, request_timeout_s=0.4)
        limiter = RateLimiter(120, 60.0, timer=clock)  # one budget for the sign-in and the session
        follow_login(config, limiter)
        session = SchwabSession(config, limiter=limiter, clock=clock, rng=random.Random(seed))
        data = SchwabMarketData(session)
        broker = SchwabExecution(session, live_enabled=False, max_submissions=5)
        started = clock.now()
        current = dict(BASE_QUOTES)
        placed: dict[str, str] = {}
        unplaced: dict[str, OrderRequest] = {}

        def submit(request: OrderRequest) -> str | None:
            try:
                placed[request.intent_id] = broker.submit(request)
            except (SchwabUnavailable, SchwabOrderStateUnknown):
                unplaced[request.intent_id] = request
                return None
            return placed[request.intent_id]

        def wait_final(order_id: str, symbol: str) -> None:
            for _ in range(8):
                s.quote_book.set_quote(symbol, *current[symbol])  # a new quote: the next fill
                data.quotes([symbol])
                if broker.order(order_id).is_final:
                    return

        for pair in range(10):  # 20 orders: open and close a short, one pair at a time
            symbol = list(BASE_QUOTES)[pair % 4]
            bid, ask = BASE_QUOTES[symbol]
            opened = submit(OrderRequest(Action.SELL_TO_OPEN, symbol, pair + 1, bid, f"p{pair}-open"))
            if opened:
                wait_final(opened, symbol)
            closing = submit(
                OrderRequest(Action.BUY_TO_CLOSE, symbol, pair + 1, round(ask - 0.02, 2), f"p{pair}-close")
            )
            if closing and pair % 3 == 2:
                broker.cancel(closing)
            elif closing:
                current[symbol] = (round(bid - 0.03, 2), round(ask - 0.03, 2))
                wait_final(closing, symbol)
            current[symbol] = (bid, ask)
            s.quote_book.set_quote(symbol, bid, ask)
            broker.positions()
            data.option_chain("QQQ", EXPIRY)
            for _ in range(16):
                data.quotes(list(BASE_QUOTES))

        # reconcile whatever ended in doubt, the way a restarted session would
        for intent, request in list(unplaced.items()):
            found = broker.find_order(request, started)
            if found is not None:
                placed[intent] = found.order_id

        orders = s.orders
        # zero duplicates: every (contract, instruction, qty, price) reached Schwab at most once
        keys = Counter((o.symbol, o.instruction, o.quantity, o.price) for o in orders)
        assert max(keys.values()) == 1
        # nothing lost or unaccounted for: the broker's orders are exactly the ones we know
        assert sorted(str(o.order_id) for o in orders) == sorted(placed.values())
        assert len(set(placed.values())) == len(placed) >= 18
        # every execution at the broker is seen by the adapter, fill by fill
        for o in orders:
            update = broker.order(str(o.order_id))
            assert (update.status, update.filled_qty) == (o.status, o.filled_quantity)
            assert [(f.price, f.qty) for f in update.fills] == [(f.price, f.quantity) for f in o.fills]
        ours = {p.symbol: p.quantity for p in broker.positions()}
        assert ours == {schwab_to_polygon(k): v for k, v in s.positions().items()}

        # the rate limit held at the stand-in, in every rolling 60 s
        assert len(s.requests) >= 300
        assert s.max_requests_in_window(60.0) <= 120
        assert s.stats["fault_rate_limit"] == 0
        assert session.limiter.waited_s >= 60  # the limiter really had to hold calls back
        # and the faults really happened
        assert s.stats["fault_5xx"] >= 10 and s.stats["fault_throttle"] >= 5
        assert s.stats["fault_drop_order_response"] >= 2 and s.stats["fault_timeout"] >= 1
        assert s.stats["partial_fills"] >= 1


# ---- secrets ------------------------------------------------------------------------------


def test_secrets_never_reach_logs_output_or_errors(tmp_path: Path, caplog, capsys) -> None:
    key, secret, account = "SENTINEL-APPKEY-7f3a9c", "SENTINEL-SECRET-b41d2e", "70605040"
    caplog.set_level(logging.DEBUG)  # schwab-py logs whole response bodies at DEBUG
    clock = SkippingClock()
    standin = SchwabStandIn(
        app_key=key,
        app_secret=secret,
        account_number=account,
        clock=clock,
        callback_url=CALLBACK,
        quote_book=QuoteBook(clock),
        faults=SchwabFaults(base=Faults(error_rate=0.15, seed=5), timeout_sleep_s=0.6),
    )
    errors: list[BaseException] = []
    with standin as s:  # structlog renders to stdout here (captured by capsys)
        seed_quotes(s)
        config = config_for(s, tmp_path, request_timeout_s=0.4)
        shown = follow_login(config)
        # by design the sign-in screen shows the authorize URL, whose client_id is the app key
        assert any(key in text for text in shown)
        session = SchwabSession(config, timer=clock, clock=clock)
        broker = SchwabExecution(session, live_enabled=False)
        data = SchwabMarketData(session)
        broker.positions()
        data.quotes(list(BASE_QUOTES))
        data.option_chain("QQQ", EXPIRY)
        s.inject("drop_response_5xx", method="POST")
        order_id = broker.submit(OrderRequest(Action.SELL_TO_OPEN, CALL_430, 2, 1.20, "sec"))
        broker.order(order_id)
        broker.open_orders(clock.now() - dt.timedelta(hours=1))
        s.revoke_access_tokens()
        broker.positions()  # 401 -> forced refresh -> new tokens
        for failing in (
            lambda: broker.order("4242"),
            lambda: (s.inject("5xx", method="GET", count=10), broker.positions()),
            lambda: (s.clear_injected(), clock.sleep(8 * 24 * 3600), broker.positions()),
        ):
            with pytest.raises(Exception) as info:
                failing()
            errors.append(info.value)
    with structlog.testing.capture_logs() as events_b:
        with pytest.raises(SchwabAuthError) as info:
            SchwabSession(config.with_(token_path=tmp_path / "missing.json"))
        errors.append(info.value)
        with pytest.raises(LiveTradingDisabledError) as info:
            SchwabExecution(
                SchwabSession(config.with_(base_url="https://api.schwabapi.com")), live_enabled=False
            )
        errors.append(info.value)

    assert [type(e).__name__ for e in errors] == [
        "SchwabAPIError",
        "SchwabUnavailable",
        "SchwabAuthError",
        "SchwabAuthError",
        "LiveTradingDisabledError",
    ]
    out, err = capsys.readouterr()
    texts = {
        "stdlib logs": caplog.text,
        "stdout": out,
        "stderr": err,
        "structlog events": repr(events_b),
        "exceptions": "\n".join(
            str(e) + repr(e) + "".join(traceback.format_exception(e)) for e in errors
        ),
        "config repr": repr(config),
    }
    sentinels = {"app key": key, "app secret": secret, "account number": account}
    for i, token in enumerate(s.issued_secrets()):
        sentinels[f"issued #{i}"] = token
    assert len(sentinels) >= 3 + 1 + 3 + 1  # a code, the first tokens, a refreshed token
    assert "schwab_order_found_after_unclear_answer" in out + caplog.text  # logs were captured
    assert "accountNumbers" in caplog.text  # the DEBUG traffic was really captured
    for where, text in texts.items():
        for name, value in sentinels.items():
            assert value not in text, f"{name} leaked into {where}"
    assert file_mode(config.token_path) == 0o600
