"""The web client in a real browser: not frameable from another origin, no token where a
script can read it, a reload keeps the session (the HttpOnly cookie), and the socket's
re-authentication and sign-out-elsewhere handling."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, WebSocket, expect

from tests.browser.conftest import OPEN_PAGES, screenshot
from tests.support import Api, ServerProcess, new_user, running_server, unique


async def logged_in(
    browser: Browser,
    server: ServerProcess,
    user: Api,
    on_socket: Callable[[WebSocket], None] | None = None,
) -> tuple[BrowserContext, Page, str]:
    """A page logged in through the form; the access token the login answered."""
    context = await browser.new_context()
    page = await context.new_page()
    OPEN_PAGES.append(page)
    if on_socket is not None:
        page.on("websocket", on_socket)
    await page.goto(server.url)
    await page.get_by_test_id("login-email").fill(user.email)
    await page.get_by_test_id("login-password").fill("correct horse")
    async with page.expect_response(lambda r: r.url.endswith("/api/v1/auth/login")) as answer:
        await page.get_by_test_id("login-submit").click()
    body = await (await answer.value).json()
    await expect(page.get_by_test_id("me")).to_have_text(user.email.split("-")[0])
    return context, page, str(body["access_token"])


async def storages(page: Page) -> str:
    """Everything a script of the page can read from storage, and its cookies."""
    return str(
        await page.evaluate(
            """() => JSON.stringify({local: {...localStorage}, session: {...sessionStorage},
                                     cookie: document.cookie})"""
        )
    )


@contextlib.contextmanager
def other_origin(html: str) -> Iterator[str]:
    """A page served from another origin on this machine (a routed page would count as
    public, and Chromium blocks a public page's frames to local addresses anyway)."""
    body = html.encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://localhost:{httpd.server_address[1]}/"  # another host, another port
    finally:
        httpd.shutdown()
        thread.join()


async def test_a_page_on_another_origin_cannot_frame_the_app(
    browser: Browser, server: ServerProcess
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    OPEN_PAGES.append(page)
    html = f'<!doctype html><title>evil</title><iframe id="f" src="{server.url}/"></iframe>'
    with other_origin(html) as evil:
        async with (
            page.expect_console_message(lambda m: "frame-ancestors" in m.text) as refused,
            page.expect_response(lambda r: r.url == f"{server.url}/") as framed,
        ):
            await page.goto(evil)
        assert (await framed.value).status == 200  # the node answered; the browser refused
        assert "blocked" in (await refused.value).text
        await expect(page.frame_locator("#f").locator("#app")).to_have_count(0)
        assert [f.url for f in page.frames][1:] != [f"{server.url}/"]
        await screenshot(page, "framed-by-another-origin")
    await context.close()


async def test_no_token_in_script_readable_storage_and_a_reload_keeps_the_session(
    browser: Browser, server: ServerProcess, alice: Api
) -> None:
    context, page, access = await logged_in(browser, server, alice)
    await expect(page.get_by_test_id("connection-state")).to_have_text("connected")
    [cookie] = [c for c in await context.cookies() if c["name"] == "rtc_refresh"]
    assert cookie["httpOnly"] is True
    assert cookie["secure"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/api/v1/auth"
    readable = await storages(page)
    assert access not in readable
    assert cookie["value"] not in readable
    assert "eyJ" not in readable  # no JWT of any kind

    await page.reload()
    await expect(page.get_by_test_id("me")).to_have_text("alice")
    await expect(page.get_by_test_id("connection-state")).to_have_text("connected")
    assert await page.get_by_test_id("login-form").count() == 0
    readable = await storages(page)
    assert "eyJ" not in readable
    assert cookie["value"] not in readable

    await page.get_by_test_id("logout").click()
    await expect(page.get_by_test_id("login-form")).to_be_visible()
    assert [c for c in await context.cookies() if c["name"] == "rtc_refresh"] == []
    await page.reload()
    await expect(page.get_by_test_id("login-form")).to_be_visible()
    await context.close()


async def test_adding_a_member_by_email_that_is_invited_says_so(
    browser: Browser, server: ServerProcess, alice: Api
) -> None:
    context, page, _ = await logged_in(browser, server, alice)
    await page.get_by_test_id("new-team-name").fill("Acme")
    await page.get_by_test_id("new-team-submit").click()
    await expect(page.get_by_test_id("team-item").filter(has_text="Acme")).to_have_count(1)
    # The server answers 202 for an invitation, whether or not the address has an account.
    await page.get_by_text("Team actions").click()
    await page.get_by_test_id("add-member-email").fill(f"{unique('newcomer')}@example.com")
    async with page.expect_response(lambda r: r.url.endswith("/members")) as answer:
        await page.get_by_test_id("add-member-submit").click()
    assert (await answer.value).status == 202
    await expect(page.get_by_test_id("notice")).to_contain_text("Invitation sent to newcomer")
    assert await page.get_by_test_id("error-banner").count() == 0
    await context.close()


@pytest.fixture(scope="module")
async def short_tokens(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServerProcess]:
    """A node whose access tokens live 4 s, so the page renews one within the test."""
    async with running_server(
        tmp_path_factory.mktemp("short-tokens"), RTC_AUTH__ACCESS_TTL_S="4"
    ) as server:
        yield server


async def test_the_socket_reauthenticates_after_a_refresh_and_a_revoked_session_signs_out(
    browser: Browser, short_tokens: ServerProcess
) -> None:
    server = short_tokens
    alice = await new_user(server, "alice")
    auths: asyncio.Queue[str] = asyncio.Queue()
    sockets: list[WebSocket] = []

    def watch(ws: WebSocket) -> None:
        sockets.append(ws)

        def on_sent(payload: str | bytes) -> None:
            frame = json.loads(payload)
            if frame.get("type") == "auth":
                auths.put_nowait(frame["token"])

        ws.on("framesent", on_sent)

    context, page, _ = await logged_in(browser, server, alice, on_socket=watch)
    await expect(page.get_by_test_id("connection-state")).to_have_text("connected")
    first = await asyncio.wait_for(auths.get(), 10)
    renewed = await asyncio.wait_for(auths.get(), 10)  # before the 4 s are up, same socket
    assert renewed != first
    assert len(sockets) == 1
    async with httpx.AsyncClient(base_url=server.url) as http:
        me = await http.get("/api/v1/users/me", headers={"Authorization": f"Bearer {renewed}"})
        assert me.status_code == 200
        # Sign this browser's login out from elsewhere (as another device would).
        [cookie] = [c for c in await context.cookies() if c["name"] == "rtc_refresh"]
        out = await http.post("/api/v1/auth/logout", json={"refresh_token": cookie["value"]})
        assert out.status_code == 204
    await expect(page.get_by_test_id("login-form")).to_be_visible()
    await expect(page.get_by_test_id("error-banner")).to_contain_text("another device")
    assert len(sockets) == 1  # no reconnect after a revoked session
    await context.close()
    await alice.aclose()
