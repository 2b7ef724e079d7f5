"""The bus contract on MemoryBus and RedisStreamsBus, and Redis outages, on a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence

import orjson
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.typing import EncodableT, FieldT

from realtimechat.bus.base import Bus, Ephemeral
from realtimechat.bus.memory import MemoryBus
from realtimechat.bus.redis_streams import RedisStreamsBus
from realtimechat.domain.errors import Unavailable
from realtimechat.domain.models import Event
from realtimechat.settings import RedisSettings
from tests.redis_server import RedisServer, redis_server
from tests.support import eventually

WAIT_S = 5.0


def fast_settings(publish_queue: int = 1000) -> RedisSettings:
    """Small timeouts, so outages are noticed and healed within the suite's time budget."""
    return RedisSettings(timeout_s=0.5, block_ms=200, retry_s=0.05, publish_queue=publish_queue)


def make_events(channel_id: str, first_seq: int, n: int) -> list[Event]:
    """Events with non-ASCII JSON and membership changes, to check the round trip exactly."""
    return [
        Event(
            channel_id,
            seq,
            "message.created",
            orjson.dumps({"body": f"héllo {seq} ✓", "n": seq}),
            1_700_000_000_000 + seq,
            joined=("u-join",) if seq % 3 == 0 else (),
            left=("u-left", "u-other") if seq % 4 == 0 else (),
        )
        for seq in range(first_seq, first_seq + n)
    ]


class Recorder:
    """A subscriber that records what it gets; tests await what they expect, with a timeout."""

    def __init__(self, bus: Bus) -> None:
        self.events: list[Event] = []
        self.signals: list[Ephemeral] = []
        self._changed = asyncio.Event()
        bus.subscribe(self._on_event, self._on_signal)

    def _on_event(self, ev: Event) -> None:
        self.events.append(ev)
        self._changed.set()

    def _on_signal(self, sig: Ephemeral) -> None:
        self.signals.append(sig)
        self._changed.set()

    async def wait_for(self, cond: Callable[[], bool], timeout: float = WAIT_S) -> None:
        async with asyncio.timeout(timeout):
            while not cond():
                self._changed.clear()
                await self._changed.wait()

    async def wait_for_event(self, ev: Event) -> None:
        await self.wait_for(lambda: ev in self.events)

    async def wait_for_counts(self, events: int, signals: int = 0) -> None:
        await self.wait_for(lambda: len(self.events) >= events and len(self.signals) >= signals)


@contextlib.asynccontextmanager
async def redis_nodes(
    url: str, settings: RedisSettings, names: Sequence[str] = ("a", "b")
) -> AsyncIterator[list[RedisStreamsBus]]:
    """One bus per named node, all on one Redis, as server nodes would have."""
    buses = [RedisStreamsBus(url, settings, node_id=name) for name in names]
    try:
        for bus in buses:
            await bus.start()
        yield buses
    finally:
        for bus in buses:
            await bus.close()


@pytest.fixture
async def redis() -> AsyncIterator[RedisServer]:
    async with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[list[Bus]]:
    """The buses of every node: the first publishes, each has a subscriber."""
    if request.param == "memory":
        yield [MemoryBus()]
        return
    async with redis_server() as server, redis_nodes(server.url, fast_settings()) as buses:
        yield list(buses)


async def barrier(cluster: list[Bus], recorders: list[Recorder], seq: int) -> Event:
    """Publish a marker from the last node and wait until every node has it.

    The marker is behind everything the nodes had received on the stream, so an echo
    or a duplicate of earlier events would have been delivered before it.
    """
    (marker,) = make_events("c-marker", seq, 1)
    cluster[-1].publish([marker])
    for rec in recorders:
        await rec.wait_for_event(marker)
    return marker


async def test_every_subscriber_gets_each_event_once_in_publish_order(cluster: list[Bus]) -> None:
    recorders = [Recorder(bus) for bus in cluster]
    one, two = make_events("c1", 1, 6), make_events("c2", 1, 4)
    events = [ev for pair in zip(one, two, strict=False) for ev in pair] + one[len(two) :]
    typing = Ephemeral("c1", "u1", "typing")

    cluster[0].publish(events[:3])
    cluster[0].publish_ephemeral(typing)
    cluster[0].publish(events[3:])
    for rec in recorders:
        await rec.wait_for_counts(len(events), signals=1)
    marker = await barrier(cluster, recorders, 1)

    for rec in recorders:
        assert rec.events == [*events, marker]
        assert rec.signals == [typing]


async def test_a_redis_node_gets_the_others_events_and_not_its_own_twice(
    redis: RedisServer,
) -> None:
    async with redis_nodes(redis.url, fast_settings()) as (a, b):
        rec_a, rec_b = Recorder(a), Recorder(b)
        events = make_events("c1", 1, 3)

        a.publish(events)
        assert rec_a.events == events  # local delivery happens inside publish()
        await rec_b.wait_for_counts(3)
        marker = await barrier([a, b], [rec_a, rec_b], 1)

        assert rec_a.events == [*events, marker]
        assert rec_b.events == [*events, marker]
        await eventually(lambda: (a.published, b.published) == (3, 1), WAIT_S, interval=0.01)
        assert (a.received, b.received, a.dropped, b.dropped) == (1, 3, 0, 0)


