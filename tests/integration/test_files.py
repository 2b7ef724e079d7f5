"""File sharing end to end, on local disk and on a real S3-compatible server (moto):
reserve, upload straight to storage, complete, share, download, cancel, reconcile."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from realtimechat.blobs.s3 import S3Store
from realtimechat.settings import FileSettings
from tests.integration.rest_support import assert_problem
from tests.moto_server import MotoServer, s3_server
from tests.support import Api, ServerProcess, eventually, new_user, running_server

QUOTA = 1_000_000
URL_TTL_S = 5
PENDING_TIMEOUT_S = 3


@pytest.fixture(scope="module", params=["local", "s3"])
async def node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ServerProcess]:
    env = {
        "RTC_FILES__TEAM_QUOTA_BYTES": str(QUOTA),
        "RTC_FILES__URL_TTL_S": str(URL_TTL_S),
        "RTC_FILES__PENDING_TIMEOUT_S": str(PENDING_TIMEOUT_S),
        "RTC_FILES__RECONCILE_S": "0.5",
        "RTC_LIMITS__USER_REQUESTS_PER_MINUTE": "100000",
        "RTC_LIMITS__ANONYMOUS_REQUESTS_PER_MINUTE": "100000",
        "RTC_ADMIN_TOKEN": "admin",
    }
    async with contextlib.AsyncExitStack() as stack:
        if request.param == "s3":
            s3: MotoServer = await stack.enter_async_context(s3_server())
            cfg = s3.settings()
            assert cfg.s3_secret_access_key is not None
            env |= {
                "RTC_FILES__BACKEND": "s3",
                "RTC_FILES__S3_ENDPOINT_URL": s3.endpoint_url,
                "RTC_FILES__S3_BUCKET": cfg.s3_bucket,
                "RTC_FILES__S3_ACCESS_KEY_ID": cfg.s3_access_key_id or "",
                "RTC_FILES__S3_SECRET_ACCESS_KEY": cfg.s3_secret_access_key.get_secret_value(),
            }
        tmp = tmp_path_factory.mktemp(f"files-{request.param}")
        yield await stack.enter_async_context(running_server(tmp, **env))


@pytest.fixture
async def team(node: ServerProcess) -> AsyncIterator[tuple[Api, Api, Api, str]]:
    """Alice (owner), Bob and Carol in a fresh team; (alice, bob, carol, team_id)."""
    alice, bob, carol = [await new_user(node, n) for n in ("alice", "bob", "carol")]
    team = await alice.create_team()
    for user in (bob, carol):
        await alice.add_to_team(team["id"], user)
    yield alice, bob, carol, team["id"]
    for user in (alice, bob, carol):
        await user.aclose()


def declare(team_id: str, data: bytes, name: str = "notes.txt", **kw: Any) -> dict[str, Any]:
    return {
        "team_id": team_id,
        "name": name,
        "size": len(data),
        "content_type": "text/plain",
        "sha256": hashlib.sha256(data).hexdigest(),
        **kw,
    }


async def put(upload: dict[str, Any], data: bytes) -> httpx.Response:
    """PUT the bytes where the server said, as a client would: straight to storage."""
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.request(
            upload["method"], upload["url"], content=data, headers=upload["headers"]
        )


async def upload(api: Api, team_id: str, data: bytes, name: str = "notes.txt") -> dict[str, Any]:
    created = await api.ok("POST", "/api/v1/files", 201, json=declare(team_id, data, name))
    assert created["state"] == "pending"
    resp = await put(created["upload"], data)
    assert resp.status_code in (200, 201, 204), resp.text
    ready: dict[str, Any] = await api.ok("POST", f"/api/v1/files/{created['id']}/complete", 200)
    assert ready["state"] == "ready"
    return ready


async def used(api: Api, team_id: str) -> int:
    return int((await api.ok("GET", f"/api/v1/teams/{team_id}/storage", 200))["used_bytes"])


async def download(api: Api, file_id: str) -> httpx.Response:
    """Follow the API's redirect to the signed URL, as a browser would."""
    first = await api.request("GET", f"/api/v1/files/{file_id}")
    if first.status_code != 302:
        return first
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.get(first.headers["location"])


