"""Malformed input is a 4xx problem+json, never a 5xx, and changes nothing.

Each case below answered 500 `internal_error` before the edge validated integers to
the database's range and strings to UTF-8 without control characters (issue 13, item 5).
Bodies are sent as raw bytes: a JSON `"\\ud800"` escape is how a client smuggles a lone
surrogate, and 2**64 is valid JSON.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.integration.rest_support import assert_problem
from tests.support import Api, ServerProcess, team_channel, unique

BIG = 2**63
HUGE = 2**64
DATA = b"some bytes"
SHA = hashlib.sha256(DATA).hexdigest()


@dataclass
class World:
    """What the cases aim at: alice's team, channel and one message of hers."""

    team_id: str
    channel_id: str
    message_id: str


def declaration(team_id: str, **kw: Any) -> dict[str, Any]:
    base = {
        "team_id": team_id,
        "name": "notes.txt",
        "size": len(DATA),
        "content_type": "text/plain",
        "sha256": SHA,
    }
    return {**base, **kw}


def raw(obj: Any) -> dict[str, Any]:
    """Request kwargs sending `obj` as ASCII JSON (surrogates escaped, big ints kept)."""
    return {"content": json.dumps(obj).encode(), "headers": {"Content-Type": "application/json"}}


Case = tuple[str, str, Any]  # method, path (with {team} {channel} {message}), body or params


CASES: dict[str, Case] = {
    "sha256 with a trailing newline": ("POST", "/api/v1/files", {"sha256": SHA + "\n"}),
    "size 2**64": ("POST", "/api/v1/files", {"size": HUGE}),
    "size 2**63": ("POST", "/api/v1/files", {"size": BIG}),
    "content_type with a newline": ("POST", "/api/v1/files", {"content_type": "text/plain\n"}),
    "content_type not ASCII": ("POST", "/api/v1/files", {"content_type": "text/pl\u00e4in"}),
    "file name with a lone surrogate": ("POST", "/api/v1/files", {"name": "a\ud800.txt"}),
    "before_seq 2**63": ("GET", "/api/v1/channels/{channel}/messages", {"before_seq": BIG}),
    "after_seq 2**63": ("GET", "/api/v1/channels/{channel}/events", {"after_seq": BIG}),
    "limit 2**64": ("GET", "/api/v1/channels/{channel}/events", {"limit": HUGE}),
    "attachment id 2**64": (
        "POST",
        "/api/v1/messages",
        {"channel_id": "{channel}", "body": "hi", "client_msg_id": "a", "attachments": [HUGE]},
    ),
    "message body with a lone surrogate": (
        "POST",
        "/api/v1/messages",
        {"channel_id": "{channel}", "body": "\ud800", "client_msg_id": "s"},
    ),
    "message body with NUL": (
        "POST",
        "/api/v1/messages",
        {"channel_id": "{channel}", "body": "a\u0000b", "client_msg_id": "n"},
    ),
    "client_msg_id with a lone surrogate": (
        "POST",
        "/api/v1/messages",
        {"channel_id": "{channel}", "body": "hi", "client_msg_id": "\udfff"},
    ),
    "edit with a lone surrogate": ("PUT", "/api/v1/messages/{message}", {"body": "x\ud800"}),
    "device token with a lone surrogate": (
        "POST",
        "/api/v1/devices",
        {"platform": "android", "token": "\ud800"},
    ),
    "read marker 2**63": ("POST", "/api/v1/channels/{channel}/read", {"seq": BIG}),
    "an unknown field named by a lone surrogate": (
        "PUT",
        "/api/v1/notification-settings",
        {"\ud800": True},
    ),
}


def fill(value: Any, world: World) -> Any:
    """The case's body or params with the world's ids put in."""
    if isinstance(value, str):
        return (
            value.replace("{team}", world.team_id)
            .replace("{channel}", world.channel_id)
            .replace("{message}", world.message_id)
        )
    if isinstance(value, dict):
        return {fill(k, world): fill(v, world) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, world) for v in value]
    return value


