"""A request to stop a replay at the next day boundary (the CLI sets it on SIGINT/SIGTERM).

The replay step reads it between days, so a stop never leaves a day half-written: each day is
one DuckDB transaction. Runs launched from the UI are stopped by Dagster's own termination.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_requested = threading.Event()
_watched = threading.Event()
_reason: list[str] = []


@contextmanager
def watched() -> Iterator[None]:
    """Marks the stretch of work that honours a request (the replay's day loop)."""
    _watched.set()
    try:
        yield
    finally:
        _watched.clear()


def is_watched() -> bool:
    return _watched.is_set()


def request(reason: str) -> None:
    _reason[:] = [reason]
    _requested.set()


def requested() -> str | None:
    """The reason a stop was requested, or None."""
    return _reason[0] if _requested.is_set() else None
