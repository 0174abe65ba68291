from __future__ import annotations

import datetime as dt
import re
from zoneinfo import ZoneInfo

import pytest

from alphagen_core.domain import calendar
from alphagen_core.domain.calendar import (
    NY,
    NotATradingDay,
    Session,
    holidays_between,
    is_trading_day,
    live_session_at,
    next_trading_day,
    previous_trading_day,
    session,
    sessions,
    to_ny,
    trading_days,
)

pytestmark = pytest.mark.unit

D = dt.date
UTC = dt.UTC


def ny(y: int, m: int, d: int, hh: int, mm: int = 0, ss: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, ss, tzinfo=NY)


def test_ny_is_new_york() -> None:
    assert NY == ZoneInfo("America/New_York")


# ---- regular and early sessions ------------------------------------------------------------


def test_regular_session() -> None:
    s = session(D(2024, 2, 12))
    assert s == Session(D(2024, 2, 12), ny(2024, 2, 12, 9, 30), ny(2024, 2, 12, 16), False)
    assert s.minutes == 390
    assert s.live_window_start == ny(2024, 2, 12, 9, 0)
    assert s.live_window_end == ny(2024, 2, 12, 16, 30)


@pytest.mark.parametrize(
    "day",
    [
        D(2024, 11, 29),  # day after Thanksgiving
        D(2025, 7, 3),  # day before Independence Day
        D(2024, 7, 3),
        D(2024, 12, 24),  # Christmas Eve
        D(2025, 11, 28),
        D(2025, 12, 24),
    ],
)
def test_early_closes_at_13(day: dt.date) -> None:
    s = session(day)
    assert s.early_close
    assert s.open.timetz() == dt.time(9, 30, tzinfo=NY)
    assert s.close == dt.datetime.combine(day, dt.time(13, 0), tzinfo=NY)
    assert s.minutes == 210
    assert s.live_window_end == dt.datetime.combine(day, dt.time(13, 30), tzinfo=NY)


@pytest.mark.parametrize(
    "day",
    [
        D(2026, 7, 2),  # July 3 2026 is the observed holiday: the day before it is normal
        D(2021, 12, 23),  # December 24 2021 was the observed Christmas
        D(2022, 12, 23),  # December 24 2022 was a Saturday
        D(2024, 11, 27),  # the day *before* Thanksgiving is a full day
        D(2024, 7, 5),
        D(2024, 12, 26),
    ],
)
def test_no_early_close_around_holidays(day: dt.date) -> None:
    s = session(day)
    assert not s.early_close
    assert s.close == dt.datetime.combine(day, dt.time(16, 0), tzinfo=NY)
    assert s.minutes == 390


def test_early_close_days_in_2024_and_2025() -> None:
    early = [s.date for s in sessions(D(2024, 1, 1), D(2025, 12, 31)) if s.early_close]
    assert early == [
        D(2024, 7, 3),
        D(2024, 11, 29),
        D(2024, 12, 24),
        D(2025, 7, 3),
        D(2025, 11, 28),
        D(2025, 12, 24),
    ]


# ---- closed days ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "holiday"),
    [
        (D(2024, 12, 25), "Christmas"),
        (D(2025, 1, 1), "New Year"),
        (D(2024, 3, 29), "Good Friday"),
        (D(2026, 7, 3), "Independence Day (observed)"),
        (D(2025, 1, 9), "Carter"),  # national day of mourning
    ],
)
def test_holidays_are_closed(day: dt.date, holiday: str) -> None:
    assert not is_trading_day(day)
    with pytest.raises(NotATradingDay, match=re.escape(holiday)) as exc:
        session(day)
    assert day.isoformat() in str(exc.value)
    assert "holiday" in str(exc.value)
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize(
    ("day", "weekday"), [(D(2024, 3, 9), "Saturday"), (D(2024, 3, 10), "Sunday")]
)
def test_weekends_are_closed(day: dt.date, weekday: str) -> None:
    assert not is_trading_day(day)
    with pytest.raises(NotATradingDay, match=f"{day.isoformat()}.*weekend.*{weekday}"):
        session(day)


def test_2026_07_02_is_a_normal_trading_day() -> None:
    assert is_trading_day(D(2026, 7, 2))
    assert session(D(2026, 7, 2)).close == ny(2026, 7, 2, 16)


def test_a_datetime_is_refused_where_a_date_is_expected() -> None:
    # 2024-12-25 00:00 as a datetime would miss the holiday lookup and look like a trading day
    with pytest.raises(TypeError, match="date"):
        is_trading_day(dt.datetime(2024, 12, 25))
    with pytest.raises(TypeError):
        session(dt.datetime(2024, 12, 25, tzinfo=NY))


