"""Schwab adapters: the first sign-in (auth), the token file (tokens), the session every call
goes through (session, client), market data, order execution.

schwab-py does OAuth, token refresh and the HTTP calls; we add routing to a stand-in,
a shared client-side rate limiter, retries, safe order submission, the live gate and secret
redaction. See each module's docstring.

Typical wiring::

    config = SchwabConfig.from_settings(settings)
    session = SchwabSession(config)               # reads SCHWAB_TOKEN_PATH
    data = SchwabMarketData(session)
    broker = SchwabExecution(session, live_enabled=settings.live_enabled)

First sign-in (for the CLI's `alphagen schwab-login`): ``login(config)``.
"""

from alphagen_core.adapters.schwab.auth import login, login_from_settings
from alphagen_core.adapters.schwab.config import SchwabConfig
from alphagen_core.adapters.schwab.errors import (
    REFRESH_EXPIRED_MESSAGE,
    SchwabAPIError,
    SchwabAuthError,
    SchwabError,
    SchwabUnavailable,
)
from alphagen_core.adapters.schwab.execution import (
    LiveTradingDisabledError,
    SchwabExecution,
    SchwabOrderRejected,
    SchwabOrderStateUnknown,
)
from alphagen_core.adapters.schwab.market_data import SchwabMarketData
from alphagen_core.adapters.schwab.ratelimit import (
    RateLimiter,
    RetryPolicy,
    default_limiter,
)
from alphagen_core.adapters.schwab.session import SchwabSession

__all__ = [
    "REFRESH_EXPIRED_MESSAGE",
    "LiveTradingDisabledError",
    "RateLimiter",
    "RetryPolicy",
    "SchwabAPIError",
    "SchwabAuthError",
    "SchwabConfig",
    "SchwabError",
    "SchwabExecution",
    "SchwabMarketData",
    "SchwabOrderRejected",
    "SchwabOrderStateUnknown",
    "SchwabSession",
    "SchwabUnavailable",
    "default_limiter",
    "login",
    "login_from_settings",
]
