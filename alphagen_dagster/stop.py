"""Stopping a replay at a day boundary on SIGINT/SIGTERM (Ctrl-C, `kill`, the UI's terminate).

While the replay step's day loop runs, the first signal only asks it to stop after the day it is
on: that day commits (each day is one DuckDB transaction, so nothing is ever half-written), the
other days are reported as not replayed, and the dbt step builds the marts from what landed.
A second signal goes to Dagster's own handler, which interrupts the step at once (the day's
transaction rolls back). Outside the day loop Dagster's handling applies unchanged.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_requested: list[str] = []


@contextmanager
def watched() -> Iterator[None]:
    """Honour a stop request inside this block (main thread only: signal handlers live there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _requested.clear()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum: int, frame: object) -> None:
        if _requested:  # the second time: Dagster's interrupt
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            return
        _requested.append(f"{signal.Signals(signum).name} received")
        # Only stderr here: the event log may be mid-write in this very thread.
        sys.stderr.write(f"\n{_requested[0]}: stopping after the current day (again to stop at once)\n")

    for sig in previous:
        signal.signal(sig, handle)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def requested() -> str | None:
    """Why a stop was requested in the current block, or None."""
    return _requested[0] if _requested else None