# ---- DST -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "open_utc"),
    [
        (D(2024, 3, 8), dt.datetime(2024, 3, 8, 14, 30, tzinfo=UTC)),  # Friday, EST (UTC-5)
        (D(2024, 3, 11), dt.datetime(2024, 3, 11, 13, 30, tzinfo=UTC)),  # Monday, EDT (UTC-4)
        (D(2024, 11, 1), dt.datetime(2024, 11, 1, 13, 30, tzinfo=UTC)),  # Friday, EDT
        (D(2024, 11, 4), dt.datetime(2024, 11, 4, 14, 30, tzinfo=UTC)),  # Monday, EST
    ],
)
def test_open_is_0930_new_york_across_dst(day: dt.date, open_utc: dt.datetime) -> None:
    s = session(day)
    assert (s.open.hour, s.open.minute) == (9, 30)
    assert s.open.astimezone(UTC) == open_utc
    assert s.close - s.open == dt.timedelta(hours=6, minutes=30)


def test_utc_offsets_differ_across_dst_changes() -> None:
    assert session(D(2024, 3, 8)).open.utcoffset() == dt.timedelta(hours=-5)
    assert session(D(2024, 3, 11)).open.utcoffset() == dt.timedelta(hours=-4)
    assert session(D(2024, 11, 1)).open.utcoffset() == dt.timedelta(hours=-4)
    assert session(D(2024, 11, 4)).open.utcoffset() == dt.timedelta(hours=-5)


# ---- ranges and neighbours -----------------------------------------------------------------


def test_2024_has_252_trading_days() -> None:
    days = trading_days(D(2024, 1, 1), D(2024, 12, 31))
    assert len(days) == 252
    assert days[0] == D(2024, 1, 2)
    assert days[-1] == D(2024, 12, 31)
    assert [s.date for s in sessions(D(2024, 1, 1), D(2024, 12, 31))] == days


def test_ranges_are_inclusive_and_empty_when_reversed() -> None:
    assert trading_days(D(2024, 2, 12), D(2024, 2, 16)) == [D(2024, 2, d) for d in range(12, 17)]
    assert trading_days(D(2024, 2, 12), D(2024, 2, 12)) == [D(2024, 2, 12)]
    assert trading_days(D(2024, 2, 13), D(2024, 2, 12)) == []
    assert sessions(D(2024, 2, 17), D(2024, 2, 19)) == []  # Saturday to Presidents' Day


def test_holidays_between_lists_weekday_closures_only() -> None:
    assert holidays_between(D(2024, 1, 1), D(2024, 12, 31)) == [
        D(2024, 1, 1),
        D(2024, 1, 15),
        D(2024, 2, 19),
        D(2024, 3, 29),
        D(2024, 5, 27),
        D(2024, 6, 19),
        D(2024, 7, 4),
        D(2024, 9, 2),
        D(2024, 11, 28),
        D(2024, 12, 25),
    ]
    # 2022-01-01 was a Saturday and was not observed on Friday 2021-12-31
    assert holidays_between(D(2021, 12, 31), D(2022, 1, 3)) == []
    assert holidays_between(D(2026, 7, 1), D(2026, 7, 6)) == [D(2026, 7, 3)]


def test_every_weekday_is_either_a_trading_day_or_a_holiday() -> None:
    start, end = D(2023, 1, 1), D(2026, 12, 31)
    weekdays = [
        start + dt.timedelta(days=i)
        for i in range((end - start).days + 1)
        if (start + dt.timedelta(days=i)).weekday() < 5
    ]
    closed = holidays_between(start, end)
    open_days = trading_days(start, end)
    assert sorted(closed + open_days) == weekdays
    assert not set(closed) & set(open_days)


def test_next_and_previous_trading_day() -> None:
    assert next_trading_day(D(2024, 3, 28)) == D(2024, 4, 1)  # over Good Friday + weekend
    assert previous_trading_day(D(2024, 4, 1)) == D(2024, 3, 28)
    assert next_trading_day(D(2024, 2, 12)) == D(2024, 2, 13)  # strictly after
    assert previous_trading_day(D(2024, 2, 13)) == D(2024, 2, 12)  # strictly before
    assert next_trading_day(D(2024, 12, 31)) == D(2025, 1, 2)  # across a year and New Year
    assert previous_trading_day(D(2025, 1, 2)) == D(2024, 12, 31)
    assert next_trading_day(D(2026, 7, 2)) == D(2026, 7, 6)