async def test_redis_outage_degrades_and_heals_without_restarting_the_bus(
    redis: RedisServer,
) -> None:
    async with redis_nodes(redis.url, fast_settings()) as (a, b):
        rec_a, rec_b = Recorder(a), Recorder(b)
        assert a.health() == b.health() == ("ok", None)
        before = make_events("c1", 1, 1)
        a.publish(before)
        await rec_b.wait_for_counts(1)

        await a.ping()  # the /readyz round trip
        await asyncio.to_thread(redis.kill)
        await eventually(
            lambda: a.health()[0] == b.health()[0] == "degraded", WAIT_S, interval=0.01
        )
        assert a.health()[1]
        with pytest.raises(RedisConnectionError):
            await a.ping()
        during = make_events("c1", 2, 3)
        started = time.perf_counter()
        a.publish(during)
        assert time.perf_counter() - started < 0.05
        assert rec_a.events == [*before, *during]
        # A node that starts during the outage starts degraded instead of failing.
        async with redis_nodes(redis.url, fast_settings(), names=("c",)) as (c,):
            assert c.health()[0] == "degraded"

            await asyncio.to_thread(redis.start)  # same port, empty: no persistence
            await eventually(
                lambda: a.health() == b.health() == c.health() == ("ok", None),
                WAIT_S,
                interval=0.01,
            )
            after = make_events("c1", 5, 1)
            a.publish(after)
            await rec_b.wait_for_event(after[0])

        # The outage was shorter than the queue: what a published during it arrives too.
        assert rec_b.events == [*before, *during, *after]
        assert rec_a.events == [*before, *during, *after]


async def test_publish_queue_stays_bounded_and_counts_drops_while_redis_is_down(
    redis: RedisServer,
) -> None:
    async with redis_nodes(redis.url, fast_settings(publish_queue=5)) as (a, b):
        rec_a, rec_b = Recorder(a), Recorder(b)
        await asyncio.to_thread(redis.kill)

        first = make_events("c1", 1, 100)
        a.publish(first)
        assert (a.queued, a.dropped) == (5, 95)
        assert rec_a.events == first  # local delivery is not limited by the queue
        # The publisher takes the queued batch and keeps it for retrying, but no more.
        await eventually(
            lambda: a.queued == 0 and a.health()[0] == "degraded", WAIT_S, interval=0.01
        )
        second = make_events("c1", 101, 100)
        a.publish(second)
        assert (a.queued, a.dropped) == (5, 190)

        await asyncio.to_thread(redis.start)
        await eventually(lambda: a.health() == ("ok", None), WAIT_S, interval=0.01)
        marker = await barrier([b, a], [rec_b], 1)
        assert rec_b.events == [*first[:5], *second[:5], marker]
        await eventually(
            lambda: a.published == 11, WAIT_S, interval=0.01
        )  # the ten it kept and the marker


async def test_reader_rereads_a_stream_that_went_back_in_time(redis: RedisServer) -> None:
    """A Redis that came back without its data and with its clock behind writes lower ids."""
    async with redis_nodes(redis.url, fast_settings()) as (a, b):
        rec_b = Recorder(b)
        events = make_events("c1", 1, 2)
        a.publish(events)
        await rec_b.wait_for_counts(2)

        raw = Redis.from_url(redis.url)
        try:
            stream = fast_settings().stream
            entries = await raw.xrange(stream) or []
            # Atomically, so the reader never sees the stream missing: only the ids went back.
            async with raw.pipeline(transaction=True) as pipe:
                pipe.delete(stream)
                for i, (_, fields) in enumerate(entries):
                    assert fields is not None
                    copy: dict[FieldT, EncodableT] = {k: v for k, v in fields.items()}
                    pipe.xadd(stream, copy, id=f"1-{i + 1}")
                await pipe.execute()
        finally:
            await raw.aclose()

        await rec_b.wait_for_counts(4)
        assert rec_b.events == [*events, *events]


async def test_close_is_idempotent_and_leaves_no_task_behind(redis: RedisServer) -> None:
    bus = RedisStreamsBus(redis.url, fast_settings())
    assert bus.health()[0] == "degraded"  # nothing happens before start()
    await bus.start()
    assert bus.health() == ("ok", None)
    await bus.close()
    await bus.close()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("bus-")]
    assert bus.health()[0] == "degraded"


async def test_confirmations_and_confirmed_publish_for_the_outbox(redis: RedisServer) -> None:
    async with redis_nodes(redis.url, fast_settings()) as (a, b):
        confirmed: asyncio.Queue[list[Event]] = asyncio.Queue()
        a.on_confirmed(lambda events: confirmed.put_nowait(list(events)))
        rec_b = Recorder(b)
        events = make_events("c1", 1, 3)
        a.publish(events)
        a.publish_ephemeral(Ephemeral("c1", "u1", "typing"))  # nothing to confirm
        assert await asyncio.wait_for(confirmed.get(), WAIT_S) == events

        await asyncio.to_thread(redis.kill)
        (relayed,) = make_events("c1", 4, 1)
        with pytest.raises(Unavailable):
            await a.publish_confirmed([relayed])
        await asyncio.to_thread(redis.start)
        await a.publish_confirmed([relayed])  # returns once the stream has it
        await rec_b.wait_for_event(relayed)
        assert confirmed.empty()  # the relay acknowledges its own publishes
