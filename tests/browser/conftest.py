"""Headless Chromium (Debian's package) driven by Playwright, against the real server."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

ARTIFACTS = Path("test-artifacts")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("chromium is not installed (make test installs Debian's chromium package)")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


OPEN_PAGES: list[Page] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[FAILED] = report.failed


FAILED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
async def keep_screenshots_of_failures(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """A failing browser test leaves a screenshot of every page it had open."""
    OPEN_PAGES.clear()
    yield
    if request.node.stash.get(FAILED, False):
        for i, page in enumerate(OPEN_PAGES):
            if not page.is_closed():
                await screenshot(page, f"FAILED-{request.node.name}-{i}")
    OPEN_PAGES.clear()


async def screenshot(page: Page, name: str) -> Path:
    """Keep a picture of the page in the test artifacts."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
