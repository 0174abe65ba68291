"""Schwab adapter configuration, taken once from `Settings` and frozen.

The app key, app secret and account number stay `SecretStr` here and everywhere downstream:
their repr is masked, and only the adapter's HTTP layer ever unwraps them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from alphagen_core.application.gate import is_loopback_url

UPSTREAM_BASE_URL = "https://api.schwabapi.com"
UPSTREAM_HOST = "api.schwabapi.com"
REFRESH_TOKEN_LIFETIME_S = 7 * 24 * 3600  # Schwab: refresh tokens stop working after 7 days


@dataclass(frozen=True)
class SchwabConfig:
    app_key: SecretStr
    app_secret: SecretStr
    account_number: SecretStr
    base_url: str = UPSTREAM_BASE_URL
    callback_url: str = "https://127.0.0.1:8182"
    token_path: Path = Path("schwab_token.json")
    request_timeout_s: float = 10.0
    # The client refuses a token file older than this (the refresh token is dead by then).
    refresh_token_max_age_s: float = REFRESH_TOKEN_LIFETIME_S
    max_requests_per_minute: int = 120

    def __post_init__(self) -> None:
        for name in ("app_key", "app_secret", "account_number"):
            value = getattr(self, name)
            if not isinstance(value, SecretStr):
                object.__setattr__(self, name, SecretStr(str(value)))
        base = self.base_url.rstrip("/")
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"SCHWAB_BASE_URL must be an http(s) URL, got {self.base_url!r}")
        if parts.path not in ("", "/"):
            raise ValueError("SCHWAB_BASE_URL must be a bare scheme://host[:port], no path")
        if parts.scheme == "http" and not is_loopback_url(base):
            # Tokens and the app secret would cross the network in clear text.
            raise ValueError("SCHWAB_BASE_URL may use plain http only on a loopback address")
        object.__setattr__(self, "base_url", base)
        object.__setattr__(self, "token_path", Path(self.token_path))
        if self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be positive")
        if self.max_requests_per_minute <= 0:
            raise ValueError("max_requests_per_minute must be positive")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> SchwabConfig:
        """Build from `alphagen_core.operations.settings.Settings` (SCHWAB_* variables)."""
        values: dict[str, Any] = dict(
            app_key=settings.schwab_api_key,
            app_secret=settings.schwab_api_secret,
            account_number=settings.schwab_account_id,
            base_url=settings.schwab_base_url,
            callback_url=settings.schwab_callback_url,
            token_path=Path(settings.schwab_token_path),
        )
        values.update(overrides)
        return cls(**values)

    def with_(self, **changes: Any) -> SchwabConfig:
        return replace(self, **changes)

    @property
    def is_upstream(self) -> bool:
        return urlsplit(self.base_url).hostname == UPSTREAM_HOST

    @property
    def is_loopback(self) -> bool:
        """A local stand-in (sim/schwab/), never a real broker."""
        return is_loopback_url(self.base_url)

    def secret_values(self) -> list[str]:
        return [
            s.get_secret_value()
            for s in (self.app_key, self.app_secret, self.account_number)
            if s.get_secret_value()
        ]


def refresh_token_expires_at(token_path: Path, lifetime_s: float = REFRESH_TOKEN_LIFETIME_S) -> float | None:
    """Unix time at which the stored refresh token stops working (its sign-in plus the
    lifetime), or None without a readable token file. Reads only the file's timestamp."""
    import json

    try:
        created = json.loads(Path(token_path).read_text(encoding="utf-8"))["creation_timestamp"]
        return float(created) + lifetime_s
    except (OSError, ValueError, KeyError, TypeError):
        return None
