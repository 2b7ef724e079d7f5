"""The one exception of the client: `ChatAPIError(status, code, detail)`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from realtimechat_client import codec

__all__ = ["WS_CODE_STATUS", "ChatAPIError", "retry_after", "session_closed"]

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


class ChatAPIError(Exception):
    """An error answered by the server (or a request that could not reach it).

    `status` is the HTTP status (0 when no answer came: `code` is then
    `connection_error`, or `session_closed` / `send_timeout` from a live session), `code`
    the stable problem code, `detail` the human text, and `body` the whole problem
    document (or error frame).
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
        """From an HTTP error answer (an RFC 9457 problem, or whatever came)."""
        body: dict[str, Any] = {}
        try:
            parsed = codec.loads(resp.content) if resp.content else {}
            if isinstance(parsed, dict):
                body = parsed
        except codec.DecodeError:
            pass
        code = str(body.get("code") or f"http_{resp.status_code}")
        detail = str(body.get("detail") or body.get("title") or resp.reason_phrase or "")
        return cls(resp.status_code, code, detail, body, retry_after(resp))

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


def session_closed(detail: str = "the live session is closed") -> ChatAPIError:
    """What a live session raises once it is closed."""
    return ChatAPIError(0, "session_closed", detail)


def retry_after(resp: httpx.Response) -> float | None:
    """The answer's Retry-After in seconds (None when absent or an HTTP date)."""
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