async def test_upload_share_and_download(
    node: ServerProcess, team: tuple[Api, Api, Api, str]
) -> None:
    alice, bob, _, team_id = team
    data = b"the quarterly numbers\n" * 100
    f = await upload(alice, team_id, data, "q3 report.txt")
    assert await used(alice, team_id) == len(data)
    channel = await alice.create_channel(team_id, "reports")
    await alice.join(channel["id"], bob)
    msg = await alice.ok(
        "POST",
        "/api/v1/messages",
        201,
        json={"channel_id": channel["id"], "body": "see attached", "attachments": [f["id"]],
              "client_msg_id": "m-1"},
    )  # fmt: skip
    assert msg["attachments"] == [
        {"file_id": f["id"], "name": "q3 report.txt", "size": len(data),
         "content_type": "text/plain"}
    ]  # fmt: skip
    got = await download(bob, f["id"])
    assert got.status_code == 200
    assert got.content == data
    assert "attachment" in got.headers["content-disposition"]


async def test_a_declared_150_mb_upload_is_refused_before_anything_is_stored(
    team: tuple[Api, Api, Api, str],
) -> None:
    alice, _, _, team_id = team
    body = {**declare(team_id, b"x"), "size": 150 * 1024 * 1024}
    problem = assert_problem(await alice.request("POST", "/api/v1/files", json=body), 413,
                             "file_too_large")  # fmt: skip
    assert "104857600" in problem["detail"]
    assert problem["max_bytes"] == 100 * 1024 * 1024
    assert await used(alice, team_id) == 0


async def test_concurrent_reservations_cannot_exceed_the_quota(
    team: tuple[Api, Api, Api, str],
) -> None:
    alice, _, _, team_id = team
    chunk = b"q" * 300_000
    answers = await asyncio.gather(
        *(alice.request("POST", "/api/v1/files", json=declare(team_id, chunk, f"f{i}"))
          for i in range(10))
    )  # fmt: skip
    created = [a for a in answers if a.status_code == 201]
    assert len(created) == QUOTA // len(chunk) == 3
    for refused in (a for a in answers if a.status_code != 201):
        problem = assert_problem(refused, 409, "quota_exceeded")
        assert problem["quota_bytes"] == QUOTA
    assert await used(alice, team_id) == 3 * len(chunk)
    # Cancelling gives the quota back.
    for a in created:
        await alice.ok("DELETE", f"/api/v1/files/{a.json()['id']}", 204)
    assert await used(alice, team_id) == 0


async def test_bytes_that_do_not_match_the_declaration_never_become_a_file(
    team: tuple[Api, Api, Api, str],
) -> None:
    alice, _, _, team_id = team
    declared = b"what I meant to send"
    created = await alice.ok("POST", "/api/v1/files", 201, json=declare(team_id, declared))
    sent = b"what arrived instead"  # same length, other bytes
    put_answer = await put(created["upload"], sent)
    complete = await alice.request("POST", f"/api/v1/files/{created['id']}/complete")
    if put_answer.status_code >= 400:
        # The store itself refused bytes whose sha256 differs: nothing was stored.
        assert_problem(complete, 409, "upload_incomplete")
        await alice.ok("DELETE", f"/api/v1/files/{created['id']}", 204)
    else:
        problem = assert_problem(complete, 422, "checksum_mismatch")
        assert "discarded" in problem["detail"]
    assert await used(alice, team_id) == 0
    gone = await alice.request("POST", f"/api/v1/files/{created['id']}/complete")
    assert_problem(gone, 409, "conflict")


