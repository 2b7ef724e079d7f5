"""Push through Firebase Cloud Messaging's HTTP v1 API, authorised by a service account."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt

from realtimechat.providers.base import (
    ProviderUnavailable,
    PushMessage,
    TokenUnregistered,
)
from realtimechat.providers.http_errors import request, status_error
from realtimechat.settings import PushSettings

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_TTL_S = 3600  # Google's maximum lifetime for the signed assertion
REFRESH_MARGIN_S = 60.0  # renew this long before expiry so no send carries a dying token


@dataclass(frozen=True)
class ServiceAccount:
    """The fields of a Google service-account JSON file that token exchange needs."""

    client_email: str
    private_key: str
    token_uri: str
    project_id: str | None
    private_key_id: str | None

    @classmethod
    def load(cls, path: Path) -> ServiceAccount:
        """Read and check a service-account file; ValueError names what is missing."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read FCM credentials file {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise ValueError(f"FCM credentials file {path} is not a JSON object")
        missing = [
            key
            for key in ("client_email", "private_key", "token_uri")
            if not isinstance(raw.get(key), str) or not raw[key]
        ]
        if missing:
            raise ValueError(f"FCM credentials file {path} lacks {', '.join(missing)}")
        project_id, key_id = raw.get("project_id"), raw.get("private_key_id")
        return cls(
            client_email=raw["client_email"],
            private_key=raw["private_key"],
            token_uri=raw["token_uri"],
            project_id=project_id if isinstance(project_id, str) and project_id else None,
            private_key_id=key_id if isinstance(key_id, str) and key_id else None,
        )


class AccessTokens:
    """OAuth2 access tokens for a service account, fetched once and reused until near expiry."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        account: ServiceAccount,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._account = account
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        # One exchange at a time: concurrent sends after expiry share the new token.
        self._lock = asyncio.Lock()

    async def get(self) -> str:
        """A valid access token, exchanging a fresh assertion when the cached one is stale."""
        async with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                self._token, lifetime = await self._exchange()
                self._expires_at = self._clock() + lifetime - min(REFRESH_MARGIN_S, lifetime / 2)
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget `token` (refused by the API) unless a newer one already replaced it."""
        if self._token == token:
            self._token = None

    def _assertion(self) -> str:
        # iat/exp are checked by the token endpoint against its clock: wall time, not ours.
        now = int(time.time())
        claims = {
            "iss": self._account.client_email,
            "scope": SCOPE,
            "aud": self._account.token_uri,
            "iat": now,
            "exp": now + ASSERTION_TTL_S,
        }
        headers = {"kid": self._account.private_key_id} if self._account.private_key_id else None
        return jwt.encode(claims, self._account.private_key, algorithm="RS256", headers=headers)

    async def _exchange(self) -> tuple[str, float]:
        response = await request(
            "fcm token endpoint",
            self._client.post(
                self._account.token_uri,
                data={"grant_type": GRANT_TYPE, "assertion": self._assertion()},
            ),
        )
        body = _json(response)
        if response.status_code == 200:
            token, lifetime = body.get("access_token"), body.get("expires_in")
            if isinstance(token, str) and token and isinstance(lifetime, int | float):
                return token, float(lifetime)
            raise ProviderUnavailable("fcm token endpoint answered 200 without a token")
        reason = f"{body.get('error', '')} {body.get('error_description', '')}".strip()
        if response.status_code == 429 or response.status_code >= 500:
            raise status_error("fcm token endpoint", response, reason)
        # Refused credentials are not the message's fault: every send would fail alike,
        # so the breaker should open instead of each job being dropped as rejected.
        raise ProviderUnavailable(
            f"fcm token endpoint refused the credentials: {response.status_code} {reason}"
        )


class FcmPush:
    """PushProvider for FCM HTTP v1: `POST /v1/projects/{project}/messages:send`."""

    name = "fcm"

    def __init__(
        self, settings: PushSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if settings.fcm_credentials_file is None:
            raise ValueError(
                "push provider fcm needs RTC_NOTIFY__PUSH__FCM_CREDENTIALS_FILE "
                "(a Google service-account JSON file)"
            )
        account = ServiceAccount.load(settings.fcm_credentials_file)
        project = settings.fcm_project_id or account.project_id
        if not project:
            raise ValueError(
                "push provider fcm needs a project: set RTC_NOTIFY__PUSH__FCM_PROJECT_ID "
                "or use a credentials file with project_id"
            )
        self.project = project
        self._url = f"{settings.fcm_url.rstrip('/')}/v1/projects/{project}/messages:send"
        self._client = httpx.AsyncClient(timeout=settings.timeout_s)
        self._tokens = AccessTokens(self._client, account, clock)

    async def send(self, msg: PushMessage) -> str:
        """Send one push; returns FCM's message name (projects/…/messages/…)."""
        body = {"message": _message(msg)}
        token = await self._tokens.get()
        response = await self._post(body, token)
        if response.status_code == 401:
            # The token was revoked or expired early: one fresh token, one more try.
            self._tokens.invalidate(token)
            response = await self._post(body, await self._tokens.get())
            if response.status_code == 401:
                raise ProviderUnavailable(
                    f"fcm refused a fresh access token: {_fcm_error(response)[0]}"
                )
        if response.status_code == 200:
            name = _json(response).get("name")
            if isinstance(name, str):
                return name
            raise ProviderUnavailable("fcm answered 200 without a message name")
        reason, status, code = _fcm_error(response)
        if code == "UNREGISTERED" or (response.status_code == 404 and status == "NOT_FOUND"):
            raise TokenUnregistered(f"fcm: device token unregistered ({reason})")
        raise status_error("fcm", response, reason)

    async def _post(self, body: dict[str, Any], token: str) -> httpx.Response:
        return await request(
            "fcm",
            self._client.post(self._url, json=body, headers={"Authorization": f"Bearer {token}"}),
        )

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._client.aclose()


def _platform_options(platform: str, job_id: str) -> dict[str, Any]:
    """Wake the device now, and collapse a repeated send of one job into one notification.

    FCM HTTP v1 has no idempotency key; a job sent twice (its worker died between the
    provider's answer and recording it) replaces itself on the device instead.
    """
    if platform == "android":
        return {"android": {"priority": "high", "collapse_key": job_id}}
    if platform == "ios":
        return {"apns": {"headers": {"apns-priority": "10", "apns-collapse-id": job_id}}}
    # Web Push topics are at most 32 URL-safe characters: the id's hex digits.
    return {"webpush": {"headers": {"Urgency": "high", "Topic": job_id.replace("-", "")[:32]}}}


def _message(msg: PushMessage) -> dict[str, Any]:
    return {
        "token": msg.token,
        "notification": {"title": msg.title, "body": msg.body},
        "data": dict(msg.data),
        **_platform_options(msg.platform, msg.data.get("job_id", "")),
    }


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _fcm_error(response: httpx.Response) -> tuple[str, str | None, str | None]:
    """Google's error envelope: (message, status, FcmError errorCode)."""
    error = _json(response).get("error")
    if not isinstance(error, dict):
        return response.text[:200] or response.reason_phrase, None, None
    code = None
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith(".FcmError"):
            code = detail.get("errorCode")
    message, status = error.get("message"), error.get("status")
    return (
        str(message) if message else response.reason_phrase,
        status if isinstance(status, str) else None,
        code if isinstance(code, str) else None,
    )
