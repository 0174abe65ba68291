"""Trading-day partitions: NYSE sessions in America/New_York (weekends and holidays excluded)."""

from __future__ import annotations

import datetime as dt

from dagster import TimeWindowPartitionsDefinition

from alphagen_core.calendar import NY, holidays_between

FIRST_PARTITION = dt.date(2024, 1, 2)
# Holidays are excluded up to this date; sessions after it would need the list extended.
LAST_KNOWN_HOLIDAYS = dt.date(2030, 12, 31)

trading_days = TimeWindowPartitionsDefinition(
    cron_schedule="0 0 * * 1-5",
    timezone="America/New_York",
    fmt="%Y-%m-%d",
    start=FIRST_PARTITION.isoformat(),
    end_offset=1,  # today's session is a partition while it trades (live mode)
    exclusions=[
        dt.datetime(d.year, d.month, d.day, tzinfo=NY)
        for d in holidays_between(FIRST_PARTITION, LAST_KNOWN_HOLIDAYS)
    ],
)


def partition_days(keys: list[str]) -> list[dt.date]:
    return [dt.date.fromisoformat(k) for k in keys]