async def test_an_expired_upload_url_is_refused(team: tuple[Api, Api, Api, str]) -> None:
    alice, _, _, team_id = team
    data = b"too late"
    created = await alice.ok("POST", "/api/v1/files", 201, json=declare(team_id, data))
    url = httpx.URL(created["upload"]["url"])
    if "X-Amz-Expires" in url.params:
        # S3: the URL is presigned for the configured lifetime. moto (the local S3 the
        # tests run) does not enforce presigned expiry or checksums; AWS does. So on S3
        # this checks our half; `complete` re-hashes what arrived (see the mismatch test).
        assert url.params["X-Amz-Expires"] == str(URL_TTL_S)
        assert "x-amz-checksum-sha256" in url.params["X-Amz-SignedHeaders"]
        return
    # No event marks an expiry: wait on the clock until the URL's lifetime has passed.
    await asyncio.sleep(URL_TTL_S + 1.5)
    late = await put(created["upload"], data)
    assert_problem(late, 403, "link_invalid")
    # Never became a file: still waiting for its bytes, or already reconciled away.
    never = await alice.request("POST", f"/api/v1/files/{created['id']}/complete")
    assert never.status_code == 409, never.text


async def test_only_members_of_a_channel_it_was_shared_in_can_download(
    node: ServerProcess, team: tuple[Api, Api, Api, str]
) -> None:
    alice, bob, carol, team_id = team
    f = await upload(alice, team_id, b"secret plans")
    # Not yet shared anywhere: only its uploader sees it.
    assert (await download(alice, f["id"])).status_code == 200
    assert_problem(await bob.request("GET", f"/api/v1/files/{f['id']}"), 404, "not_found")
    # Bob cannot share what he cannot see.
    dm = await bob.ok("POST", "/api/v1/dms", (200, 201), json={"user_id": carol.user_id})
    stolen = await bob.request(
        "POST", "/api/v1/messages",
        json={"channel_id": dm["id"], "body": "look", "attachments": [f["id"]],
              "client_msg_id": "steal"},
    )  # fmt: skip
    assert_problem(stolen, 422, "invalid_attachment")
    private = await alice.create_channel(team_id, "plans", private=True)
    await alice.join(private["id"], bob)
    msg = await alice.ok(
        "POST", "/api/v1/messages", 201,
        json={"channel_id": private["id"], "body": "here", "attachments": [f["id"]],
              "client_msg_id": "share"},
    )  # fmt: skip
    assert (await download(bob, f["id"])).content == b"secret plans"
    assert_problem(await carol.request("GET", f"/api/v1/files/{f['id']}"), 404, "not_found")
    # Deleting the message unshares the file.
    await alice.ok("DELETE", f"/api/v1/messages/{msg['id']}", 200, headers={"If-Match": '"1"'})
    assert_problem(await bob.request("GET", f"/api/v1/files/{f['id']}"), 404, "not_found")


async def test_an_abandoned_upload_is_reconciled_and_its_quota_given_back(
    team: tuple[Api, Api, Api, str],
) -> None:
    alice, _, _, team_id = team
    await alice.ok("POST", "/api/v1/files", 201, json=declare(team_id, b"a" * 5000))
    assert await used(alice, team_id) == 5000

    async def reconciled() -> bool:
        return await used(alice, team_id) == 0

    timeout = max(PENDING_TIMEOUT_S, URL_TTL_S) + 15
    await eventually(reconciled, timeout, "the abandoned upload to be reconciled", interval=0.2)


async def test_uploads_can_be_switched_off_at_runtime(team: tuple[Api, Api, Api, str]) -> None:
    alice, _, _, team_id = team
    admin = {"Authorization": "Bearer admin"}
    await alice.ok("PUT", "/api/v1/admin/flags/uploads", 200, json={"enabled": False},
                   headers=admin)  # fmt: skip
    try:
        refused = await alice.request("POST", "/api/v1/files", json=declare(team_id, b"x"))
        assert_problem(refused, 503, "feature_disabled")
        assert await used(alice, team_id) == 0
    finally:
        await alice.ok("PUT", "/api/v1/admin/flags/uploads", 200, json={"enabled": True},
                       headers=admin)  # fmt: skip
    await upload(alice, team_id, b"x")


