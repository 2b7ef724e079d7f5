"""Assertions shared by the REST contract tests (tests/integration/test_rest_*.py)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx

from tests.support import Api

PROBLEM_TYPE = "https://realtimechat.dev/problems/"


def assert_problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """`resp` is an RFC 9457 problem with this status and code; its body."""
    assert resp.status_code == status, (
        f"expected {status} {code}, got {resp.status_code} {resp.text}"
    )
    content_type = resp.headers.get("content-type", "")
    assert content_type.startswith("application/problem+json"), content_type
    body: dict[str, Any] = resp.json()
    assert body["status"] == status, body
    assert body["code"] == code, body
    assert isinstance(body["title"], str), body
    assert body["title"], body
    assert body["type"] == PROBLEM_TYPE + code, body
    return body


def assert_timestamp(value: Any) -> None:
    """An RFC 3339 UTC timestamp as the API writes them."""
    assert isinstance(value, str), value
    assert value.endswith("Z"), value
    datetime.fromisoformat(value.replace("Z", "+00:00"))


def missing_id() -> str:
    """An id no resource has."""
    return str(uuid.uuid4())


async def team_with(owner: Api, *members: Api) -> str:
    """A new team owned by `owner` with `members` added; its id."""
    team = await owner.create_team(f"team-{uuid.uuid4().hex[:8]}")
    for member in members:
        await owner.add_to_team(team["id"], member)
    team_id: str = team["id"]
    return team_id
