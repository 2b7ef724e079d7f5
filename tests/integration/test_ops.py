"""Operations, as an operator runs them: smoke test, backup and restore, rolling back.

Every command runs as `realtimechat …` in a child process against real servers on real
sockets: `smoke` after a deploy, `backup` while a server keeps writing and `restore` into
a fresh data directory, `pg_dump`/`pg_restore` between two throwaway PostgreSQL clusters,
and the previous release (deploy/previous-release, from a git worktree) serving on the
schema the current code migrated to.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from realtimechat.ops.smoke import STEPS, StepResult, smoke
from realtimechat_client import ChatClient, Cursor, LiveSession, MemoryCursorStore
from tests.postgres import PostgresServer, _as_postgres, postgres_server
from tests.support import (
    FAST_HASH,
    Api,
    ServerProcess,
    free_port,
    new_user,
    running_server,
    team_channel,
)

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse"  # tests.support.new_user's


# ---- helpers ---------------------------------------------------------------------------
def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`realtimechat <args>` as an operator runs it; its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "realtimechat", *args],
        env={**os.environ, **FAST_HASH, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
    )


async def acli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`cli` off the event loop, so servers' clients and background tasks keep running."""
    return await asyncio.to_thread(cli, *args, env=env)


async def login(server: ServerProcess, email: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})


