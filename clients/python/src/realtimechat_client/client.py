"""The asyncio client of the RealTimeChat v1 API.

`ChatClient` logs in, refreshes its access token transparently, and has a typed method for
every v1 route (`realtimechat_client.api`); the answers are typed dicts
(`realtimechat_client.models`). Every failure is one exception type,
`ChatAPIError(status, code, detail)`, built from the RFC 9457 problem body. Retries and
refresh live in `realtimechat_client.transport`.

For the event stream, open a `LiveSession(client)` (`realtimechat_client.live`): reconnect,
resume, backfill, dedupe and idempotent sends.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from realtimechat_client.api import AuthAPI, ChannelsAPI, FilesAPI, MessagesAPI, TeamsAPI
from realtimechat_client.api.messages import new_client_msg_id
from realtimechat_client.errors import ChatAPIError
from realtimechat_client.options import ClientOptions, StartFrom
from realtimechat_client.transport import Transport

__all__ = ["ChatAPIError", "ChatClient", "ClientOptions", "StartFrom", "new_client_msg_id"]


class ChatClient(AuthAPI, TeamsAPI, ChannelsAPI, MessagesAPI, FilesAPI):
    """An HTTP client for one user of a RealTimeChat server.

    ```python
    async with ChatClient("http://127.0.0.1:8000") as client:
        await client.login("ada@example.com", "correct horse")
        team = await client.create_team("Acme")
        async with LiveSession(client) as live:
            async for event in live.events():
                ...
    ```
    """

    def __init__(
        self,
        base_url: str,
        options: ClientOptions | None = None,
        *,
        access_token: str | None = None,
        refresh_token: str | None = None,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`transport` replaces httpx's network transport (tests, custom TLS or proxies)."""
        self._transport = Transport(
            base_url,
            options or ClientOptions(),
            access_token=access_token,
            refresh_token=refresh_token,
            rng=rng,
            transport=transport,
        )

    # -- lifecycle -----------------------------------------------------------------
    async def __aenter__(self) -> ChatClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._transport.aclose()

    @property
    def transport(self) -> Transport:
        """The HTTP side: tokens, refresh, retries (a live session shares it)."""
        return self._transport

    @property
    def base_url(self) -> str:
        return self._transport.base_url

    @property
    def options(self) -> ClientOptions:
        return self._transport.options

    @property
    def ws_url(self) -> str:
        """The server's WebSocket endpoint."""
        return self._transport.ws_url

    # -- tokens ----------------------------------------------------------------------
    @property
    def access_token(self) -> str | None:
        return self._transport.tokens.access

    @property
    def refresh_token(self) -> str | None:
        return self._transport.tokens.refresh

    @property
    def refreshes(self) -> int:
        """Successful token refreshes so far."""
        return self._transport.refreshes

    def set_tokens(self, access_token: str, refresh_token: str | None = None) -> None:
        """Use tokens obtained elsewhere."""
        self._transport.tokens.set(access_token, refresh_token)

    async def fresh_token(self) -> str:
        """An access token that will not expire within the refresh margin (refreshing if needed)."""
        return await self._transport.fresh_token()

    async def renewed_token(self, stale: str) -> str:
        """An access token newer than `stale`: refreshed now unless another caller just did."""
        return await self._transport.renewed_token(stale)

    # -- any route -----------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """One API call with refresh and retries; a 2xx/3xx response or ChatAPIError.

        `idempotent` defaults to True for GET/HEAD/OPTIONS.
        """
        return await self._transport.request(
            method, path, json=json, params=params, headers=headers, auth=auth,
            idempotent=idempotent,
        )  # fmt: skip
