"""A new user's first minutes, through the page only; typing; a narrow screen."""

from __future__ import annotations

import uuid

from playwright.async_api import Browser, expect

from tests.browser.conftest import OPEN_PAGES, screenshot
from tests.browser.test_chat import open_channel, open_chat
from tests.support import Api, ServerProcess, team_channel


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
    async with page.expect_response(
        lambda r: r.url.endswith("/channels") and r.request.method == "POST"
    ) as created:
        await page.get_by_test_id("new-channel-submit").click()
    assert (await created.value).status == 201, await (await created.value).text()
    await expect(page.get_by_test_id("channel-item").filter(has_text="general")).to_have_count(1)
    await open_channel(page, "general")
    # Keyboard only: the composer is reachable and Enter sends.
    await page.get_by_test_id("composer").focus()
    await page.keyboard.type("first message")
    await page.keyboard.press("Enter")
    sent = page.get_by_test_id("message").filter(has_text="first message")
    await expect(sent).to_have_attribute("data-state", "sent")
    await screenshot(page, "new-user-narrow")

    if not await page.get_by_test_id("add-member-email").is_visible():
        await page.get_by_text("Team actions").click()
    await page.get_by_test_id("add-member-email").fill(bob.email)
    async with page.expect_response(
        lambda r: r.url.endswith("/members") and r.request.method == "POST"
    ) as added:
        await page.get_by_test_id("add-member-submit").click()
    # Last, so that no typing races the redraw that follows it. An e-mail address is
    # invited (the answer does not say whether it has an account); Bob joins when he
    # next lists his teams.
    assert (await added.value).status == 202
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
    await team_channel(alice, bob)
    ctx_a, page_a = await open_chat(browser, server, alice)
    ctx_b, page_b = await open_chat(browser, server, bob)
    await open_channel(page_a, "general")
    await open_channel(page_b, "general")
    await page_b.get_by_test_id("composer").press_sequentially("hel")
    await expect(page_a.get_by_test_id("typing")).to_contain_text("bob")
    await ctx_a.close()
    await ctx_b.close()


async def test_direct_message_and_older_history(
    browser: Browser, server: ServerProcess, alice: Api, bob: Api
) -> None:
    team = await alice.create_team("Acme")
    await alice.add_to_team(team["id"], bob)
    history = await alice.create_channel(team["id"], "history")
    for i in range(120):
        await alice.send(history["id"], f"old message {i:03d}")
    ctx_a, page_a = await open_chat(browser, server, alice)
    ctx_b, page_b = await open_chat(browser, server, bob)

    await page_a.get_by_text("Team actions").click()
    await page_a.get_by_test_id("dm-user").select_option(bob.user_id)
    await page_a.get_by_test_id("new-dm-submit").click()
    await open_channel(page_a, "bob")
    await page_a.get_by_test_id("composer").fill("just between us")
    await page_a.get_by_test_id("composer").press("Enter")
    await open_channel(page_b, "alice")
    await expect(page_b.get_by_test_id("message").filter(has_text="just between us")).to_have_count(
        1
    )

    await open_channel(page_a, "history")
    await expect(page_a.get_by_test_id("message").filter(has_text="old message 119")).to_have_count(
        1
    )
    messages = page_a.get_by_test_id("message")
    for _ in range(10):  # scrolling to the top loads the next older page
        shown = await messages.count()
        if shown == 120:
            break
        await page_a.locator(".scroller").evaluate("e => { e.scrollTop = 0; }")
        await expect(messages).not_to_have_count(shown)
    await expect(messages).to_have_count(120)
    await expect(messages.first).to_contain_text("old message 000")
    await ctx_a.close()
    await ctx_b.close()
