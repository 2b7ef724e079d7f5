"""The URL that `make run` prints opens the chat application, not a JSON page."""

from __future__ import annotations

import httpx

from tests.support import ServerProcess


async def test_root_serves_the_web_client(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/static/app.js">' in page.text
        script = await http.get("/static/app.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]
        missing = await http.get("/static/nope.js")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
