"""Asset checks on each replayed day, computed from what the engine just produced."""

from __future__ import annotations

import datetime as dt

from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec

from alphagen_core.application.replay import SessionRun
from alphagen_core.domain.calendar import session
from alphagen_core.domain.indicators import MA_WINDOW


def _no_missing_minutes(day: dt.date, run: SessionRun, _: dt.timedelta) -> str | None:
    sess = session(day)
    have = {t.period_start for t in run.ticks}
    missing = sess.minutes - len(have)
    return f"{missing} of {sess.minutes} minutes missing" if missing else None


def _indicators_from_ninth_bar(day: dt.date, run: SessionRun, _: dt.timedelta) -> str | None:
    for i, tick in enumerate(run.ticks):
        defined = tick.ma9 is not None
        if defined != (i >= MA_WINDOW - 1):
            return f"MA9 {'defined' if defined else 'undefined'} at bar {i + 1} ({tick.period_start:%H:%M})"
        if tick.vwap is None and i > 0:
            return f"VWAP undefined at bar {i + 1}"
    return None


def _flat_at_flatten_time(day: dt.date, run: SessionRun, flatten: dt.timedelta) -> str | None:
    flatten_at = session(day).close - flatten
    held = [p for p in run.positions if p.est_timestamp >= flatten_at and p.net_quantity != 0]
    return f"still holding {held[0].symbol} at {held[0].est_timestamp:%H:%M}" if held else None


def _executions_linked(day: dt.date, run: SessionRun, _: dt.timedelta) -> str | None:
    intents = {i.intent_id for i in run.intents}
    orphans = [e.execution_id for e in run.executions if e.intent_id not in intents]
    return f"{len(orphans)} executions without an intent, e.g. {orphans[0]}" if orphans else None


CHECKS = {
    ("normalized_ticks", "no_missing_minutes"): (_no_missing_minutes, AssetCheckSeverity.WARN,
        "Every regular-session minute has a slice (real data can have gaps: a warning)."),
    ("normalized_ticks", "indicators_defined_from_9th_bar"): (_indicators_from_ninth_bar, AssetCheckSeverity.ERROR,
        "MA9 is undefined for the first 8 bars and defined from the 9th; VWAP always defined."),
    ("position_state", "flat_at_flatten_time"): (_flat_at_flatten_time, AssetCheckSeverity.ERROR,
        "No position is held at or after close minus FLATTEN_MINUTES_BEFORE_CLOSE."),
    ("executions", "every_execution_linked_to_an_intent"): (_executions_linked, AssetCheckSeverity.ERROR,
        "Every execution row links to a trade intent of the same version."),
}
CHECK_SPECS = [
    AssetCheckSpec(name, asset=asset, description=desc)
    for (asset, name), (_, _, desc) in CHECKS.items()
]


class CheckTally:
    """Each check's problems, day by day, so a range keeps no day's rows in memory."""

    def __init__(self) -> None:
        self.days = 0
        self.problems: dict[tuple[str, str], dict[str, str]] = {key: {} for key in CHECKS}

    def add(self, day: dt.date, run: SessionRun, flatten: dt.timedelta, label: str = "") -> None:
        """`flatten`: the day's variant's flatten time; `label`: its name, in a sweep."""
        self.days += 1
        for key, (fn, _, _) in CHECKS.items():
            if problem := fn(day, run, flatten):
                self.problems[key][f"{day}{label}"] = problem

    def results(self):
        for (asset, name), (_, severity, _) in CHECKS.items():
            problems = self.problems[asset, name]
            yield AssetCheckResult(
                asset_key=asset,
                check_name=name,
                passed=not problems,
                severity=severity,
                metadata={"days_checked": self.days, "problems": problems or "none"},
            )
