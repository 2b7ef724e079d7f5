"""HTTP to one server: the bearer token, its refresh, bounded retries, one error type.

Retries are bounded and only where they cannot do harm:

- a request that never reached the server (connect error or timeout) is retried always;
- a request that may have reached it (the connection broke afterwards) is retried only
  when it is idempotent: reads, `PUT`-like membership calls, read markers, and sends
  (which carry a `client_msg_id`, so the server answers a retry with the first message);
- 429 and 503 are retried after `Retry-After` (capped), for every call, since the server
  refused them before doing anything.

An access token the server calls expired is refreshed once per request, however many
requests notice at the same time; a revoked refresh token falls back to logging in again
with the remembered password (`ClientOptions.remember_credentials`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from typing import Any, cast

import httpx

from realtimechat_client import codec
from realtimechat_client.backoff import Backoff
from realtimechat_client.errors import ChatAPIError
from realtimechat_client.models import TokenPair
from realtimechat_client.options import ClientOptions
from realtimechat_client.tokens import Tokens

__all__ = ["Transport"]

_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class Transport:
    """The HTTP side of a `ChatClient`: requests with tokens, refresh and retries."""

    def __init__(
        self,
        base_url: str,
        options: ClientOptions,
        *,
        access_token: str | None = None,
        refresh_token: str | None = None,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.options = options
        self.rng = rng or random.Random()
        self.retry_backoff = Backoff(options.retry_base_s, options.retry_cap_s, rng=self.rng)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(options.timeout_s, connect=options.connect_timeout_s),
            headers={"Accept": "application/json"},
            transport=transport,
        )
        self.tokens = Tokens(refresh_token)
        self._refresh_lock = asyncio.Lock()
        self.refreshes = 0  # successful token refreshes (observable)
        if access_token is not None:
            self.tokens.set(access_token, refresh_token)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    @property
    def ws_url(self) -> str:
        """The server's WebSocket endpoint."""
        url = self.base_url
        if url.startswith("https://"):
            url = "wss://" + url.removeprefix("https://")
        elif url.startswith("http://"):
            url = "ws://" + url.removeprefix("http://")
        return url + "/api/v1/ws"

    # -- requests ------------------------------------------------------------------------
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
        if idempotent is None:
            idempotent = method.upper() in ("GET", "HEAD", "OPTIONS")
        opts = self.options
        attempt = 0
        refreshed = False
        while True:
            token = self.tokens.access if auth else None
            if auth and token is None:
                raise ChatAPIError(401, "unauthorized", "log in first")
            hdrs = dict(headers or {})
            if token is not None:
                hdrs["Authorization"] = f"Bearer {token}"
            try:
                resp = await self._http.request(
                    method, path, json=json, params=params, headers=hdrs
                )
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, _NEVER_SENT)
                if (idempotent or never_sent) and attempt < opts.max_retries:
                    await asyncio.sleep(self.retry_backoff.delay(attempt))
                    attempt += 1
                    continue
                raise ChatAPIError(0, "connection_error", f"{type(exc).__name__}: {exc}") from exc
            status = resp.status_code
            if status < 400:
                return resp
            err = ChatAPIError.from_response(resp)
            if (
                status == 401
                and auth
                and not refreshed
                and err.code == "token_expired"
                and token is not None
                and self.tokens.renewable
            ):
                await self._refresh_from(token)
                refreshed = True
                continue
            if status in (429, 503) and attempt < opts.max_retries:
                delay = err.retry_after_s  # the server's word, even 0, before our jitter
                if delay is None:
                    delay = self.retry_backoff.delay(attempt)
                await asyncio.sleep(min(delay, opts.max_retry_after_s))
                attempt += 1
                continue
            raise err

    async def json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        idempotent: bool | None = None,
    ) -> Any:
        """`request()`, and the answer's JSON (None for an empty body)."""
        resp = await self.request(
            method, path, json=json, params=params, headers=headers, auth=auth,
            idempotent=idempotent,
        )  # fmt: skip
        if not resp.content:
            return None
        return codec.loads(resp.content)

    # -- tokens --------------------------------------------------------------------------
    async def login(self, email: str, password: str) -> TokenPair:
        """Log in and keep the tokens (and the password, if the options say so)."""
        pair = cast(
            TokenPair,
            await self.json(
                "POST",
                "/api/v1/auth/login",
                json={"email": email, "password": password},
                auth=False,
                idempotent=True,  # a second login only starts a second refresh-token family
            ),
        )
        self.tokens.take_pair(pair)
        if self.options.remember_credentials:
            self.tokens.credentials = (email, password)
        return pair

    async def refresh(self) -> TokenPair:
        """Rotate the refresh token now; the new pair."""
        if self.tokens.refresh is None:
            raise ChatAPIError(401, "unauthorized", "no refresh token")
        pair = cast(
            TokenPair,
            await self.json(
                "POST",
                "/api/v1/auth/refresh",
                json={"refresh_token": self.tokens.refresh},
                auth=False,
                # Never resend a refresh token that may have been used: that revokes the login.
                idempotent=False,
            ),
        )
        self.tokens.take_pair(pair)
        self.refreshes += 1
        return pair

    async def logout(self) -> None:
        """End the login on the server and forget the tokens."""
        if self.tokens.refresh is not None:
            await self.json(
                "POST",
                "/api/v1/auth/logout",
                json={"refresh_token": self.tokens.refresh},
                auth=False,
                idempotent=True,
            )
        self.tokens.clear()

    async def fresh_token(self) -> str:
        """An access token that will not expire within the refresh margin (refreshing if needed)."""
        token = self.tokens.access
        if token is None:
            raise ChatAPIError(401, "unauthorized", "log in first")
        if self.tokens.renewable and self.tokens.expiring(self.options.refresh_margin_s):
            await self._refresh_from(token)
        return self._current()

    async def renewed_token(self, stale: str) -> str:
        """An access token newer than `stale`: refreshed now unless another caller just did."""
        await self._refresh_from(stale)
        return self._current()

    def _current(self) -> str:
        token = self.tokens.access
        if token is None:
            raise ChatAPIError(401, "unauthorized", "logged out")
        return token

    async def _refresh_from(self, stale: str) -> None:
        """Replace the access token `stale` (once, however many callers ask at once)."""
        async with self._refresh_lock:
            if self.tokens.access != stale and self.tokens.access is not None:
                return  # another caller refreshed already
            if self.tokens.refresh is not None:
                try:
                    await self.refresh()
                    return
                except ChatAPIError as exc:
                    if exc.status != 401 or self.tokens.credentials is None:
                        raise
            if self.tokens.credentials is None:
                raise ChatAPIError(401, "token_expired", "access token expired; log in again")
            await self.login(*self.tokens.credentials)
