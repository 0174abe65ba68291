"""The Schwab adapter's errors, and the messages that tell a human to sign in again.
Messages never contain secrets."""

from __future__ import annotations

from authlib.common.errors import AuthlibBaseError

LOGIN_COMMAND = "alphagen schwab-login"
REFRESH_EXPIRED_MESSAGE = (
    f"Schwab refresh token expired (they last 7 days): run `{LOGIN_COMMAND}` to sign in again"
)


class SchwabError(RuntimeError):
    """Base of every error the Schwab adapter raises. Messages never contain secrets."""


class SchwabAuthError(SchwabError):
    """Signing in is needed (or the app credentials are wrong): a message for a human."""


class SchwabAPIError(SchwabError):
    def __init__(self, op: str, status: int, detail: str = "") -> None:
        self.op = op
        self.status = status
        self.detail = detail
        text = f"Schwab {op} failed with HTTP {status}"
        super().__init__(f"{text}: {detail}" if detail else text)


class SchwabUnavailable(SchwabError):
    """Schwab did not give a usable answer within the bounded retries."""


def oauth_message(exc: AuthlibBaseError) -> str:
    error = str(getattr(exc, "error", "") or "oauth_error")
    if error in ("invalid_grant", "refresh_token_authentication_error", "token_expired"):
        return REFRESH_EXPIRED_MESSAGE
    if error in ("invalid_client", "unauthorized_client"):
        return (
            f"Schwab rejected the app credentials ({error}): check SCHWAB_API_KEY and "
            "SCHWAB_API_SECRET"
        )
    return f"Schwab sign-in failed ({error}): run `{LOGIN_COMMAND}` to sign in again"
