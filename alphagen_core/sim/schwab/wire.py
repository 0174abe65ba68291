"""The stand-in's wire helpers: answers (`Reply`), Schwab's error bodies, its time formats
and the Trader API's account and order paths."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from alphagen_core.domain.models import OptionContract

UPSTREAM = "https://api.schwabapi.com"
REASONS = {
    200: "OK",
    201: "Created",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

ACCOUNT_PATH = re.compile(r"^/trader/v1/accounts/([^/]+)$")
ORDERS_PATH = re.compile(r"^/trader/v1/accounts/([^/]+)/orders$")
ORDER_PATH = re.compile(r"^/trader/v1/accounts/([^/]+)/orders/(\d+)$")


class Reply(Exception):
    """Raised inside a route to answer at once."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None):
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def error(status: int, message: str) -> Reply:
    problem = {"status": str(status), "title": REASONS.get(status, ""), "detail": message}
    return Reply(status, {"message": message, "errors": [problem]})


def oauth_error(status: int, error: str, description: str) -> Reply:
    return Reply(status, {"error": error, "error_description": description})


def utc_text(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+0000")


def ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def parse_query_time(text: str) -> dt.datetime | None:
    value = text.strip()
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            pass
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


def describe(c: OptionContract) -> str:
    return f"{c.root} {c.expiry:%m/%d/%Y} {c.strike:g} {'Call' if c.right.value == 'C' else 'Put'}"
