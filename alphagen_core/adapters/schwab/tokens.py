"""The token file at SCHWAB_TOKEN_PATH.

It keeps schwab-py's format ``{"creation_timestamp", "token"}`` and is only ever written by
``write_private_file``: created with ``os.open(..., 0o600)`` as a temporary file, fsynced,
then ``os.replace``d over the old one (atomic, never world-readable, not even for a moment).
schwab-py's own writer (plain ``open``) is never used, because we hand ``TokenMetadata`` our
writer; the mode is re-asserted on every read anyway.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any

from alphagen_core.adapters.schwab.errors import LOGIN_COMMAND, SchwabAuthError
from alphagen_core.adapters.schwab.redaction import register_token_secrets

TOKEN_FILE_MODE = 0o600


def write_private_file(path: Path, text: str) -> None:
    """Write `text` to `path` atomically with mode 0600 (temp file + os.replace)."""
    path = Path(path)
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, TOKEN_FILE_MODE)
    try:
        os.fchmod(fd, TOKEN_FILE_MODE)  # whatever the umask
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.chmod(path, TOKEN_FILE_MODE)


class TokenStore:
    """The token file at SCHWAB_TOKEN_PATH, in schwab-py's wrapped format."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def ensure_private(self) -> None:
        with suppress(FileNotFoundError):
            if os.stat(self.path).st_mode & 0o777 != TOKEN_FILE_MODE:
                os.chmod(self.path, TOKEN_FILE_MODE)

    def read(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SchwabAuthError(
                f"no Schwab token at {self.path}: run `{LOGIN_COMMAND}` to sign in"
            ) from None
        self.ensure_private()
        try:
            data = json.loads(text)
            token = data["token"]
            int(data["creation_timestamp"])
            if not isinstance(token, dict) or "access_token" not in token:
                raise ValueError
        except (ValueError, KeyError, TypeError):
            raise SchwabAuthError(
                f"the Schwab token file {self.path} is not a valid token: "
                f"run `{LOGIN_COMMAND}` to sign in again"
            ) from None
        register_token_secrets(token)
        return data

    def write(self, wrapped: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        """schwab-py's token writer signature: (wrapped_token, *args, **kwargs)."""
        register_token_secrets(wrapped.get("token"))
        with self._lock:
            write_private_file(self.path, json.dumps(wrapped))
