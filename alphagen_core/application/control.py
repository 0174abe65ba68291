"""The session's trading state, kept append-only in `control_events`.

An operator (`alphagen halt|flatten|resume`, or the `control` job in the UI), a risk limit or
the trader appends a row; whoever trades reads the latest row of the (mode, session) and obeys
it: a relaunched session job too, since it reads the table on start.
"""

from __future__ import annotations

import datetime as dt

from alphagen_core.domain.models import ControlEvent, TradingState
from alphagen_core.persistence.rows import control_events_from
from alphagen_core.persistence.store import RowMeta, Store

VERSION = "control"


def set_state(store: Store, mode: str, session_date: dt.date, state: TradingState, reason: str, source: str,
              at: dt.datetime, run_id: str = "cli") -> ControlEvent:
    event = ControlEvent(at, state, reason, source)
    store.write({"control_events": [event]}, RowMeta(mode, session_date, VERSION, run_id))
    return event


def current_state(store: Store, mode: str, session_date: dt.date) -> ControlEvent | None:
    """The latest change for the session, or None (active: nothing was ever said). Latest by
    the time it was appended: a simulated clock's timestamps and the wall clock's can mix."""
    if not store.path.exists():
        return None
    rows = store.query(
        """SELECT est_timestamp, state, reason, source FROM control_events
           WHERE mode = ? AND session_date = ? ORDER BY written_at DESC LIMIT 1""",
        [mode, session_date],
    )
    return next(iter(control_events_from(rows)), None)


def state_history(store: Store, mode: str, session_date: dt.date) -> list[ControlEvent]:
    """Every change for the session, in the order appended."""
    rows = store.query(
        """SELECT est_timestamp, state, reason, source FROM control_events
           WHERE mode = ? AND session_date = ? ORDER BY written_at""",
        [mode, session_date],
    )
    return control_events_from(rows)


def state_at(history: list[ControlEvent], at: dt.datetime) -> TradingState:
    """The state in force at `at`: the last change appended among those made by then."""
    return state_of(next((e for e in reversed(history) if e.est_timestamp <= at), None))


def state_of(event: ControlEvent | None) -> TradingState:
    return TradingState.ACTIVE if event is None else event.state
