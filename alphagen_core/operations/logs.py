"""Logging, configured once per process: structlog for our events, the standard
library's records (Dagster, dbt, massive, schwab-py, httpx...) through the same processors.

- JSON lines (one object per line: timestamp, level, logger, event, fields) for the service
  and its runs, whose output goes to log files; readable coloured lines at a terminal.
  ``ALPHAGEN_LOG_FORMAT`` = auto (JSON unless the output is a terminal) | json | console.
- Context bound with ``bind`` (run id, session date, mode) rides on every event of the
  process (structlog contextvars).
- Every event and record passes the project's one redactor (alphagen_core.operations.redaction).

The core layer owns this so the engine, the adapters and the Dagster layer share it; it never
imports Dagster.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, Literal

import structlog

from alphagen_core.operations.redaction import REDACTOR

Format = Literal["auto", "json", "console"]
OWN_LOGGERS = ("alphagen_core", "alphagen_dagster", "alphagen")
_lock = threading.Lock()
_configured: tuple[str, str] | None = None


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time (where structlog printed before it was
    configured: a replay keeps redirecting it into its log file; the service's processes send
    stdout and stderr to one log file)."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _renderer(fmt: str) -> Any:
    if fmt == "json":
        return structlog.processors.JSONRenderer(default=str)
    return structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())


def resolve_format(fmt: str) -> str:
    if fmt == "auto":
        return "console" if sys.stdout.isatty() or sys.stderr.isatty() else "json"
    return fmt


def configure_logging(fmt: Format | str | None = None, level: str | None = None, *, force: bool = False) -> str:
    """Configure structlog and the root logger (once; again only with ``force``). Defaults
    from ALPHAGEN_LOG_FORMAT and ALPHAGEN_LOG_LEVEL (read directly: a bad setting must still
    be reported through a configured logger). Returns the format in force."""
    global _configured
    fmt = resolve_format((fmt or os.environ.get("ALPHAGEN_LOG_FORMAT") or "auto").lower())
    if fmt not in ("json", "console"):
        fmt = resolve_format("auto")
    level = (level or os.environ.get("ALPHAGEN_LOG_LEVEL") or "INFO").upper()
    if logging.getLevelName(level) == f"Level {level}":
        level = "INFO"
    with _lock:
        if _configured is not None and not force:
            return _configured[0]
        shared: list[Any] = [
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if fmt == "json" else structlog.processors.StackInfoRenderer(),
            REDACTOR,
        ]
        structlog.configure(
            processors=[
                structlog.stdlib.filter_by_level,
                *shared,
                structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
            cache_logger_on_first_use=True,
        )
        handler = _StdoutHandler()
        handler.addFilter(REDACTOR)  # records of every library, before they are rendered
        handler.setFormatter(structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _renderer(fmt)],
        ))
        handler._alphagen = True  # type: ignore[attr-defined]
        root = logging.getLogger()
        for h in list(root.handlers):
            if getattr(h, "_alphagen", False):
                root.removeHandler(h)
        root.addHandler(handler)
        # Libraries keep the standard library's default (warnings and errors only); our own
        # events and the level asked for come from our packages' loggers.
        root.setLevel(logging.WARNING)
        for name in OWN_LOGGERS:
            logging.getLogger(name).setLevel(level)
        _configured = (fmt, level)
        return fmt


def bind(**context: Any) -> None:
    """Bind context (run_id, session_date, mode, ...) to every later event of this process."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in context.items() if v is not None})


def unbind(*keys: str) -> None:
    structlog.contextvars.unbind_contextvars(*keys)
