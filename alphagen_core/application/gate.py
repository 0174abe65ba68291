"""The live gate: the one place that decides where orders go and which mode the rows
carry.

Real orders need all four: ALPHAGEN_MODE=live, ALPHAGEN_BROKER=schwab, SCHWAB_PAPER=false and
SCHWAB_LIVE_CONFIRMATION set to the phrase. A combination that asks for real orders in part
is refused, naming the settings, rather than guessed at: paper mode with SCHWAB_PAPER=false
(rows would say paper while orders could be real), live mode without the whole gate (rows
would say live on simulated fills), ALPHAGEN_BROKER=schwab in paper mode against the real API
(Schwab has no paper trading). The one Schwab route that moves no money is the local stand-in
(SCHWAB_BASE_URL on loopback, `alphagen sim-session`), which fills by the paper rules: paper.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from alphagen_core.operations.settings import (
    LIVE_CONFIRMATION_PHRASE,
    Mode,
    Settings,
    SettingsError,
)


class GateError(SettingsError):
    """Settings that ask for real orders inconsistently; the message names them."""


@dataclass(frozen=True)
class Route:
    mode: Mode  # the mode every row carries: the mode actually traded
    broker: Literal["paper", "schwab"]  # who executes: our fill model, or Schwab (real or stand-in)


def is_loopback_url(url: str) -> bool:
    """True when `url` points at this machine (127.0.0.0/8, ::1 or localhost): the stand-in."""
    host = (urlsplit(url).hostname or "").strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def route(settings: Settings) -> Route:
    """Where this process's orders go, or GateError. Replay always fills on the paper model."""
    mode, broker = settings.alphagen_mode, settings.alphagen_broker
    standin = is_loopback_url(settings.schwab_base_url)
    confirmed = settings.schwab_live_confirmation.get_secret_value() == LIVE_CONFIRMATION_PHRASE
    if mode is Mode.REPLAY:
        return Route(Mode.REPLAY, "paper")
    if mode is Mode.LIVE:
        missing = [
            text for text, ok in (
                ("ALPHAGEN_BROKER=schwab", broker == "schwab"),
                ("SCHWAB_PAPER=false", not settings.schwab_paper),
                ("SCHWAB_LIVE_CONFIRMATION=" + LIVE_CONFIRMATION_PHRASE, confirmed),
                ("SCHWAB_BASE_URL of the real API (not the loopback stand-in)", not standin),
            ) if not ok
        ]
        if missing:
            raise GateError(f"ALPHAGEN_MODE=live also needs {', '.join(missing)}; nothing was started "
                            "(for simulated trading use ALPHAGEN_MODE=paper)")
        return Route(Mode.LIVE, "schwab")
    if not settings.schwab_paper:
        raise GateError("ALPHAGEN_MODE=paper with SCHWAB_PAPER=false: one asks for no real orders, the other "
                        "opens the live gate; set SCHWAB_PAPER=true for paper, or ALPHAGEN_MODE=live for live")
    if broker == "schwab" and not standin:
        raise GateError("ALPHAGEN_MODE=paper with ALPHAGEN_BROKER=schwab on the real Schwab API: Schwab has no "
                        "paper trading; set ALPHAGEN_BROKER=paper (our fill model on live quotes)")
    return Route(Mode.PAPER, broker)
