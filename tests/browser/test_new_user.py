"""A new user's first minutes, through the page only; typing; a narrow screen."""

from __future__ import annotations

import uuid

from playwright.async_api import Browser, expect

from tests.browser.conftest import OPEN_PAGES, screenshot
from tests.browser.test_chat import open_channel, open_chat
from tests.support import Api, ServerProcess


async def test_register_create_team_and_channel_add_a_member_and_chat(
    browser: Browser, server: ServerProcess, bob: Api
) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 800})  # a phone
    page = await context.new_page()
    OPEN_PAGES.append(page)
    await page.goto(server.url)
    email = f"ada-{uuid.uuid4().hex[:8]}@example.com"
    await page.get_by_test_id("register-email").fill(email)
    await page.get_by_test_id("register-display-name").fill("Ada")
    await page.get_by_test_id("register-password").fill("correct horse")
    await page.get_by_test_id("register-submit").click()
    await expect(page.get_by_test_id("connection-state")).to_have_text("connected")

    await page.get_by_test_id("new-team-name").fill("Acme")
    await page.get_by_test_id("new-team-submit").click()
    await expect(page.get_by_test_id("team-item").filter(has_text="Acme")).to_have_count(1)
    await page.get_by_text("Team actions").click()
    await page.get_by_test_id("new-channel-name").fill("general")
    await page.get_by_test_id("new-channel-submit").click()
    await page.get_by_test_id("add-member-email").fill(bob.email)
    async with page.expect_response(
        lambda r: r.url.endswith("/members") and r.request.method == "POST"
    ) as added:
        await page.get_by_test_id("add-member-submit").click()
    assert (await added.value).status == 201
    await open_channel(page, "general")
    # Keyboard only: the composer is reachable and Enter sends.
    await page.get_by_test_id("composer").focus()
    await page.keyboard.type("first message")
    await page.keyboard.press("Enter")
    sent = page.get_by_test_id("message").filter(has_text="first message")
    await expect(sent).to_have_attribute("data-state", "sent")
    await screenshot(page, "new-user-narrow")

    teams = (await bob.ok("GET", "/api/v1/teams", 200))["teams"]
    assert [t["name"] for t in teams] == ["Acme"]
    # Every form control the user meets has an accessible name.
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll('input, textarea, select')]
             .filter(e => e.type !== 'hidden' && !e.labels?.length
                     && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))
             .map(e => e.outerHTML)"""
    )
    assert unlabelled == []
    await context.close()


async def test_typing_shows_on_the_other_screen(
    browser: Browser, server: ServerProcess, alice: Api, bob: Api
) -> None:
    team = await alice.create_team("Acme")
    await alice.add_to_team(team["id"], bob)
    channel = await alice.create_channel(team["id"], "general")
    await alice.join(channel["id"], bob)
    ctx_a, page_a = await open_chat(browser, server, alice)
    ctx_b, page_b = await open_chat(browser, server, bob)
    await open_channel(page_a, "general")
    await open_channel(page_b, "general")
    await page_b.get_by_test_id("composer").press_sequentially("hel")
    await expect(page_a.get_by_test_id("typing")).to_contain_text("bob")
    await ctx_a.close()
    await ctx_b.close()