async def test_bad_declarations_are_refused_and_outsiders_see_no_team(
    node: ServerProcess, team: tuple[Api, Api, Api, str]
) -> None:
    alice, _, _, team_id = team
    for bad in (
        {"name": ""},
        {"name": "a/b"},
        {"size": 0},
        {"sha256": "nothex"},
        {"content_type": "not a type"},
    ):
        body = {**declare(team_id, b"data"), **bad}
        assert_problem(await alice.request("POST", "/api/v1/files", json=body), 422,
                       "validation_error")  # fmt: skip
    outsider = await new_user(node, "outsider")
    resp = await outsider.request("POST", "/api/v1/files", json=declare(team_id, b"data"))
    assert_problem(resp, 404, "not_found")
    assert_problem(await outsider.request("GET", f"/api/v1/teams/{team_id}/storage"), 404,
                   "not_found")  # fmt: skip
    await outsider.aclose()
    assert await used(alice, team_id) == 0


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_server_memory_stays_flat_while_100_mb_stream_to_local_disk(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    size, piece = 100 * 1024 * 1024, os.urandom(1024 * 1024)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(size // len(piece)):
            yield piece

    digest = hashlib.sha256()
    for _ in range(size // len(piece)):
        digest.update(piece)
    async with running_server(tmp_path_factory.mktemp("rss")) as server:
        assert server.proc is not None
        alice = await new_user(server, "alice")
        team = await alice.create_team()
        body = {
            "team_id": team["id"],
            "name": "big.bin",
            "size": size,
            "content_type": "application/octet-stream",
            "sha256": digest.hexdigest(),
        }
        created = await alice.ok("POST", "/api/v1/files", 201, json=body)
        before = rss_kib(server.proc.pid)
        peak = before
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_kib(server.proc.pid))  # type: ignore[union-attr]
                await asyncio.sleep(0.05)

        sampler = asyncio.create_task(sample())
        try:
            async with httpx.AsyncClient(timeout=120) as http:
                resp = await http.put(
                    created["upload"]["url"],
                    content=chunks(),
                    headers={**created["upload"]["headers"], "Content-Length": str(size)},
                )
        finally:
            done.set()
            await sampler
        assert resp.status_code == 200, resp.text
        ready = await alice.ok("POST", f"/api/v1/files/{created['id']}/complete", 200)
        assert ready["size"] == size
        growth_mib = (peak - before) / 1024
        assert growth_mib < 30, f"RSS grew {growth_mib:.1f} MiB for a 100 MiB upload"
        await alice.aclose()


async def test_sdk_upload_reports_progress_and_a_cancelled_one_gives_its_quota_back(
    node: ServerProcess, team: tuple[Api, Api, Api, str], tmp_path: Any
) -> None:
    from realtimechat_client import ChatClient

    alice, _, _, team_id = team
    data = os.urandom(600_000)
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    seen: list[tuple[int, int]] = []
    async with ChatClient(node.url, access_token=alice.token) as client:
        ready = await client.upload_file(
            team_id, path, progress=lambda sent, total: seen.append((sent, total)),
            chunk_bytes=64 * 1024,
        )  # fmt: skip
        assert ready["state"] == "ready"
        assert ready["content_type"] == "image/jpeg"
        assert [s for s, _ in seen] == sorted(s for s, _ in seen)
        assert seen[-1] == (len(data), len(data))
        assert len(seen) == -(-len(data) // (64 * 1024))
        await client.request("DELETE", f"/api/v1/files/{ready['id']}", idempotent=True)
        assert await used(alice, team_id) == 0

        started = asyncio.Event()
        task = asyncio.create_task(
            client.upload_file(team_id, path, progress=lambda s, t: started.set(),
                               chunk_bytes=16 * 1024)
        )  # fmt: skip
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await used(alice, team_id) == 0


def test_reconcile_command_reports_what_it_fixed(tmp_path: Any) -> None:
    import json as jsonlib
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "realtimechat", *args, "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    assert run("migrate").returncode == 0
    orphan = tmp_path / "files" / "teams" / "gone-team" / "gone-file"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left behind by a crash")
    done = run("reconcile")
    assert done.returncode == 0, done.stderr
    report = jsonlib.loads(done.stdout)
    assert report["orphaned_objects"] == ["teams/gone-team/gone-file"]
    assert not orphan.exists()
    again = jsonlib.loads(run("reconcile").stdout)
    assert again == {"abandoned_uploads": [], "orphaned_objects": [], "usage_corrected": {}}


def stored_bytes(node: ServerProcess, team_id: str) -> int:
    """Bytes on the local disk store under the team's prefix (0 on S3: not ours to see)."""
    root = node.data_dir / "files" / "teams" / team_id
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def node_s3(node: ServerProcess) -> S3Store | None:
    """The node's bucket, seen as the node sees it (None on local disk)."""
    if node.env.get("RTC_FILES__BACKEND") != "s3":
        return None
    return S3Store(
        FileSettings(
            backend="s3",
            s3_endpoint_url=node.env["RTC_FILES__S3_ENDPOINT_URL"],
            s3_bucket=node.env["RTC_FILES__S3_BUCKET"],
            s3_access_key_id=node.env["RTC_FILES__S3_ACCESS_KEY_ID"],
            s3_secret_access_key=SecretStr(node.env["RTC_FILES__S3_SECRET_ACCESS_KEY"]),
        )
    )


async def test_a_cancelled_uploads_url_refuses_bytes_at_once(
    node: ServerProcess, team: tuple[Api, Api, Api, str]
) -> None:
    alice, _, _, team_id = team
    data = os.urandom(200_000)
    s3 = node_s3(node)
    keys = []
    for _ in range(3):  # the audit's three cycles: declare, cancel (quota back), then PUT
        created = await alice.ok("POST", "/api/v1/files", 201, json=declare(team_id, data))
        await alice.ok("DELETE", f"/api/v1/files/{created['id']}", 204)
        assert await used(alice, team_id) == 0
        late = await put(created["upload"], data)
        keys.append(f"teams/{team_id}/{created['id']}")
        if s3 is None:
            problem = assert_problem(late, 410, "upload_cancelled")
            assert "cancelled" in problem["detail"]
        else:
            # S3 cannot revoke a presigned URL: the bytes land. Its lifetime is short, and
            # reconciliation removes the object because its file row is gone.
            assert httpx.URL(created["upload"]["url"]).params["X-Amz-Expires"] == str(URL_TTL_S)
    assert stored_bytes(node, team_id) == 0
    assert await used(alice, team_id) == 0
    if s3 is not None:

        async def objects_gone() -> bool:
            return not [k for k in keys if await s3.stat(k) is not None]

        try:
            await eventually(objects_gone, 15, "reconciliation to remove the objects", interval=0.2)
            # And a cancel removes what was uploaded before it, at once.
            created = await alice.ok("POST", "/api/v1/files", 201, json=declare(team_id, data))
            assert (await put(created["upload"], data)).status_code == 200
            key = f"teams/{team_id}/{created['id']}"
            assert await s3.stat(key) is not None
            await alice.ok("DELETE", f"/api/v1/files/{created['id']}", 204)
            assert await s3.stat(key) is None
        finally:
            await s3.close()


async def test_a_completed_uploads_url_takes_no_more_bytes(
    team: tuple[Api, Api, Api, str],
) -> None:
    alice, _, _, team_id = team
    data = b"final version"
    created = await alice.ok("POST", "/api/v1/files", 201, json=declare(team_id, data))
    assert (await put(created["upload"], data)).status_code in (200, 201, 204)
    await alice.ok("POST", f"/api/v1/files/{created['id']}/complete", 200)
    again = await put(created["upload"], data)
    if "X-Amz-Expires" not in created["upload"]["url"]:
        assert_problem(again, 409, "upload_complete")


async def test_a_users_pending_uploads_are_bounded(team: tuple[Api, Api, Api, str]) -> None:
    alice, bob, _, team_id = team
    made = [
        await alice.ok("POST", "/api/v1/files", 201, json=declare(team_id, b"p", f"p{i}"))
        for i in range(10)  # RTC_FILES__MAX_PENDING_PER_USER's default
    ]
    refused = await alice.request("POST", "/api/v1/files", json=declare(team_id, b"p"))
    problem = assert_problem(refused, 409, "too_many_pending_uploads")
    assert (problem["pending_uploads"], problem["max_pending_uploads"]) == (10, 10)
    assert problem["max_pending_bytes"] == 1024**3
    await bob.ok("POST", "/api/v1/files", 201, json=declare(team_id, b"p"))  # his own bound
    await alice.ok("DELETE", f"/api/v1/files/{made[0]['id']}", 204)
    await alice.ok("POST", "/api/v1/files", 201, json=declare(team_id, b"p"))


@pytest.mark.parametrize("forged", ["evil.example", "evil.example:443", "127.0.0.1.evil.example"])
async def test_a_forged_host_header_gets_no_links(
    node: ServerProcess, team: tuple[Api, Api, Api, str], forged: str
) -> None:
    alice, _, _, team_id = team
    f = await upload(alice, team_id, b"for the right host only")
    evil = {"Host": forged}
    refused = await alice.request("POST", "/api/v1/files", json=declare(team_id, b"x"),
                                  headers=evil)  # fmt: skip
    assert_problem(refused, 400, "host_not_allowed")
    assert await used(alice, team_id) == len(b"for the right host only")  # nothing reserved
    assert_problem(await alice.request("GET", f"/api/v1/files/{f['id']}", headers=evil), 400,
                   "host_not_allowed")  # fmt: skip
    # The node's own names on any port are fine, and the links point back at them.
    own = {"Host": f"localhost:{node.port}"}
    created = await alice.ok("POST", "/api/v1/files", 201, json=declare(team_id, b"x"),
                             headers=own)  # fmt: skip
    redirect = await alice.request("GET", f"/api/v1/files/{f['id']}", headers=own)
    assert redirect.status_code == 302
    if "X-Amz-Expires" not in created["upload"]["url"]:
        assert created["upload"]["url"].startswith(f"http://localhost:{node.port}/api/v1/blobs/")
        assert redirect.headers["location"].startswith(f"http://localhost:{node.port}/")


async def test_a_download_link_ends_with_access_to_the_file(
    node: ServerProcess, team: tuple[Api, Api, Api, str]
) -> None:
    alice, bob, _, team_id = team
    f = await upload(alice, team_id, b"shared for a while")
    channel = await alice.create_channel(team_id, "brief", private=True)
    await alice.join(channel["id"], bob)
    msg = await alice.ok(
        "POST", "/api/v1/messages", 201,
        json={"channel_id": channel["id"], "body": "here", "attachments": [f["id"]],
              "client_msg_id": "brief-share"},
    )  # fmt: skip
    first = await bob.request("GET", f"/api/v1/files/{f['id']}")
    assert first.status_code == 302
    link = httpx.URL(first.headers["location"])
    if "X-Amz-Expires" in link.params:
        # S3 serves its links without asking us: only their lifetime bounds them.
        assert link.params["X-Amz-Expires"] == "60"
        return
    assert int(link.params["expires"]) <= time.time() + 61
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.get(link)).content == b"shared for a while"
        # The message is deleted: the file is no longer shared with Bob, and the link
        # he already holds stops working at once (not when it expires).
        await alice.ok("DELETE", f"/api/v1/messages/{msg['id']}", 200,
                       headers={"If-Match": '"1"'})  # fmt: skip
        assert_problem(await http.get(link), 404, "not_found")
        # Alice's own link ends when she deletes the file.
        mine = (await alice.request("GET", f"/api/v1/files/{f['id']}")).headers["location"]
        assert (await http.get(mine)).status_code == 200
        await alice.ok("DELETE", f"/api/v1/files/{f['id']}", 204)
        assert_problem(await http.get(mine), 404, "not_found")
