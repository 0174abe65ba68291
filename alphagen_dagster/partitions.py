"""Trading-day partitions: NYSE sessions in America/New_York (weekends and holidays excluded),
from the first day the flat files cover (ALPHAGEN_FLATFILES_FIRST_DAY) through today."""

from __future__ import annotations

import datetime as dt

from dagster import TimeWindowPartitionsDefinition

from alphagen_core.domain.calendar import NY, holidays_between
from alphagen_core.operations.settings import get_settings

# Holidays are computed (the `holidays` NYSE calendar), not listed: from the first partition to
# two years past the day the definitions load, so a code location that stays up over a new
# year still excludes that year's holidays.
_HOLIDAYS_AHEAD = dt.timedelta(days=2 * 366)


def trading_day_partitions(first_day: dt.date, today: dt.date | None = None) -> TimeWindowPartitionsDefinition:
    today = today or dt.datetime.now(NY).date()
    return TimeWindowPartitionsDefinition(
        cron_schedule="0 0 * * 1-5",
        timezone="America/New_York",
        fmt="%Y-%m-%d",
        start=first_day.isoformat(),
        end_offset=1,  # today's session is a partition while it trades (live mode)
        exclusions=[
            dt.datetime(d.year, d.month, d.day, tzinfo=NY)
            for d in holidays_between(first_day, today + _HOLIDAYS_AHEAD)
        ],
    )


trading_days = trading_day_partitions(get_settings().alphagen_flatfiles_first_day)


def partition_days(keys: list[str]) -> list[dt.date]:
    return [dt.date.fromisoformat(k) for k in keys]
