"""Browser sessions: the refresh token in an HttpOnly cookie (cookie mode), CSRF-checked;
the JSON-body flow of the SDK and bots unchanged beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest

from tests.integration.rest_support import assert_problem
from tests.support import ServerProcess, new_user

COOKIE_MODE = {"X-RTC-Session": "cookie"}
CSRF = {"X-RTC-CSRF": "1"}


@pytest.fixture
async def anon(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    # No cookie jar use: httpx would not send a Secure cookie over http, and each call
    # here says exactly which cookie it sends.
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


def set_cookie(resp: httpx.Response) -> SimpleCookie:
    """The response's one Set-Cookie header, parsed."""
    headers = resp.headers.get_list("set-cookie")
    assert len(headers) == 1, headers
    jar = SimpleCookie()
    jar.load(headers[0])
    assert list(jar) == ["rtc_refresh"], headers
    return jar


def session_cookie(resp: httpx.Response, max_age: int = 30 * 24 * 3600) -> str:
    """The refresh token the response set, after checking every attribute of its cookie."""
    morsel = set_cookie(resp)["rtc_refresh"]
    raw = resp.headers["set-cookie"].lower()
    assert "httponly" in raw
    assert "secure" in raw
    assert morsel["samesite"].lower() == "strict"
    assert morsel["path"] == "/api/v1/auth"
    assert int(morsel["max-age"]) == max_age
    assert len(morsel.value) >= 32
    return morsel.value


def assert_cleared(resp: httpx.Response) -> None:
    morsel = set_cookie(resp)["rtc_refresh"]
    assert morsel["path"] == "/api/v1/auth"
    assert morsel.value in ("", '""')
    assert int(morsel["max-age"]) == 0


def assert_access_only(resp: httpx.Response) -> dict[str, Any]:
    """A token answer in cookie mode: the access token, no refresh token in the JSON."""
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert resp.headers["cache-control"] == "no-store"
    return body


async def cookie_login(anon: httpx.AsyncClient, server: ServerProcess) -> tuple[str, str, str]:
    """A fresh user logged in with cookie mode: (email, access token, refresh cookie)."""
    user = await new_user(server, "cookie")
    await user.aclose()
    resp = await anon.post(
        "/api/v1/auth/login",
        json={"email": user.email, "password": "correct horse"},
        headers=COOKIE_MODE,
    )
    body = assert_access_only(resp)
    return user.email, body["access_token"], session_cookie(resp)


async def refresh_by_cookie(
    anon: httpx.AsyncClient, cookie: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await anon.post(
        "/api/v1/auth/refresh",
        headers={"Cookie": f"rtc_refresh={cookie}", **CSRF, **(headers or {})},
    )


async def test_cookie_login_sets_an_httponly_cookie_and_refresh_by_cookie_rotates_it(
    anon: httpx.AsyncClient, server: ServerProcess
) -> None:
    _, access, cookie = await cookie_login(anon, server)
    me = await anon.get("/api/v1/users/me", headers={"Authorization": f"Bearer {access}"})
    assert me.status_code == 200

    resp = await refresh_by_cookie(anon, cookie, {"Origin": server.url})
    body = assert_access_only(resp)
    rotated = session_cookie(resp)
    assert rotated != cookie
    me = await anon.get(
        "/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    # The rotated-away cookie presented again is reuse: the login is revoked, and the
    # answer drops the cookie.
    reused = await refresh_by_cookie(anon, cookie)
    assert_problem(reused, 401, "refresh_token_reused")
    assert_cleared(reused)
    assert_problem(await refresh_by_cookie(anon, rotated), 401, "refresh_token_revoked")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-RTC-CSRF": ""},  # no CSRF header: what a cross-site form sends
        {"X-RTC-CSRF": "0"},
        {"X-RTC-CSRF": "1", "Origin": "https://evil.example"},
        {"X-RTC-CSRF": "1", "Origin": "null"},
    ],
)
async def test_a_cookie_refresh_without_csrf_proof_is_403_and_changes_nothing(
    anon: httpx.AsyncClient, server: ServerProcess, headers: dict[str, str]
) -> None:
    _, _, cookie = await cookie_login(anon, server)
    for path in ("/api/v1/auth/refresh", "/api/v1/auth/logout"):
        resp = await anon.post(path, headers={"Cookie": f"rtc_refresh={cookie}", **headers})
        assert_problem(resp, 403, "csrf_refused")
        assert "set-cookie" not in resp.headers
    # Neither the refused refresh nor the refused logout touched the login.
    session_cookie(await refresh_by_cookie(anon, cookie))


async def test_logout_by_cookie_signs_out_and_clears_the_cookie(
    anon: httpx.AsyncClient, server: ServerProcess
) -> None:
    _, _, cookie = await cookie_login(anon, server)
    resp = await anon.post(
        "/api/v1/auth/logout",
        headers={"Cookie": f"rtc_refresh={cookie}", "Origin": server.url, **CSRF},
    )
    assert resp.status_code == 204, resp.text
    assert_cleared(resp)
    after = await refresh_by_cookie(anon, cookie)
    assert_problem(after, 401, "refresh_token_revoked")
    assert_cleared(after)


async def test_refresh_with_neither_body_nor_cookie_is_401(anon: httpx.AsyncClient) -> None:
    assert_problem(await anon.post("/api/v1/auth/refresh", headers=CSRF), 401, "unauthorized")
    assert (await anon.post("/api/v1/auth/logout")).status_code == 204


async def test_the_json_body_flow_is_unchanged_and_sets_no_cookie(
    anon: httpx.AsyncClient, server: ServerProcess
) -> None:
    user = await new_user(server, "sdk")
    await user.aclose()
    login = await anon.post(
        "/api/v1/auth/login", json={"email": user.email, "password": "correct horse"}
    )
    assert login.status_code == 200
    assert "set-cookie" not in login.headers
    pair = login.json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    resp = await anon.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert resp.status_code == 200
    assert "set-cookie" not in resp.headers
    assert set(resp.json()) == {"access_token", "refresh_token", "token_type", "expires_in"}
    # The body wins over a cookie and needs no CSRF header: it is no ambient credential.
    _, _, cookie = await cookie_login(anon, server)
    again = await anon.post(
        "/api/v1/auth/refresh",
        json={"refresh_token": resp.json()["refresh_token"]},
        headers={"Cookie": f"rtc_refresh={cookie}"},
    )
    assert again.status_code == 200
    assert "refresh_token" in again.json()
    out = await anon.post(
        "/api/v1/auth/logout", json={"refresh_token": again.json()["refresh_token"]}
    )
    assert out.status_code == 204
    assert "set-cookie" not in out.headers
    session_cookie(await refresh_by_cookie(anon, cookie))  # the cookie's login is untouched


async def test_a_json_refresh_token_can_move_into_cookie_mode(
    anon: httpx.AsyncClient, server: ServerProcess
) -> None:
    user = await new_user(server, "move")
    await user.aclose()
    resp = await anon.post(
        "/api/v1/auth/refresh", json={"refresh_token": user.refresh_token}, headers=COOKIE_MODE
    )
    assert_access_only(resp)
    session_cookie(resp)
