"""The Schwab stand-in speaks the wire formats schwab-py and our adapters rely on.

Real sockets on 127.0.0.1; raw httpx for the wire details, schwab-py's own `Client` (routed
by our transport, otherwise unchanged) where its parsing matters (the order id regex).
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from schwab.utils import Utils

from alphagen_core.domain.clock import NY
from alphagen_core.sim.faults import Faults
from alphagen_core.sim.schwab import QuoteBook, SchwabFaults, SchwabStandIn

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

APP_KEY = "standin-app-key-0001"
APP_SECRET = "standin-app-secret-0002"
ACCOUNT = "11223344"
CALLBACK = "https://127.0.0.1:8182"
START = dt.datetime(2024, 2, 12, 9, 35, tzinfo=NY)  # a Monday session
# one client for the whole module: building an httpx client (its SSL context) costs ~50 ms
HTTP = httpx.Client(timeout=5.0)
CALL_430 = "O:QQQ240212C00430000"
PUT_430 = "O:QQQ240212P00430000"
CALL_430_SCHWAB = "QQQ   240212C00430000"
PUT_430_SCHWAB = "QQQ   240212P00430000"


class SkippingClock:
    """Real time plus skipped sleeps: `sleep` returns at once and moves the clock on.

    Both the stand-in (`now()`) and the client's limiter and backoff (`time()`, `sleep()`)
    use one instance, so a session's worth of calls and waits runs in a second or two.
    """

    speed = 1.0

    def __init__(self, start: dt.datetime = START) -> None:
        self._start = start.timestamp()
        self._t0 = time.monotonic()
        self._skipped = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self._start + (time.monotonic() - self._t0) + self._skipped

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.time(), NY)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._skipped += seconds

    @property
    def skipped(self) -> float:
        with self._lock:
            return self._skipped

    def wall_time(self, t: dt.datetime) -> float:
        return time.time() + (t.timestamp() - self.time())


def make_standin(clock=None, **kwargs) -> SchwabStandIn:
    clock = clock or SkippingClock()
    kwargs.setdefault("quote_book", QuoteBook(clock))
    return SchwabStandIn(
        app_key=APP_KEY,
        app_secret=APP_SECRET,
        account_number=ACCOUNT,
        clock=clock,
        callback_url=CALLBACK,
        **kwargs,
    )


def basic(key: str = APP_KEY, secret: str = APP_SECRET) -> dict[str, str]:
    raw = base64.b64encode(f"{key}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def get_code(standin: SchwabStandIn, state: str = "st4te") -> str:
    r = HTTP.get(
        f"{standin.base_url}/v1/oauth/authorize",
        params={
            "response_type": "code",
            "client_id": APP_KEY,
            "redirect_uri": CALLBACK,
            "state": state,
        },
    )
    assert r.status_code == 302
    location = r.headers["location"]
    assert location.startswith(CALLBACK + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state]
    return query["code"][0]


def get_tokens(standin: SchwabStandIn) -> dict:
    code = get_code(standin)
    r = HTTP.post(
        f"{standin.base_url}/v1/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK},
        headers=basic(),
    )
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def standin() -> Iterator[SchwabStandIn]:
    with make_standin() as s:
        yield s


def bearer(tokens: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


# ---- OAuth --------------------------------------------------------------------------------


def test_authorize_redirects_with_code_and_token_exchange(standin: SchwabStandIn) -> None:
    code = get_code(standin)
    r = HTTP.post(
        f"{standin.base_url}/v1/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK},
        headers=basic(),
    )
    assert r.status_code == 200
    body = r.json()
    assert body["expires_in"] == 1800
    assert body["token_type"] == "Bearer"
    assert {"access_token", "refresh_token", "id_token", "scope"} <= body.keys()

    again = HTTP.post(
        f"{standin.base_url}/v1/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK},
        headers=basic(),
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    wrong = HTTP.post(
        f"{standin.base_url}/v1/oauth/token",
        data={"grant_type": "authorization_code", "code": get_code(standin)},
        headers=basic(secret="nope"),
    )
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"

    bad_client = HTTP.get(
        f"{standin.base_url}/v1/oauth/authorize",
        params={"client_id": "someone-else", "redirect_uri": CALLBACK, "response_type": "code"},
    )
    assert bad_client.status_code == 400
    bad_redirect = HTTP.get(
        f"{standin.base_url}/v1/oauth/authorize",
        params={"client_id": APP_KEY, "redirect_uri": "https://evil.example", "response_type": "code"},
    )
    assert bad_redirect.status_code == 400


def test_refresh_grant_and_refresh_token_expiry() -> None:
    clock = SkippingClock()
    with make_standin(clock) as s:
        tokens = get_tokens(s)
        r = HTTP.post(
            f"{s.base_url}/v1/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            headers=basic(),
        )
        assert r.status_code == 200
        refreshed = r.json()
        assert refreshed["refresh_token"] == tokens["refresh_token"]
        assert refreshed["access_token"] != tokens["access_token"]
        assert s.stats["token_refresh"] == 1

        clock.sleep(7 * 24 * 3600 + 1)
        r = HTTP.post(
            f"{s.base_url}/v1/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            headers=basic(),
        )
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_grant"


def test_bearer_token_is_checked() -> None:
    clock = SkippingClock()
    with make_standin(clock) as s:
        url = f"{s.base_url}/trader/v1/accounts/accountNumbers"
        assert HTTP.get(url).status_code == 401
        assert HTTP.get(url, headers={"Authorization": "Bearer nonsense"}).status_code == 401
        tokens = get_tokens(s)
        assert HTTP.get(url, headers=bearer(tokens)).status_code == 200
        clock.sleep(1801)  # access tokens last 30 minutes
        assert HTTP.get(url, headers=bearer(tokens)).status_code == 401
        tokens = get_tokens(s)
        s.revoke_access_tokens()
        assert HTTP.get(url, headers=bearer(tokens)).status_code == 401


# ---- accounts and orders ------------------------------------------------------------------


def test_account_numbers_and_positions_format(standin: SchwabStandIn) -> None:
    tokens = get_tokens(standin)
    standin.set_position(CALL_430, -5, 1.25)
    standin.set_position("QQQ", 100, 425.0)
    rows = HTTP.get(
        f"{standin.base_url}/trader/v1/accounts/accountNumbers", headers=bearer(tokens)
    ).json()
    assert rows == [{"accountNumber": ACCOUNT, "hashValue": standin.account_hash}]

    account = HTTP.get(
        f"{standin.base_url}/trader/v1/accounts/{standin.account_hash}",
        params={"fields": "positions"},
        headers=bearer(tokens),
    ).json()["securitiesAccount"]
    by_symbol = {p["instrument"]["symbol"]: p for p in account["positions"]}
    option = by_symbol[CALL_430_SCHWAB]
    assert option["shortQuantity"] == 5.0 and option["longQuantity"] == 0.0
    assert option["averageShortPrice"] == 1.25 and option["averagePrice"] == 1.25
    assert option["instrument"]["assetType"] == "OPTION"
    assert option["instrument"]["putCall"] == "CALL"
    assert option["instrument"]["underlyingSymbol"] == "QQQ"
    assert "marketValue" in option
    assert by_symbol["QQQ"]["longQuantity"] == 100.0

    plain = HTTP.get(
        f"{standin.base_url}/trader/v1/accounts/{standin.account_hash}", headers=bearer(tokens)
    ).json()
    assert "positions" not in plain["securitiesAccount"]
    wrong = HTTP.get(f"{standin.base_url}/trader/v1/accounts/NOTMINE", headers=bearer(tokens))
    assert wrong.status_code == 404


def _order(symbol: str, instruction: str, qty: int, price: str) -> dict:
    return {
        "orderType": "LIMIT",
        "session": "NORMAL",
        "duration": "DAY",
        "orderStrategyType": "SINGLE",
        "price": price,
        "orderLegCollection": [
            {
                "instruction": instruction,
                "quantity": qty,
                "instrument": {"symbol": symbol, "assetType": "OPTION"},
            }
        ],
    }


def test_orders_wire_format_and_schwab_py_reads_the_order_id(standin: SchwabStandIn) -> None:
    tokens = get_tokens(standin)
    standin.quote_book.set_quote(CALL_430, 1.20, 1.25, 1.22)
    orders_url = f"{standin.base_url}/trader/v1/accounts/{standin.account_hash}/orders"

    placed = HTTP.post(
        orders_url, json=_order(CALL_430_SCHWAB, "SELL_TO_OPEN", 3, "1.30"), headers=bearer(tokens)
    )
    assert placed.status_code == 201
    assert placed.content == b""
    order_id = standin.orders[-1].order_id
    assert placed.headers["Location"] == (
        f"https://api.schwabapi.com/trader/v1/accounts/{standin.account_hash}/orders/{order_id}"
    )
    assert Utils(None, standin.account_hash).extract_order_id(placed) == order_id

    working = HTTP.get(f"{orders_url}/{order_id}", headers=bearer(tokens)).json()
    assert working["status"] == "WORKING"
    assert working["filledQuantity"] == 0 and working["remainingQuantity"] == 3
    assert working["price"] == 1.30
    assert working["orderLegCollection"][0]["instrument"]["symbol"] == CALL_430_SCHWAB

    # entered-time filters (schwab-py's format: %Y-%m-%dT%H:%M:%SZ, UTC)
    now = standin.clock.now().astimezone(dt.timezone.utc)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    listed = HTTP.get(
        orders_url,
        params={
            "fromEnteredTime": (now - dt.timedelta(minutes=1)).strftime(fmt),
            "toEnteredTime": (now + dt.timedelta(minutes=1)).strftime(fmt),
        },
        headers=bearer(tokens),
    ).json()
    assert [o["orderId"] for o in listed] == [order_id]
    later = HTTP.get(
        orders_url,
        params={
            "fromEnteredTime": (now + dt.timedelta(minutes=5)).strftime(fmt),
            "toEnteredTime": (now + dt.timedelta(minutes=9)).strftime(fmt),
        },
        headers=bearer(tokens),
    ).json()
    assert later == []
    assert HTTP.get(orders_url, headers=bearer(tokens)).status_code == 400  # both required

    assert HTTP.delete(f"{orders_url}/{order_id}", headers=bearer(tokens)).status_code == 200
    assert HTTP.get(f"{orders_url}/{order_id}", headers=bearer(tokens)).json()["status"] == "CANCELED"
    assert HTTP.delete(f"{orders_url}/{order_id}", headers=bearer(tokens)).status_code == 400
    assert HTTP.get(f"{orders_url}/999", headers=bearer(tokens)).status_code == 404


def test_fill_rules_sell_at_bid_buy_at_ask(standin: SchwabStandIn) -> None:
    tokens = get_tokens(standin)
    book = standin.quote_book
    book.set_quote(CALL_430, 1.20, 1.25, 1.22)
    orders_url = f"{standin.base_url}/trader/v1/accounts/{standin.account_hash}/orders"

    def place(body: dict) -> dict:
        r = HTTP.post(orders_url, json=body, headers=bearer(tokens))
        assert r.status_code == 201, r.text
        order_id = r.headers["Location"].rsplit("/", 1)[1]
        return HTTP.get(f"{orders_url}/{order_id}", headers=bearer(tokens)).json()

    # a marketable sell fills at the bid at once (the bid, not the limit)
    sold = place(_order(CALL_430_SCHWAB, "SELL_TO_OPEN", 2, "1.15"))
    assert sold["status"] == "FILLED" and sold["filledQuantity"] == 2
    (leg,) = sold["orderActivityCollection"][0]["executionLegs"]
    assert leg["price"] == 1.20 and leg["quantity"] == 2.0 and leg["time"].endswith("+0000")

    # a buy below the ask waits, then fills at the ask once the ask comes down to it
    bought = place(_order(CALL_430_SCHWAB, "BUY_TO_CLOSE", 2, "1.10"))
    assert bought["status"] == "WORKING"
    book.set_quote(CALL_430, 1.02, 1.08, 1.05)
    bought = HTTP.get(f"{orders_url}/{bought['orderId']}", headers=bearer(tokens)).json()
    assert bought["status"] == "FILLED"
    assert bought["orderActivityCollection"][0]["executionLegs"][0]["price"] == 1.08
    assert standin.positions() == {}

    # an option never quoted here is rejected; a malformed order is a 400
    rejected = place(_order(PUT_430_SCHWAB, "SELL_TO_OPEN", 1, "1.00"))
    assert rejected["status"] == "REJECTED"
    bad = HTTP.post(orders_url, json=_order("QQQ 240212", "SELL_TO_OPEN", 1, "1.00"), headers=bearer(tokens))
    assert bad.status_code == 400
    no_qty = HTTP.post(orders_url, json=_order(CALL_430_SCHWAB, "SELL_TO_OPEN", 0, "1.00"), headers=bearer(tokens))
    assert no_qty.status_code == 400


SELL_ONE = _order(CALL_430_SCHWAB, "SELL_TO_OPEN", 1, "1.20")


def test_partial_fills() -> None:
    with make_standin(faults=SchwabFaults(partial_fill_rate=1.0)) as s:
        tokens = get_tokens(s)
        s.quote_book.set_quote(CALL_430, 1.20, 1.25)
        url = f"{s.base_url}/trader/v1/accounts/{s.account_hash}/orders"
        r = HTTP.post(url, json=_order(CALL_430_SCHWAB, "SELL_TO_OPEN", 8, "1.20"), headers=bearer(tokens))
        order_id = r.headers["Location"].rsplit("/", 1)[1]
        first = HTTP.get(f"{url}/{order_id}", headers=bearer(tokens)).json()
        assert first["status"] == "WORKING"
        assert (first["filledQuantity"], first["remainingQuantity"]) == (4, 4)
        for _ in range(5):
            s.quote_book.set_quote(CALL_430, 1.20, 1.25)
        done = HTTP.get(f"{url}/{order_id}", headers=bearer(tokens)).json()
        assert done["status"] == "FILLED" and done["filledQuantity"] == 8
        legs = [leg["quantity"] for a in done["orderActivityCollection"] for leg in a["executionLegs"]]
        assert legs == [4.0, 2.0, 1.0, 1.0]
        assert s.positions() == {CALL_430_SCHWAB: -8}


# ---- market data --------------------------------------------------------------------------


def test_quotes_chain_and_price_history_format(standin: SchwabStandIn) -> None:
    tokens = get_tokens(standin)
    book = standin.quote_book
    book.set_quote("QQQ", 430.10, 430.12, 430.11)
    book.set_quote(CALL_430, 1.20, 1.25, 1.22)
    book.set_quote(PUT_430, 1.00, 1.04, None)
    book.set_quote("O:QQQ240216C00431000", 2.00, 2.10, 2.05)

    quotes = HTTP.get(
        f"{standin.base_url}/marketdata/v1/quotes",
        params={"symbols": f"{CALL_430_SCHWAB},QQQ,NOPE   240212C00001000"},
        headers=bearer(tokens),
    ).json()
    option = quotes[CALL_430_SCHWAB]
    assert option["assetMainType"] == "OPTION"
    q = option["quote"]
    assert (q["bidPrice"], q["askPrice"], q["lastPrice"], q["mark"]) == (1.20, 1.25, 1.22, 1.225)
    assert isinstance(q["quoteTime"], int) and q["quoteTime"] > 1_700_000_000_000
    assert option["reference"]["strikePrice"] == 430.0
    assert quotes["QQQ"]["assetMainType"] == "EQUITY"
    assert quotes["errors"]["invalidSymbols"] == ["NOPE   240212C00001000"]

    chain = HTTP.get(
        f"{standin.base_url}/marketdata/v1/chains",
        params={"symbol": "QQQ", "fromDate": "2024-02-12", "toDate": "2024-02-12"},
        headers=bearer(tokens),
    ).json()
    assert chain["status"] == "SUCCESS" and chain["underlyingPrice"] == 430.11
    assert list(chain["callExpDateMap"]) == ["2024-02-12:0"]
    assert list(chain["callExpDateMap"]["2024-02-12:0"]) == ["430.0"]
    (contract,) = chain["putExpDateMap"]["2024-02-12:0"]["430.0"]
    assert contract["symbol"] == PUT_430_SCHWAB and contract["putCall"] == "PUT"
    assert (contract["bid"], contract["ask"]) == (1.00, 1.04)
    week = HTTP.get(
        f"{standin.base_url}/marketdata/v1/chains",
        params={"symbol": "QQQ", "contractType": "CALL"},
        headers=bearer(tokens),
    ).json()
    assert sorted(week["callExpDateMap"]) == ["2024-02-12:0", "2024-02-16:4"]
    assert week["putExpDateMap"] == {}

    for minute in range(3):
        start = dt.datetime(2024, 2, 12, 9, 30 + minute, tzinfo=NY)
        book.add_candle("QQQ", start, 430, 431, 429, 430.5, 1000 + minute)
    book.add_candle("QQQ", dt.datetime(2024, 2, 12, 8, 0, tzinfo=NY), 1, 1, 1, 1, 1)  # pre-market
    history = HTTP.get(
        f"{standin.base_url}/marketdata/v1/pricehistory",
        params={
            "symbol": "QQQ",
            "periodType": "day",
            "period": 1,
            "frequencyType": "minute",
            "frequency": 1,
            "startDate": int(dt.datetime(2024, 2, 12, 4, tzinfo=NY).timestamp() * 1000),
            "endDate": int(dt.datetime(2024, 2, 12, 16, tzinfo=NY).timestamp() * 1000),
            "needExtendedHoursData": "false",
        },
        headers=bearer(tokens),
    ).json()
    assert [c["volume"] for c in history["candles"]] == [1000, 1001, 1002]
    assert history["candles"][0]["datetime"] == int(
        dt.datetime(2024, 2, 12, 9, 30, tzinfo=NY).timestamp() * 1000
    )


# ---- faults -------------------------------------------------------------------------------


def test_rate_limit_429_past_the_limit_per_rolling_window() -> None:
    clock = SkippingClock()
    with make_standin(clock, rate_limit_per_min=5) as s:
        tokens = get_tokens(s)  # the token request counts, the browser's authorize page not
        url = f"{s.base_url}/trader/v1/accounts/accountNumbers"
        statuses = [HTTP.get(url, headers=bearer(tokens)).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 200, 429]
        clock.sleep(61)
        assert HTTP.get(url, headers=bearer(tokens)).status_code == 200
        assert s.stats["fault_rate_limit"] == 1
        assert s.max_requests_in_window(60) == 6


def test_random_faults_replay_by_seed() -> None:
    def run(seed: int) -> list[int]:
        faults = SchwabFaults(base=Faults(error_rate=0.3, seed=seed), throttle_rate=0.2)
        with make_standin(faults=faults) as s:
            tokens = get_tokens(s)  # OAuth endpoints are spared by default
            url = f"{s.base_url}/trader/v1/accounts/accountNumbers"
            return [HTTP.get(url, headers=bearer(tokens)).status_code for _ in range(40)]

    first, again, other = run(5), run(5), run(6)
    assert first == again
    assert first != other
    assert {429, 200} <= set(first)
    assert any(code >= 500 for code in first)


def test_dropped_order_response_still_creates_the_order() -> None:
    faults = SchwabFaults(drop_order_response_rate=1.0, drop_order_response_as="timeout", timeout_sleep_s=1.0)
    with make_standin(faults=faults) as s:
        tokens = get_tokens(s)
        s.quote_book.set_quote(CALL_430, 1.20, 1.25)
        url = f"{s.base_url}/trader/v1/accounts/{s.account_hash}/orders"
        with pytest.raises(httpx.ReadTimeout):
            HTTP.post(url, json=SELL_ONE, headers=bearer(tokens), timeout=0.3)
        assert len(s.orders) == 1 and s.orders[0].status == "FILLED"
        assert s.stats["fault_drop_order_response"] == 1

    faults = SchwabFaults(drop_order_response_rate=1.0, drop_order_response_as="5xx")
    with make_standin(faults=faults) as s:
        tokens = get_tokens(s)
        s.quote_book.set_quote(CALL_430, 1.20, 1.25)
        url = f"{s.base_url}/trader/v1/accounts/{s.account_hash}/orders"
        r = HTTP.post(url, json=_order(CALL_430_SCHWAB, "SELL_TO_OPEN", 1, "1.20"), headers=bearer(tokens))
        assert r.status_code >= 500
        assert len(s.orders) == 1


def test_scripted_timeout_and_5xx_process_nothing(standin: SchwabStandIn) -> None:
    tokens = get_tokens(standin)
    standin.quote_book.set_quote(CALL_430, 1.20, 1.25)
    url = f"{standin.base_url}/trader/v1/accounts/{standin.account_hash}/orders"
    standin.faults = SchwabFaults(timeout_sleep_s=0.8)
    standin.inject("timeout", method="POST")
    standin.inject("5xx", method="POST")
    with pytest.raises(httpx.ReadTimeout):
        HTTP.post(url, json=SELL_ONE, headers=bearer(tokens), timeout=0.3)
    r = HTTP.post(url, json=_order(CALL_430_SCHWAB, "SELL_TO_OPEN", 1, "1.20"), headers=bearer(tokens))
    assert r.status_code in (500, 502, 503, 504)
    assert standin.orders == []
    r = HTTP.post(url, json=_order(CALL_430_SCHWAB, "SELL_TO_OPEN", 1, "1.20"), headers=bearer(tokens))
    assert r.status_code == 201 and len(standin.orders) == 1
