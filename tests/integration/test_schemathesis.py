"""Schemathesis over the whole API, on each backend: every answer is one /openapi.json documents.

The server is real (the `server` fixture). A user with a team, a channel, messages, files
and devices gives every path id a real value, so the generated calls reach the handlers
instead of all answering 404. Generation is bounded (a few dozen examples per operation,
one seed), so a run takes well under two minutes per backend.

Random data rarely passes every business rule (a valid e-mail, a matching If-Match), so a
scripted scenario also drives each documented success answer once and checks it the same way.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.support import ServerProcess, running_server, unique

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
PASSWORD = "correct horse"
MAX_EXAMPLES = 75
# Success answers the scenario may leave out.
UNREACHED = {
    # Adding by e-mail invites once invitations land (issue 13 item 10); today it adds.
    ("POST", "/api/v1/teams/{team_id}/members", 202),
    # Only with RTC_ADMIN_TOKEN: test_admin_answers_match_their_schema covers them.
    ("GET", "/api/v1/admin/flags", 200),
    ("PUT", "/api/v1/admin/flags/{name}", 200),
}


@dataclass
class World:
    """Real ids for every path parameter, and the token of the user who owns them."""

    token: str
    ids: dict[str, str]
    # A second set for the operations that destroy what they name, so the others keep theirs.
    doomed: dict[str, str]


def _ok(resp: httpx.Response, *statuses: int) -> Any:
    assert resp.status_code in (statuses or (200, 201)), f"{resp.request.url}: {resp.text}"
    return resp.json() if resp.content else None


def _user(http: httpx.Client, name: str) -> tuple[str, str]:
    email = f"{unique(name)}@example.com"
    reg = http.post(
        "/api/v1/auth/register",
        json={"email": email, "password": PASSWORD, "display_name": name},
    )
    user_id: str = _ok(reg, 201)["id"]
    login = http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    token: str = _ok(login, 200)["access_token"]
    return user_id, token


def _file(http: httpx.Client, team_id: str, data: bytes, *, upload: bool) -> str:
    declared = _ok(
        http.post(
            "/api/v1/files",
            json={
                "team_id": team_id,
                "name": "notes.txt",
                "size": len(data),
                "content_type": "text/plain",
                "sha256": hashlib.sha256(data).hexdigest(),
            },
        )
    )
    if upload:
        target = declared["upload"]
        _ok(httpx.request(target["method"], target["url"], content=data, headers=target["headers"]))
        _ok(http.post(f"/api/v1/files/{declared['id']}/complete"))
    file_id: str = declared["id"]
    return file_id


def populate(server: ServerProcess) -> World:
    """A team of three with a channel, messages, files and devices: ids for every path."""
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        bob_id, _ = _user(anon, "bob")
        carol_id, _ = _user(anon, "carol")
        _, token = _user(anon, "alice")
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, timeout=30, headers=auth) as http:
        team = _ok(http.post("/api/v1/teams", json={"name": "fuzzed"}))
        for member in (bob_id, carol_id):
            _ok(http.post(f"/api/v1/teams/{team['id']}/members", json={"user_id": member}))
        channel = _ok(http.post(f"/api/v1/teams/{team['id']}/channels", json={"name": "general"}))
        for member in (bob_id, carol_id):
            _ok(http.post(f"/api/v1/channels/{channel['id']}/members", json={"user_id": member}))
        messages = [
            _ok(
                http.post(
                    "/api/v1/messages",
                    json={"channel_id": channel["id"], "body": body, "client_msg_id": unique()},
                )
            )
            for body in ("hello", "to be deleted")
        ]
        devices = [
            _ok(http.post("/api/v1/devices", json={"platform": "web", "token": unique("push")}))
            for _ in range(2)
        ]
        ids = {
            "team_id": team["id"],
            "channel_id": channel["id"],
            "member_id": bob_id,
            "message_id": messages[0]["id"],
            "file_id": _file(http, team["id"], b"ready bytes", upload=True),
            "device_id": devices[0]["id"],
            "name": "uploads",
        }
        doomed = {
            "member_id": carol_id,
            "message_id": messages[1]["id"],
            "file_id": _file(http, team["id"], b"never sent", upload=False),
            "device_id": devices[1]["id"],
        }
    return World(token, ids, doomed)


def config_for(world: World) -> SchemathesisConfig:
    """Real path ids, the bearer token, and bounded deterministic generation."""
    destructive = [
        ("DELETE /api/v1/channels/{channel_id}/members/{member_id}", "member_id"),
        ("DELETE /api/v1/messages/{message_id}", "message_id"),
        ("DELETE /api/v1/files/{file_id}", "file_id"),
        ("DELETE /api/v1/devices/{device_id}", "device_id"),
    ]
    return SchemathesisConfig.from_dict(
        {
            "seed": 13,
            "parameters": {f"path.{name}": value for name, value in world.ids.items()},
            "auth": {"openapi": {"bearer": {"bearer": world.token}}},
            "generation": {"deterministic": True, "max-examples": MAX_EXAMPLES},
            "request-timeout": 10,
            "operations": [
                # By name: a method-and-path filter also matches the path's other methods.
                {"include-name": label, "parameters": {f"path.{name}": world.doomed[name]}}
                for label, name in destructive
            ],
        }
    )


def load(server: ServerProcess, world: World) -> OpenApiSchema:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config_for(world))


# ---- known server bugs -----------------------------------------------------------------
# ---- the fuzzing run -----------------------------------------------------------------
@dataclass
class Tally:
    """What the run answered, per operation."""

    statuses: dict[str, set[int]]


TALLY = Tally({})


@pytest.fixture
def api_schema(request: pytest.FixtureRequest, server: ServerProcess) -> Iterator[OpenApiSchema]:
    """The live server's /openapi.json, loaded over a populated world."""
    # schemathesis 4.32's lazy loader renames the test item through Node._nodeid, which
    # pytest 9.2 no longer has; give it one (pytest itself uses the node's id elsewhere).
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
    started = time.perf_counter()
    TALLY.statuses.clear()
    yield load(server, populate(server))
    print(f"\nschemathesis: {time.perf_counter() - started:.1f} s")
    # The ids are real: most operations must have got past 404 to a success answer.
    succeeded = [op for op, seen in TALLY.statuses.items() if any(s < 400 for s in seen)]
    assert len(succeeded) >= 25, sorted(set(TALLY.statuses) - set(succeeded))


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(derandomize=True, deadline=timedelta(seconds=5), suppress_health_check=list(HealthCheck))
def test_every_answer_is_documented(case: schemathesis.Case[Any], server: ServerProcess) -> None:
    # A redirect is an answer of its own (GET /files/{id}: 302 to the signed URL).
    response = case.call(allow_redirects=False)
    TALLY.statuses.setdefault(case.operation.label, set()).add(response.status_code)
    case.validate_response(response, checks=CHECKS)


