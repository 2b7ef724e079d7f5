"""The chaos suite: a two-node cluster loses, duplicates and reorders nothing while it breaks.

Node A and node B (`realtimechat serve`), a `realtimechat worker`, PostgreSQL and Redis
are separate processes; SDK clients reach the nodes through a TCP balancer, half of them
on each node. Under a steady send load, in turn:

1. kill -9 node A: its clients reconnect through the balancer to B and resume; A comes
   back later;
2. Redis is killed and started again (empty: no persistence);
3. PostgreSQL stops (immediate) and starts again: sends answer 503 meanwhile and the
   SDK's retry of the same client_msg_id is stored once;
4. the worker is killed (-9) while events wait in the outbox (Redis down, and node A
   killed so that some of them only a relay can publish); a new worker drains it.

After each, every client must have seen every acknowledged message exactly once and in
seq order, matching the server's own event log. The counts and the recovery time (from
the end of the fault until a probe sent then reached every client) are printed as a
table at the end of the session and written to test-artifacts/chaos.json.

Sizes: CHAOS_CLIENTS (4) and CHAOS_MESSAGES per scenario (100); `make chaos` runs more.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.chaos.harness import (
    OUTAGE_S,
    Cluster,
    Fault,
    Run,
    eventually,
    is_zero,
    run_scenario,
    table,
)
from tests.postgres import postgres_server
from tests.redis_server import redis_server


@pytest.fixture(scope="module")
async def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Cluster]:
    async with contextlib.AsyncExitStack() as stack:
        pg = await stack.enter_async_context(postgres_server())
        redis = await stack.enter_async_context(redis_server())
        cluster = await Cluster.start(stack, pg, redis, tmp_path_factory.mktemp("chaos"))
        yield cluster
        cluster.save_logs(request.config.rootpath / "test-artifacts" / "chaos-logs")


@pytest.fixture
def artifact(request: pytest.FixtureRequest) -> Path:
    return request.config.rootpath / "test-artifacts" / "chaos.json"


async def check(cluster: Cluster, name: str, fault: Fault, artifact: Path) -> None:
    try:
        row = await run_scenario(cluster, name, fault, artifact)
    finally:
        await cluster.heal()  # the next scenario starts from a whole cluster
    assert row.clean, "\n" + table([row])


async def _reconnected(run: Run, before: dict[int, int]) -> bool:
    return all(
        p.session.stats.connects > n and p.session.connected
        for p in run.parties
        if (n := before.get(p.index)) is not None
    )


# ---- 1: kill -9 a node -------------------------------------------------------------------
async def kill_node_a(run: Run) -> None:
    cluster = run.cluster
    on_a = [p for p in run.parties if p.home == "A"]
    before = {p.index: p.session.stats.connects for p in on_a}
    await cluster.kill_node("A")
    run.applied()
    # Failover: the cluster must serve without A, so recovery counts from the kill, and
    # the probe goes through a client that was on A (its send has to find B).
    run.recover_from_now(on_a[0])
    took = await eventually(lambda: _reconnected(run, before), 20, "A's clients to reconnect")
    run.notes.append(
        f"{len(on_a)} clients of node A reconnected through the balancer to B in {took:.2f} s"
        "; recovery counted from the kill (A still down)"
    )
    await run.wait_phase(1)  # a third of the load went through B alone
    await cluster.start_node("A")
    run.ended()


async def test_kill_node(cluster: Cluster, artifact: Path) -> None:
    await check(cluster, "kill -9 node A", kill_node_a, artifact)


# ---- 2: restart Redis --------------------------------------------------------------------
async def restart_redis(run: Run) -> None:
    cluster = run.cluster
    await cluster.kill_redis()
    noticed = await cluster.wait_status("bus", "degraded")
    run.applied()
    # Sends go on from the database alone; other nodes' clients get them by catch-up.
    # The outage lasts at least OUTAGE_S and until that third of the load is stored.
    await asyncio.gather(run.wait_phase(1), asyncio.sleep(OUTAGE_S))
    await cluster.start_redis()
    run.ended()
    run.recover_from_now()
    back = await cluster.wait_status("bus", "ok")
    run.notes.append(
        f"both nodes reported the bus degraded {noticed:.2f} s after the kill and ok "
        f"{back:.2f} s after the restart"
    )


async def test_restart_redis(cluster: Cluster, artifact: Path) -> None:
    await check(cluster, "restart Redis", restart_redis, artifact)


# ---- 3: restart PostgreSQL ---------------------------------------------------------------
async def restart_postgres(run: Run) -> None:
    cluster = run.cluster
    party = run.parties[0]
    await cluster.stop_postgres()
    run.applied()
    # A send during the outage is refused with 503 and Retry-After (not a 500, not a hang).
    cmid = f"{run.slug}-during-outage"
    async with httpx.AsyncClient(base_url=cluster.frontends[party.home], timeout=10) as http:
        resp = await http.post(
            "/api/v1/messages",
            json={"channel_id": run.channel_id, "body": cmid, "client_msg_id": cmid},
            headers={"Authorization": f"Bearer {party.client.access_token}"},
        )
    assert resp.status_code == 503, f"{resp.status_code} {resp.text}"
    retry_after = resp.headers.get("Retry-After")
    # The SDK sends the same client_msg_id again and again until the database is back.
    retried = asyncio.create_task(run.send(party, cmid))
    await cluster.wait_status("database", "down", 10)
    await asyncio.sleep(OUTAGE_S)  # the length of the outage (the fault, not a wait)
    await cluster.start_postgres()
    run.ended()
    run.recover_from_now()
    msg = await retried
    back = await cluster.wait_status("database", "ok")
    run.notes.append(
        f"a send during the outage got 503 (Retry-After {retry_after}); the SDK's retry of "
        f"the same client_msg_id was stored as seq {msg['seq']}; nodes ready {back:.2f} s "
        "after the restart"
    )


async def test_restart_postgres(cluster: Cluster, artifact: Path) -> None:
    await check(cluster, "restart PostgreSQL", restart_postgres, artifact)


# ---- 4: kill -9 the worker while events wait in the outbox ----------------------------------
async def kill_worker(run: Run) -> None:
    cluster = run.cluster
    # Redis down: every event keeps its outbox row (nothing confirms the publication).
    await cluster.kill_redis()
    await cluster.wait_status("bus", "degraded")
    run.applied()
    await run.wait_phase(1)
    waiting = await cluster.outbox_rows()
    assert waiting > 0, "no events waiting in the outbox"
    await cluster.kill_worker()
    # Node A dies too, with its publications still queued for Redis: those events can
    # now reach the bus only through a relay, and there is none.
    await cluster.kill_node("A")
    await cluster.start_redis()
    await cluster.start_node("A")
    run.ended()
    run.recover_from_now()
    before = await cluster.outbox_rows()
    worker = await cluster.start_worker()
    drained = await eventually(
        lambda: is_zero(cluster.outbox_rows()), 40, "the new worker to drain the outbox"
    )
    relayed = worker.relayed()
    assert relayed > 0, "the new worker relayed nothing"
    run.notes.append(
        f"worker killed with {waiting} events in the outbox; {before} left when the new "
        f"worker started; it relayed {relayed} and the outbox was empty {drained:.1f} s later"
    )


async def test_kill_worker_with_events_in_the_outbox(cluster: Cluster, artifact: Path) -> None:
    await check(cluster, "kill -9 worker", kill_worker, artifact)
