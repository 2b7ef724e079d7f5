"""/livez and the statuses of /readyz are open; /metrics and the details of /readyz are
the operator's (RTC_METRICS_TOKEN), and absent without a token configured."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.integration.rest_support import assert_problem
from tests.support import OPERATOR, Api, ServerProcess, running_server


@pytest.fixture
async def anon(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


def statuses_only(body: dict[str, object]) -> None:
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert {"database", "bus", "rate_limits", "storage", "notifications"} <= set(checks)
    for name, check in checks.items():
        assert check == {"status": check["status"]}, name
        assert check["status"] in ("ok", "degraded", "down"), name


async def test_readyz_shows_statuses_to_anyone_and_details_to_the_operator(
    anon: httpx.AsyncClient, alice: Api
) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {alice.token}"},
    ):
        resp = await anon.get("/readyz", headers=headers)
        assert resp.status_code == 200
        body = resp.json()
        assert body["status"] == "ok"
        statuses_only(body)
    full = (await anon.get("/readyz", headers=OPERATOR)).json()
    assert full["status"] == "ok"
    assert full["checks"]["database"]["pool"]["readers"] >= 1
    assert "latency_ms" in full["checks"]["database"]
    assert "jobs" in full["checks"]["notifications"]


async def test_metrics_need_the_operator_token(anon: httpx.AsyncClient, alice: Api) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {alice.token}"},
    ):
        resp = await anon.get("/metrics", headers=headers)
        assert_problem(resp, 401, "unauthorized")
        assert "rtc_" not in resp.text
    ok = await anon.get("/metrics", headers=OPERATOR)
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("text/plain")
    assert "rtc_http_requests_total" in ok.text
    assert (await anon.get("/livez")).json() == {"status": "ok"}


async def test_without_a_token_there_are_no_metrics_and_readyz_shows_statuses(
    tmp_path: Path,
) -> None:
    async with (
        running_server(tmp_path, RTC_METRICS_TOKEN="") as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as http,
    ):
        for headers in ({}, OPERATOR):
            assert_problem(await http.get("/metrics", headers=headers), 404, "not_found")
            ready = await http.get("/readyz", headers=headers)
            assert ready.status_code == 200
            statuses_only(ready.json())
        assert (await http.get("/livez")).status_code == 200
