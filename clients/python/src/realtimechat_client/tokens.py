"""The tokens of one login: what they are, when the access token expires, when to renew."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from typing import Any

from realtimechat_client import codec

__all__ = ["Tokens", "jwt_times"]


def jwt_times(token: str) -> tuple[float | None, float | None]:
    """(lifetime, `exp`) of a JWT, read without verifying it (only to refresh in time)."""
    try:
        payload = token.split(".")[1]
        claims = codec.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None, None
    if not isinstance(claims, dict):
        return None, None
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float):
        return None, None
    ttl = float(exp - iat) if isinstance(iat, int | float) else None
    return ttl, float(exp)


class Tokens:
    """The access and refresh token, the access token's expiry, and (if kept) the password.

    Pure state: the transport does the refreshing.
    """

    __slots__ = ("access", "access_exp", "access_ttl", "credentials", "refresh")

    def __init__(self, refresh: str | None = None) -> None:
        self.access: str | None = None
        self.access_exp: float | None = None  # unix time
        self.access_ttl: float | None = None  # seconds between iat and exp
        self.refresh: str | None = refresh
        self.credentials: tuple[str, str] | None = None

    def set(self, access: str, refresh: str | None = None) -> None:
        """Use tokens obtained elsewhere."""
        self.access = access
        self.access_ttl, self.access_exp = jwt_times(access)
        if refresh is not None:
            self.refresh = refresh

    def take_pair(self, pair: Mapping[str, Any]) -> None:
        """Keep the pair a login or refresh answered."""
        self.access = str(pair["access_token"])
        self.refresh = str(pair["refresh_token"])
        ttl, exp = jwt_times(self.access)
        if exp is None and isinstance(pair.get("expires_in"), int | float):
            ttl = float(pair["expires_in"])
            exp = time.time() + ttl
        self.access_ttl, self.access_exp = ttl, exp

    def clear(self) -> None:
        """Forget everything (logged out)."""
        self.access = self.refresh = None
        self.access_exp = self.access_ttl = None
        self.credentials = None

    @property
    def renewable(self) -> bool:
        """A refresh token or the password is at hand to get a new access token."""
        return self.refresh is not None or self.credentials is not None

    def expiring(self, margin_s: float) -> bool:
        """The access token has less than the margin left (or half its life, if shorter)."""
        if self.access_exp is None:
            return False
        if self.access_ttl is not None:
            margin_s = min(margin_s, self.access_ttl / 2)
        return self.access_exp - time.time() < margin_s
