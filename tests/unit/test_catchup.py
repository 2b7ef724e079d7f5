"""Catching up from the database when the bus missed events (no server, no network)."""

from __future__ import annotations

from realtimechat.domain.models import Event
from realtimechat.edge.catchup import CatchUp
from realtimechat.edge.hub import Hub
from tests.unit.test_hub import RecordingSocket, Store, connect, event, settle


def catch_up_over(hub: Hub, store: Store) -> CatchUp:
    async def last_seqs(channel_ids: list[str]) -> dict[str, int]:
        return {ch: max(store.events, default=0) for ch in channel_ids}

    async def joins_since(user_ids: list[str], since: int) -> list[Event]:
        return [ev for ev in store.events.values() if set(ev.joined) & set(user_ids)]

    return CatchUp(
        hub=hub,
        bus_health=lambda: ("ok", None),
        last_seqs=last_seqs,
        joins_since=joins_since,
        fast_s=1,
        slow_s=1,
    )


async def test_with_the_bus_down_stored_events_reach_the_connection_in_order() -> None:
    hub, store, ws = Hub(10**9), Store(), RecordingSocket()
    conn = connect(hub, store, ws)
    hub.subscribe(conn, "C", 0, known_last=0)
    catch_up = catch_up_over(hub, store)
    store.add(*(event(s, "message.created", {"n": s}) for s in (1, 2, 3)))  # written elsewhere
    await catch_up.check(degraded=True)
    await settle(conn, ws)
    assert ws.seqs() == [1, 2, 3]
    # Nothing new: nothing sent again.
    await catch_up.check(degraded=True)
    hub.on_event(store.events[3])  # the bus brings it late: dropped as already sent
    await settle(conn, ws)
    assert ws.seqs() == [1, 2, 3]


async def test_with_the_bus_up_a_gap_is_filled_only_if_it_persists() -> None:
    hub, store, ws = Hub(10**9), Store(), RecordingSocket()
    conn = connect(hub, store, ws)
    hub.subscribe(conn, "C", 0, known_last=0)
    catch_up = catch_up_over(hub, store)
    store.add(event(1, "message.created", {}))
    await catch_up.check(degraded=False)  # maybe on its way on the bus
    assert catch_up.filled == 0
    hub.on_event(store.events[1])  # it was
    await catch_up.check(degraded=False)
    assert catch_up.filled == 0
    store.add(event(2, "message.created", {}))  # its publish is lost
    await catch_up.check(degraded=False)
    await catch_up.check(degraded=False)
    assert catch_up.filled == 1
    await settle(conn, ws)
    assert ws.seqs() == [1, 2]


async def test_a_channel_followed_since_before_its_last_event_is_not_behind() -> None:
    hub, store, ws = Hub(10**9), Store(), RecordingSocket()
    store.add(*(event(s, "message.created", {}) for s in (1, 2)))
    conn = connect(hub, store, ws)
    hub.subscribe(conn, "C", 2, known_last=2)
    catch_up = catch_up_over(hub, store)
    await catch_up.check(degraded=True)
    assert catch_up.filled == 0


async def test_with_the_bus_down_a_join_made_elsewhere_starts_the_subscription() -> None:
    hub, store, ws = Hub(10**9), Store(), RecordingSocket()
    store.add(event(1, "channel.created", {}), event(2, "message.created", {}))
    conn = connect(hub, store, ws, user="U")  # connected, not a member of C yet
    catch_up = catch_up_over(hub, store)
    joined = event(3, "member.joined", {"user_id": "U"}, joined=("U",))
    store.add(joined, event(4, "message.created", {"after": "join"}))  # on another node
    await catch_up.check(degraded=True)
    await catch_up.check(degraded=True)  # again: nothing twice
    await settle(conn, ws)
    assert ws.seqs() == [3, 4]