# ---- live window ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (ny(2024, 2, 12, 9, 0), D(2024, 2, 12)),  # window opens at open - 30 min, inclusive
        (ny(2024, 2, 12, 8, 59, 59), None),
        (ny(2024, 2, 12, 8, 59), None),
        (ny(2024, 2, 12, 12, 0), D(2024, 2, 12)),
        (ny(2024, 2, 12, 16, 29, 59), D(2024, 2, 12)),
        (ny(2024, 2, 12, 16, 29), D(2024, 2, 12)),
        (ny(2024, 2, 12, 16, 30), None),  # close + 30 min is excluded
        (ny(2024, 2, 12, 17, 0), None),
        (ny(2024, 2, 10, 12, 0), None),  # Saturday
        (ny(2024, 12, 25, 12, 0), None),  # Christmas
        (ny(2024, 11, 29, 13, 29), D(2024, 11, 29)),  # early close: window ends 13:30
        (ny(2024, 11, 29, 13, 30), None),
        (ny(2024, 11, 29, 16, 0), None),
    ],
)
def test_live_session_at(now: dt.datetime, expected: dt.date | None) -> None:
    found = live_session_at(now)
    assert (found.date if found else None) == expected


def test_live_session_at_accepts_any_timezone() -> None:
    # 2024-03-11 09:00 EDT == 13:00Z, and 2024-11-04 09:00 EST == 14:00Z
    assert live_session_at(dt.datetime(2024, 3, 11, 13, 0, tzinfo=UTC)) == session(D(2024, 3, 11))
    assert live_session_at(dt.datetime(2024, 3, 11, 12, 59, tzinfo=UTC)) is None
    assert live_session_at(dt.datetime(2024, 11, 4, 14, 0, tzinfo=UTC)) == session(D(2024, 11, 4))
    assert live_session_at(dt.datetime(2024, 11, 4, 13, 59, tzinfo=UTC)) is None
    # 16:15 New York on Monday is already Tuesday in Tokyo
    tokyo = dt.datetime(2024, 2, 13, 6, 15, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert live_session_at(tokyo) == session(D(2024, 2, 12))


def test_live_session_at_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        live_session_at(dt.datetime(2024, 2, 12, 10, 0))


# ---- to_ny ---------------------------------------------------------------------------------


def test_to_ny_converts_aware_times() -> None:
    converted = to_ny(dt.datetime(2024, 7, 1, 14, 30, tzinfo=UTC))
    assert converted == ny(2024, 7, 1, 10, 30)
    assert converted.tzinfo is NY
    assert (converted.hour, converted.minute) == (10, 30)
    winter = to_ny(dt.datetime(2024, 1, 2, 14, 30, tzinfo=UTC))
    assert (winter.hour, winter.minute) == (9, 30)


def test_to_ny_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_ny(dt.datetime(2024, 7, 1, 14, 30))


# ---- speed ---------------------------------------------------------------------------------


def test_a_year_of_sessions_looks_up_its_holidays_once_and_then_comes_from_the_cache() -> None:
    """The per-year work is done once: the year's holidays are built once (not per day), and a
    second call computes nothing. (How fast a year's replay is, calendar included, is
    `make bench`'s: BENCHMARKS.md.)"""
    calendar._holidays_of_year.cache_clear()
    calendar._session.cache_clear()
    cold = sessions(D(2023, 1, 1), D(2023, 12, 31))
    years, days = calendar._holidays_of_year.cache_info(), calendar._session.cache_info()
    warm = sessions(D(2023, 1, 1), D(2023, 12, 31))
    assert cold == warm and len(cold) == 250
    assert years.misses == 1 and days.misses == 250
    assert calendar._holidays_of_year.cache_info().misses == 1
    assert calendar._session.cache_info().misses == 250


# ---- NYSE history, year by year ------------------------------------------------------------

# Weekday closures per NYSE's published calendars: observed holidays, Good Friday, Juneteenth
# from 2022 only, and one-off closures (2018-12-05 Bush and 2025-01-09 Carter days of mourning).
NYSE_CLOSED = {
    2014: ["01-01", "01-20", "02-17", "04-18", "05-26", "07-04", "09-01", "11-27", "12-25"],
    2015: ["01-01", "01-19", "02-16", "04-03", "05-25", "07-03", "09-07", "11-26", "12-25"],
    2016: ["01-01", "01-18", "02-15", "03-25", "05-30", "07-04", "09-05", "11-24", "12-26"],
    2017: ["01-02", "01-16", "02-20", "04-14", "05-29", "07-04", "09-04", "11-23", "12-25"],
    2018: ["01-01", "01-15", "02-19", "03-30", "05-28", "07-04", "09-03", "11-22", "12-05", "12-25"],
    2019: ["01-01", "01-21", "02-18", "04-19", "05-27", "07-04", "09-02", "11-28", "12-25"],
    2020: ["01-01", "01-20", "02-17", "04-10", "05-25", "07-03", "09-07", "11-26", "12-25"],
    2021: ["01-01", "01-18", "02-15", "04-02", "05-31", "07-05", "09-06", "11-25", "12-24"],
    2022: ["01-17", "02-21", "04-15", "05-30", "06-20", "07-04", "09-05", "11-24", "12-26"],
    2023: ["01-02", "01-16", "02-20", "04-07", "05-29", "06-19", "07-04", "09-04", "11-23", "12-25"],
    2024: ["01-01", "01-15", "02-19", "03-29", "05-27", "06-19", "07-04", "09-02", "11-28", "12-25"],
    2025: ["01-01", "01-09", "01-20", "02-17", "04-18", "05-26", "06-19", "07-04", "09-01", "11-27", "12-25"],
}

# 13:00 closes: July 3 when it is a weekday trading day (not in 2015 and 2020, when it was the
# observed Independence Day), the day after Thanksgiving, December 24 when a weekday trading day.
NYSE_EARLY = {
    2014: ["07-03", "11-28", "12-24"],
    2015: ["11-27", "12-24"],
    2016: ["11-25"],
    2017: ["07-03", "11-24"],
    2018: ["07-03", "11-23", "12-24"],
    2019: ["07-03", "11-29", "12-24"],
    2020: ["11-27", "12-24"],
    2021: ["11-26"],
    2022: ["11-25"],
    2023: ["07-03", "11-24"],
    2024: ["07-03", "11-29", "12-24"],
    2025: ["07-03", "11-28", "12-24"],
}

NYSE_TRADING_DAYS = {
    2014: 252, 2015: 252, 2016: 252, 2017: 251, 2018: 251, 2019: 252,
    2020: 253, 2021: 252, 2022: 251, 2023: 250, 2024: 252, 2025: 250,
}


def _mmdd(days: list[dt.date]) -> list[str]:
    return [d.strftime("%m-%d") for d in days]


@pytest.mark.parametrize("year", sorted(NYSE_CLOSED))
def test_closures_early_closes_and_day_count_match_nyse_history(year: int) -> None:
    start, end = D(year, 1, 1), D(year, 12, 31)
    year_sessions = sessions(start, end)
    assert _mmdd(holidays_between(start, end)) == NYSE_CLOSED[year]
    assert _mmdd([s.date for s in year_sessions if s.early_close]) == NYSE_EARLY[year]
    assert len(year_sessions) == NYSE_TRADING_DAYS[year]
    for s in year_sessions:
        assert s.close.time() == (dt.time(13) if s.early_close else dt.time(16)), s.date


def test_juneteenth_is_a_trading_day_before_2022() -> None:
    assert is_trading_day(D(2021, 6, 18))  # the federal holiday was first observed in 2021
    assert is_trading_day(D(2020, 6, 19))
    assert not is_trading_day(D(2022, 6, 20))


@pytest.mark.parametrize(
    "day",
    [
        D(2001, 9, 11), D(2001, 9, 12), D(2001, 9, 13), D(2001, 9, 14),  # September 11
        D(2004, 6, 11),  # Reagan day of mourning
        D(2007, 1, 2),  # Ford day of mourning
        D(2012, 10, 29), D(2012, 10, 30),  # Hurricane Sandy
        D(2018, 12, 5),  # G. H. W. Bush day of mourning
        D(2025, 1, 9),  # Carter day of mourning
    ],
)
def test_one_off_closures(day: dt.date) -> None:
    assert not is_trading_day(day)


def test_early_closes_before_2014() -> None:
    # Before 2013 a Thursday July 4 moved the early close to Friday July 5 (2002), and
    # 2003-12-26 closed at 13:00; otherwise the same date rule as today.
    early = [s.date.isoformat() for s in sessions(D(2000, 1, 1), D(2013, 12, 31)) if s.early_close]
    assert early == [
        "2000-07-03", "2000-11-24",
        "2001-07-03", "2001-11-23", "2001-12-24",
        "2002-07-05", "2002-11-29", "2002-12-24",
        "2003-07-03", "2003-11-28", "2003-12-24", "2003-12-26",
        "2004-11-26",
        "2005-11-25",
        "2006-07-03", "2006-11-24",
        "2007-07-03", "2007-11-23", "2007-12-24",
        "2008-07-03", "2008-11-28", "2008-12-24",
        "2009-11-27", "2009-12-24",
        "2010-11-26",
        "2011-11-25",
        "2012-07-03", "2012-11-23", "2012-12-24",
        "2013-07-03", "2013-11-29", "2013-12-24",
    ]
    assert session(D(2002, 7, 3)).close == ny(2002, 7, 3, 16)
    assert session(D(2002, 7, 5)).close == ny(2002, 7, 5, 13)
