"""Resources configured from the same settings as everything else."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import duckdb
from dagster import ConfigurableResource
from dagster_duckdb import DuckDBResource

from alphagen_core.adapters.polygon.flatfiles import FlatFileSource, flatfile_source
from alphagen_core.operations.settings import Settings, get_settings, load_settings
from alphagen_core.operations.variants import variant_settings
from alphagen_core.persistence.store import Store


class StoreResource(DuckDBResource):
    """The DuckDB file as dagster-duckdb's DuckDBResource (`database`, `connection_config`), and
    the Store over it that every asset and op uses (short-lived connections, see
    alphagen_core.persistence.store).

    The Store opens the file with this resource's database and connection_config, and waits
    for the lock itself rather than through `get_connection`, which retries a locked file
    10 times with sleeps doubling from 0.1 s to 51.2 s (about 102 s, whatever the caller's
    timeout), opens it read-write only, and does not close the connection when the block
    raises. Store polls the lock at most 0.1 s apart, so a live write waits for a replay day's
    commit and not for the next doubling, and keeps each caller's timeout and read-only mode
    (BENCHMARKS.md, "DuckDBResource")."""

    def store(self) -> Store:
        path = Path(self.database).resolve()

        def open_file(read_only: bool) -> duckdb.DuckDBPyConnection:
            return duckdb.connect(str(path), read_only=read_only, config=self.connection_config)

        return Store(path, opener=open_file)


class FlatFilesResource(ConfigurableResource):
    """Polygon flat files from a local folder in S3 key layout, or from S3 (source="s3")."""

    source: str
    cache_dir: str

    def open(self, settings: Settings) -> FlatFileSource:
        return flatfile_source(
            self.source,
            cache_dir=Path(self.cache_dir),
            endpoint_url=settings.polygon_s3_endpoint,
            bucket=settings.polygon_s3_bucket,
            access_key=settings.polygon_s3_access_key.get_secret_value(),
            secret_key=settings.polygon_s3_secret_key.get_secret_value(),
        )


class SettingsResource(ConfigurableResource):
    """Strategy and risk settings, read from the environment when the run starts."""

    def get(self) -> Settings:
        return load_settings()

    def for_variant(self, variant: str, overrides: Mapping[str, str]) -> Settings:
        """The settings of a named variant (`VariantError` when it cannot run)."""
        return variant_settings(variant, overrides)


def default_resources() -> dict[str, object]:
    s = get_settings()
    return {
        "store": StoreResource(database=str(Path(s.alphagen_duckdb_path).resolve())),
        "flatfiles": FlatFilesResource(
            source=s.alphagen_flatfiles_source, cache_dir=str(Path(s.alphagen_cache_dir).resolve())
        ),
        "settings": SettingsResource(),
    }