async def used_bytes(api: Api, team_id: str) -> int:
    return int((await api.ok("GET", f"/api/v1/teams/{team_id}/storage", 200))["used_bytes"])


@pytest.fixture
async def world(alice: Api) -> World:
    channel = await team_channel(alice)
    msg = await alice.send(channel["id"], "original")
    return World(channel["team_id"], channel["id"], msg["id"])


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
async def test_malformed_input_is_a_4xx_problem_that_changes_nothing(
    case: str, alice: Api, world: World
) -> None:
    method, path, payload = CASES[case]
    url = fill(path, world)
    headers = {"If-Match": '"1"'} if method == "PUT" and "/messages/" in url else {}
    if method == "GET":
        resp = await alice.request(method, url, params=payload, headers=headers)
    else:
        body = fill(payload, world)
        if url == "/api/v1/files":
            body = declaration(world.team_id, **body)
        kw = raw(body)
        kw["headers"] |= headers
        resp = await alice.request(method, url, **kw)
    problem = assert_problem(resp, 422, "validation_error")
    assert problem.get("errors") or problem.get("field"), problem  # says what was wrong
    # Nothing changed: no quota reserved, the message as it was, no device.
    assert await used_bytes(alice, world.team_id) == 0
    msg = await alice.ok("GET", f"/api/v1/messages/{world.message_id}", 200)
    assert (msg["body"], msg["version"]) == ("original", 1)
    assert (await alice.ok("GET", "/api/v1/devices", 200))["devices"] == []
    page = await alice.ok("GET", f"/api/v1/channels/{world.channel_id}/messages", 200)
    assert [m["id"] for m in page["messages"]] == [world.message_id]


async def test_the_largest_database_integers_are_still_accepted(alice: Api, world: World) -> None:
    """The bounds are the database's own (signed 64-bit), not something smaller."""
    top = BIG - 1
    page = await alice.ok(
        "GET", f"/api/v1/channels/{world.channel_id}/messages", 200, params={"before_seq": top}
    )
    assert [m["id"] for m in page["messages"]] == [world.message_id]
    events = await alice.ok(
        "GET", f"/api/v1/channels/{world.channel_id}/events", 200, params={"after_seq": top}
    )
    assert events["events"] == []
    # A size in range but over the limit is the file limit's 413, not a validation error.
    resp = await alice.request("POST", "/api/v1/files", **raw(declaration(world.team_id, size=top)))
    assert_problem(resp, 413, "file_too_large")


async def test_text_keeps_newlines_tabs_and_any_language(alice: Api, world: World) -> None:
    body = "line one\n\tindented \u00e9\u4e2d\U0001f600"
    sent = await alice.ok(
        "POST",
        "/api/v1/messages",
        201,
        **raw({"channel_id": world.channel_id, "body": body, "client_msg_id": unique("m")}),
    )
    assert sent["body"] == body
    f = await alice.ok(
        "POST",
        "/api/v1/files",
        201,
        **raw(declaration(world.team_id, name="r\u00e9sum\u00e9 \u4e2d.pdf")),
    )
    assert f["name"] == "r\u00e9sum\u00e9 \u4e2d.pdf"
    await alice.ok("DELETE", f"/api/v1/files/{f['id']}", 204)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/files/a%00b/meta",
        "/api/v1/messages/a%00b",
        "/api/v1/channels/a%00b/messages",
        "/api/v1/devices/a%00b",
        "/api/v1/teams/a%00b",
        "/api/v1/teams/a%00b/channels",
        "/api/v1/teams/a%00b/members",
        "/api/v1/channels/a%00b",
        "/api/v1/channels/a%00b/members",
    ],
)
async def test_a_nul_in_a_path_id_is_not_a_server_error(
    path: str, alice: Api, server: ServerProcess
) -> None:
    """PostgreSQL refuses NUL in text; the id is refused at the edge instead."""
    method = "DELETE" if path.startswith("/api/v1/devices/") else "GET"
    async with httpx.AsyncClient(base_url=server.url, headers=alice.http.headers) as http:
        resp = await http.request(method, path)
    assert resp.status_code in (404, 422), resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
