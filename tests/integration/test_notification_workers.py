"""Notification workers as separate processes on PostgreSQL: several claim side by side
without sending a job twice, and a killed worker's claimed jobs go out by another."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.fake_providers import FakeFcm
from tests.integration.test_notifications import FAST, pair, until_settled
from tests.postgres import PostgresServer, postgres_server
from tests.support import ServerProcess, WorkerProcess, new_user, running_server, unique


@pytest.fixture(scope="module")
def fcm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeFcm]:
    with FakeFcm() as fake:
        fake.write_credentials(tmp_path_factory.mktemp("fcm") / "service-account.json")
        yield fake


@pytest.fixture(scope="module")
async def pg() -> AsyncIterator[PostgresServer]:
    async with postgres_server() as server:
        yield server


def worker_env(pg: PostgresServer, fcm: FakeFcm) -> dict[str, str]:
    return {
        **FAST,
        **fcm.env(),
        "RTC_DATABASE_URL": pg.url,
        "RTC_NOTIFY__LEASE_S": "2",  # a dead worker's claims expire soon
        "RTC_NOTIFY__SMALL_CHANNEL_PUSH_DELAY_S": "0",
        "RTC_NOTIFY__BATCH": "5",  # several workers each get a share
        # Not the adapters' timeout under test here: a call the fake accepted after the
        # worker gave up on it would be sent again, as with a real provider.
        "RTC_NOTIFY__PUSH__TIMEOUT_S": "10",
    }


@pytest.fixture(scope="module")
async def node(
    tmp_path_factory: pytest.TempPathFactory, pg: PostgresServer, fcm: FakeFcm
) -> AsyncIterator[ServerProcess]:
    env = {**worker_env(pg, fcm), "RTC_RUN_WORKER": "false"}  # only the workers dispatch
    async with running_server(tmp_path_factory.mktemp("node"), **env) as server:
        yield server


@contextlib.asynccontextmanager
async def workers(
    tmp: Path, pg: PostgresServer, fcm: FakeFcm, n: int
) -> AsyncIterator[list[WorkerProcess]]:
    started = [WorkerProcess(tmp / f"worker-{i}", worker_env(pg, fcm)) for i in range(n)]
    try:
        for w in started:
            w.data_dir.mkdir(parents=True, exist_ok=True)
            await w.start()
        yield started
    finally:
        for w in started:
            await w.kill()


async def test_two_workers_send_every_job_once(
    tmp_path: Path, node: ServerProcess, pg: PostgresServer, fcm: FakeFcm
) -> None:
    fcm.behave("slow", 0.05)  # calls overlap, so the workers really claim side by side
    fcm.clear()
    alice, bob, dm, _ = await pair(node)
    async with workers(tmp_path, pg, fcm, 2):
        for i in range(40):
            await alice.send(dm, f"message {i}")
        await asyncio.to_thread(fcm.wait_for, 40, 60)
        await until_settled(node, alice)
    assert len(fcm.accepted) == 40
    assert set(fcm.by_job_id.values()) == {1}
    await alice.aclose()
    await bob.aclose()


async def test_a_killed_workers_claimed_job_is_sent_by_another(
    tmp_path: Path, node: ServerProcess, pg: PostgresServer, fcm: FakeFcm
) -> None:
    fcm.behave("slow", 120)  # the first worker's call hangs: it dies holding the claim
    fcm.clear()
    alice, bob, dm, _ = await pair(node)
    async with workers(tmp_path / "first", pg, fcm, 1) as [first]:
        await alice.send(dm, "sent while the worker dies")
        await asyncio.to_thread(fcm.wait_for_received, 1)
        await first.kill()
    fcm.behave("ok")
    async with workers(tmp_path / "second", pg, fcm, 1):
        [push] = await asyncio.to_thread(fcm.wait_for, 1, 30)
        counts = await until_settled(node, alice)
    assert push["message"]["notification"]["body"] == "sent while the worker dies"
    # One job, one idempotency key: the retry carries the id the dead worker's call had.
    assert fcm.by_job_id == {push["message"]["data"]["job_id"]: 1}
    assert counts["push"].get("dead", 0) == 0
    await alice.aclose()
    await bob.aclose()


async def test_a_send_tells_a_small_channel_but_the_muted_and_a_large_one_only_the_mentioned(
    tmp_path: Path, node: ServerProcess, pg: PostgresServer, fcm: FakeFcm
) -> None:
    # On PostgreSQL the send reads a small channel's recipients with its seq, and writes
    # the jobs with the message: the same decisions as the embedded path's.
    fcm.clear()
    owner = await new_user(node, "owner")
    carol = await new_user(node, "carol")
    dave = await new_user(node, "dave")
    crowd = [await new_user(node, f"member{i}") for i in range(10)]
    phones = {}
    for user in (carol, dave):
        phones[user.user_id] = unique("phone")
        await user.ok(
            "POST", "/api/v1/devices", 201, json={"platform": "ios", "token": phones[user.user_id]}
        )
    team = await owner.create_team()
    for user in (carol, dave, *crowd):
        await owner.add_to_team(team["id"], user)
    small = await owner.create_channel(team["id"], "small")
    large = await owner.create_channel(team["id"], "large")
    for user in (carol, dave):
        await owner.join(small["id"], user)
    for user in (carol, dave, *crowd):
        await owner.join(large["id"], user)
    path = f"/api/v1/channels/{small['id']}/notification-settings"
    await dave.ok("PUT", path, 200, json={"muted": True})
    async with workers(tmp_path, pg, fcm, 1):
        await owner.send(small["id"], "to the small channel")
        await owner.send(large["id"], "nobody in particular")
        await owner.send(large["id"], "@carol have a look")
        await asyncio.to_thread(fcm.wait_for, 2, 30)
        await until_settled(node, owner)
    told = sorted(
        (p["message"]["token"], p["message"]["notification"]["body"]) for p in fcm.accepted
    )
    carols = phones[carol.user_id]
    assert told == [(carols, "@carol have a look"), (carols, "to the small channel")]
    for user in (owner, carol, dave, *crowd):
        await user.aclose()
