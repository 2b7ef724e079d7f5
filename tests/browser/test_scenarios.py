"""Edit conflict, private channels, and a server restart mid-chat, in the browser."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, expect

from tests.browser.conftest import screenshot
from tests.browser.test_chat import open_channel, open_chat, say
from tests.support import Api, ServerProcess, new_user, running_server, team_channel


async def test_edit_conflict_shows_the_newer_text_and_lets_the_user_retry(
    browser: Browser, server: ServerProcess, alice: Api, bob: Api
) -> None:
    team = await alice.create_team("Acme")
    channel = await alice.create_channel(team["id"], "general")
    sent = await alice.send(channel["id"], "original text")
    ctx, page = await open_chat(browser, server, alice)
    await open_channel(page, "general")
    message = page.get_by_test_id("message").filter(has_text="original text")
    await message.get_by_test_id("edit-message").click()
    # Meanwhile the same author changes it elsewhere (another device).
    await alice.ok(
        "PUT", f"/api/v1/messages/{sent['id']}", 200,
        json={"body": "changed elsewhere"}, headers={"If-Match": '"1"'},
    )  # fmt: skip
    await page.get_by_test_id("edit-body").fill("my edit")
    await page.get_by_test_id("edit-save").click()
    conflict = page.get_by_test_id("edit-conflict")
    await expect(conflict).to_contain_text("changed elsewhere")
    await screenshot(page, "edit-conflict")
    await page.get_by_test_id("edit-save").click()
    await expect(page.get_by_test_id("message").filter(has_text="my edit")).to_have_count(1)
    final = await alice.ok("GET", f"/api/v1/messages/{sent['id']}", 200)
    assert final["body"] == "my edit"
    assert final["version"] == 3
    await ctx.close()


async def test_private_channel_is_not_listed_for_a_non_member(
    browser: Browser, server: ServerProcess, alice: Api, bob: Api
) -> None:
    team = await alice.create_team("Acme")
    await alice.add_to_team(team["id"], bob)
    await alice.create_channel(team["id"], "general")
    await alice.create_channel(team["id"], "secret-plans", private=True)
    ctx, page = await open_chat(browser, server, bob)
    await expect(page.get_by_test_id("channel-item").filter(has_text="general")).to_have_count(1)
    await expect(page.get_by_test_id("channel-item").filter(has_text="secret-plans")).to_have_count(
        0
    )
    assert "secret-plans" not in await page.content()
    await screenshot(page, "private-not-listed")
    await ctx.close()


async def test_server_restart_mid_chat_loses_and_doubles_nothing(
    browser: Browser, tmp_path: Path
) -> None:
    async with running_server(tmp_path) as srv:
        alice, bob = await new_user(srv, "alice"), await new_user(srv, "bob")
        channel = await team_channel(alice, bob)
        ctx_a, page_a = await open_chat(browser, srv, alice)
        ctx_b, page_b = await open_chat(browser, srv, bob)
        await open_channel(page_a, "general")
        await open_channel(page_b, "general")
        await say(page_a, "before the restart")
        await expect(page_b.get_by_test_id("message").filter(has_text="before")).to_have_count(1)

        port = srv.port
        assert await srv.signal(15) == 0
        await expect(page_a.get_by_test_id("connection-state")).not_to_have_text("connected")
        await say(page_a, "during the restart")
        restarted = ServerProcess(tmp_path, {}, port=port)
        await restarted.start()
        try:
            await say(page_b, "after the restart")
            texts = ("before the restart", "during the restart", "after the restart")
            for page in (page_a, page_b):
                await expect(page.get_by_test_id("connection-state")).to_have_text(
                    "connected", timeout=20_000
                )
                for text in texts:
                    shown = page.get_by_test_id("message").filter(has_text=text)
                    await expect(shown).to_have_count(1, timeout=20_000)
                    await expect(shown).to_have_attribute("data-state", "sent", timeout=20_000)
            alice.server = restarted
            stored = [
                e for e in await alice.events(channel["id"]) if e["event"] == "message.created"
            ]
            assert sorted(e["data"]["body"] for e in stored) == sorted(texts)
            await screenshot(page_b, "restart-bob")
        finally:
            await ctx_a.close()
            await ctx_b.close()
            await alice.aclose()
            await bob.aclose()
            await restarted.stop()


async def test_back_online_past_the_replay_limit_pages_everything_once(
    browser: Browser, tmp_path: Path
) -> None:
    async with running_server(tmp_path, RTC_WS__REPLAY_LIMIT="5") as srv:
        alice, bob = await new_user(srv, "alice"), await new_user(srv, "bob")
        channel = await team_channel(alice, bob)
        ctx, page = await open_chat(browser, srv, bob)
        await open_channel(page, "general")
        await ctx.set_offline(True)
        await expect(page.get_by_test_id("connection-state")).not_to_have_text("connected")
        for i in range(12):
            await alice.send(channel["id"], f"missed {i:02d}")
        await ctx.set_offline(False)
        await expect(page.get_by_test_id("connection-state")).to_have_text(
            "connected", timeout=20_000
        )
        missed = page.get_by_test_id("message").filter(has_text="missed")
        await expect(missed).to_have_count(12, timeout=20_000)
        texts = await missed.all_inner_texts()
        assert [t for t in texts if "missed" in t] == texts
        order = [int(t.split("missed ")[1][:2]) for t in texts]
        assert order == list(range(12))
        await screenshot(page, "resync-after-offline")
        await ctx.close()
        await alice.aclose()
        await bob.aclose()
