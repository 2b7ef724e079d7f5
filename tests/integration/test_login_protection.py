"""Sign-in lockout through the API, and which client address the rate limits see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.integration.rest_support import assert_problem
from tests.support import ServerProcess, running_server, unique

PASSWORD = "correct horse"


@pytest.fixture
async def anon(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def login(anon: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await anon.post("/api/v1/auth/login", json={"email": email, "password": password})


async def test_failed_logins_lock_the_account_even_for_the_right_password(
    anon: httpx.AsyncClient,
) -> None:
    email = f"{unique('lock')}@example.com"
    resp = await anon.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "display_name": "L"}
    )
    assert resp.status_code == 201, resp.text
    for _ in range(5):  # the free attempts
        assert_problem(await login(anon, email, "wrong password"), 401, "invalid_credentials")
    assert_problem(await login(anon, email, "wrong password"), 401, "invalid_credentials")
    resp = await login(anon, email, PASSWORD)
    body = assert_problem(resp, 429, "login_locked")
    assert resp.headers["retry-after"] == "1"
    assert "try again in 1 s" in body["detail"]


async def test_an_unknown_address_is_answered_exactly_like_a_known_one(
    anon: httpx.AsyncClient,
) -> None:
    known = f"{unique('known')}@example.com"
    ghost = f"{unique('ghost')}@example.com"
    resp = await anon.post(
        "/api/v1/auth/register", json={"email": known, "password": PASSWORD, "display_name": "K"}
    )
    assert resp.status_code == 201
    answers: dict[str, list[tuple[int, bytes, str | None]]] = {known: [], ghost: []}
    for email in (known, ghost):
        for _ in range(8):
            resp = await login(anon, email, "wrong password")
            answers[email].append((resp.status_code, resp.content, resp.headers.get("retry-after")))
    assert answers[known] == answers[ghost]
    assert [status for status, _, _ in answers[known]] == [401] * 6 + [429] * 2


@pytest.fixture(scope="module")
async def limited(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    """A node with a small per-address budget, trusting no proxy (the default)."""
    tmp: Path = tmp_path_factory.mktemp("untrusting")
    async with running_server(tmp, RTC_LIMITS__ANONYMOUS_REQUESTS_PER_MINUTE="5") as server:
        yield server


@pytest.fixture(scope="module")
async def behind_proxy(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    """A node that believes X-Forwarded-For from loopback, as behind a local proxy."""
    tmp: Path = tmp_path_factory.mktemp("trusting")
    async with running_server(
        tmp, RTC_LIMITS__ANONYMOUS_REQUESTS_PER_MINUTE="5", RTC_TRUSTED_PROXIES="127.0.0.1"
    ) as server:
        yield server


async def guesses(server: ServerProcess, count: int) -> list[int]:
    """Statuses of `count` logins, each claiming another X-Forwarded-For address."""
    statuses = []
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for n in range(count):
            resp = await client.post(
                "/api/v1/auth/login",
                json={"email": f"{unique('xff')}@example.com", "password": "guess"},
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
            )
            statuses.append(resp.status_code)
    return statuses


async def test_a_forged_forwarded_for_does_not_buy_a_new_budget(limited: ServerProcess) -> None:
    assert await guesses(limited, 8) == [401] * 5 + [429] * 3


async def test_a_trusted_proxy_s_forwarded_for_names_the_client(
    behind_proxy: ServerProcess,
) -> None:
    assert await guesses(behind_proxy, 8) == [401] * 8
