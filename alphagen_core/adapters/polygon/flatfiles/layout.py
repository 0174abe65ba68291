"""The flat files: where they sit in the bucket, their columns, and the error for one that
cannot be used.

Two files per day, in the bucket's key layout (FACTS 'Polygon / Massive'):

    us_stocks_sip/minute_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz    every stock ticker
    us_options_opra/minute_aggs_v1/YYYY/MM/YYYY-MM-DD.csv.gz  every option contract (2M+ rows)

header ``ticker,volume,open,close,high,low,window_start,transactions``, ``window_start`` the
bar start in Unix nanoseconds, no VWAP column.

Errors. Every problem raises `FlatFileError`, whose message starts with the file (local path,
or ``s3://bucket/key``) and says what is wrong. Secrets never appear in messages or logs.
"""

from __future__ import annotations

import datetime as dt

STOCKS_PREFIX = "us_stocks_sip/minute_aggs_v1"
OPTIONS_PREFIX = "us_options_opra/minute_aggs_v1"
COLUMNS = ("ticker", "volume", "open", "close", "high", "low", "window_start", "transactions")


def stocks_key(d: dt.date) -> str:
    return f"{STOCKS_PREFIX}/{d:%Y}/{d:%m}/{d:%Y-%m-%d}.csv.gz"


def options_key(d: dt.date) -> str:
    return f"{OPTIONS_PREFIX}/{d:%Y}/{d:%m}/{d:%Y-%m-%d}.csv.gz"


class FlatFileError(RuntimeError):
    """A flat file that cannot be used. `file` names it (path or s3:// URL); `problem` says
    what is wrong. Never carries a credential."""

    def __init__(self, file: str, problem: str) -> None:
        super().__init__(f"{file}: {problem}")
        self.file = file
        self.problem = problem
