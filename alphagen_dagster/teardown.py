"""Ending a process that has Dagster and dbt loaded, without Python's interpreter teardown
(unloading thousands of modules takes about a second)."""

from __future__ import annotations

import logging
import multiprocessing.util
import os
import sys
from typing import NoReturn


def exit_without_teardown(code: int) -> NoReturn:
    """By now the Dagster instance, DuckDB (dbt's process has ended) and the log files are
    closed; only buffers remain."""
    # multiprocessing's own exit hook (what atexit would run): it frees the chart pool's
    # semaphores, which its resource tracker would otherwise report as leaked.
    multiprocessing.util._exit_function()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