# ---- every success answer, once ------------------------------------------------------
class Driver:
    """Makes one documented call and validates its answer as the fuzzing run does."""

    def __init__(self, api: OpenApiSchema, base_url: str, token: str) -> None:
        self.api = api
        self.base_url = base_url
        self.auth = {"Authorization": f"Bearer {token}"}
        self.answered: set[tuple[str, str, int]] = set()

    def __call__(
        self,
        method: str,
        path: str,
        status: int | tuple[int, ...],
        ids: dict[str, str] | None = None,
        *,
        headers: dict[str, str] | None = None,
        anonymous: bool = False,
        **kw: Any,
    ) -> Response:
        case = self.api[path][method].Case(
            path_parameters=ids or {},
            headers={**({} if anonymous else self.auth), **(headers or {})},
            **kw,
        )
        response = case.call(base_url=self.base_url, allow_redirects=False)
        expected = status if isinstance(status, tuple) else (status,)
        assert response.status_code in expected, f"{method} {path}: {response.text}"
        case.validate_response(response, checks=CHECKS)
        self.answered.add((method, path, response.status_code))
        return response

    def documented(self) -> set[tuple[str, str, int]]:
        """Every (method, path, status) of a success answer the schema documents."""
        return {
            (method.upper(), path, int(status))
            for path, item in self.api.raw_schema["paths"].items()
            for method, operation in item.items()
            for status in operation["responses"]
            if int(status) < 400
        }


