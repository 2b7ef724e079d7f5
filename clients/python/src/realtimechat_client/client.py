"""The asyncio client of the RealTimeChat v1 API.

`ChatClient` logs in, refreshes its access token transparently, and wraps every v1 route
in a method that returns the answer as plain JSON (dicts and lists). Every failure is one
exception type, `ChatAPIError(status, code, detail)`, built from the RFC 9457 problem body.

Retries are bounded and only where they cannot do harm:

- a request that never reached the server (connect error or timeout) is retried always;
- a request that may have reached it (the connection broke afterwards) is retried only
  when it is idempotent: reads, `PUT`-like membership calls, read markers, and sends
  (which carry a `client_msg_id`, so the server answers a retry with the first message);
- 429 and 503 are retried after `Retry-After` (capped), for every call, since the server
  refused them before doing anything.

`client.live()` opens a `LiveSession` (see `realtimechat_client.live`): the event stream with
reconnect, resume, backfill, dedupe and idempotent sends.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import mimetypes
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import httpx
import orjson

if TYPE_CHECKING:
    from realtimechat_client.cursors import CursorStore
    from realtimechat_client.live import LiveSession

__all__ = ["ChatAPIError", "ChatClient", "ClientOptions", "new_client_msg_id"]

JSON = Any
StartFrom = Literal["last_seq", "zero"]

# Error codes the WebSocket reports without an HTTP status, mapped to the status the same
# error has over REST, so one exception type carries both.
WS_CODE_STATUS = {
    "not_found": 404,
    "forbidden": 403,
    "not_a_member": 403,
    "unauthorized": 401,
    "token_expired": 401,
    "validation_error": 422,
    "idempotency_key_reused": 422,
    "malformed_frame": 400,
    "unknown_frame_type": 400,
    "rate_limited": 429,
    "overloaded": 503,
    "unavailable": 503,
    "internal_error": 500,
}


def new_client_msg_id() -> str:
    """A fresh, unique client_msg_id."""
    return uuid.uuid4().hex


class ChatAPIError(Exception):
    """An error answered by the server (or a request that could not reach it).

    `status` is the HTTP status (0 when no answer came: `code` is then
    `connection_error`), `code` the stable problem code, `detail` the human text, and
    `body` the whole problem document (or error frame).
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str = "",
        body: Mapping[str, Any] | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail}" if detail else f"{status} {code}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body: dict[str, Any] = dict(body or {})
        self.retry_after_s = retry_after_s

    @classmethod
    def from_response(cls, resp: httpx.Response) -> ChatAPIError:
        body: dict[str, Any] = {}
        try:
            parsed = orjson.loads(resp.content) if resp.content else {}
            if isinstance(parsed, dict):
                body = parsed
        except orjson.JSONDecodeError:
            pass
        code = str(body.get("code") or f"http_{resp.status_code}")
        detail = str(body.get("detail") or body.get("title") or resp.reason_phrase or "")
        return cls(resp.status_code, code, detail, body, _retry_after(resp))

    @classmethod
    def from_frame(cls, frame: Mapping[str, Any]) -> ChatAPIError:
        """From a WebSocket `error` frame."""
        code = str(frame.get("code") or "error")
        retry_ms = frame.get("retry_after_ms")
        return cls(
            WS_CODE_STATUS.get(code, 400),
            code,
            str(frame.get("message") or ""),
            frame,
            retry_ms / 1000 if isinstance(retry_ms, int | float) else None,
        )

    @property
    def transient(self) -> bool:
        """Worth retrying the same request later (nothing was done, or it is idempotent)."""
        return self.status in (0, 429, 503)


