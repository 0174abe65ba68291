"""`progress`: the logger `alphagen replay` runs with. One short line per message the steps
log (the days' progress, a day's failure); Dagster's own events, with their stack traces, go
to the event log and the run's log file, not to the terminal."""

from __future__ import annotations

import logging
import sys

from dagster import InitLoggerContext, logger


class _ProgressFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        message = meta.get("orig_message") or record.getMessage()
        return f"{self.formatTime(record, '%H:%M:%S')} {message.strip().splitlines()[0]}"


class _StepMessagesOnly(logging.Filter):
    # Dagster's and dagster-dbt's own plain messages that the outcome lines say better (the
    # dbt commands, each with its whole selection, stay in the run's log file).
    _FRAMEWORK = ("Dependencies for step", "A dbt subsetted execution", "Copying `", "Running dbt command",
                  "Finished dbt command")

    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, "dagster_meta", None) or {}
        message = meta.get("orig_message") or ""
        return meta.get("dagster_event") is None and not message.startswith(self._FRAMEWORK)


@logger(description="One short line per step message, on stderr (alphagen replay).")
def progress_logger(init_context: InitLoggerContext) -> logging.Logger:
    log = logging.getLogger("alphagen.progress")
    log.setLevel(logging.INFO)
    log.propagate = False
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_ProgressFormatter())
        handler.addFilter(_StepMessagesOnly())
        log.addHandler(handler)
    return log
