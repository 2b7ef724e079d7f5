"""/openapi.json documents what the server answers: bodies, problem+json errors, bearer auth."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess

# The only calls made before login, and the health probes.
ANONYMOUS = {
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/livez"),
    ("GET", "/readyz"),
}
ADMIN = {("GET", "/api/v1/admin/flags"), ("PUT", "/api/v1/admin/flags/{name}")}
NO_BODY = {204, 302, 304}
PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


@pytest.fixture
async def spec(server: ServerProcess) -> AsyncIterator[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        resp = await client.get("/openapi.json")
        assert resp.status_code == 200
        yield resp.json()


def operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def component(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    prefix = "#/components/schemas/"
    assert ref.startswith(prefix), ref
    found: dict[str, Any] = spec["components"]["schemas"][ref.removeprefix(prefix)]
    return found


async def test_every_success_answer_has_its_body_schema(spec: dict[str, Any]) -> None:
    ops = list(operations(spec))
    assert len(ops) >= 43
    for method, path, operation in ops:
        success = {int(s): r for s, r in operation["responses"].items() if int(s) < 400}
        assert success, f"{method} {path} documents no success answer"
        for status, response in success.items():
            where = f"{method} {path} {status}"
            if status in NO_BODY:
                assert "content" not in response, where
                continue
            assert list(response["content"]) == ["application/json"], where
            schema = response["content"]["application/json"]["schema"]
            assert "$ref" in schema, f"{where}: no response model (edge/openapi.py TABLE)"
            model = component(spec, schema["$ref"])
            assert model["type"] == "object", where
            assert model["properties"], where
            # Exactly the fields the server sends: no others may appear.
            assert model["additionalProperties"] is False, where
            assert set(model["required"]) <= set(model["properties"]), where


async def test_every_error_is_documented_as_problem_json(spec: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in json.dumps(spec)
    problem = spec["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "code"}
    assert {"type", "title", "status", "code", "detail"} <= set(problem["properties"])
    assert problem["additionalProperties"] is True  # errors, field, current_version, ...
    for method, path, operation in operations(spec):
        responses = operation["responses"]
        for status, response in responses.items():
            if int(status) >= 400 and (method, path, status) != ("GET", "/readyz", "503"):
                assert response["content"] == PROBLEM, f"{method} {path} {status}"
        documented = {int(s) for s in responses}
        params = {p["in"] for p in operation.get("parameters", [])}
        expected = set()
        if path not in ("/livez", "/readyz"):  # the probes bypass the request guards
            expected |= {413, 503}
        if "security" in operation:
            expected.add(401)
        if "path" in params:
            expected.add(404)
        if "requestBody" in operation:
            expected |= {400, 415, 422}
        if params:
            expected.add(422)
        if path.startswith("/api/v1/auth/") or operation.get("security") == [{"bearer": []}]:
            expected.add(429)
        assert expected <= documented, f"{method} {path}: {sorted(expected - documented)}"


async def test_specific_errors_are_documented(spec: dict[str, Any]) -> None:
    def statuses(method: str, path: str) -> set[int]:
        return {int(s) for s in spec["paths"][path][method.lower()]["responses"]}

    assert {409} <= statuses("POST", "/api/v1/auth/register")
    assert {401} <= statuses("POST", "/api/v1/auth/login")
    assert {403, 404, 422} <= statuses("POST", "/api/v1/messages")
    assert {403, 410, 412, 428} <= statuses("PUT", "/api/v1/messages/{message_id}")
    assert {403, 412, 428} <= statuses("DELETE", "/api/v1/messages/{message_id}")
    assert {404, 409, 413} <= statuses("POST", "/api/v1/files")
    assert {409, 422} <= statuses("POST", "/api/v1/files/{file_id}/complete")
    assert {404} <= statuses("POST", "/api/v1/dms")
    etag = spec["paths"]["/api/v1/messages/{message_id}"]["get"]["responses"]["200"]["headers"]
    assert etag["ETag"]["required"] is True
    redirect = spec["paths"]["/api/v1/files/{file_id}"]["get"]["responses"]
    assert set(redirect) & {"200", "302"} == {"302"}
    assert redirect["302"]["headers"]["Location"]["required"] is True


async def test_security_is_required_exactly_where_a_token_is(
    spec: dict[str, Any], server: ServerProcess
) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearer"]["description"],
    }
    assert schemes["admin"]["scheme"] == "bearer"
    unsecured = {(m, p) for m, p, op in operations(spec) if "security" not in op}
    assert unsecured == ANONYMOUS
    admin = {(m, p) for m, p, op in operations(spec) if op.get("security") == [{"admin": []}]}
    assert admin == ADMIN
    # The documentation is true: without a token each bearer operation answers 401.
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as anon:
        for method, path, operation in operations(spec):
            if operation.get("security") != [{"bearer": []}]:
                continue
            resp = await anon.request(method, path.replace("{", "").replace("}", ""))
            assert resp.status_code == 401, f"{method} {path}: {resp.status_code}"
            assert resp.headers["content-type"] == "application/problem+json"
