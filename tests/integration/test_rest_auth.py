"""REST contract: register, login, who am I, refresh rotation with reuse detection, logout."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.integration.rest_support import assert_problem, assert_timestamp
from tests.support import Api, ServerProcess, unique

PASSWORD = "correct horse"


@pytest.fixture
async def anon(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def register(
    anon: httpx.AsyncClient, email: str, password: str = PASSWORD, name: str = "Ann"
) -> httpx.Response:
    return await anon.post(
        "/api/v1/auth/register",
        json={"email": email, "password": password, "display_name": name},
    )


async def login(anon: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await anon.post("/api/v1/auth/login", json={"email": email, "password": password})


async def refresh(anon: httpx.AsyncClient, token: str) -> httpx.Response:
    return await anon.post("/api/v1/auth/refresh", json={"refresh_token": token})


def assert_token_pair(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    pair: dict[str, Any] = resp.json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 900
    assert isinstance(pair["access_token"], str)
    assert pair["access_token"].count(".") == 2
    assert isinstance(pair["refresh_token"], str)
    assert len(pair["refresh_token"]) >= 32
    return pair


async def whoami(anon: httpx.AsyncClient, access_token: str) -> httpx.Response:
    return await anon.get("/api/v1/users/me", headers={"Authorization": f"Bearer {access_token}"})


async def test_register_answers_201_with_the_user(anon: httpx.AsyncClient) -> None:
    email = f"{unique('Reg')}@Example.com"
    resp = await register(anon, email, name="  Ann Example ")
    assert resp.status_code == 201, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    user = resp.json()
    assert set(user) == {"id", "email", "display_name", "created_at"}
    assert user["email"] == email.lower()
    assert user["display_name"] == "Ann Example"
    assert len(user["id"]) == 36
    assert_timestamp(user["created_at"])


async def test_duplicate_email_is_409_email_taken(anon: httpx.AsyncClient) -> None:
    email = f"{unique('dup')}@example.com"
    assert (await register(anon, email)).status_code == 201
    assert_problem(await register(anon, email), 409, "email_taken")
    # E-mail addresses compare without case.
    assert_problem(await register(anon, email.upper()), 409, "email_taken")


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("not-an-email", PASSWORD),
        ("two@@example.com", PASSWORD),
        ("spaces in@example.com", PASSWORD),
        ("nodot@example", PASSWORD),
        (None, "short"),
        (None, ""),
    ],
)
async def test_bad_email_or_short_password_is_422(
    anon: httpx.AsyncClient, email: str | None, password: str
) -> None:
    address = email or f"{unique('ok')}@example.com"
    assert_problem(await register(anon, address, password), 422, "validation_error")
    if email is None:
        # Nothing was stored: the address is still free.
        assert (await register(anon, address)).status_code == 201


async def test_short_password_problem_lists_the_field(anon: httpx.AsyncClient) -> None:
    resp = await register(anon, f"{unique('pw')}@example.com", "1234567")
    body = assert_problem(resp, 422, "validation_error")
    assert any(err["loc"][-1] == "password" for err in body["errors"]), body


async def test_login_answers_a_bearer_token_pair(anon: httpx.AsyncClient) -> None:
    email = f"{unique('login')}@example.com"
    user = (await register(anon, email)).json()
    pair = assert_token_pair(await login(anon, email.upper()))
    me = await whoami(anon, pair["access_token"])
    assert me.status_code == 200, me.text
    assert me.json()["id"] == user["id"]


async def test_wrong_password_and_unknown_email_are_401_invalid_credentials(
    anon: httpx.AsyncClient,
) -> None:
    email = f"{unique('wrong')}@example.com"
    assert (await register(anon, email)).status_code == 201
    wrong = assert_problem(await login(anon, email, "not the password"), 401, "invalid_credentials")
    unknown = assert_problem(
        await login(anon, f"{unique('nobody')}@example.com"), 401, "invalid_credentials"
    )
    # The two must not tell an attacker which e-mail addresses exist.
    assert wrong == unknown


async def test_users_me_is_the_caller(alice: Api, bob: Api) -> None:
    me = await alice.ok("GET", "/api/v1/users/me", 200)
    assert set(me) == {"id", "email", "display_name", "created_at"}
    assert me["id"] == alice.user_id
    assert me["email"] == alice.email
    assert me["display_name"] == "alice"
    assert (await bob.ok("GET", "/api/v1/users/me", 200))["id"] == bob.user_id


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(
    anon: httpx.AsyncClient,
) -> None:
    email = f"{unique('rot')}@example.com"
    assert (await register(anon, email)).status_code == 201
    first = assert_token_pair(await login(anon, email))
    other_login = assert_token_pair(await login(anon, email))

    second = assert_token_pair(await refresh(anon, first["refresh_token"]))
    assert second["refresh_token"] != first["refresh_token"]
    assert (await whoami(anon, second["access_token"])).status_code == 200
    third = assert_token_pair(await refresh(anon, second["refresh_token"]))
    assert third["refresh_token"] not in (first["refresh_token"], second["refresh_token"])

    # Presenting an already-rotated token again means someone holds a stolen copy.
    resp = await refresh(anon, first["refresh_token"])
    assert_problem(resp, 401, "refresh_token_reused")
    assert resp.headers["www-authenticate"].lower().startswith("bearer")
    # ... so the newest token of that family is dead too: revoked, though never used.
    resp = await refresh(anon, third["refresh_token"])
    assert_problem(resp, 401, "refresh_token_revoked")
    assert resp.headers["www-authenticate"].lower().startswith("bearer")
    assert_problem(await refresh(anon, second["refresh_token"]), 401, "refresh_token_reused")
    # The login's access tokens end with it, before their 15 minutes are up.
    for pair in (first, second, third):
        assert_problem(await whoami(anon, pair["access_token"]), 401, "session_revoked")
    # Another login of the same user is another family and keeps working.
    assert (await whoami(anon, other_login["access_token"])).status_code == 200
    assert_token_pair(await refresh(anon, other_login["refresh_token"]))


async def test_unknown_refresh_token_is_401(anon: httpx.AsyncClient) -> None:
    assert_problem(await refresh(anon, "no-such-token-" + "x" * 40), 401, "unauthorized")
    assert_problem(
        await anon.post("/api/v1/auth/refresh", json={"refresh_token": ""}),
        422,
        "validation_error",
    )


async def test_logout_revokes_the_family(anon: httpx.AsyncClient) -> None:
    email = f"{unique('out')}@example.com"
    assert (await register(anon, email)).status_code == 201
    first = assert_token_pair(await login(anon, email))
    second = assert_token_pair(await refresh(anon, first["refresh_token"]))
    kept = assert_token_pair(await login(anon, email))

    resp = await anon.post("/api/v1/auth/logout", json={"refresh_token": second["refresh_token"]})
    assert resp.status_code == 204, resp.text
    assert resp.content == b""
    # The signed-out token was never used: no sign of theft, just a signed-out login,
    # and presenting it again changes nothing.
    for _ in range(2):
        resp = await refresh(anon, second["refresh_token"])
        body = assert_problem(resp, 401, "refresh_token_revoked")
        assert body["detail"] == "this login was signed out or revoked; log in again"
        assert resp.headers["www-authenticate"].lower().startswith("bearer")
    # The token rotated before the logout was used already: presenting it again is reuse.
    assert_problem(await refresh(anon, first["refresh_token"]), 401, "refresh_token_reused")
    # Its access tokens are refused at once, not when they expire.
    for pair in (first, second):
        resp = await whoami(anon, pair["access_token"])
        assert_problem(resp, 401, "session_revoked")
        assert resp.headers["www-authenticate"].lower().startswith("bearer")
    # Logging out one session leaves the user's other logins alone.
    assert (await whoami(anon, kept["access_token"])).status_code == 200
    assert_token_pair(await refresh(anon, kept["refresh_token"]))


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer garbage",
        "Bearer a.b.c",
        "Basic dXNlcjpwYXNz",
        "TAMPERED",
    ],
)
async def test_missing_or_bad_bearer_is_401_problem(
    anon: httpx.AsyncClient, alice: Api, authorization: str | None
) -> None:
    headers: dict[str, str] = {}
    if authorization == "TAMPERED":
        token = alice.token or ""
        head, payload, signature = token.split(".")
        flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
        headers["Authorization"] = f"Bearer {head}.{payload}.{flipped}"
    elif authorization is not None:
        headers["Authorization"] = authorization
    for method, path in [("GET", "/api/v1/users/me"), ("GET", "/api/v1/teams")]:
        resp = await anon.request(method, path, headers=headers)
        assert_problem(resp, 401, "unauthorized")
        assert resp.headers["www-authenticate"].lower().startswith("bearer")
    # A POST with a body is refused before the body matters.
    resp = await anon.post("/api/v1/teams", headers=headers, json={"name": "x"})
    assert_problem(resp, 401, "unauthorized")
