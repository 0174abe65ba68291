"""`alphagen sim`: both stand-ins on one clock, serving a sample day; the Schwab stand-in shows
each minute's opening bid/ask and fills orders there, as the paper broker would."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from alphagen_core.adapters.polygon.flatfiles import LocalFlatFiles, load_day
from alphagen_core.adapters.schwab.execution import SchwabExecution
from alphagen_core.adapters.schwab.session import SchwabSession
from alphagen_core.application.replay import quotes_by_minute
from alphagen_core.domain.calendar import session
from alphagen_core.domain.models import Action, OrderRequest
from alphagen_core.sim.sample import generate
from alphagen_core.sim.venues import SimVenues
from tests.adapters.test_schwab_adapter import config_for, follow_login

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
DAY = dt.date(2024, 11, 27)


def test_sim_venues_quote_and_fill_at_the_minutes_open(tmp_path):
    generate(DAY, DAY, tmp_path / "ff")
    data = load_day(LocalFlatFiles(tmp_path / "ff"), session(DAY), cache_dir=tmp_path / "check-cache")
    expected = quotes_by_minute(data.options, 0.02)
    # real-time speed, a few seconds into 09:31: the minute does not turn during the test
    venues = SimVenues(day=DAY, source=str(tmp_path / "ff"), cache_dir=tmp_path / "cache",
                       speed=1.0, start=dt.time(9, 31, 2))
    with venues:
        minute = venues.clock.now().replace(second=0, microsecond=0)
        symbol = next(iter(expected[minute]))
        deadline = time.monotonic() + 10
        while (book := venues.schwab.quote_book.get(symbol)) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        want = expected[minute][symbol]
        assert book is not None and (book.bid, book.ask) == (want.open_bid, want.open_ask)
        assert venues.env()["SCHWAB_BASE_URL"] == venues.schwab.base_url

        config = config_for(venues.schwab, tmp_path)
        follow_login(config)
        broker = SchwabExecution(SchwabSession(config), live_enabled=False)  # loopback stand-in
        order_id = broker.submit(OrderRequest(Action.SELL_TO_OPEN, symbol, 2, want.open_bid, "int-test-1"))
        deadline = time.monotonic() + 10
        while not (update := broker.order(order_id)).is_final and time.monotonic() < deadline:
            time.sleep(0.1)
    assert update.status == "FILLED" and update.filled_qty == 2
    assert [f.price for f in update.fills] == [want.open_bid]
