"""What the data directory gives away, and what a validly signed token of no account gets:
private file modes, deleted text gone from the SQLite files, a strong signing secret,
and integrity errors mapped to 4xx at the storage boundary."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import time
import uuid
from pathlib import Path

import jwt
import pytest
from pydantic import ValidationError

from realtimechat.bootstrap import signing_secret
from realtimechat.settings import Settings
from realtimechat.storage.database import Database
from tests.integration.rest_support import assert_problem
from tests.support import Api, ServerProcess, new_user, running_server, unique


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- the signing secret ---------------------------------------------------------------
def test_a_short_signing_secret_is_refused_naming_the_setting() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(auth={"secret": "x" * 31})
    text = str(refused.value)
    assert "RTC_AUTH__SECRET must be at least 32 bytes" in text
    assert "x" * 31 not in text  # an error never echoes a secret
    assert Settings(auth={"secret": "é" * 16}).auth.secret == "é" * 16  # bytes, not chars


async def test_a_node_with_a_short_secret_does_not_start(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, {"RTC_AUTH__SECRET": "x"})
    try:
        with pytest.raises(RuntimeError, match="serve exited") as failed:
            await srv.start()
    finally:
        await srv.stop()  # had it started after all
    assert "RTC_AUTH__SECRET must be at least 32 bytes" in str(failed.value)
    assert srv.proc is not None
    assert srv.proc.wait(30) != 0


# ---- file modes -----------------------------------------------------------------------
async def test_the_data_directory_and_its_files_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # as an operator's mkdir under umask 022 leaves it
    async with running_server(data) as srv:
        alice = await new_user(srv, "modes")
        await alice.create_team("t")  # something written: the WAL is in use
        assert mode(data) == 0o700
        for name in ("realtimechat.db", "realtimechat.db-wal", "realtimechat.db-shm"):
            assert mode(data / name) == 0o600, name
        assert mode(data / "secret.key") == 0o600
        assert mode(data / "files") == 0o700
        await alice.aclose()
    # Files an older release left readable are tightened at the next start.
    for name in ("realtimechat.db", "secret.key"):
        (data / name).chmod(0o644)
    data.chmod(0o755)
    async with running_server(data):
        assert mode(data) == 0o700
        assert mode(data / "realtimechat.db") == 0o600
        assert mode(data / "secret.key") == 0o600


# ---- deleted text ---------------------------------------------------------------------
def checkpoint(db: Path) -> None:
    """Fold the WAL into the database and truncate it (retrying while a reader holds it)."""
    conn = sqlite3.connect(db)
    try:
        for _ in range(100):
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                return
            time.sleep(0.05)
        raise AssertionError("the WAL stayed busy")
    finally:
        conn.close()


def on_disk(data: Path) -> bytes:
    return b"".join(
        p.read_bytes()
        for p in sorted(data.glob("realtimechat.db*"))
        if p.name != "realtimechat.db-shm"
    )


async def test_a_deleted_message_leaves_no_text_in_the_database_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running_server(data) as srv:
        alice = await new_user(srv, "shredder")
        team = await alice.create_team("t")
        channel = await alice.create_channel(team["id"], "alone")  # no one to notify
        secret = f"the launch code is {uuid.uuid4().hex}{uuid.uuid4().hex}".encode()
        sent = await alice.send(channel["id"], secret.decode())
        await asyncio.to_thread(checkpoint, data / "realtimechat.db")
        assert secret in on_disk(data)  # the test can see the text where it is

        resp = await alice.request(
            "DELETE", f"/api/v1/messages/{sent['id']}", headers={"If-Match": f'"{sent["version"]}"'}
        )
        assert resp.status_code == 200, resp.text
        await asyncio.to_thread(checkpoint, data / "realtimechat.db")
        assert secret not in on_disk(data)
        await alice.aclose()


# ---- a signed token for no account ----------------------------------------------------
async def node_secret(server: ServerProcess) -> str:
    """The node's signing secret, read the way the node reads it."""
    settings = Settings(
        data_dir=server.data_dir, database_url=server.env.get("RTC_DATABASE_URL") or None
    )
    db = Database(settings)
    try:
        return await asyncio.to_thread(signing_secret, settings, db)
    finally:
        await db.close()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/teams", {"name": "ghost town"}),
        ("POST", "/api/v1/devices", {"platform": "android", "token": "ghost-device"}),
        ("PUT", "/api/v1/notification-settings", {"push": False}),
    ],
)
async def test_a_signed_token_of_an_unknown_account_gets_a_4xx_not_a_500(
    server: ServerProcess, method: str, path: str, body: dict[str, object]
) -> None:
    secret = await node_secret(server)
    now = int(time.time())
    token = jwt.encode(
        {
            "sub": str(uuid.uuid4()),
            "sid": str(uuid.uuid4()),
            "iss": "realtimechat",
            "iat": now,
            "exp": now + 300,
        },
        secret,
        algorithm="HS256",
    )
    ghost = Api(server, token)
    try:
        resp = await ghost.request(method, path, json=body)
        assert 400 <= resp.status_code < 500, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        if resp.status_code == 409:
            assert_problem(resp, 409, "conflict")
    finally:
        await ghost.aclose()
    # The node is fine and a real account still writes.
    real = await new_user(server, unique("real"))
    await real.create_team("t")
    await real.aclose()
