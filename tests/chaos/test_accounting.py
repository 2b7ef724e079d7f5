"""The chaos counts themselves: a loss, a duplicate or a reordering must show (no cluster)."""

from __future__ import annotations

from realtimechat_client import Event
from tests.chaos.harness import Counts, account

AT = "2025-01-01T00:00:00.000Z"


def msg(seq: int, cmid: str) -> Event:
    data = {"id": f"id-{cmid}", "client_msg_id": cmid, "seq": seq}
    return {
        "channel_id": "c",
        "seq": seq,
        "event": "message.created",
        "created_at": AT,
        "data": data,
    }


def joined(seq: int) -> Event:
    data = {"user_id": "u"}
    return {"channel_id": "c", "seq": seq, "event": "member.joined", "created_at": AT, "data": data}


TRUTH = [joined(1), msg(2, "a"), msg(3, "b"), msg(4, "c")]
SENT = {"a", "b", "c"}
ACKED = {e["data"]["client_msg_id"]: e["data"] for e in TRUTH[1:]}


def counts(*deliveries: list[Event], truth: list[Event] = TRUTH) -> Counts:
    return account(truth, SENT, ACKED, list(deliveries))


def test_every_client_got_everything_once_in_order() -> None:
    c = counts(list(TRUTH), list(TRUTH))
    assert (c.sent, c.acknowledged, c.stored, c.expected, c.delivered) == (3, 3, 3, 6, 6)
    assert (c.lost, c.duplicated, c.reordered, c.mismatched) == (0, 0, 0, 0)
    assert not c.server_problems


def test_a_missing_event_is_lost() -> None:
    c = counts(list(TRUTH), [TRUTH[0], TRUTH[1], TRUTH[3]])
    assert (c.lost, c.delivered, c.duplicated, c.reordered) == (1, 5, 0, 0)


def test_the_same_seq_twice_is_a_duplicate() -> None:
    c = counts([*TRUTH, TRUTH[2]])
    assert (c.duplicated, c.lost, c.reordered, c.delivered) == (1, 0, 0, 3)


def test_a_lower_seq_after_a_higher_one_is_reordered() -> None:
    c = counts([TRUTH[0], TRUTH[2], TRUTH[1], TRUTH[3]])
    assert (c.reordered, c.lost, c.duplicated) == (1, 0, 0)


def test_a_message_stored_twice_is_a_duplicate_and_a_server_problem() -> None:
    truth = [*TRUTH, msg(5, "a")]
    c = counts(list(truth), truth=truth)
    assert c.duplicated == 1
    assert any("more than once" in p for p in c.server_problems)


def test_an_acknowledged_message_the_server_does_not_have_is_lost_everywhere() -> None:
    truth = TRUTH[:3]  # "c" was acknowledged but is not stored
    c = counts(list(truth), list(truth), truth=truth)
    assert c.lost == 2
    assert any("acknowledged but not stored" in p for p in c.server_problems)


def test_a_delivered_event_that_differs_from_the_server_is_mismatched() -> None:
    wrong = msg(3, "x")
    c = counts([TRUTH[0], TRUTH[1], wrong, TRUTH[3]])
    assert c.mismatched == 1
    assert c.lost == 0  # seq 3 arrived, but not as stored
