"""REST contract: problem details for every error, size limits, rate limits, load shedding,
health endpoints and the OpenAPI document."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.integration.rest_support import assert_problem
from tests.support import OPERATOR, Api, ServerProcess, new_user, running_server, unique


@pytest.fixture
async def anon(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


# ---- problem details ---------------------------------------------------------
@pytest.mark.parametrize("path", ["/nope", "/api/v1/nope", "/api/v2/messages"])
async def test_unknown_route_is_404_problem(anon: httpx.AsyncClient, path: str) -> None:
    assert_problem(await anon.get(path), 404, "not_found")


async def test_wrong_method_is_405_problem(anon: httpx.AsyncClient, alice: Api) -> None:
    resp = await alice.request("DELETE", "/api/v1/teams")
    assert_problem(resp, 405, "method_not_allowed")
    allowed = {m.strip() for m in resp.headers["allow"].split(",")}
    assert "POST" in allowed
    assert "DELETE" not in allowed
    assert_problem(await anon.put("/livez"), 405, "method_not_allowed")


async def test_malformed_json_is_400(alice: Api) -> None:
    for raw, reason, position in [
        (b'{"name": ', "Expecting value", 9),
        (b"not json", "Expecting value", 0),
        (b'{"name": "x",}', "Expecting property name enclosed in double quotes", 13),
    ]:
        resp = await alice.request(
            "POST", "/api/v1/teams", content=raw, headers={"Content-Type": "application/json"}
        )
        body = assert_problem(resp, 400, "malformed_json")
        # The detail says what is wrong and where.
        assert body["detail"] == f"the body is not valid JSON: {reason} at position {position}"
    assert (await alice.ok("GET", "/api/v1/teams", 200))["teams"] == []


async def test_malformed_json_detail_on_login(anon: httpx.AsyncClient) -> None:
    resp = await anon.post(
        "/api/v1/auth/login", content=b'{"email":', headers={"Content-Type": "application/json"}
    )
    body = assert_problem(resp, 400, "malformed_json")
    assert body["detail"] == "the body is not valid JSON: Expecting value at position 9"


# ---- bodies sent without a JSON content type -----------------------------------
@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",  # what curl -d sends without -H
        "text/plain; charset=utf-8",
        "application/xml",
        None,  # no Content-Type at all
    ],
)
async def test_json_body_without_a_json_content_type_is_415(
    alice: Api, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    resp = await alice.request("POST", "/api/v1/teams", content=b'{"name": "t"}', headers=headers)
    body = assert_problem(resp, 415, "unsupported_media_type")
    assert "Content-Type: application/json" in body["detail"], body
    assert resp.headers["accept"] == "application/json"
    assert (await alice.ok("GET", "/api/v1/teams", 200))["teams"] == []


async def test_form_encoded_body_is_415(alice: Api) -> None:
    resp = await alice.request("POST", "/api/v1/teams", data={"name": "t"})
    assert resp.request.headers["content-type"] == "application/x-www-form-urlencoded"
    body = assert_problem(resp, 415, "unsupported_media_type")
    assert "application/x-www-form-urlencoded" in body["detail"], body
    assert (await alice.ok("GET", "/api/v1/teams", 200))["teams"] == []


async def test_json_content_types_and_empty_bodies_are_not_415(alice: Api) -> None:
    # application/*+json is JSON.
    created = await alice.request(
        "POST",
        "/api/v1/teams",
        content=b'{"name": "vendor"}',
        headers={"Content-Type": "application/vnd.example+json"},
    )
    assert created.status_code == 201, created.text
    # No body, or an empty one: the usual 422, whatever the content type.
    for headers in [{"Content-Type": "application/json"}, {"Content-Type": "text/plain"}, {}]:
        resp = await alice.request("POST", "/api/v1/teams", content=b"", headers=headers)
        body = assert_problem(resp, 422, "validation_error")
        assert body["errors"][0]["loc"] == ["body"], body
    # A JSON body of the wrong shape stays a 422.
    resp = await alice.request(
        "POST", "/api/v1/teams", content=b'"t"', headers={"Content-Type": "application/json"}
    )
    assert_problem(resp, 422, "validation_error")
    teams = (await alice.ok("GET", "/api/v1/teams", 200))["teams"]
    assert [t["name"] for t in teams] == ["vendor"]
    # Endpoints without a body ignore whatever was sent.
    resp = await alice.request(
        "GET", "/api/v1/teams", content=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert resp.status_code == 200, resp.text
    resp = await alice.request(
        "POST",
        f"/api/v1/files/{unique()}/complete",
        content=b"hello",
        headers={"Content-Type": "text/plain"},
    )
    assert_problem(resp, 404, "not_found")


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"name": 5},
        {"name": ["a"]},
        {"name": "ok", "unexpected": True},
        {"name": "x" * 101},
        [],
    ],
)
async def test_schema_violation_is_422_with_errors(alice: Api, payload: object) -> None:
    resp = await alice.request("POST", "/api/v1/teams", json=payload)
    body = assert_problem(resp, 422, "validation_error")
    assert isinstance(body["errors"], list)
    assert body["errors"]
    for err in body["errors"]:
        assert {"loc", "msg", "type"} <= set(err)
    assert (await alice.ok("GET", "/api/v1/teams", 200))["teams"] == []


# ---- strict request bodies ---------------------------------------------------------
def assert_field_error(resp: httpx.Response, field: str) -> None:
    body = assert_problem(resp, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["body", field], body
    assert body["detail"].startswith(f"{field}: "), body


@pytest.mark.parametrize("private", ["yes", "true", 1, 0, None])
async def test_wrongly_typed_channel_flag_is_422_and_creates_nothing(
    alice: Api, private: object
) -> None:
    team_id = (await alice.create_team())["id"]
    resp = await alice.request(
        "POST", f"/api/v1/teams/{team_id}/channels", json={"name": "c2", "private": private}
    )
    assert_field_error(resp, "private")
    channels = (await alice.ok("GET", f"/api/v1/teams/{team_id}/channels", 200))["channels"]
    assert "c2" not in [c["name"] for c in channels]


async def test_wrongly_typed_read_marker_is_422_and_does_not_move(alice: Api, bob: Api) -> None:
    team_id = (await alice.create_team())["id"]
    await alice.add_to_team(team_id, bob)
    cid = (await alice.create_channel(team_id))["id"]
    await alice.join(cid, bob)
    sent = [await alice.send(cid, f"m{i}") for i in range(6)]
    path = f"/api/v1/channels/{cid}/read"
    await bob.ok("POST", path, 200, json={"seq": sent[0]["seq"]})
    target = sent[4]["seq"]
    for seq in [str(target), float(target), True, [target]]:
        assert_field_error(await bob.request("POST", path, json={"seq": seq}), "seq")
    view = await bob.ok("GET", f"/api/v1/channels/{cid}", 200)
    assert (view["read_seq"], view["unread_count"]) == (sent[0]["seq"], 5)


async def test_wrongly_typed_file_size_is_422_and_reserves_nothing(alice: Api) -> None:
    team_id = (await alice.create_team())["id"]
    declared = {
        "team_id": team_id,
        "name": "notes.txt",
        "size": "1",
        "content_type": "text/plain",
        "sha256": hashlib.sha256(b"x").hexdigest(),
    }
    assert_field_error(await alice.request("POST", "/api/v1/files", json=declared), "size")
    usage = await alice.ok("GET", f"/api/v1/teams/{team_id}/storage", 200)
    assert (usage["used_bytes"], usage["files"]) == (0, 0), usage
    # The same declaration with a JSON number is accepted and reserves the byte.
    await alice.ok("POST", "/api/v1/files", 201, json={**declared, "size": 1})
    usage = await alice.ok("GET", f"/api/v1/teams/{team_id}/storage", 200)
    assert (usage["used_bytes"], usage["files"]) == (1, 1), usage


async def test_bad_query_and_path_values_are_422(alice: Api) -> None:
    team_id = (await alice.create_team())["id"]
    channel = await alice.create_channel(team_id)
    resp = await alice.request(
        "GET", f"/api/v1/channels/{channel['id']}/events", params={"after_seq": "soon"}
    )
    body = assert_problem(resp, 422, "validation_error")
    assert body["errors"][0]["loc"] == ["query", "after_seq"]


async def test_request_over_the_size_limit_is_413(alice: Api) -> None:
    team_id = (await alice.create_team())["id"]
    channel = await alice.create_channel(team_id)
    big = {"channel_id": channel["id"], "body": "z" * (300 * 1024), "client_msg_id": unique()}
    assert_problem(
        await alice.request("POST", "/api/v1/messages", json=big), 413, "request_too_large"
    )

    # Without a Content-Length (chunked), the limit holds while the body streams in.
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"channel_id": "' + channel["id"].encode() + b'", "client_msg_id": "c1", "body": "'
        for _ in range(40):
            yield b"z" * 8192
        yield b'"}'

    resp = await alice.request(
        "POST",
        "/api/v1/messages",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert "content-length" not in resp.request.headers
    assert_problem(resp, 413, "request_too_large")
    history = await alice.ok("GET", f"/api/v1/channels/{channel['id']}/messages", 200)
    assert history["messages"] == []


async def test_domain_errors_are_problems(alice: Api, bob: Api) -> None:
    """A sample of errors raised below the edge all arrive as problem+json."""
    team_id = (await alice.create_team())["id"]
    assert_problem(await bob.request("GET", f"/api/v1/teams/{team_id}/channels"), 404, "not_found")
    assert_problem(
        await bob.request(
            "POST", f"/api/v1/teams/{team_id}/members", json={"user_id": bob.user_id}
        ),
        404,
        "not_found",
    )
    assert_problem(await alice.request("GET", f"/api/v1/messages/{unique()}"), 404, "not_found")


# ---- rate limits ---------------------------------------------------------------
def assert_budget_headers(resp: httpx.Response, limit: int, remaining: int) -> None:
    assert resp.headers["ratelimit-limit"] == str(limit), resp.headers
    assert resp.headers["ratelimit-remaining"] == str(remaining), resp.headers
    reset = int(resp.headers["ratelimit-reset"])
    assert 0 <= reset <= 60


async def test_rate_limit_answers_429_with_budget_headers(tmp_path: Path) -> None:
    async with running_server(
        tmp_path,
        RTC_LIMITS__USER_REQUESTS_PER_MINUTE="5",
        RTC_LIMITS__ANONYMOUS_REQUESTS_PER_MINUTE="3",
    ) as srv:
        user = await new_user(srv, "limited")  # spends 2 of the 3 anonymous requests
        try:
            for remaining in (4, 3, 2, 1, 0):
                resp = await user.request("GET", "/api/v1/users/me")
                assert resp.status_code == 200, resp.text
                assert_budget_headers(resp, 5, remaining)

            limited = await user.request("GET", "/api/v1/teams")
            assert_problem(limited, 429, "rate_limited")
            assert int(limited.headers["retry-after"]) >= 1
            assert_budget_headers(limited, 5, 0)
            # Writes are refused as well, and nothing is written.
            assert_problem(
                await user.request("POST", "/api/v1/teams", json={"name": "t"}), 429, "rate_limited"
            )

            # The calls made before login have a budget per client address ...
            anon = httpx.AsyncClient(base_url=srv.url, timeout=30)
            try:
                login = await anon.post(
                    "/api/v1/auth/login", json={"email": user.email, "password": "correct horse"}
                )
                assert login.status_code == 200, login.text
                assert_budget_headers(login, 3, 0)
                # ... here 3: register and login by new_user, then this one.
                again = await anon.post(
                    "/api/v1/auth/login", json={"email": user.email, "password": "correct horse"}
                )
                assert_problem(again, 429, "rate_limited")
                assert "retry-after" in again.headers
            finally:
                await anon.aclose()
            # Health probes are never rate limited.
            for _ in range(5):
                assert (await user.request("GET", "/livez")).status_code == 200
        finally:
            await user.aclose()


# ---- load shedding --------------------------------------------------------------
async def test_overload_sheds_with_503_but_livez_answers(tmp_path: Path) -> None:
    async with (
        running_server(
            tmp_path,
            RTC_LIMITS__MAX_IN_FLIGHT="1",
            RTC_AUTH__HASH_TIME_COST="40",
            RTC_AUTH__HASH_MEMORY_KIB="65536",
        ) as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=60) as client,
    ):

        async def register(i: int) -> httpx.Response:
            return await client.post(
                "/api/v1/auth/register",
                json={
                    "email": f"{unique(f'shed{i}')}@example.com",
                    "password": "correct horse",
                    "display_name": f"u{i}",
                },
            )

        tasks = [asyncio.create_task(register(i)) for i in range(4)]
        # The first answer is one shed at once while the admitted one still hashes.
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        first = next(iter(done)).result()
        shed = assert_problem(first, 503, "overloaded")
        assert shed["status"] == 503
        assert int(first.headers["retry-after"]) >= 1
        livez = await client.get("/livez")
        assert livez.status_code == 200
        assert livez.json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status_code == 200

        results = await asyncio.gather(*tasks)
        statuses = sorted(r.status_code for r in results)
        assert statuses.count(201) >= 1, statuses
        assert statuses.count(503) >= 1, statuses
        assert set(statuses) <= {201, 503}, statuses
        for r in results:
            if r.status_code == 503:
                assert_problem(r, 503, "overloaded")
                assert "retry-after" in r.headers
        # Once the load is gone, requests are served again.
        assert (await client.get("/openapi.json")).status_code == 200


# ---- health and the API description ------------------------------------------------
async def test_livez_and_readyz(anon: httpx.AsyncClient) -> None:
    live = await anon.get("/livez")
    assert live.status_code == 200
    assert live.json()["status"] == "ok"
    ready = await anon.get("/readyz", headers=OPERATOR)
    assert ready.status_code == 200
    assert ready.headers["content-type"].startswith("application/json")
    body = ready.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["status"] == "ok"
    pool = body["checks"]["database"]["pool"]
    assert pool["readers"] >= 1
    assert 0 <= pool["readers_busy"] <= pool["readers"]
    assert body["checks"]["bus"]["status"] == "ok"
    assert body["checks"]["rate_limits"]["status"] == "ok"


async def test_openapi_lists_the_v1_api(anon: httpx.AsyncClient) -> None:
    resp = await anon.get("/openapi.json")
    assert resp.status_code == 200
    spec = resp.json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    assert "post" in paths["/api/v1/messages"]
    for path in [
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/users/me",
        "/api/v1/teams",
        "/api/v1/teams/{team_id}/members",
        "/api/v1/teams/{team_id}/channels",
        "/api/v1/channels/{channel_id}/messages",
        "/api/v1/channels/{channel_id}/events",
        "/api/v1/channels/{channel_id}/read",
        "/api/v1/dms",
        "/api/v1/messages/{message_id}",
    ]:
        assert path in paths, path
