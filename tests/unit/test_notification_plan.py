"""Who is told about a message, and when (pure rules, no database)."""

from __future__ import annotations

from realtimechat.domain.notifications import (
    Recipient,
    Timing,
    backoff_s,
    mention_key,
    mentions,
    plan,
    reach,
)

TIMING = Timing(small_channel_max=3, small_channel_push_delay_ms=60_000, email_delay_ms=300_000)


def member(name: str, **kw: bool) -> Recipient:
    values = {"push": True, "email": True, "muted": False, "has_device": True, **kw}
    return Recipient(f"id-{name}", name, **values)


def test_mentions_are_display_names_without_spaces_in_any_case() -> None:
    assert mention_key("Ada Lovelace") == "adalovelace"
    assert mentions("hi @AdaLovelace, and @bob! mail me: x@y") == {"adalovelace", "bob", "y"}
    assert mentions("no mention @ here") == set()


def test_reach_costs_nothing_for_a_large_channel_without_mentions() -> None:
    assert reach("dm", 2, "hello", 3) == "dm"
    assert reach("public", 4, "hello", 3) == "channel"  # 3 others: small
    assert reach("public", 5, "hello", 3) is None
    assert reach("public", 5, "hey @bob", 3) == "mention"
    assert reach("public", 5, "hey @bob", 0) == "mention"
    assert reach("public", 2, "hello", 0) is None  # 0 turns small channels off


def test_a_dm_pushes_at_once_and_emails_after_the_delay() -> None:
    jobs = plan("dm", "hi", [member("Bob")], TIMING, now=1000)
    assert [(j.kind, j.reason, j.due_at) for j in jobs] == [
        ("push", "dm", 1000),
        ("email", "dm", 301_000),
    ]


def test_a_small_channel_push_waits_and_a_mention_does_not() -> None:
    jobs = plan("channel", "hey @Carol", [member("Bob"), member("Carol")], TIMING, now=0)
    pushes = {j.user_id: (j.reason, j.due_at) for j in jobs if j.kind == "push"}
    assert pushes == {"id-Bob": ("channel", 60_000), "id-Carol": ("mention", 0)}


def test_settings_decide_which_jobs_exist() -> None:
    recipients = [
        member("Muted", muted=True),
        member("NoPush", push=False),
        member("NoMail", email=False),
        member("NoDevice", has_device=False),
        member("NotMentioned"),
    ]
    body = "@Muted @NoPush @NoMail @NoDevice"
    jobs = {(j.user_id, j.kind) for j in plan("mention", body, recipients, TIMING, now=0)}
    assert jobs == {
        ("id-NoPush", "email"),
        ("id-NoMail", "push"),
        ("id-NoDevice", "email"),
    }


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    for attempts in range(1, 12):
        assert 0 <= backoff_s(attempts, 2.0, 60.0) <= min(60.0, 2.0 * 2 ** (attempts - 1))
    assert backoff_s(1, 2.0, 60.0, retry_after_s=30.0) >= 30.0
