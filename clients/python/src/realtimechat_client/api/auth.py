"""Accounts and logins: register, log in and out, refresh, who am I."""

from __future__ import annotations

from typing import cast

from realtimechat_client.models import TokenPair, User
from realtimechat_client.transport import Transport

__all__ = ["AuthAPI"]


class AuthAPI:
    _transport: Transport

    async def register(self, email: str, password: str, display_name: str) -> User:
        """Open an account (this does not log in)."""
        body = {"email": email, "password": password, "display_name": display_name}
        return cast(
            User,
            await self._transport.json(
                "POST", "/api/v1/auth/register", json=body, auth=False, idempotent=False
            ),
        )

    async def login(self, email: str, password: str) -> TokenPair:
        """Log in and keep the tokens; the answer `{access_token, refresh_token, …}`."""
        return await self._transport.login(email, password)

    async def refresh(self) -> TokenPair:
        """Rotate the refresh token now; the new pair."""
        return await self._transport.refresh()

    async def logout(self) -> None:
        """End this login on the server and forget its tokens."""
        await self._transport.logout()

    async def me(self) -> User:
        """The logged-in user."""
        return cast(User, await self._transport.json("GET", "/api/v1/users/me"))
