"""The page that `make run` prints the URL of loads as an application, without errors."""

from __future__ import annotations

from playwright.async_api import Browser

from tests.browser.conftest import screenshot
from tests.support import ServerProcess


async def test_page_loads_without_script_errors(browser: Browser, server: ServerProcess) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on(
        "response",
        lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None,
    )
    response = await page.goto(server.url)
    assert response is not None
    assert response.ok
    await page.wait_for_load_state("networkidle")
    await screenshot(page, "page-loads")
    assert await page.title() == "RealTimeChat"
    assert errors == []
    await context.close()