@dataclass
class ClientOptions:
    """Timeouts, retry and reconnect policy of a `ChatClient` and its live sessions."""

    # HTTP
    timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    max_retries: int = 6  # retries of one REST call (transient failures only)
    retry_base_s: float = 0.05  # backoff: full jitter in [0, min(cap, base * 2**attempt)]
    retry_cap_s: float = 2.0
    max_retry_after_s: float = 10.0  # a longer Retry-After is capped to this
    refresh_margin_s: float = 30.0  # refresh before a WS connect if the token expires sooner
    remember_credentials: bool = True  # re-login if the refresh token was revoked
    # WebSocket (live sessions)
    ws_open_timeout_s: float = 5.0
    reconnect_base_s: float = 0.05
    reconnect_cap_s: float = 5.0
    heartbeat_misses: float = 2.0  # no frame for misses x heartbeat_ms: the connection is dead
    ws_send_timeout_s: float = 5.0  # wait this long for send_ok before sending again
    send_deadline_s: float | None = None  # give up on a send after this (None: session-long)
    gap_grace_s: float = 0.25  # a gap still open after this is backfilled over REST
    tail_check_s: float | None = 15.0  # compare last_seqs (GET /channels) this often
    page_size: int = 500
    max_buffered: int = 10_000  # per-channel reorder buffer; beyond it: resync over REST
    start_from: StartFrom = "last_seq"  # channels without a cursor: from now, or from seq 0


