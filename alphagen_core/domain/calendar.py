"""The NYSE trading calendar, in America/New_York.

Closed days come from the `holidays` package's NYSE financial calendar, which lists the
dates the exchange is actually closed (observed holidays and one-off closings such as
national days of mourning), never a weekend date. Early closes are not in that calendar;
they follow the rule in `_is_early_close`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo

import holidays

NY = ZoneInfo("America/New_York")

REGULAR_OPEN = dt.time(9, 30)
REGULAR_CLOSE = dt.time(16, 0)
EARLY_CLOSE = dt.time(13, 0)
LIVE_WINDOW_MARGIN = dt.timedelta(minutes=30)

_DAY = dt.timedelta(days=1)
_SATURDAY = 5


@dataclass(frozen=True, slots=True)
class Session:
    date: dt.date
    open: dt.datetime
    close: dt.datetime
    early_close: bool

    @property
    def live_window_start(self) -> dt.datetime:
        return self.open - LIVE_WINDOW_MARGIN

    @property
    def live_window_end(self) -> dt.datetime:
        return self.close + LIVE_WINDOW_MARGIN

    @property
    def minutes(self) -> int:
        """The number of regular-session one-minute bars: 390, or 210 on an early close."""
        return int((self.close - self.open) / dt.timedelta(minutes=1))


class NotATradingDay(ValueError):
    def __init__(self, day: dt.date, reason: str) -> None:
        super().__init__(f"{day.isoformat()} is not an NYSE trading day: {reason}")
        self.date = day
        self.reason = reason


@lru_cache(maxsize=256)
def _holidays_of_year(year: int) -> Mapping[dt.date, str]:
    return MappingProxyType(dict(holidays.financial_holidays("NYSE", years=year)))


def _holiday_name(d: dt.date) -> str | None:
    return _holidays_of_year(d.year).get(d)


def _check_date(d: dt.date) -> dt.date:
    # A datetime is a date subclass but hashes differently, so it would silently miss
    # every holiday lookup; refuse it instead of returning a wrong answer.
    if isinstance(d, dt.datetime):
        raise TypeError(f"expected a date, got the datetime {d!r}; use to_ny(ts).date()")
    return d


def is_trading_day(d: dt.date) -> bool:
    _check_date(d)
    return d.weekday() < _SATURDAY and _holiday_name(d) is None


# Early closes the date rule below gets wrong (NYSE history, 1999 on): before 2013, when
# July 4 was a Thursday the early close was Friday July 5, not Wednesday July 3 (2002); and
# December 26 2003, the Friday after Christmas, closed at 13:00.
_EARLY_CLOSE_ADHOC = frozenset({dt.date(2003, 12, 26)})
_JULY_5_EARLY_CLOSE_UNTIL = 2013


def _is_early_close(d: dt.date) -> bool:
    """NYSE closes at 13:00 on July 3, the day after Thanksgiving and December 24, each only
    when that day is itself a trading day. When July 4 or December 25 falls on a weekend the
    observed holiday can land on July 3 / December 24 (closed all day), and the day before an
    observed holiday is then a full session: the rule follows the calendar date only.
    Before 2013 a Thursday July 4 moved the early close to Friday July 5 (see above)."""
    if d in _EARLY_CLOSE_ADHOC:
        return True
    if d.month == 7 and d.year < _JULY_5_EARLY_CLOSE_UNTIL and dt.date(d.year, 7, 4).weekday() == 3:
        return d.day == 5  # July 4 a Thursday: Friday July 5 closed early, Wednesday July 3 did not
    if (d.month, d.day) in ((7, 3), (12, 24)):
        return True
    # Thanksgiving is the fourth Thursday of November, so the day after is the Friday
    # falling on November 23-29.
    return d.month == 11 and d.weekday() == 4 and 23 <= d.day <= 29


@lru_cache(maxsize=8192)
def _session(d: dt.date) -> Session:
    name = _holiday_name(d)
    if name is not None:
        raise NotATradingDay(d, f"NYSE holiday, {name}")
    if d.weekday() >= _SATURDAY:
        raise NotATradingDay(d, f"weekend, {d.strftime('%A')}")
    early = _is_early_close(d)
    return Session(
        date=d,
        open=dt.datetime.combine(d, REGULAR_OPEN, tzinfo=NY),
        close=dt.datetime.combine(d, EARLY_CLOSE if early else REGULAR_CLOSE, tzinfo=NY),
        early_close=early,
    )


def session(d: dt.date) -> Session:
    """The regular session of `d`; raises NotATradingDay on weekends and holidays."""
    return _session(_check_date(d))


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    _check_date(start)
    _check_date(end)
    return [start + i * _DAY for i in range((end - start).days + 1)]


def trading_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """Trading days from `start` to `end`, both inclusive (empty when start > end)."""
    return [d for d in _days(start, end) if is_trading_day(d)]


def sessions(start: dt.date, end: dt.date) -> list[Session]:
    """Sessions from `start` to `end`, both inclusive (empty when start > end)."""
    return [_session(d) for d in trading_days(start, end)]


def holidays_between(start: dt.date, end: dt.date) -> list[dt.date]:
    """Weekdays from `start` to `end` (inclusive) on which the NYSE is closed."""
    return [
        d for d in _days(start, end) if d.weekday() < _SATURDAY and _holiday_name(d) is not None
    ]


def next_trading_day(d: dt.date) -> dt.date:
    """The first trading day strictly after `d`."""
    d = _check_date(d) + _DAY
    while not is_trading_day(d):
        d += _DAY
    return d


def previous_trading_day(d: dt.date) -> dt.date:
    """The last trading day strictly before `d`."""
    d = _check_date(d) - _DAY
    while not is_trading_day(d):
        d -= _DAY
    return d


def to_ny(ts: dt.datetime) -> dt.datetime:
    """`ts` as America/New_York time; a naive datetime is refused, never guessed."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError(f"naive datetime {ts.isoformat()}: a timezone is required")
    return ts.astimezone(NY)


def live_session_at(now: dt.datetime) -> Session | None:
    """The session whose live window [open - 30 min, close + 30 min) contains `now`."""
    local = to_ny(now)
    day = local.date()
    if not is_trading_day(day):
        return None
    current = _session(day)
    if current.live_window_start <= local < current.live_window_end:
        return current
    return None