def scenario(drive: Driver) -> None:
    """One call for each success answer: the flows a client goes through."""
    v1 = "/api/v1"
    email = f"{unique('dora')}@example.com"
    creds = {"email": email, "password": PASSWORD}
    dora = drive(
        "POST", f"{v1}/auth/register", 201, anonymous=True, body=creds | {"display_name": "Dora"}
    )
    dora_id = dora.json()["id"]
    tokens = drive("POST", f"{v1}/auth/login", 200, anonymous=True, body=creds).json()
    refreshed = drive(
        "POST",
        f"{v1}/auth/refresh",
        200,
        anonymous=True,
        body={"refresh_token": tokens["refresh_token"]},
    ).json()
    drive(
        "POST",
        f"{v1}/auth/logout",
        204,
        anonymous=True,
        body={"refresh_token": refreshed["refresh_token"]},
    )
    drive("GET", f"{v1}/users/me", 200)

    team = drive("POST", f"{v1}/teams", 201, body={"name": "scenario"}).json()
    t = {"team_id": team["id"]}
    drive("GET", f"{v1}/teams", 200)
    drive("GET", f"{v1}/teams/{{team_id}}", 200, t)
    drive("POST", f"{v1}/teams/{{team_id}}/members", 201, t, body={"user_id": dora_id})
    drive("POST", f"{v1}/teams/{{team_id}}/members", 200, t, body={"user_id": dora_id})
    # By e-mail: added today (201); invited once invitations land (202).
    erin = {"email": f"{unique('erin')}@example.com", "password": PASSWORD, "display_name": "E"}
    drive("POST", f"{v1}/auth/register", 201, anonymous=True, body=erin)
    drive("POST", f"{v1}/teams/{{team_id}}/members", (201, 202), t, body={"email": erin["email"]})
    drive("GET", f"{v1}/teams/{{team_id}}/members", 200, t)

    channel = drive(
        "POST", f"{v1}/teams/{{team_id}}/channels", 201, t, body={"name": "general"}
    ).json()
    c = {"channel_id": channel["id"]}
    drive("GET", f"{v1}/teams/{{team_id}}/channels", 200, t)
    drive("GET", f"{v1}/channels", 200)
    drive("GET", f"{v1}/channels/{{channel_id}}", 200, c)
    drive("PATCH", f"{v1}/channels/{{channel_id}}", 200, c, body={"name": "renamed"})
    drive("POST", f"{v1}/channels/{{channel_id}}/members", 201, c, body={"user_id": dora_id})
    drive("POST", f"{v1}/channels/{{channel_id}}/members", 200, c, body={"user_id": dora_id})
    drive("GET", f"{v1}/channels/{{channel_id}}/members", 200, c)
    drive(
        "DELETE",
        f"{v1}/channels/{{channel_id}}/members/{{member_id}}",
        204,
        c | {"member_id": dora_id},
    )
    drive("POST", f"{v1}/dms", 201, body={"user_id": dora_id})
    drive("POST", f"{v1}/dms", 200, body={"user_id": dora_id})

    data = b"scenario bytes"
    upload = drive(
        "POST",
        f"{v1}/files",
        201,
        body={
            "team_id": team["id"],
            "name": "a.txt",
            "size": len(data),
            "content_type": "text/plain",
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    ).json()
    f = {"file_id": upload["id"]}
    target = upload["upload"]
    _ok(httpx.request(target["method"], target["url"], content=data, headers=target["headers"]))
    drive("POST", f"{v1}/files/{{file_id}}/complete", 200, f)
    drive("GET", f"{v1}/files/{{file_id}}", 302, f)
    drive("GET", f"{v1}/files/{{file_id}}/meta", 200, f)
    drive("GET", f"{v1}/teams/{{team_id}}/storage", 200, t)

    send = {
        "channel_id": channel["id"],
        "body": "hi @Dora",
        "client_msg_id": unique(),
        "attachments": [upload["id"]],
    }
    message = drive("POST", f"{v1}/messages", 201, body=send)
    drive("POST", f"{v1}/messages", 200, body=send)
    m = {"message_id": message.json()["id"]}
    etag = message.headers["etag"][0]
    drive("GET", f"{v1}/messages/{{message_id}}", 200, m)
    drive("GET", f"{v1}/messages/{{message_id}}", 304, m, headers={"If-None-Match": etag})
    edited = drive(
        "PUT",
        f"{v1}/messages/{{message_id}}",
        200,
        m,
        headers={"If-Match": etag},
        body={"body": "edited"},
    )
    drive(
        "DELETE",
        f"{v1}/messages/{{message_id}}",
        200,
        m,
        headers={"If-Match": edited.headers["etag"][0]},
    )
    drive("POST", f"{v1}/channels/{{channel_id}}/read", 200, c, body={"seq": 1})
    drive("GET", f"{v1}/channels/{{channel_id}}/messages", 200, c)
    drive("GET", f"{v1}/channels/{{channel_id}}/events", 200, c)
    drive("DELETE", f"{v1}/files/{{file_id}}", 204, f)

    device = {"platform": "web", "token": unique("push")}
    d = {"device_id": drive("POST", f"{v1}/devices", 201, body=device).json()["id"]}
    drive("POST", f"{v1}/devices", 200, body=device)
    drive("GET", f"{v1}/devices", 200)
    drive("DELETE", f"{v1}/devices/{{device_id}}", 204, d)
    drive("GET", f"{v1}/notification-settings", 200)
    drive("PUT", f"{v1}/notification-settings", 200, body={"push": False})
    drive("GET", f"{v1}/channels/{{channel_id}}/notification-settings", 200, c)
    drive(
        "PUT", f"{v1}/channels/{{channel_id}}/notification-settings", 200, c, body={"muted": True}
    )

    drive("GET", "/livez", 200, anonymous=True)
    drive("GET", "/readyz", 200, anonymous=True)


def test_every_success_answer_matches_its_schema(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        _, token = _user(anon, "scenario")
    api = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    drive = Driver(api, server.url, token)
    scenario(drive)
    assert drive.documented() - drive.answered <= UNREACHED


async def test_admin_answers_match_their_schema(tmp_path: Path) -> None:
    async with running_server(tmp_path, RTC_ADMIN_TOKEN="an-operator-token") as server:
        api = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        drive = Driver(api, server.url, "an-operator-token")
        drive("GET", "/api/v1/admin/flags", 200)
        drive("PUT", "/api/v1/admin/flags/{name}", 200, {"name": "uploads"}, body={"enabled": True})
        drive("PUT", "/api/v1/admin/flags/{name}", 404, {"name": "nope"}, body={"enabled": True})
        drive("GET", "/api/v1/admin/flags", 401, headers={"Authorization": "Bearer wrong"})