async def refresh(server: ServerProcess, refresh_token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        return await http.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


async def logged_in_again(server: ServerProcess, user: Api) -> Api:
    """`user` on another server sharing its data: the same access token, still valid."""
    again = Api(server, user.token)
    me = await again.ok("GET", "/api/v1/users/me", 200)
    assert me["id"] == user.user_id
    return again


def integrity(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


@dataclass
class Sender:
    """Sends messages one after another until stopped; what the server acknowledged."""

    api: Api
    channel_id: str
    acked: list[dict[str, Any]]
    stop: asyncio.Event
    reached: asyncio.Event
    reach: int

    async def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            i += 1
            self.acked.append(await self.api.send(self.channel_id, f"message {i}"))
            if len(self.acked) >= self.reach:
                self.reached.set()


async def upload(api: Api, team_id: str, data: bytes) -> str:
    """A ready file in the team's local storage; its id."""
    created = await api.ok(
        "POST",
        "/api/v1/files",
        201,
        json={"team_id": team_id, "name": "notes.txt", "size": len(data),
              "content_type": "text/plain", "sha256": hashlib.sha256(data).hexdigest()},
    )  # fmt: skip
    target = created["upload"]
    async with httpx.AsyncClient(timeout=30) as http:
        put = await http.request(
            target["method"], target["url"], content=data, headers=target["headers"]
        )
    assert put.status_code < 300, put.text
    await api.ok("POST", f"/api/v1/files/{created['id']}/complete", 200)
    return str(created["id"])


async def download(api: Api, file_id: str) -> bytes:
    first = await api.request("GET", f"/api/v1/files/{file_id}")
    assert first.status_code == 302, first.text
    async with httpx.AsyncClient(timeout=30) as http:
        got = await http.get(first.headers["location"])
    assert got.status_code == 200, got.text
    return got.content


# ---- smoke -----------------------------------------------------------------------------
async def test_smoke_passes_against_a_running_server(server: ServerProcess) -> None:
    done = await acli("smoke", server.url, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = orjson.loads(done.stdout)
    assert report["ok"] is True
    assert report["failed_step"] is None
    assert [s["name"] for s in report["steps"]] == list(STEPS)
    assert all(s["ok"] and s["status"] == "ok" for s in report["steps"]), report
    assert all(s["duration_ms"] >= 0 for s in report["steps"])

    text = await acli("smoke", server.url, "--timeout", "20")
    assert text.returncode == 0, text.stdout + text.stderr
    lines = text.stdout.splitlines()
    assert [line.split()[:2] for line in lines[:-1]] == [["ok", name] for name in STEPS]
    assert lines[-1].startswith("smoke passed")


async def test_smoke_against_nothing_listening_fails_and_names_the_step() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = await acli("smoke", url, "--json", "--timeout", "10")
    assert done.returncode == 1, done.stdout + done.stderr
    report = orjson.loads(done.stdout)
    assert report["ok"] is False
    assert report["failed_step"] == "livez"
    by_name = {s["name"]: s for s in report["steps"]}
    assert "cannot connect" in by_name["livez"]["detail"]
    assert all(by_name[name]["status"] == "skipped" for name in STEPS[1:-1])

    text = await acli("smoke", url, "--timeout", "10")
    assert text.returncode == 1
    assert text.stdout.splitlines()[-1].startswith("smoke FAILED at livez: cannot connect")


async def test_smoke_reports_a_server_that_stops_midway(tmp_path: Path) -> None:
    """The node dies once the listener is connected: `send` fails, `receive` is skipped."""
    async with running_server(tmp_path) as node:
        proc = node.proc
        assert proc is not None

        def kill_after_connect(step: StepResult) -> None:
            if step.name == "connect":
                proc.kill()

        report = await smoke(node.url, timeout_s=20, on_step=kill_after_connect)
    assert not report.ok
    failed = report.failed_step
    assert failed is not None
    assert failed.name == "send", report.to_json()
    assert "no answer" in failed.detail or "cannot connect" in failed.detail, failed.detail
    assert {s.name: s.status for s in report.steps}["receive"] == "skipped"


# ---- backup and restore (embedded) -----------------------------------------------------
async def test_backup_while_writing_then_restore_into_a_fresh_data_dir(tmp_path: Path) -> None:
    live_dir, restored_dir = tmp_path / "live", tmp_path / "restored"
    archive = tmp_path / "backups" / "nightly.tar.gz"
    data = b"the minutes of the meeting\n" * 50
    async with running_server(live_dir) as node:
        alice = await new_user(node, "alice")
        channel = await team_channel(alice)
        team_id = channel["team_id"]
        file_id = await upload(alice, team_id, data)
        acked: list[dict[str, Any]] = []
        sender = Sender(alice, channel["id"], acked, asyncio.Event(), asyncio.Event(), 20)
        sending = asyncio.create_task(sender.run())
        try:
            await asyncio.wait_for(sender.reached.wait(), 30)
            before = list(acked)  # acknowledged before the backup started
            done = await acli("backup", str(archive), "--data-dir", str(live_dir))
            during = len(acked) - len(before)
        finally:
            sender.stop.set()
            await sending
        assert done.returncode == 0, done.stdout + done.stderr
        assert "secret.key included" in done.stdout
        # The server kept writing while the snapshot was taken.
        assert during > 0
        # Surely younger than the backup: the restore loses it, and its seq is reused.
        after = await alice.send(channel["id"], "after the backup")
        old_epoch = (await alice.ok("GET", f"/api/v1/channels/{channel['id']}", 200))["epoch"]
    assert archive.is_file()

    restored = await acli("restore", str(archive), "--data-dir", str(restored_dir))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "integrity ok" in restored.stdout
    assert integrity(restored_dir / "realtimechat.db") == ["ok"]
    assert (restored_dir / "secret.key").read_text() == (live_dir / "secret.key").read_text()

    again = await acli("restore", str(archive), "--data-dir", str(restored_dir))
    assert again.returncode == 1
    assert "is not empty" in again.stderr
    assert "--force" in again.stderr

    async with running_server(restored_dir) as node:
        assert (await login(node, alice.email)).status_code == 200
        # The secret.key came back: the access token from before still verifies, and the
        # refresh token (a row in the database) still rotates.
        back = await logged_in_again(node, alice)
        assert (await refresh(node, alice.refresh_token)).status_code == 200
        events = await back.events(channel["id"])
        by_id = {e["data"]["id"]: e for e in events if e["event"] == "message.created"}
        for msg in before:
            assert msg["id"] in by_id, f"message {msg['seq']} acknowledged before the backup"
            assert by_id[msg["id"]]["seq"] == msg["seq"]
            assert by_id[msg["id"]]["data"]["body"] == msg["body"]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert after["id"] not in by_id
        # Local uploads came back, and download links are signed with the restored key.
        assert await download(back, file_id) == data

        # A client that saw `after` resumes with its cursor: the restore renewed the
        # channel's epoch, so the next message, which takes `after`'s seq again, still
        # reaches it instead of passing for one it has seen.
        cursors = MemoryCursorStore({channel["id"]: Cursor(after["seq"], old_epoch)})
        async with ChatClient(node.url) as client:
            await client.login(alice.email, PASSWORD)
            async with LiveSession(client, cursors) as live:
                await asyncio.wait_for(live.wait_connected(), 30)
                reused = await back.send(channel["id"], "after the restore")
                assert reused["seq"] <= after["seq"]
                ev = await asyncio.wait_for(live.next_event(), 30)
                assert (ev["data"]["id"], ev["seq"]) == (reused["id"], reused["seq"])
                assert live.stats.epoch_changes == 1
        report = await smoke(node.url)
        assert report.ok, report.to_json()
        await back.aclose()
    await alice.aclose()


async def test_restore_with_force_moves_the_old_data_aside(tmp_path: Path) -> None:
    source, target = tmp_path / "source", tmp_path / "target"
    archive = tmp_path / "a.tar.gz"
    async with running_server(source) as node:
        api = await new_user(node, "one")
        await api.aclose()
    assert (await acli("backup", str(archive), "--data-dir", str(source))).returncode == 0
    async with running_server(target) as node:
        other = await new_user(node, "other")
        await other.aclose()
    old_secret = (target / "secret.key").read_text()
    done = await acli("restore", str(archive), "--data-dir", str(target), "--force")
    assert done.returncode == 0, done.stderr
    (aside,) = target.glob("pre-restore-*")
    assert (aside / "secret.key").read_text() == old_secret
    assert integrity(aside / "realtimechat.db") == ["ok"]
    assert not (target / "realtimechat.db-wal").exists()
    async with running_server(target) as node:
        assert (await login(node, api.email)).status_code == 200
        assert (await login(node, other.email)).status_code == 401


def _rewrite(archive: Path, out: Path, change: dict[str, bytes | None]) -> None:
    """A copy of `archive` with members replaced (bytes), added, or left out (None)."""
    with tarfile.open(archive, "r:gz") as src, tarfile.open(out, "w:gz") as dst:
        names = set()
        for member in src:
            names.add(member.name)
            if member.name in change:
                continue
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        for name, raw in change.items():
            if raw is None:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            dst.addfile(info, io.BytesIO(raw))


async def test_restore_refuses_damaged_or_hostile_archives(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    archive = tmp_path / "good.tar.gz"
    async with running_server(data_dir) as node:
        api = await new_user(node, "u")
        await api.aclose()
    assert (await acli("backup", str(archive), "--data-dir", str(data_dir))).returncode == 0
    with tarfile.open(archive, "r:gz") as tar:
        db = tar.extractfile("realtimechat.db")
        assert db is not None
        raw = bytearray(db.read())
    raw[-100] ^= 0xFF  # one flipped byte in the snapshot

    cases: dict[str, tuple[dict[str, bytes | None], str]] = {
        "damaged": ({"realtimechat.db": bytes(raw)}, "does not match the manifest"),
        "traversal": ({"../escaped": b"x"}, "refusing archive member '../escaped'"),
        "absolute": ({"/tmp/escaped": b"x"}, "refusing archive member '/tmp/escaped'"),
        "unknown": ({"etc/passwd": b"x"}, "refusing archive member 'etc/passwd'"),
        "no manifest": ({"manifest.json": None}, "has no manifest.json"),
    }
    for case, (change, reason) in cases.items():
        bad = tmp_path / f"{case}.tar.gz"
        _rewrite(archive, bad, change)
        target = tmp_path / f"restore-{case.replace(' ', '-')}"
        done = await acli("restore", str(bad), "--data-dir", str(target))
        assert done.returncode == 1, (case, done.stdout, done.stderr)
        assert reason in done.stderr, (case, done.stderr)
        assert not (target / "realtimechat.db").exists(), case
    assert not (tmp_path / "escaped").exists()


async def test_backup_and_restore_point_at_pg_tools_on_postgresql(tmp_path: Path) -> None:
    env = {"RTC_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}
    for args in (["backup", str(tmp_path / "x.tar.gz")], ["restore", str(tmp_path / "x")]):
        done = await acli(*args, "--data-dir", str(tmp_path), env=env)
        assert done.returncode == 2, done.stderr
        assert "pg_dump" in done.stderr
        assert "docs/operations.md" in done.stderr


# ---- backup and restore (PostgreSQL, as docs/operations.md says) -----------------------
def pg_tool(name: str) -> str:
    found = shutil.which(name) or f"/usr/bin/{name}"
    if not Path(found).exists():
        pytest.skip(f"{name} is not installed")
    return found


def as_postgres(*cmd: str) -> None:
    """Run a PostgreSQL client tool as the postgres user (as tests/postgres.py runs initdb)."""
    done = subprocess.run(_as_postgres(*cmd), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{cmd[0]} failed: {done.stderr}"


def pg_args(pg: PostgresServer) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-d", "postgres"]


# docs/operations.md: after restoring an older copy, every channel gets a new epoch.
RENEW_EPOCHS = "UPDATE channels SET epoch = left(md5(random()::text || id), 16)"


async def test_postgresql_pg_dump_then_pg_restore_into_a_new_cluster(tmp_path: Path) -> None:
    pg_dump, pg_restore, psql = pg_tool("pg_dump"), pg_tool("pg_restore"), pg_tool("psql")
    async with postgres_server() as first, postgres_server() as second:
        dump = first.root / "nightly.dump"  # the postgres user writes it
        async with running_server(tmp_path / "a", RTC_DATABASE_URL=first.url) as node:
            alice = await new_user(node, "alice")
            channel = await team_channel(alice)
            sent = [await alice.send(channel["id"], f"before the dump {i}") for i in range(10)]
            old_epoch = (await alice.ok("GET", f"/api/v1/channels/{channel['id']}", 200))["epoch"]
            # Online: pg_dump reads one snapshot while the node keeps serving.
            await asyncio.to_thread(as_postgres, pg_dump, "-Fc", *pg_args(first), "-f", str(dump))
        await asyncio.to_thread(
            as_postgres, pg_restore, "--no-owner", "--exit-on-error", *pg_args(second), str(dump)
        )
        await asyncio.to_thread(
            as_postgres, psql, "-v", "ON_ERROR_STOP=1", *pg_args(second), "-c", RENEW_EPOCHS
        )
        # Another node, another (empty) data dir: nothing local is needed.
        async with running_server(tmp_path / "b", RTC_DATABASE_URL=second.url) as node:
            assert (await login(node, alice.email)).status_code == 200
            # The JWT secret is a row (shared_secrets): tokens issued before still verify.
            back = await logged_in_again(node, alice)
            assert (await refresh(node, alice.refresh_token)).status_code == 200
            events = await back.events(channel["id"])
            got = {e["data"]["id"]: e["seq"] for e in events if e["event"] == "message.created"}
            assert got == {m["id"]: m["seq"] for m in sent}
            restored = await back.ok("GET", f"/api/v1/channels/{channel['id']}", 200)
            assert restored["epoch"] != old_epoch
            report = await smoke(node.url)
            assert report.ok, report.to_json()
            await back.aclose()
        await alice.aclose()


# ---- expand/contract: the previous release runs on the new schema -----------------------
def previous_release() -> str:
    """The commit named by deploy/previous-release (its first non-comment line)."""
    lines = (REPO / "deploy" / "previous-release").read_text().splitlines()
    return next(ln.strip() for ln in lines if ln.strip() and not ln.startswith("#"))


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=120
    )


@contextlib.contextmanager
def worktree(commit: str) -> Iterator[Path]:
    """A detached checkout of `commit` in /tmp, removed afterwards."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed (CI has it, and a full clone of main)")
    if git("cat-file", "-e", f"{commit}^{{commit}}").returncode != 0:
        pytest.skip(
            f"commit {commit} (deploy/previous-release) is not in this clone; CI runs on a "
            "full clone of main, where it is"
        )
    path = Path("/tmp") / f"rtc-previous-{uuid.uuid4().hex[:12]}"
    added = git("worktree", "add", "--detach", str(path), commit)
    assert added.returncode == 0, added.stderr
    try:
        yield path
    finally:
        git("worktree", "remove", "--force", str(path))
        shutil.rmtree(path, ignore_errors=True)


# Releases before the tolerant start-up migration (realtimechat.storage.migrate) stop at
# start on a schema revision they do not know; their application code runs on it, which
# is what this launcher shows: the release's own code with the start-up migration skipped.
SKIP_STARTUP_MIGRATION = """
import sys
import realtimechat.storage.migrate as migrate
migrate.upgrade = lambda settings, revision="head": None
from realtimechat.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class PreviousRelease(ServerProcess):
    """`serve` of the release checked out at `src` (its code on PYTHONPATH, our venv)."""

    src: Path = Path()
    skip_startup_migration: bool = False

    def command(self, args: list[str]) -> list[str]:
        # The pre-tolerance launcher needs `python -c` instead of `python -m realtimechat`.
        if self.skip_startup_migration:
            return [sys.executable, "-c", SKIP_STARTUP_MIGRATION, *args]
        return super().command(args)


@contextlib.asynccontextmanager
async def previous_server(data_dir: Path, src: Path) -> AsyncIterator[PreviousRelease]:
    """The previous release serving `data_dir`, started as a rollback would start it."""
    migrate_py = (src / "realtimechat" / "storage" / "migrate.py").read_text()
    tolerant = "def unknown_revisions" in migrate_py
    node = PreviousRelease(data_dir, {"PYTHONPATH": str(src)}, src=src)
    try:
        if tolerant:
            await node.start()
        else:
            # Found: such a release's Alembic refuses the newer revision and it exits.
            with pytest.raises(RuntimeError, match="Can't locate revision identified by"):
                await node.start()
            node = PreviousRelease(
                data_dir, {"PYTHONPATH": str(src)}, src=src, skip_startup_migration=True
            )
            await node.start()
        yield node
    finally:
        await node.stop()


async def test_the_previous_release_runs_on_the_new_schema(tmp_path: Path) -> None:
    commit = previous_release()
    data_dir = tmp_path / "data"
    with worktree(commit) as checkout:
        src = checkout / "src"
        migrated = await acli("migrate", "--data-dir", str(data_dir))
        assert migrated.returncode == 0, migrated.stderr
        head = sqlite3.connect(data_dir / "realtimechat.db")
        (revision,) = head.execute("SELECT version_num FROM alembic_version").fetchone()
        head.close()

        async with previous_server(data_dir, src) as old:
            report = await smoke(old.url)
            assert report.ok, report.to_json()
            alice = await new_user(old, "alice")
            channel = await team_channel(alice)
            sent = await alice.send(channel["id"], "written by the previous release")
            await alice.aclose()
        # The previous release left the schema as it found it.
        head = sqlite3.connect(data_dir / "realtimechat.db")
        assert head.execute("SELECT version_num FROM alembic_version").fetchone() == (revision,)
        head.close()

        # Roll forward: the current code on the same data.
        async with running_server(data_dir) as new:
            report = await smoke(new.url)
            assert report.ok, report.to_json()
            assert (await login(new, alice.email)).status_code == 200
            back = await logged_in_again(new, alice)
            events = await back.events(channel["id"])
            assert sent["id"] in {e["data"].get("id") for e in events}
            await back.aclose()


async def test_this_release_runs_on_a_newer_additive_schema_and_refuses_a_contracted_one(
    tmp_path: Path,
) -> None:
    """The rule from this release on: start-up migration tolerates the next release's schema."""
    data_dir = tmp_path / "data"
    assert (await acli("migrate", "--data-dir", str(data_dir))).returncode == 0
    db = sqlite3.connect(data_dir / "realtimechat.db")
    # What the next release's expand migration might do: a new table, a new column.
    db.execute("CREATE TABLE reactions (message_id VARCHAR(36), emoji VARCHAR(16))")
    db.execute("ALTER TABLE messages ADD COLUMN pinned BOOLEAN DEFAULT 0")
    db.execute("UPDATE alembic_version SET version_num = '0099_next'")
    db.commit()
    db.close()
    async with running_server(data_dir) as node:
        report = await smoke(node.url)
        assert report.ok, report.to_json()
        assert any("0099_next is newer than this release knows" in ln for ln in node.output)

    # A contract that came too early (a table this release reads is gone): refused clearly.
    db = sqlite3.connect(data_dir / "realtimechat.db")
    db.execute("DROP TABLE file_shares")
    db.commit()
    db.close()
    done = await acli("migrate", "--data-dir", str(data_dir))
    assert done.returncode != 0
    assert "lacks what it uses: file_shares" in done.stderr


def test_deploy_previous_release_names_a_commit() -> None:
    commit = previous_release()
    assert len(commit) >= 7, commit
    assert all(c in "0123456789abcdef" for c in commit), commit
