"""The one secret redactor: secrets never appear in logs, DuckDB, Dagster event logs or
exceptions.

Every secret the process learns (API keys, app key and secret, account numbers and hashes,
token values, an authorization code, the alert webhook URL) is registered with ``REDACTOR``;
whatever is written out passes through it:

- the structlog processor chain (``alphagen_core.operations.logs``) redacts every event's values;
- ``REDACTOR`` is also a ``logging.Filter``, attached to the third-party loggers that see
  credentials (massive, websockets, urllib3, schwab-py, httpx, httpcore, authlib) and to the
  root handler that ``configure_logging`` installs;
- adapters build their exception texts with ``redact``.

Besides the registered values it masks what looks like a credential whatever the value is,
even a wrong one: a Polygon auth frame, a bearer header, an ``apiKey`` query parameter.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mangle ordinary text

_PATTERNS = (
    # the auth frame as the websockets library logs it at DEBUG
    re.compile(r"""(["']action["']\s*:\s*["']auth["']\s*,\s*["']params["']\s*:\s*["'])[^"']*"""),
    re.compile(r"(Bearer\s+)[^\s'\",}]+", re.IGNORECASE),
    re.compile(r"((?:\?|&|\b)apiKey=)[^&\s'\"]+"),
)


class SecretRedactor(logging.Filter):
    """Masks registered secrets (longest first) and credential-shaped text. A logging filter
    too: a record whose message held a secret is rewritten before any handler sees it."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._ordered: tuple[str, ...] = ()
        for s in secrets:
            self.add(s)

    def add(self, value: object, label: str = "") -> None:
        """Register a secret (`label` is kept for the reader of the call site only: the mask
        never says what was hidden)."""
        text = "" if value is None else str(value)
        if len(text) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if text not in self._secrets:
                self._secrets.add(text)
                self._ordered = tuple(sorted(self._secrets, key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._ordered:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        return text

    def redact_value(self, value: Any) -> Any:
        """Strings redacted; containers walked; anything else rendered and redacted only if
        its text held a secret."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, int | float | bool) or value is None:
            return value
        if isinstance(value, dict):
            return {k: self.redact_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set):
            return [self.redact_value(v) for v in value]
        text = str(value)
        clean = self.redact(text)
        return value if clean == text else clean

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is passed on untouched
            return True
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            # the traceback's text is rendered once and cached on the record: render it clean
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True

    def __call__(self, logger: object, method: str, event: dict[str, Any]) -> dict[str, Any]:
        """As a structlog processor."""
        return {k: self.redact_value(v) for k, v in event.items()}


REDACTOR = SecretRedactor()
_attached: set[str] = set()
_attach_lock = threading.Lock()


def register(*secrets: object) -> None:
    for s in secrets:
        REDACTOR.add(s)


def redact(text: str, *secrets: str) -> str:
    """``text`` with the secrets (registered from now on) and anything credential-shaped masked."""
    register(*secrets)
    return REDACTOR.redact(text)


def redacting_logger(name: str, *secrets: str) -> logging.Logger:
    """The logger ``name`` with the redactor attached (a filter on a logger does not apply to
    its children's records, so each logger that creates records gets it)."""
    register(*secrets)
    logger = logging.getLogger(name)
    with _attach_lock:
        if name not in _attached:
            logger.addFilter(REDACTOR)
            _attached.add(name)
    return logger


def register_settings(settings: Any) -> None:
    """Every configured secret of the settings (`Settings.secret_values`)."""
    register(*settings.secret_values())
