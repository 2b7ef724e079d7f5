"""REST contract: idempotent send, ETags, edit and delete, history and event pages."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.rest_support import assert_problem, assert_timestamp, team_with
from tests.support import Api, unique

MESSAGE_KEYS = {
    "id",
    "channel_id",
    "seq",
    "sender_id",
    "client_msg_id",
    "body",
    "attachments",
    "version",
    "created_at",
    "edited_at",
    "deleted_at",
}


async def chat(alice: Api, *others: Api) -> str:
    """A public channel created by alice (its admin) with `others` as plain members."""
    team_id = await team_with(alice, *others)
    channel = await alice.create_channel(team_id, "general")
    for other in others:
        await alice.join(channel["id"], other)
    channel_id: str = channel["id"]
    return channel_id


async def post(
    api: Api, channel_id: str, body: str, client_msg_id: str | None, **headers: str
) -> httpx.Response:
    payload: dict[str, Any] = {"channel_id": channel_id, "body": body}
    if client_msg_id is not None:
        payload["client_msg_id"] = client_msg_id
    return await api.request("POST", "/api/v1/messages", json=payload, headers=headers)


async def last_seq(api: Api, channel_id: str) -> int:
    seq: int = (await api.ok("GET", f"/api/v1/channels/{channel_id}", 200))["last_seq"]
    return seq


# ---- send ------------------------------------------------------------------
async def test_send_answers_201_with_the_message_and_etag(alice: Api) -> None:
    cid = await chat(alice)
    before = await last_seq(alice, cid)
    cmid = unique("c")
    resp = await post(alice, cid, "hello world", cmid)
    assert resp.status_code == 201, resp.text
    msg = resp.json()
    assert set(msg) == MESSAGE_KEYS
    assert msg["channel_id"] == cid
    assert msg["seq"] == before + 1
    assert msg["sender_id"] == alice.user_id
    assert msg["client_msg_id"] == cmid
    assert msg["body"] == "hello world"
    assert msg["version"] == 1
    assert msg["attachments"] == []
    assert msg["edited_at"] is None
    assert msg["deleted_at"] is None
    assert_timestamp(msg["created_at"])
    assert resp.headers["etag"] == '"1"'
    assert await last_seq(alice, cid) == msg["seq"]


async def test_retry_with_same_client_msg_id_returns_the_same_message(alice: Api) -> None:
    cid = await chat(alice)
    cmid = unique("c")
    first = await post(alice, cid, "only once", cmid)
    assert first.status_code == 201, first.text
    retry = await post(alice, cid, "only once", cmid)
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    assert retry.headers["etag"] == first.headers["etag"]

    history = await alice.ok("GET", f"/api/v1/channels/{cid}/messages", 200)
    assert [m["id"] for m in history["messages"]] == [first.json()["id"]]
    created = [e for e in await alice.events(cid) if e["event"] == "message.created"]
    assert len(created) == 1

    changed = await post(alice, cid, "a different body", cmid)
    assert_problem(changed, 422, "idempotency_key_reused")
    other_channel = await chat(alice)
    assert_problem(
        await post(alice, other_channel, "only once", cmid), 422, "idempotency_key_reused"
    )
    assert len((await alice.ok("GET", f"/api/v1/channels/{cid}/messages", 200))["messages"]) == 1


async def test_client_msg_ids_are_per_sender(alice: Api, bob: Api) -> None:
    cid = await chat(alice, bob)
    cmid = unique("shared")
    a = await post(alice, cid, "same words", cmid)
    b = await post(bob, cid, "same words", cmid)
    assert (a.status_code, b.status_code) == (201, 201)
    assert a.json()["id"] != b.json()["id"]


async def test_idempotency_key_header_alone(alice: Api) -> None:
    cid = await chat(alice)
    key = unique("k")
    first = await post(alice, cid, "by header", None, **{"Idempotency-Key": key})
    assert first.status_code == 201, first.text
    assert first.json()["client_msg_id"] == key
    retry = await post(alice, cid, "by header", None, **{"Idempotency-Key": key})
    assert retry.status_code == 200, retry.text
    assert retry.json() == first.json()
    # The header and the body field name the same key.
    same = await post(alice, cid, "by header", key)
    assert same.status_code == 200, same.text
    assert same.json()["id"] == first.json()["id"]
    assert_problem(
        await post(alice, cid, "changed", None, **{"Idempotency-Key": key}),
        422,
        "idempotency_key_reused",
    )
    assert_problem(
        await post(alice, cid, "by header", unique("other"), **{"Idempotency-Key": key}),
        422,
        "validation_error",
    )


async def test_send_validation(alice: Api) -> None:
    cid = await chat(alice)
    before = await last_seq(alice, cid)
    assert_problem(await post(alice, cid, "x" * (16 * 1024 + 1), unique()), 422, "validation_error")
    assert_problem(await post(alice, cid, "", unique()), 422, "validation_error")
    assert_problem(await post(alice, cid, " \n\t ", unique()), 422, "validation_error")
    missing = assert_problem(await post(alice, cid, "no key", None), 422, "validation_error")
    assert "client_msg_id" in missing.get("detail", "") or missing.get("field") == "client_msg_id"
    assert_problem(await post(alice, cid, "long key", "k" * 101), 422, "validation_error")
    assert await last_seq(alice, cid) == before  # nothing was written

    at_limit = await post(alice, cid, "y" * (16 * 1024), unique())
    assert at_limit.status_code == 201, at_limit.text
    assert len(at_limit.json()["body"]) == 16 * 1024


# ---- read one, ETags ---------------------------------------------------------
async def test_get_message_with_etag_and_if_none_match(alice: Api, bob: Api) -> None:
    cid = await chat(alice, bob)
    sent = await alice.send(cid, "look at me")
    url = f"/api/v1/messages/{sent['id']}"

    resp = await bob.request("GET", url)
    assert resp.status_code == 200, resp.text
    assert resp.json() == sent
    etag = resp.headers["etag"]
    assert etag == '"1"'

    cached = await bob.request("GET", url, headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert cached.content == b""
    assert cached.headers["etag"] == etag
    stale = await bob.request("GET", url, headers={"If-None-Match": '"0"'})
    assert stale.status_code == 200

    await alice.ok("PUT", url, 200, json={"body": "changed"}, headers={"If-Match": etag})
    after_edit = await bob.request("GET", url, headers={"If-None-Match": etag})
    assert after_edit.status_code == 200
    assert after_edit.json()["body"] == "changed"
    assert after_edit.headers["etag"] == '"2"'

    assert_problem(await bob.request("GET", f"/api/v1/messages/{unique()}"), 404, "not_found")


# ---- edit -------------------------------------------------------------------
async def test_edit_needs_the_current_etag_and_the_author(alice: Api, bob: Api) -> None:
    cid = await chat(alice, bob)
    sent = await bob.send(cid, "typo")
    url = f"/api/v1/messages/{sent['id']}"

    assert_problem(
        await bob.request("PUT", url, json={"body": "fixed"}), 428, "precondition_required"
    )
    assert_problem(
        await bob.request("PUT", url, json={"body": "fixed"}, headers={"If-Match": '"2"'}),
        412,
        "version_conflict",
    )
    assert_problem(
        await alice.request("PUT", url, json={"body": "hijacked"}, headers={"If-Match": '"1"'}),
        403,
        "forbidden",
    )
    assert_problem(
        await bob.request("PUT", url, json={"body": ""}, headers={"If-Match": '"1"'}),
        422,
        "validation_error",
    )
    assert (await alice.ok("GET", url, 200))["body"] == "typo"

    resp = await bob.request("PUT", url, json={"body": "fixed"}, headers={"If-Match": '"1"'})
    assert resp.status_code == 200, resp.text
    edited = resp.json()
    assert edited["body"] == "fixed"
    assert edited["version"] == 2
    assert edited["id"] == sent["id"]
    assert edited["seq"] == sent["seq"]
    assert_timestamp(edited["edited_at"])
    assert resp.headers["etag"] == '"2"'

    # The old ETag is stale now; weak and bare forms of the current one work.
    assert_problem(
        await bob.request("PUT", url, json={"body": "again"}, headers={"If-Match": '"1"'}),
        412,
        "version_conflict",
    )
    third = await bob.ok("PUT", url, 200, json={"body": "again"}, headers={"If-Match": 'W/"2"'})
    assert third["version"] == 3

    events = await alice.events(cid)
    updates = [e for e in events if e["event"] == "message.updated"]
    assert [(e["data"]["body"], e["data"]["version"]) for e in updates] == [
        ("fixed", 2),
        ("again", 3),
    ]
    assert updates[-1]["seq"] == events[-1]["seq"] == await last_seq(alice, cid)
    history = await alice.ok("GET", f"/api/v1/channels/{cid}/messages", 200)
    assert history["messages"][0]["body"] == "again"


# ---- delete -----------------------------------------------------------------
async def test_delete_by_author_or_channel_admin_only(alice: Api, bob: Api, carol: Api) -> None:
    cid = await chat(alice, bob, carol)
    bobs = await bob.send(cid, "bob wrote this")
    carols = await carol.send(cid, "carol wrote this")

    # A plain member may not delete someone else's message.
    assert_problem(
        await carol.request(
            "DELETE", f"/api/v1/messages/{bobs['id']}", headers={"If-Match": '"1"'}
        ),
        403,
        "forbidden",
    )
    assert_problem(
        await bob.request("DELETE", f"/api/v1/messages/{bobs['id']}"), 428, "precondition_required"
    )
    assert_problem(
        await bob.request("DELETE", f"/api/v1/messages/{bobs['id']}", headers={"If-Match": '"7"'}),
        412,
        "version_conflict",
    )

    own = await bob.request("DELETE", f"/api/v1/messages/{bobs['id']}", headers={"If-Match": '"1"'})
    assert own.status_code == 200, own.text
    assert own.json()["deleted_at"] is not None
    assert own.json()["body"] == ""
    assert own.headers["etag"] == f'"{own.json()["version"]}"'

    # Alice created the channel, so she is its admin.
    by_admin = await alice.request(
        "DELETE", f"/api/v1/messages/{carols['id']}", headers={"If-Match": '"1"'}
    )
    assert by_admin.status_code == 200, by_admin.text
    assert by_admin.json()["deleted_at"] is not None

    # A deleted message cannot be edited.
    assert_problem(
        await bob.request(
            "PUT",
            f"/api/v1/messages/{bobs['id']}",
            json={"body": "resurrected"},
            headers={"If-Match": own.headers["etag"]},
        ),
        410,
        "message_deleted",
    )


async def test_deleted_text_is_gone_from_history_and_events(alice: Api, bob: Api) -> None:
    cid = await chat(alice, bob)
    secret = unique("SECRET")
    sent = await alice.send(cid, f"my password is {secret}")
    url = f"/api/v1/messages/{sent['id']}"
    await alice.ok("PUT", url, 200, json={"body": f"edited {secret}"}, headers={"If-Match": '"1"'})
    await bob.send(cid, "after")
    gone = await alice.ok("DELETE", url, 200, headers={"If-Match": '"2"'})
    assert gone["body"] == ""
    assert_timestamp(gone["deleted_at"])

    raw_history = await bob.request("GET", f"/api/v1/channels/{cid}/messages")
    assert secret not in raw_history.text
    history = raw_history.json()
    tomb = next(m for m in history["messages"] if m["id"] == sent["id"])
    assert tomb["body"] == ""
    assert tomb["deleted_at"] == gone["deleted_at"]
    assert tomb["seq"] == sent["seq"]
    assert (await bob.ok("GET", url, 200))["deleted_at"] == gone["deleted_at"]

    raw = await bob.request("GET", f"/api/v1/channels/{cid}/events", params={"limit": 500})
    assert raw.status_code == 200
    assert secret not in raw.text
    events = raw.json()["events"]
    kinds = [(e["event"], e["data"].get("id")) for e in events if e["event"].startswith("message.")]
    assert ("message.created", sent["id"]) in kinds
    assert ("message.updated", sent["id"]) in kinds
    assert kinds[-1] == ("message.deleted", sent["id"])
    for e in events:
        if e["event"].startswith("message.") and e["data"]["id"] == sent["id"]:
            assert e["data"]["body"] == ""
            assert e["data"]["deleted_at"] is not None
    # The unread count no longer counts the deleted message.
    assert (await bob.ok("GET", f"/api/v1/channels/{cid}", 200))["unread_count"] == 0


# ---- history and events pages -------------------------------------------------
async def test_history_is_newest_first_with_before_seq_paging(alice: Api, bob: Api) -> None:
    cid = await chat(alice, bob)
    sent = [await (alice if i % 2 else bob).send(cid, f"m{i}") for i in range(7)]
    seqs = sorted((m["seq"] for m in sent), reverse=True)
    url = f"/api/v1/channels/{cid}/messages"

    page1 = await bob.ok("GET", url, 200, params={"limit": 3})
    assert [m["seq"] for m in page1["messages"]] == seqs[:3]
    assert page1["has_more"] is True
    assert set(page1["messages"][0]) == MESSAGE_KEYS
    page2 = await bob.ok(
        "GET", url, 200, params={"limit": 3, "before_seq": page1["messages"][-1]["seq"]}
    )
    assert [m["seq"] for m in page2["messages"]] == seqs[3:6]
    assert page2["has_more"] is True
    page3 = await bob.ok(
        "GET", url, 200, params={"limit": 3, "before_seq": page2["messages"][-1]["seq"]}
    )
    assert [m["seq"] for m in page3["messages"]] == seqs[6:]
    assert page3["has_more"] is False
    assert [m["body"] for m in page3["messages"]] == ["m0"]

    everything = await bob.ok("GET", url, 200, params={"limit": 7})
    assert everything["has_more"] is False
    assert [m["id"] for m in everything["messages"]] == [m["id"] for m in reversed(sent)]

    assert_problem(await bob.request("GET", url, params={"limit": 0}), 422, "validation_error")
    assert_problem(await bob.request("GET", url, params={"limit": 501}), 422, "validation_error")
    assert_problem(
        await bob.request("GET", url, params={"before_seq": "x"}), 422, "validation_error"
    )


async def test_events_are_contiguous_in_seq_order_with_paging(alice: Api, bob: Api) -> None:
    cid = await chat(alice, bob)
    first = await alice.send(cid, "one")
    await bob.send(cid, "two")
    await alice.ok(
        "PUT",
        f"/api/v1/messages/{first['id']}",
        200,
        json={"body": "1"},
        headers={"If-Match": '"1"'},
    )
    await alice.ok("PATCH", f"/api/v1/channels/{cid}", 200, json={"name": "renamed"})
    await alice.ok("DELETE", f"/api/v1/messages/{first['id']}", 200, headers={"If-Match": '"2"'})
    n = await last_seq(alice, cid)
    url = f"/api/v1/channels/{cid}/events"

    collected: list[dict[str, Any]] = []
    after = 0
    pages = 0
    while True:
        page = await bob.ok("GET", url, 200, params={"after_seq": after, "limit": 3})
        pages += 1
        assert len(page["events"]) <= 3
        collected.extend(page["events"])
        if not page["has_more"]:
            break
        assert len(page["events"]) == 3
        after = page["events"][-1]["seq"]
    assert [e["seq"] for e in collected] == list(range(1, n + 1))
    assert pages == (n + 2) // 3
    assert [e["event"] for e in collected] == [
        "channel.created",
        "member.joined",
        "message.created",
        "message.created",
        "message.updated",
        "channel.renamed",
        "message.deleted",
    ]
    for e in collected:
        assert set(e) == {"channel_id", "seq", "event", "data", "created_at"}
        assert e["channel_id"] == cid
        assert_timestamp(e["created_at"])

    # One page with everything agrees; after the end there is nothing more.
    whole = await bob.ok("GET", url, 200, params={"after_seq": 0, "limit": 500})
    assert whole["events"] == collected
    assert whole["has_more"] is False
    tail = await bob.ok("GET", url, 200, params={"after_seq": n})
    assert tail == {"events": [], "has_more": False}
    middle = await bob.ok("GET", url, 200, params={"after_seq": 4, "limit": 2})
    assert [e["seq"] for e in middle["events"]] == [5, 6]
    assert middle["has_more"] is True
    assert_problem(await bob.request("GET", url, params={"after_seq": -1}), 422, "validation_error")
