"""Resources configured from the same settings as everything else."""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource

from alphagen_core.adapters.polygon.flatfiles import FlatFileSource, flatfile_source
from alphagen_core.operations.settings import Settings, get_settings, load_settings
from alphagen_core.persistence.store import Store


class StoreResource(ConfigurableResource):
    """The DuckDB file; every use opens a short-lived connection (see alphagen_core.persistence.store)."""

    path: str

    def store(self) -> Store:
        return Store(Path(self.path).resolve())


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


def default_resources() -> dict[str, object]:
    s = get_settings()
    return {
        "store": StoreResource(path=str(Path(s.alphagen_duckdb_path).resolve())),
        "flatfiles": FlatFilesResource(
            source=s.alphagen_flatfiles_source, cache_dir=str(Path(s.alphagen_cache_dir).resolve())
        ),
        "settings": SettingsResource(),
    }
