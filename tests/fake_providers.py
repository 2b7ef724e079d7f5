"""Fake FCM and SendGrid: real HTTP servers on 127.0.0.1 that check requests strictly.

Each fake runs uvicorn on its own thread and event loop, so it serves in-process tests
and server subprocesses alike, whatever the test's event loop is doing. A test steers
it with `behave()`, and reads what it accepted with `accepted`, `by_job_id` and
`wait_for()` (blocking: from async code call it through `asyncio.to_thread`).

    from tests.fake_providers import fake_fcm_fixture, fake_sendgrid_fixture  # noqa: F401

    def test_x(fake_fcm: FakeFcm, fake_sendgrid: FakeSendGrid) -> None:
        settings = fake_fcm.push_settings(timeout_s=0.3)   # or fake_fcm.env() for a child
        fake_fcm.behave("ratelimit", 7)                    # 429, Retry-After: 7
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qs

import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from realtimechat.settings import EmailSettings, PushSettings

Mode = Literal["ok", "slow", "fail", "ratelimit", "refuse"]
FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"


class Invalid(Exception):
    """A request that breaks the provider's contract: answered 400 with this reason."""


class FakeProvider:
    """What both fakes share: the server thread, `behave()`, and the record of requests."""

    name = "fake"

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._mode: Mode = "ok"
        self._seconds: float | None = None
        self._received = 0
        self._accepted: list[dict[str, Any]] = []
        self._by_job_id: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._app = Starlette(
            routes=[
                *self._routes(),
                Route("/{path:path}", self._unexpected, methods=["GET", "POST", "PUT", "DELETE"]),
            ],
            lifespan=self._lifespan,
        )

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT (the same across refuse/ok)."""
        if not self.port:
            raise RuntimeError(f"{self.name} was never started")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (on a free port the first time, on the same port after that) and serve."""
        if self._thread is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        # Listening before the thread starts: a client that connects at once waits in the
        # backlog instead of being refused.
        sock.listen(128)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._ready.clear()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=self.name, daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10):
            self.stop()
            raise RuntimeError(f"{self.name} did not start within 10 s")

    def stop(self) -> None:
        """Stop serving and close the port (connections to it are then refused)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._ready.set()
        yield

    # -- steering --------------------------------------------------------------------------

    def behave(self, mode: Mode, seconds: float | None = None) -> None:
        """How the send endpoint answers from now on.

        ok: normally.  slow: after `seconds` (default 10), then normally.  fail: 500
        (with Retry-After: `seconds` if given).  ratelimit: 429 with Retry-After:
        `seconds` (default 1).  refuse: stop listening; "ok" (or any other) listens again.
        """
        with self._cond:
            self._mode, self._seconds = mode, seconds
        if mode == "refuse":
            self.stop()
        else:
            self.start()

    def clear(self) -> None:
        """Forget every request recorded so far."""
        with self._cond:
            self._received = 0
            self._accepted.clear()
            self._by_job_id.clear()
            self._cleared()

    def _cleared(self) -> None:
        """Subclasses forget their own records here (called under the lock)."""

    # -- what was seen ---------------------------------------------------------------------

    @property
    def received(self) -> int:
        """Requests that reached the send endpoint, whatever the answer."""
        with self._cond:
            return self._received

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """Bodies of the sends answered with success, oldest first (a copy)."""
        with self._cond:
            return list(self._accepted)

    @property
    def by_job_id(self) -> dict[str, int]:
        """How many accepted sends carried each job id (a copy)."""
        with self._cond:
            return dict(self._by_job_id)

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Block until at least `n` sends were accepted; TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._accepted) >= n, timeout):
                raise TimeoutError(f"{self.name}: {len(self._accepted)} of {n} sends accepted")
            return list(self._accepted)

    def wait_for_received(self, n: int, timeout: float = 10.0) -> None:
        """Block until at least `n` requests reached the send endpoint (e.g. are in flight)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._received >= n, timeout):
                raise TimeoutError(f"{self.name}: {self._received} of {n} requests received")

    # -- serving ---------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        raise NotImplementedError

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        raise NotImplementedError

    async def _unexpected(self, request: Request) -> Response:
        return self._error(400, f"unexpected request {request.method} {request.url.path}")

    async def _misbehave(self) -> Response | None:
        """Count the request, then apply the current behaviour; None means answer normally."""
        with self._cond:
            self._received += 1
            self._cond.notify_all()
            mode, seconds = self._mode, self._seconds
        if mode == "slow":
            await asyncio.sleep(10.0 if seconds is None else seconds)
        elif mode == "fail":
            retry = {"Retry-After": f"{seconds:g}"} if seconds is not None else None
            return self._error(500, "internal error (fake outage)", retry)
        elif mode == "ratelimit":
            retry_after = 1.0 if seconds is None else seconds
            return self._error(429, "rate limited (fake)", {"Retry-After": f"{retry_after:g}"})
        return None

    def _accept(self, body: dict[str, Any], job_ids: list[str]) -> int:
        """Record an accepted send; returns its sequence number (1, 2, ...)."""
        with self._cond:
            self._accepted.append(body)
            self._by_job_id.update(job_ids)
            self._cond.notify_all()
            return next(self._ids)


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError as exc:
        raise Invalid(f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise Invalid("body is not a JSON object")
    return body


def _string_map(value: object, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise Invalid(f"{where} must map strings to strings")
    return value


def _nonempty_string(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(f"{where} must be a non-empty string")
    return value


class FakeFcm(FakeProvider):
    """FCM HTTP v1 with its OAuth token endpoint (`/token`) for one service account."""

    name = "fake-fcm"
    MESSAGE_KEYS = frozenset({"token", "notification", "data", "android", "apns", "webpush"})

    def __init__(self, project_id: str = "rtc-test") -> None:
        self.project_id = project_id
        self.client_email = f"rtc-push@{project_id}.iam.gserviceaccount.com"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self._public_key = key.public_key()
        self.token_ttl = 3600  # expires_in of the access tokens issued from now on
        self.tokens_issued = 0
        self._tokens: dict[str, float] = {}  # access token -> monotonic expiry
        self._unregistered: set[str] = set()
        self._tokens_used: list[str] = []  # the access token of each accepted send
        self.credentials_file: Path | None = None
        super().__init__()

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def service_account(self) -> dict[str, str]:
        """A Google service-account document whose token_uri is this fake's."""
        return {
            "type": "service_account",
            "project_id": self.project_id,
            "private_key_id": "fake-key-1",
            "private_key": self._private_pem,
            "client_email": self.client_email,
            "client_id": "1",
            "token_uri": self.token_uri,
        }

    def write_credentials(self, path: Path) -> Path:
        """Write the service-account JSON (fresh RSA key, token_uri here) to `path`."""
        path.write_text(json.dumps(self.service_account(), indent=2))
        self.credentials_file = path
        return path

    def push_settings(self, **overrides: Any) -> PushSettings:
        """PushSettings for FcmPush against this fake (after write_credentials)."""
        if self.credentials_file is None:
            raise RuntimeError("call write_credentials() first")
        fields: dict[str, Any] = {
            "provider": "fcm",
            "fcm_url": self.url,
            "fcm_credentials_file": self.credentials_file,
        }
        return PushSettings(**(fields | overrides))

    def env(self) -> dict[str, str]:
        """RTC_* variables that point a server subprocess's pushes at this fake."""
        if self.credentials_file is None:
            raise RuntimeError("call write_credentials() first")
        return {
            "RTC_NOTIFY__PUSH__PROVIDER": "fcm",
            "RTC_NOTIFY__PUSH__FCM_URL": self.url,
            "RTC_NOTIFY__PUSH__FCM_CREDENTIALS_FILE": str(self.credentials_file),
        }

    def unregister(self, token: str) -> None:
        """Make `token` answer 404 UNREGISTERED, as for an app that was uninstalled."""
        with self._cond:
            self._unregistered.add(token)

    def revoke_tokens(self) -> None:
        """Invalidate every access token issued so far (sends with them get 401)."""
        with self._cond:
            self._tokens.clear()

    @property
    def tokens_used(self) -> list[str]:
        """The access token each accepted send carried, oldest first (a copy)."""
        with self._cond:
            return list(self._tokens_used)

    def _cleared(self) -> None:
        self._tokens_used.clear()

    def _routes(self) -> list[Route]:
        return [
            Route("/token", self._token, methods=["POST"]),
            Route("/v1/projects/{project}/messages:send", self._send, methods=["POST"]),
        ]

    def _error(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        error_code: str | None = None,
    ) -> Response:
        names = {
            400: "INVALID_ARGUMENT",
            401: "UNAUTHENTICATED",
            403: "PERMISSION_DENIED",
            404: "NOT_FOUND",
            429: "RESOURCE_EXHAUSTED",
            500: "INTERNAL",
        }
        error: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": names.get(status, "UNKNOWN"),
        }
        if error_code is not None:
            error["details"] = [{"@type": FCM_ERROR_TYPE, "errorCode": error_code}]
        return JSONResponse({"error": error}, status_code=status, headers=headers)

    async def _token(self, request: Request) -> Response:
        form = parse_qs((await request.body()).decode())
        try:
            if form.get("grant_type") != [JWT_BEARER]:
                raise Invalid(f"grant_type must be {JWT_BEARER}")
            (assertion,) = form.get("assertion") or [""]
            claims = jwt.decode(
                assertion,
                self._public_key,
                algorithms=["RS256"],
                audience=self.token_uri,
                issuer=self.client_email,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
            if FCM_SCOPE not in str(claims.get("scope", "")).split():
                raise Invalid(f"scope must include {FCM_SCOPE}")
        except (Invalid, ValueError, jwt.PyJWTError) as exc:
            return JSONResponse(
                {"error": "invalid_grant", "error_description": str(exc)}, status_code=400
            )
        with self._cond:
            self.tokens_issued += 1
            token = f"ya29.fake-{self.tokens_issued}"
            self._tokens[token] = time.monotonic() + self.token_ttl
            ttl = self.token_ttl
        return JSONResponse({"access_token": token, "expires_in": ttl, "token_type": "Bearer"})

    async def _send(self, request: Request) -> Response:
        if (outage := await self._misbehave()) is not None:
            return outage
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self._cond:
            valid = scheme == "Bearer" and self._tokens.get(token, 0.0) > time.monotonic()
        if not valid:
            return self._error(401, "Request had invalid authentication credentials.")
        if request.path_params["project"] != self.project_id:
            return self._error(403, "SenderId mismatch: not this fake's project")
        try:
            body = await _json_object(request)
            message = self._check(body)
        except Invalid as exc:
            return self._error(400, f"Invalid request: {exc}")
        with self._cond:
            unregistered = message["token"] in self._unregistered
            if not unregistered:
                self._tokens_used.append(token)
        if unregistered:
            return self._error(404, "Requested entity was not found.", error_code="UNREGISTERED")
        n = self._accept(body, [message["data"]["job_id"]])
        return JSONResponse({"name": f"projects/{self.project_id}/messages/{n}"})

    def _check(self, body: dict[str, Any]) -> dict[str, Any]:
        if set(body) != {"message"} or not isinstance(body["message"], dict):
            raise Invalid("body must be {'message': {...}}")
        message: dict[str, Any] = body["message"]
        if unknown := set(message) - self.MESSAGE_KEYS:
            raise Invalid(f"unknown message fields {sorted(unknown)}")
        _nonempty_string(message.get("token"), "message.token")
        notification = _string_map(message.get("notification"), "message.notification")
        if set(notification) != {"title", "body"}:
            raise Invalid("message.notification must hold exactly title and body")
        data = _string_map(message.get("data"), "message.data")
        _nonempty_string(data.get("job_id"), "message.data.job_id")
        for platform in ("android", "apns", "webpush"):
            if platform in message and not isinstance(message[platform], dict):
                raise Invalid(f"message.{platform} must be an object")
        return message


class FakeSendGrid(FakeProvider):
    """SendGrid v3 Mail Send (`POST /v3/mail/send`) for one API key."""

    name = "fake-sendgrid"
    TOP_KEYS = frozenset(
        {"personalizations", "from", "reply_to", "subject", "content", "categories", "headers"}
    )

    def __init__(self, api_key: str = "SG.fake-test-key") -> None:
        self.api_key = api_key
        super().__init__()

    def email_settings(self, **overrides: Any) -> EmailSettings:
        """EmailSettings for SendGridEmail against this fake."""
        fields: dict[str, Any] = {
            "provider": "sendgrid",
            "sendgrid_url": self.url,
            "sendgrid_api_key": SecretStr(self.api_key),
        }
        return EmailSettings(**(fields | overrides))

    def env(self) -> dict[str, str]:
        """RTC_* variables that point a server subprocess's e-mails at this fake."""
        return {
            "RTC_NOTIFY__EMAIL__PROVIDER": "sendgrid",
            "RTC_NOTIFY__EMAIL__SENDGRID_URL": self.url,
            "RTC_NOTIFY__EMAIL__SENDGRID_API_KEY": self.api_key,
        }

    def _routes(self) -> list[Route]:
        return [Route("/v3/mail/send", self._send, methods=["POST"])]

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse(
            {"errors": [{"message": message, "field": None, "help": None}]},
            status_code=status,
            headers=headers,
        )

    async def _send(self, request: Request) -> Response:
        if (outage := await self._misbehave()) is not None:
            return outage
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return self._error(
                401, "The provided authorization grant is invalid, expired, or revoked"
            )
        try:
            body = await _json_object(request)
            job_ids = self._check(body)
        except Invalid as exc:
            return self._error(400, str(exc))
        n = self._accept(body, job_ids)
        return Response(status_code=202, headers={"X-Message-Id": f"fake-sg-{n}"})

    def _check(self, body: dict[str, Any]) -> list[str]:
        """The job ids of a valid body (one per personalization); Invalid otherwise."""
        if unknown := set(body) - self.TOP_KEYS:
            raise Invalid(f"unknown fields {sorted(unknown)}")
        personalizations = body.get("personalizations")
        if not isinstance(personalizations, list) or not personalizations:
            raise Invalid("personalizations must be a non-empty list")
        job_ids = []
        for i, p in enumerate(personalizations):
            where = f"personalizations[{i}]"
            if not isinstance(p, dict) or not isinstance(p.get("to"), list) or not p["to"]:
                raise Invalid(f"{where}.to must be a non-empty list")
            for j, to in enumerate(p["to"]):
                address = to.get("email") if isinstance(to, dict) else None
                if "@" not in _nonempty_string(address, f"{where}.to[{j}].email"):
                    raise Invalid(f"{where}.to[{j}].email is not an e-mail address")
            custom_args = _string_map(p.get("custom_args"), f"{where}.custom_args")
            job_ids.append(
                _nonempty_string(custom_args.get("job_id"), f"{where}.custom_args.job_id")
            )
        sender = body.get("from")
        address = sender.get("email") if isinstance(sender, dict) else None
        if "@" not in _nonempty_string(address, "from.email"):
            raise Invalid("from.email is not an e-mail address")
        _nonempty_string(body.get("subject"), "subject")
        content = body.get("content")
        if not isinstance(content, list) or not content:
            raise Invalid("content must be a non-empty list")
        for i, part in enumerate(content):
            if not isinstance(part, dict):
                raise Invalid(f"content[{i}] must be an object")
            _nonempty_string(part.get("type"), f"content[{i}].type")
            _nonempty_string(part.get("value"), f"content[{i}].value")
        if content[0]["type"] != "text/plain":
            raise Invalid("content[0].type must be text/plain (SendGrid orders plain text first)")
        return job_ids


# Named fixtures, so a test module imports `fake_fcm_fixture` and takes a `fake_fcm`
# parameter without the parameter shadowing the import.
@pytest.fixture(name="fake_fcm")
def fake_fcm_fixture(tmp_path: Path) -> Iterator[FakeFcm]:
    """A started FakeFcm with its service-account file written under tmp_path."""
    with FakeFcm() as fake:
        fake.write_credentials(tmp_path / "fcm-service-account.json")
        yield fake


@pytest.fixture(name="fake_sendgrid")
def fake_sendgrid_fixture() -> Iterator[FakeSendGrid]:
    """A started FakeSendGrid (API key `fake_sendgrid.api_key`)."""
    with FakeSendGrid() as fake:
        yield fake
