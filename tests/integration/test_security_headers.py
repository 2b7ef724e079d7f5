"""Security headers on every kind of response: the page, its files, the API, errors,
signed downloads and the node's own early answers (413); /docs off by default."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from realtimechat.web import STATIC_DIR
from tests.support import Api, ServerProcess, running_server

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def directives(resp: httpx.Response) -> dict[str, str]:
    """The response's Content-Security-Policy as {directive: sources}."""
    values = resp.headers.get_list("content-security-policy")
    assert len(values) == 1, values
    out: dict[str, str] = {}
    for part in values[0].split(";"):
        name, _, sources = part.strip().partition(" ")
        out[name] = sources
    return out


def assert_secured(resp: httpx.Response) -> dict[str, str]:
    """Every header every response carries, exactly once; the CSP's directives."""
    for name, value in COMMON.items():
        assert resp.headers.get_list(name) == [value], (resp.request.url, name)
    csp = directives(resp)
    assert csp["frame-ancestors"] == "'none'"
    assert csp["base-uri"] == "'none'"
    assert "'unsafe-inline'" not in str(csp)
    assert "'unsafe-eval'" not in str(csp)
    return csp


@pytest.fixture
async def anon(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield client


async def test_the_page_and_its_files_allow_only_their_own_origin(
    anon: httpx.AsyncClient,
) -> None:
    for path in ("/", "/static/app.js", "/static/style.css", "/static/missing.js"):
        resp = await anon.get(path)
        assert resp.status_code == (404 if "missing" in path else 200), path
        csp = assert_secured(resp)
        assert csp["default-src"] == "'self'", path
        assert csp["object-src"] == "'none'", path
        assert "script-src" not in csp  # default-src 'self': no inline script anywhere


def test_the_page_has_no_inline_script_or_style() -> None:
    html = (STATIC_DIR / "index.html").read_text()
    assert "<style" not in html
    assert " style=" not in html
    for tag in html.split("<script")[1:]:
        assert 'src="/static/' in tag.split(">", 1)[0]
        assert tag.split(">", 1)[1].startswith("</script>")


async def test_api_answers_and_errors_load_nothing(
    anon: httpx.AsyncClient, alice: Api, server: ServerProcess
) -> None:
    answers = [
        await alice.request("GET", "/api/v1/users/me"),  # 200
        await anon.get("/api/v1/users/me"),  # 401 problem
        await anon.get("/api/v1/nothing-here"),  # 404 problem
        await alice.request("POST", "/api/v1/teams", json={"name": 5}),  # 422 problem
        await anon.get("/livez"),
        await anon.get("/readyz"),
        await anon.get("/openapi.json"),
        # Refused by the body guard before any route runs.
        await anon.post(
            "/api/v1/auth/login",
            content=b"x" * (300 * 1024),
            headers={"content-type": "application/json"},
        ),
    ]
    assert [r.status_code for r in answers] == [200, 401, 404, 422, 200, 200, 200, 413]
    for resp in answers:
        csp = assert_secured(resp)
        assert csp["default-src"] == "'none'", resp.request.url


async def test_a_downloaded_file_is_sandboxed(alice: Api) -> None:
    team = await alice.create_team("files")
    data = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"
    created = await alice.ok(
        "POST",
        "/api/v1/files",
        201,
        json={
            "team_id": team["id"],
            "name": "drawing.svg",
            "size": len(data),
            "content_type": "image/svg+xml",
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    )
    async with httpx.AsyncClient(timeout=30) as http:
        upload = created["upload"]
        put = await http.request(
            upload["method"], upload["url"], content=data, headers=upload["headers"]
        )
        assert put.status_code in (200, 201, 204), put.text
        assert_secured(put)
        await alice.ok("POST", f"/api/v1/files/{created['id']}/complete", 200)
        redirect = await alice.request("GET", f"/api/v1/files/{created['id']}")
        assert redirect.status_code == 302
        assert_secured(redirect)
        got = await http.get(redirect.headers["location"])
        assert got.status_code == 200
        assert got.content == data
        csp = assert_secured(got)
        assert "sandbox" in csp
        assert csp["default-src"] == "'none'"
        # A tampered link is refused, sandboxed just the same.
        bad = await http.get(redirect.headers["location"] + "0")
        assert bad.status_code in (403, 404)
        assert "sandbox" in assert_secured(bad)


async def test_swagger_ui_is_off_by_default_but_the_openapi_document_is_served(
    anon: httpx.AsyncClient,
) -> None:
    assert (await anon.get("/docs")).status_code == 404
    spec = await anon.get("/openapi.json")
    assert spec.status_code == 200
    assert spec.json()["openapi"].startswith("3.")


async def test_swagger_ui_when_enabled_may_use_its_cdn_on_docs_only(tmp_path: Path) -> None:
    async with (
        running_server(tmp_path, RTC_API_DOCS="true") as srv,
        httpx.AsyncClient(base_url=srv.url, timeout=30) as http,
    ):
        docs = await http.get("/docs")
        assert docs.status_code == 200
        assert "cdn.jsdelivr.net" in docs.text
        for name, value in COMMON.items():
            assert docs.headers[name] == value
        csp = directives(docs)
        assert "https://cdn.jsdelivr.net" in csp["script-src"]
        assert csp["frame-ancestors"] == "'none'"
        page = await http.get("/")
        assert "cdn.jsdelivr.net" not in page.headers["content-security-policy"]