class ChatClient:
    """An HTTP client for one user of a RealTimeChat server.

    ```python
    async with ChatClient("http://127.0.0.1:8000") as client:
        await client.login("ada@example.com", "correct horse")
        team = await client.create_team("Acme")
        async with client.live() as live:
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
        self.base_url = base_url.rstrip("/")
        self.options = options or ClientOptions()
        self._rng = rng or random.Random()
        opts = self.options
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(opts.timeout_s, connect=opts.connect_timeout_s),
            headers={"Accept": "application/json"},
            transport=transport,
        )
        self._access: str | None = None
        self._access_exp: float | None = None  # unix time
        self._access_ttl: float | None = None  # seconds between iat and exp
        self._refresh: str | None = refresh_token
        self._credentials: tuple[str, str] | None = None
        self._refresh_lock = asyncio.Lock()
        self.refreshes = 0  # successful token refreshes (observable)
        if access_token is not None:
            self.set_tokens(access_token, refresh_token)

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
        await self._http.aclose()

    @property
    def ws_url(self) -> str:
        url = self.base_url
        if url.startswith("https://"):
            url = "wss://" + url.removeprefix("https://")
        elif url.startswith("http://"):
            url = "ws://" + url.removeprefix("http://")
        return url + "/api/v1/ws"

    def live(
        self,
        cursor_store: CursorStore | None = None,
        *,
        start_from: StartFrom | None = None,
    ) -> LiveSession:
        """A live session (use as `async with client.live() as live:`)."""
        from realtimechat_client.live import LiveSession

        return LiveSession(self, cursor_store, start_from=start_from)

    # -- tokens ----------------------------------------------------------------------
    @property
    def access_token(self) -> str | None:
        return self._access

    @property
    def refresh_token(self) -> str | None:
        return self._refresh

    def set_tokens(self, access_token: str, refresh_token: str | None = None) -> None:
        """Use tokens obtained elsewhere."""
        self._access = access_token
        self._access_ttl, self._access_exp = _jwt_times(access_token)
        if refresh_token is not None:
            self._refresh = refresh_token

    async def fresh_token(self) -> str:
        """An access token that will not expire within the refresh margin (refreshing if needed)."""
        token = self._access
        if token is None:
            raise ChatAPIError(401, "unauthorized", "log in first")
        exp = self._access_exp
        if exp is not None and (self._refresh is not None or self._credentials is not None):
            # Refresh when little of the token's life is left: the margin, or half its
            # lifetime for a short-lived token.
            margin = self.options.refresh_margin_s
            if self._access_ttl is not None:
                margin = min(margin, self._access_ttl / 2)
            if exp - time.time() < margin:
                await self._refresh_from(token)
        assert self._access is not None
        return self._access

    async def token_rejected(self, token: str) -> str:
        """The server refused `token` (expired or revoked): a refreshed one, or raise."""
        return await self.renewed_token(token)

    async def renewed_token(self, stale: str) -> str:
        """An access token newer than `stale`: refreshed now unless another caller just did."""
        await self._refresh_from(stale)
        assert self._access is not None
        return self._access

    # -- auth ------------------------------------------------------------------------
    async def register(self, email: str, password: str, display_name: str) -> dict[str, Any]:
        body = {"email": email, "password": password, "display_name": display_name}
        result: dict[str, Any] = await self._json(
            "POST", "/api/v1/auth/register", json=body, auth=False, idempotent=False
        )
        return result

    async def login(self, email: str, password: str) -> dict[str, Any]:
        """Log in and keep the tokens; the answer `{access_token, refresh_token, …}`."""
        pair: dict[str, Any] = await self._json(
            "POST",
            "/api/v1/auth/login",
            json={"email": email, "password": password},
            auth=False,
            idempotent=True,  # a second login only starts a second refresh-token family
        )
        self._take_pair(pair)
        if self.options.remember_credentials:
            self._credentials = (email, password)
        return pair

    async def refresh(self) -> dict[str, Any]:
        """Rotate the refresh token now; the new pair."""
        if self._refresh is None:
            raise ChatAPIError(401, "unauthorized", "no refresh token")
        pair: dict[str, Any] = await self._json(
            "POST",
            "/api/v1/auth/refresh",
            json={"refresh_token": self._refresh},
            auth=False,
            # Never resend a refresh token that may have been used: that revokes the login.
            idempotent=False,
        )
        self._take_pair(pair)
        self.refreshes += 1
        return pair

    async def logout(self) -> None:
        if self._refresh is not None:
            await self._json(
                "POST",
                "/api/v1/auth/logout",
                json={"refresh_token": self._refresh},
                auth=False,
                idempotent=True,
            )
        self._access = self._refresh = None
        self._access_exp = None
        self._credentials = None

    async def me(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", "/api/v1/users/me")
        return result

    # -- teams -----------------------------------------------------------------------
    async def create_team(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json(
            "POST", "/api/v1/teams", json={"name": name}, idempotent=False
        )
        return result

    async def list_teams(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = (await self._json("GET", "/api/v1/teams"))["teams"]
        return result

    async def get_team(self, team_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", f"/api/v1/teams/{team_id}")
        return result

    async def add_team_member(
        self, team_id: str, *, user_id: str | None = None, email: str | None = None
    ) -> dict[str, Any]:
        """Add a user by id (the member), or invite an e-mail address (`{"invited", "email"}`).

        An invitation says nothing about whether the address has an account; its
        account joins the team when it next lists its teams or connects.
        """
        body = {k: v for k, v in (("user_id", user_id), ("email", email)) if v is not None}
        result: dict[str, Any] = await self._json(
            "POST", f"/api/v1/teams/{team_id}/members", json=body, idempotent=True
        )
        return result

    async def team_members(self, team_id: str) -> list[dict[str, Any]]:
        page = await self._json("GET", f"/api/v1/teams/{team_id}/members")
        result: list[dict[str, Any]] = page["members"]
        return result

    # -- channels --------------------------------------------------------------------
    async def create_channel(
        self, team_id: str, name: str, *, private: bool = False
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._json(
            "POST",
            f"/api/v1/teams/{team_id}/channels",
            json={"name": name, "private": private},
            idempotent=False,
        )
        return result

    async def team_channels(self, team_id: str) -> list[dict[str, Any]]:
        page = await self._json("GET", f"/api/v1/teams/{team_id}/channels")
        result: list[dict[str, Any]] = page["channels"]
        return result

    async def my_channels(self) -> list[dict[str, Any]]:
        """Every channel (DMs included) you are a member of, with `unread_count`."""
        result: list[dict[str, Any]] = (await self._json("GET", "/api/v1/channels"))["channels"]
        return result

    async def get_channel(self, channel_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", f"/api/v1/channels/{channel_id}")
        return result

    async def rename_channel(self, channel_id: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json(
            "PATCH", f"/api/v1/channels/{channel_id}", json={"name": name}, idempotent=False
        )
        return result

    async def channel_members(self, channel_id: str) -> list[dict[str, Any]]:
        page = await self._json("GET", f"/api/v1/channels/{channel_id}/members")
        result: list[dict[str, Any]] = page["members"]
        return result

    async def add_channel_member(self, channel_id: str, user_id: str) -> dict[str, Any]:
        """Add someone (or join a public channel yourself, with your own id)."""
        result: dict[str, Any] = await self._json(
            "POST",
            f"/api/v1/channels/{channel_id}/members",
            json={"user_id": user_id},
            idempotent=True,  # 200 when already a member
        )
        return result

    async def remove_channel_member(self, channel_id: str, user_id: str) -> None:
        """Leave (your own id) or remove someone; not retried after a broken connection."""
        await self._json(
            "DELETE", f"/api/v1/channels/{channel_id}/members/{user_id}", idempotent=False
        )

    async def open_dm(self, user_id: str) -> dict[str, Any]:
        """The direct-message channel with `user_id` (the same one every time)."""
        result: dict[str, Any] = await self._json(
            "POST", "/api/v1/dms", json={"user_id": user_id}, idempotent=True
        )
        return result

    async def mark_read(self, channel_id: str, seq: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._json(
            "POST", f"/api/v1/channels/{channel_id}/read", json={"seq": seq}, idempotent=True
        )
        return result

    # -- messages --------------------------------------------------------------------
    async def send_message(
        self,
        channel_id: str,
        body: str,
        client_msg_id: str | None = None,
        *,
        attachments: list[Any] | None = None,
    ) -> dict[str, Any]:
        """Send over REST; retried with the same client_msg_id, so never sent twice."""
        payload: dict[str, Any] = {
            "channel_id": channel_id,
            "body": body,
            "client_msg_id": client_msg_id or new_client_msg_id(),
        }
        if attachments:
            payload["attachments"] = attachments
        result: dict[str, Any] = await self._json(
            "POST", "/api/v1/messages", json=payload, idempotent=True
        )
        return result

    async def get_message(self, message_id: str) -> dict[str, Any]:
        """The message; its `version` is what edit/delete take as `if_match`."""
        result: dict[str, Any] = await self._json("GET", f"/api/v1/messages/{message_id}")
        return result

    async def edit_message(self, message_id: str, body: str, if_match: int | str) -> dict[str, Any]:
        """Edit; `if_match` is the version you read (an int) or its ETag. Stale: 412."""
        result: dict[str, Any] = await self._json(
            "PUT",
            f"/api/v1/messages/{message_id}",
            json={"body": body},
            headers={"If-Match": _etag(if_match)},
            idempotent=False,
        )
        return result

    async def delete_message(self, message_id: str, if_match: int | str) -> dict[str, Any]:
        """Delete; answers the tombstone. `if_match` as for `edit_message`."""
        result: dict[str, Any] = await self._json(
            "DELETE",
            f"/api/v1/messages/{message_id}",
            headers={"If-Match": _etag(if_match)},
            idempotent=False,
        )
        return result

    async def history(
        self, channel_id: str, *, before_seq: int | None = None, limit: int | None = None
    ) -> dict[str, Any]:
        """One page `{messages, has_more}`, newest first."""
        params = {k: v for k, v in (("before_seq", before_seq), ("limit", limit)) if v is not None}
        result: dict[str, Any] = await self._json(
            "GET", f"/api/v1/channels/{channel_id}/messages", params=params
        )
        return result

    async def events(
        self, channel_id: str, *, after_seq: int = 0, limit: int | None = None
    ) -> dict[str, Any]:
        """One page `{events, has_more}` in seq order after `after_seq`."""
        params: dict[str, int] = {"after_seq": after_seq}
        if limit is not None:
            params["limit"] = limit
        result: dict[str, Any] = await self._json(
            "GET", f"/api/v1/channels/{channel_id}/events", params=params
        )
        return result

    async def iter_events(
        self, channel_id: str, *, after_seq: int = 0, page_size: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every event after `after_seq`, paging until the end."""
        limit = page_size or self.options.page_size
        while True:
            page = await self.events(channel_id, after_seq=after_seq, limit=limit)
            for ev in page["events"]:
                after_seq = ev["seq"]
                yield ev
            if not page["has_more"] or not page["events"]:
                return

    # -- the request loop --------------------------------------------------------------
    async def upload_file(
        self,
        team_id: str,
        path: str | Path,
        *,
        name: str | None = None,
        content_type: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        chunk_bytes: int = 256 * 1024,
    ) -> dict[str, Any]:
        """Upload a file to the team's storage; the ready file (attach it by its id).

        Reserves quota, streams the bytes straight to storage (never all in memory),
        then asks the server to verify them. `progress(sent, total)` is called as
        bytes go out. Cancelling the task, or any failure, cancels the upload so its
        quota is given back.
        """
        path = Path(path)
        size = (await asyncio.to_thread(path.stat)).st_size
        name = name or path.name
        content_type = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        digest = await asyncio.to_thread(_sha256_of, path)
        created = await self._json(
            "POST",
            "/api/v1/files",
            json={"team_id": team_id, "name": name, "size": size,
                  "content_type": content_type, "sha256": digest},
        )  # fmt: skip
        file_id = created["id"]
        try:
            target = created["upload"]

            async def body() -> AsyncIterator[bytes]:
                sent = 0
                f = await asyncio.to_thread(path.open, "rb")
                try:
                    while chunk := await asyncio.to_thread(f.read, chunk_bytes):
                        yield chunk
                        sent += len(chunk)
                        if progress is not None:
                            progress(sent, size)
                finally:
                    f.close()

            # Storage is not the API: no bearer token goes there, and S3 wants a length.
            headers = {**target["headers"], "Content-Length": str(size)}
            async with httpx.AsyncClient(timeout=self.options.timeout_s) as storage:
                resp = await storage.request(
                    target["method"], target["url"], content=body(), headers=headers
                )
            if resp.status_code >= 300:
                raise ChatAPIError(resp.status_code, "upload_failed", resp.text[:300])
            ready: dict[str, Any] = await self._json(
                "POST", f"/api/v1/files/{file_id}/complete", idempotent=True
            )
            return ready
        except BaseException:
            # Shielded: a cancelled upload must still give its quota back.
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self._json("DELETE", f"/api/v1/files/{file_id}", idempotent=True)
                )
            raise

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: JSON = None,
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
            token = self._access if auth else None
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
                never_sent = isinstance(
                    exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
                )
                if (idempotent or never_sent) and attempt < opts.max_retries:
                    await asyncio.sleep(self.backoff(attempt, opts.retry_base_s, opts.retry_cap_s))
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
                and (self._refresh is not None or self._credentials is not None)
            ):
                await self._refresh_from(token)
                refreshed = True
                continue
            if status in (429, 503) and attempt < opts.max_retries:
                delay = err.retry_after_s
                if delay is None:
                    delay = self.backoff(attempt, opts.retry_base_s, opts.retry_cap_s)
                await asyncio.sleep(min(delay, opts.max_retry_after_s))
                attempt += 1
                continue
            raise err

    async def _json(
        self,
        method: str,
        path: str,
        *,
        json: JSON = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: bool = True,
        idempotent: bool | None = None,
    ) -> Any:
        resp = await self.request(
            method, path, json=json, params=params, headers=headers, auth=auth,
            idempotent=idempotent,
        )  # fmt: skip
        if not resp.content:
            return None
        return orjson.loads(resp.content)

    def backoff(self, attempt: int, base: float, cap: float) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        return self._rng.uniform(0, min(cap, base * (2 ** min(attempt, 30))))

    async def _refresh_from(self, stale: str) -> None:
        """Replace the access token `stale` (once, however many callers ask at once)."""
        async with self._refresh_lock:
            if self._access != stale and self._access is not None:
                return  # another caller refreshed already
            if self._refresh is not None:
                try:
                    await self.refresh()
                    return
                except ChatAPIError as exc:
                    if exc.status != 401 or self._credentials is None:
                        raise
            if self._credentials is None:
                raise ChatAPIError(401, "token_expired", "access token expired; log in again")
            await self.login(*self._credentials)

    def _take_pair(self, pair: Mapping[str, Any]) -> None:
        self._access = str(pair["access_token"])
        self._refresh = str(pair["refresh_token"])
        ttl, exp = _jwt_times(self._access)
        if exp is None and isinstance(pair.get("expires_in"), int | float):
            ttl = float(pair["expires_in"])
            exp = time.time() + ttl
        self._access_ttl, self._access_exp = ttl, exp


def _etag(if_match: int | str) -> str:
    return f'"{if_match}"' if isinstance(if_match, int) else if_match


def _retry_after(resp: httpx.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _jwt_times(token: str) -> tuple[float | None, float | None]:
    """(lifetime, `exp`) of a JWT, read without verifying it (only to refresh in time)."""
    try:
        payload = token.split(".")[1]
        claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, orjson.JSONDecodeError):
        return None, None
    if not isinstance(claims, dict):
        return None, None
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float):
        return None, None
    ttl = float(exp - iat) if isinstance(iat, int | float) else None
    return ttl, float(exp)


def _sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
