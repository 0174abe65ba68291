"""`alphagen sim`: the Polygon and Schwab stand-ins together on loopback, on one sim clock,
serving one day of flat files (sample or real). The Schwab stand-in's quote book follows the
same day: at each simulated minute it shows that minute's opening bid/ask of every contract,
which is the paper fill rule (an order decided on bar t fills at bar t+1's open), so the
stand-in broker fills like the paper broker."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from alphagen_core.adapters.polygon.flatfiles import flatfile_source, load_day
from alphagen_core.application.replay import quotes_by_minute
from alphagen_core.domain.calendar import session
from alphagen_core.domain.clock import SimClock
from alphagen_core.sim.faults import Faults
from alphagen_core.sim.polygon import OPEN_ONLY, PolygonStandIn
from alphagen_core.sim.schwab import QuoteBook, SchwabStandIn


@dataclass
class SimVenues:
    day: dt.date
    source: str
    cache_dir: Path
    speed: float = 60.0
    start: dt.time = dt.time(9, 25)
    polygon_port: int = 0
    polygon_ws_port: int = 0
    schwab_port: int = 0
    api_key: str = "sim-key"
    schwab_app_key: str = "sim-app-key"
    schwab_app_secret: str = "sim-app-secret"
    schwab_account: str = "12345678"
    half_spread: float = 0.02
    polygon_faults: Faults | None = None  # e.g. a websocket drop mid-session
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        sess = session(self.day)
        self.clock = SimClock(dt.datetime.combine(self.day, self.start, tzinfo=sess.open.tzinfo), speed=self.speed)
        src = flatfile_source(self.source, cache_dir=self.cache_dir, endpoint_url="", bucket="",
                              access_key="", secret_key="")
        data = load_day(src, sess, cache_dir=self.cache_dir)
        self._minutes = quotes_by_minute(data.options, self.half_spread)
        # Both venues show one market: each minute's opening bid/ask (the Schwab book below, and
        # Polygon's snapshots and `Q` stream), as the paper fill rule assumes.
        self.polygon = PolygonStandIn(data, host="127.0.0.1", port=self.polygon_port, ws_port=self.polygon_ws_port,
                                      api_key=self.api_key, clock=self.clock, half_spread=self.half_spread,
                                      quotes_per_minute=OPEN_ONLY, faults=self.polygon_faults)
        self.schwab = SchwabStandIn(port=self.schwab_port, app_key=self.schwab_app_key,
                                    app_secret=self.schwab_app_secret, account_number=self.schwab_account,
                                    quote_book=QuoteBook(self.clock), clock=self.clock)

    def env(self) -> dict[str, str]:
        """Settings that point the service at these stand-ins and this clock."""
        return {**self.polygon.env(), **self.clock.env(), "SCHWAB_BASE_URL": self.schwab.base_url}

    def sign_in(self, token_path: Path) -> dict[str, str]:
        """Do the Schwab OAuth sign-in against the stand-in (following the authorize page's
        redirect as a browser would); returns the settings that use the new token."""
        from alphagen_core.adapters.schwab.auth import login
        from alphagen_core.adapters.schwab.config import SchwabConfig

        config = SchwabConfig(
            app_key=SecretStr(self.schwab_app_key), app_secret=SecretStr(self.schwab_app_secret),
            account_number=SecretStr(self.schwab_account), base_url=self.schwab.base_url,
            callback_url="https://127.0.0.1:8182", token_path=token_path,
        )

        def follow(_prompt: str) -> str:
            url = self.schwab.base_url + "/v1/oauth/authorize?" + shown[-1].split("/v1/oauth/authorize?", 1)[1].split()[0]
            return httpx.get(url, follow_redirects=False).headers["location"]

        shown: list[str] = []
        login(config, open_browser=False, redirect_url_input=follow, print_fn=shown.append)
        return {
            "SCHWAB_API_KEY": self.schwab_app_key, "SCHWAB_API_SECRET": self.schwab_app_secret,
            "SCHWAB_ACCOUNT_ID": self.schwab_account, "SCHWAB_CALLBACK_URL": config.callback_url,
            "SCHWAB_TOKEN_PATH": str(token_path), "SCHWAB_BASE_URL": self.schwab.base_url,
        }

    def __enter__(self) -> SimVenues:
        self.polygon.start()
        self.schwab.start()
        self._feeder = threading.Thread(target=self._feed, name="sim-quote-feeder", daemon=True)
        self._feeder.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._feeder.join(timeout=5)
        self.schwab.stop()
        self.polygon.stop()

    def _feed(self) -> None:
        shown: dt.datetime | None = None
        while not self._stop.wait(0.05):
            minute = self.clock.now().replace(second=0, microsecond=0)
            if minute == shown or minute not in self._minutes:
                continue
            for q in self._minutes[minute].values():
                self.schwab.quote_book.set_quote(q.symbol, q.open_bid, q.open_ask, q.last, at=minute, volume=q.volume)
            shown = minute
