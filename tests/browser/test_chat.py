"""Two people chat in two browsers; one goes offline and its sends arrive once."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import OPEN_PAGES, screenshot
from tests.support import Api, ServerProcess, team_channel


async def open_chat(
    browser: Browser, server: ServerProcess, user: Api
) -> tuple[BrowserContext, Page]:
    context = await browser.new_context()
    page = await context.new_page()
    OPEN_PAGES.append(page)
    await page.goto(server.url)
    await page.get_by_test_id("login-email").fill(user.email)
    await page.get_by_test_id("login-password").fill("correct horse")
    await page.get_by_test_id("login-submit").click()
    await expect(page.get_by_test_id("connection-state")).to_have_text("connected")
    return context, page


async def open_channel(page: Page, name: str) -> None:
    await page.get_by_test_id("channel-item").filter(has_text=name).first.click()
    await expect(page.get_by_test_id("composer")).to_be_visible()


async def say(page: Page, text: str) -> None:
    await page.get_by_test_id("composer").fill(text)
    await page.get_by_test_id("composer").press("Enter")


@pytest.fixture
async def room(alice: Api, bob: Api) -> str:
    """#general in team Acme, with alice and bob in it."""
    return str((await team_channel(alice, bob))["id"])


async def test_two_people_chat_both_ways(
    browser: Browser, server: ServerProcess, alice: Api, bob: Api, room: str
) -> None:
    ctx_a, page_a = await open_chat(browser, server, alice)
    ctx_b, page_b = await open_chat(browser, server, bob)
    await open_channel(page_a, "general")
    await open_channel(page_b, "general")

    await say(page_a, "hello bob")
    await expect(page_b.get_by_test_id("message").filter(has_text="hello bob")).to_have_count(1)
    await say(page_b, "hi alice")
    await expect(page_a.get_by_test_id("message").filter(has_text="hi alice")).to_have_count(1)
    for page in (page_a, page_b):
        for text in ("hello bob", "hi alice"):
            mine = page.get_by_test_id("message").filter(has_text=text)
            await expect(mine).to_have_count(1)
            await expect(mine).to_have_attribute("data-state", "sent")
    await screenshot(page_a, "chat-alice")
    await screenshot(page_b, "chat-bob")
    await ctx_a.close()
    await ctx_b.close()


async def test_sends_while_offline_are_pending_then_arrive_once(
    browser: Browser, server: ServerProcess, alice: Api, bob: Api, room: str
) -> None:
    ctx_a, page_a = await open_chat(browser, server, alice)
    ctx_b, page_b = await open_chat(browser, server, bob)
    await open_channel(page_a, "general")
    await open_channel(page_b, "general")

    await ctx_a.set_offline(True)
    await expect(page_a.get_by_test_id("connection-state")).not_to_have_text("connected")
    await say(page_a, "first while offline")
    await say(page_a, "second while offline")
    for text in ("first while offline", "second while offline"):
        pending = page_a.get_by_test_id("message").filter(has_text=text)
        await expect(pending).to_have_attribute("data-state", "pending")
    await screenshot(page_a, "offline-pending")

    await ctx_a.set_offline(False)
    for page in (page_a, page_b):
        for text in ("first while offline", "second while offline"):
            arrived = page.get_by_test_id("message").filter(has_text=text)
            await expect(arrived).to_have_count(1, timeout=20_000)
            await expect(arrived).to_have_attribute("data-state", "sent", timeout=20_000)
    stored = [e for e in await alice.events(room) if e["event"] == "message.created"]
    assert sorted(e["data"]["body"] for e in stored) == [
        "first while offline",
        "second while offline",
    ]
    await screenshot(page_b, "offline-arrived")
    await ctx_a.close()
    await ctx_b.close()
