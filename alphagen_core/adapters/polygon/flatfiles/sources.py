"""Where the flat files come from: a folder in the bucket's key layout, or the bucket over S3.

`S3FlatFiles` downloads each key once into ``cache_dir/<key>`` (temporary file + atomic
rename, size checked against the object's length) and reuses it afterwards; a download
that turns out to be corrupt is deleted so that the next attempt fetches it again.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import structlog

from alphagen_core.adapters.polygon.flatfiles.layout import FlatFileError
from alphagen_core.operations.redaction import redact, register

log = structlog.get_logger(__name__)

DEFAULT_ENDPOINT = "https://files.massive.com"
DEFAULT_BUCKET = "flatfiles"


class FlatFileSource(Protocol):
    name: str

    def fetch(self, key: str) -> Path:
        """A local path holding the file of `key`; FlatFileError if it cannot be had."""
        ...

    def where(self, key: str) -> str:
        """How to name the file of `key` in messages: a path or an s3:// URL."""
        ...

    def discard(self, key: str) -> None:
        """Forget a local copy of `key` found to be corrupt (a no-op for a folder)."""
        ...


class LocalFlatFiles:
    """A folder in the bucket's key layout."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.name = f"local:{self.root}"

    def where(self, key: str) -> str:
        return str(self.root / key)

    def fetch(self, key: str) -> Path:
        path = self.root / key
        if not path.is_file():
            raise FlatFileError(str(path), "missing file" + ("" if self.root.is_dir() else f" (folder {self.root} does not exist)"))
        return path

    def discard(self, key: str) -> None:
        return None

    def __repr__(self) -> str:
        return f"LocalFlatFiles({str(self.root)!r})"


def _secret(value: Any) -> str:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value or "")


class S3FlatFiles:
    """The flat-file bucket over S3 (boto3), each key downloaded once into `cache_dir`."""

    def __init__(
        self,
        endpoint_url: str,
        bucket: str,
        access_key: Any,
        secret_key: Any,
        cache_dir: Path | str,
        *,
        timeout_seconds: float = 60.0,
        max_attempts: int = 5,
    ) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")
        self.bucket = bucket
        self.cache_dir = Path(cache_dir)
        self.name = f"s3://{bucket} at {self.endpoint_url}"
        self._access_key = _secret(access_key)
        self._secret_key = _secret(secret_key)
        register(self._access_key, self._secret_key)  # masked in every log line and error text
        self._timeout = timeout_seconds
        self._max_attempts = max_attempts
        self._client: Any = None

    def __repr__(self) -> str:  # never the keys
        return f"S3FlatFiles(endpoint_url={self.endpoint_url!r}, bucket={self.bucket!r}, cache_dir={str(self.cache_dir)!r})"

    def where(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def cached_path(self, key: str) -> Path:
        return self.cache_dir / key

    def _s3(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.session.Session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=self._access_key,
                aws_secret_access_key=self._secret_key,
                region_name="us-east-1",
                config=Config(
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                    connect_timeout=self._timeout,
                    read_timeout=self._timeout,
                    retries={"max_attempts": self._max_attempts, "mode": "standard"},
                ),
            )
        return self._client

    def fetch(self, key: str) -> Path:
        dest = self.cached_path(key)
        if dest.is_file():
            return dest
        where = self.where(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        started = time.perf_counter()
        try:
            with os.fdopen(fd, "wb") as out:
                size, expected = self._download(key, where, out)
            if expected is not None and size != expected:
                raise FlatFileError(where, f"incomplete download: {size} of {expected} bytes")
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        log.info("flatfiles.downloaded", file=where, bytes=size, seconds=round(time.perf_counter() - started, 3))
        return dest

    def _download(self, key: str, where: str, out: io.BufferedWriter) -> tuple[int, int | None]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self._s3().get_object(Bucket=self.bucket, Key=key)
            body = resp["Body"]
            size = 0
            for chunk in body.iter_chunks(1 << 20):
                out.write(chunk)
                size += len(chunk)
            return size, resp.get("ContentLength")
        except ClientError as e:
            err = e.response.get("Error", {})
            code = str(err.get("Code", "?"))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("NoSuchKey", "404", "NotFound") or status == 404:
                problem = "missing file (no such key in the bucket)"
            elif code in ("NoSuchBucket",):
                problem = f"missing bucket {self.bucket!r}"
            elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403") or status == 403:
                problem = f"access denied ({code}); check POLYGON_S3_ACCESS_KEY and POLYGON_S3_SECRET_KEY"
            else:
                problem = f"download failed: {code} (HTTP {status}): {redact(str(err.get('Message', '')))}"
            raise FlatFileError(where, problem) from None
        except BotoCoreError as e:
            raise FlatFileError(where, f"download failed: {type(e).__name__}: {redact(str(e))}") from None
        except OSError as e:  # a dropped connection mid-body, a full disk
            raise FlatFileError(where, f"download failed: {type(e).__name__}: {redact(str(e))}") from None

    def discard(self, key: str) -> None:
        self.cached_path(key).unlink(missing_ok=True)


def flatfile_source(
    spec: str,
    *,
    cache_dir: Path | str,
    endpoint_url: str = DEFAULT_ENDPOINT,
    bucket: str = DEFAULT_BUCKET,
    access_key: Any = "",
    secret_key: Any = "",
) -> FlatFileSource:
    """`spec` is a folder path (bucket key layout) or the literal "s3"."""
    if spec.strip().lower() == "s3":
        if not _secret(access_key) or not _secret(secret_key):
            raise ValueError("the s3 flat-file source needs POLYGON_S3_ACCESS_KEY and POLYGON_S3_SECRET_KEY")
        return S3FlatFiles(endpoint_url, bucket, access_key, secret_key, Path(cache_dir))
    return LocalFlatFiles(Path(spec))
