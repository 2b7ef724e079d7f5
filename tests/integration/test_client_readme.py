"""The bot in clients/python/README.md, run as written against a real server.

The README's Python block is taken as it stands; only the server's address and the bot's
credentials are swapped for this test's. Then someone says "ping" where the bot is, and
the bot must answer "pong".
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

from tests.support import ServerProcess, eventually, new_user, team_channel, unique

README = Path(__file__).resolve().parents[2] / "clients/python/README.md"
URL, EMAIL, PASSWORD = "http://127.0.0.1:8000", "bot@example.com", "correct horse"


def readme_bot() -> str:
    """The one Python block of the README's "A bot" section."""
    section = README.read_text().split("## A bot", 1)[1].split("\n## ", 1)[0]
    blocks: list[str] = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    (code,) = blocks
    return code


def test_the_readme_bot_is_at_most_fifteen_lines() -> None:
    code = readme_bot()
    assert len(code.splitlines()) <= 15, code
    for literal in (URL, EMAIL, PASSWORD):
        assert literal in code  # what the next test swaps out


async def test_the_readme_bot_answers_ping_with_pong(server: ServerProcess, tmp_path: Path) -> None:
    alice, bot = await new_user(server, "alice"), await new_user(server, "bot")
    channel = await team_channel(alice, bot)
    code = readme_bot().replace(URL, server.url).replace(EMAIL, bot.email)
    script = tmp_path / "bot.py"
    script.write_text(code)
    log = tmp_path / "bot.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), stdout=out, stderr=asyncio.subprocess.STDOUT
        )
    try:

        async def pong() -> bool:
            # The bot follows channels from when it connects: ask until it is there.
            if proc.returncode is not None:
                raise AssertionError(f"the README bot exited {proc.returncode}: {log.read_text()}")
            await alice.send(channel["id"], "ping", unique("ping"))
            events = await alice.events(channel["id"])
            return any(
                e["event"] == "message.created"
                and e["data"]["body"] == "pong"
                and e["data"]["sender_id"] == bot.user_id
                for e in events
            )

        await eventually(pong, 30, "the bot's pong", interval=0.3)
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()
        await alice.aclose()
        await bot.aclose()
