"""The stand-in's OAuth: the authorize page, the token endpoint and the bearer check.

    GET    /v1/oauth/authorize        302 to redirect_uri?code=...&session=...&state=...
    POST   /v1/oauth/token            HTTP Basic (app key:secret); grant_type
                                      authorization_code | refresh_token. Access tokens last
                                      `access_token_lifetime_s` (1800); a refresh token older
                                      than `refresh_token_max_age_s` (7 days) answers
                                      400 {"error": "invalid_grant", ...}. The refresh answer
                                      repeats the same refresh token (as Schwab does).
Every /trader and /marketdata call needs `Authorization: Bearer <live access token>` (401).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import uuid
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlencode

from alphagen_core.sim.schwab.wire import Reply, error, oauth_error

CODE_LIFETIME_S = 600.0


def basic_credentials(header: str) -> tuple[str | None, str | None]:
    """(app key, secret) of an `Authorization: Basic ...` header; (None, None) if unreadable."""
    try:
        decoded = base64.b64decode(header[6:].strip()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    key, sep, secret = decoded.partition(":")
    return (key, secret) if sep else (None, None)


class OAuthServer:
    """Authorization codes, access and refresh tokens of one app, on the stand-in's clock."""

    def __init__(
        self,
        app_key: str,
        app_secret: str,
        *,
        clock: Any,
        lock: threading.RLock,
        stats: Counter[str],
        callback_url: str | None,
        access_token_lifetime_s: float,
        refresh_token_max_age_s: float,
    ) -> None:
        self.app_key = app_key
        self.app_secret = app_secret
        self.clock = clock
        self.callback_url = callback_url
        self.access_token_lifetime_s = float(access_token_lifetime_s)
        self.refresh_token_max_age_s = float(refresh_token_max_age_s)
        self._lock = lock
        self.stats = stats
        self._codes: dict[str, tuple[float, str, bool]] = {}  # code -> (issued, redirect, used)
        self._access: dict[str, tuple[str, float]] = {}  # token -> (app, expires at)
        self._refresh: dict[str, tuple[str, float]] = {}  # token -> (app, issued at)
        self._issued: list[str] = []  # every code and token handed out (for secret scans)

    def issued_secrets(self) -> list[str]:
        """Every authorization code, access, refresh and id token issued so far."""
        with self._lock:
            return list(self._issued)

    def revoke_access_tokens(self) -> None:
        """Forget every access token (the next API call answers 401)."""
        with self._lock:
            self._access.clear()

    def app_of(self, authorization: str, query: dict[str, str]) -> str | None:
        """The app a request comes from: its bearer token's, its Basic credentials' or the
        authorize page's client_id."""
        if authorization.startswith("Bearer "):
            with self._lock:
                entry = self._access.get(authorization[7:].strip())
            return entry[0] if entry else None
        if authorization.startswith("Basic "):
            key, _ = basic_credentials(authorization)
            return key
        return query.get("client_id")

    def authorize(self, query: dict[str, str]) -> Reply:
        if query.get("client_id") != self.app_key:
            raise Reply(400, {"error": "invalid_client", "error_description": "unknown client_id"})
        redirect = query.get("redirect_uri") or ""
        if not redirect or (self.callback_url is not None and redirect != self.callback_url):
            raise oauth_error(400, "invalid_request", "redirect_uri mismatch")
        if query.get("response_type", "code") != "code":
            raise Reply(400, {"error": "unsupported_response_type"})
        code = f"C0.{secrets.token_urlsafe(24)}@"
        with self._lock:
            self._codes[code] = (self.clock.now().timestamp(), redirect, False)
            self._issued.append(code)
        params = {"code": code, "session": str(uuid.uuid4())}
        if "state" in query:
            params["state"] = query["state"]
        sep = "&" if "?" in redirect else "?"
        self.stats["authorize"] += 1
        return Reply(302, None, {"Location": f"{redirect}{sep}{urlencode(params)}"})

    def token(self, authorization: str, body: bytes) -> Reply:
        key, secret = basic_credentials(authorization)
        if key != self.app_key or secret != self.app_secret:
            raise oauth_error(401, "invalid_client", "bad client credentials")
        form = {k: v[-1] for k, v in parse_qs(body.decode(errors="replace")).items()}
        grant = form.get("grant_type")
        now = self.clock.now().timestamp()
        with self._lock:
            if grant == "authorization_code":
                entry = self._codes.get(form.get("code", ""))
                if (
                    entry is None
                    or entry[2]
                    or now - entry[0] > CODE_LIFETIME_S
                    or form.get("redirect_uri", entry[1]) != entry[1]
                ):
                    raise oauth_error(400, "invalid_grant", "bad or used authorization code")
                self._codes[form["code"]] = (entry[0], entry[1], True)
                refresh = f"R0.{secrets.token_urlsafe(32)}@"
                self._refresh[refresh] = (key, now)
                self.stats["token_code"] += 1
            elif grant == "refresh_token":
                refresh = form.get("refresh_token", "")
                entry = self._refresh.get(refresh)
                too_old = entry is not None and now - entry[1] >= self.refresh_token_max_age_s
                if entry is None or entry[0] != key or too_old:
                    self.stats["token_refresh_refused"] += 1
                    raise oauth_error(400, "invalid_grant", "refresh token expired or unknown")
                self.stats["token_refresh"] += 1
            else:
                raise Reply(400, {"error": "unsupported_grant_type"})
            access = f"I0.{secrets.token_urlsafe(32)}@"
            id_token = f"eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.{secrets.token_urlsafe(48)}"
            self._access[access] = (key, now + self.access_token_lifetime_s)
            self._issued.extend((access, refresh, id_token))
        return Reply(
            200,
            {
                "expires_in": int(self.access_token_lifetime_s),
                "token_type": "Bearer",
                "scope": "api",
                "refresh_token": refresh,
                "access_token": access,
                "id_token": id_token,
            },
        )

    def authenticate(self, authorization: str) -> None:
        """Raise a 401 unless `authorization` carries a live access token."""
        if not authorization.startswith("Bearer "):
            raise error(401, "missing bearer token")
        with self._lock:
            entry = self._access.get(authorization[7:].strip())
        if entry is None or self.clock.now().timestamp() >= entry[1]:
            raise error(401, "access token invalid or expired")
