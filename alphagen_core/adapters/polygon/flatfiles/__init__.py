"""Polygon (Massive) flat files: minute aggregates of one trading day, from S3 or a folder.

`load_day` is the entry point: it fetches the day's two files from a source (`sources`),
keeps the wanted ticker's lines while decompressing (`reader`), builds the day's frames
(`frames`) and caches the result (`loader`). The files' key layout, columns and the one
error type are in `layout`. This package's names are its public face.
"""

from alphagen_core.adapters.polygon.flatfiles.frames import REJECTION_KINDS
from alphagen_core.adapters.polygon.flatfiles.layout import (
    COLUMNS,
    OPTIONS_PREFIX,
    STOCKS_PREFIX,
    FlatFileError,
    options_key,
    stocks_key,
)
from alphagen_core.adapters.polygon.flatfiles.loader import DayData, load_day
from alphagen_core.adapters.polygon.flatfiles.sources import (
    DEFAULT_BUCKET,
    DEFAULT_ENDPOINT,
    FlatFileSource,
    LocalFlatFiles,
    S3FlatFiles,
    flatfile_source,
)

__all__ = [
    "COLUMNS",
    "DEFAULT_BUCKET",
    "DEFAULT_ENDPOINT",
    "OPTIONS_PREFIX",
    "REJECTION_KINDS",
    "STOCKS_PREFIX",
    "DayData",
    "FlatFileError",
    "FlatFileSource",
    "LocalFlatFiles",
    "S3FlatFiles",
    "flatfile_source",
    "load_day",
    "options_key",
    "stocks_key",
]
