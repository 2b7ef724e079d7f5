"""Who is told about a message, when, and how long to wait after a failed attempt."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from realtimechat_client.backoff import Backoff

JobKind = Literal["push", "email"]
Reason = Literal["dm", "mention", "channel"]

# "@AdaLovelace" mentions the member whose display name is "Ada Lovelace": the
# display name with its spaces left out, in any case.
_MENTION = re.compile(r"@([^\s@]+)")
_TRAILING = ".,;:!?)]}'\""


def mention_key(display_name: str) -> str:
    """How a display name is written after an @."""
    return "".join(display_name.split()).lower()


def mentions(body: str) -> set[str]:
    """The mention keys written in a message body."""
    return {m.group(1).rstrip(_TRAILING).lower() for m in _MENTION.finditer(body)} - {""}


@dataclass(frozen=True)
class Recipient:
    """A member other than the sender, with what they asked for."""

    user_id: str
    display_name: str
    push: bool
    email: bool
    muted: bool
    has_device: bool


@dataclass(frozen=True)
class PlannedJob:
    user_id: str
    kind: JobKind
    reason: Reason
    due_at: int


@dataclass(frozen=True)
class Timing:
    """The delays of NotifySettings, in milliseconds."""

    small_channel_max: int
    small_channel_push_delay_ms: int
    email_delay_ms: int


def reach(kind: str, members: int, body: str, small_channel_max: int) -> Reason | None:
    """Whether a message may tell every other member, only those mentioned, or nobody.

    Decided before any member is read, so a large channel without mentions costs nothing.
    """
    if kind == "dm":
        return "dm"
    if 0 < members - 1 <= small_channel_max:
        return "channel"
    if "@" in body and mentions(body):
        return "mention"
    return None


def plan(
    reach_: Reason, body: str, recipients: list[Recipient], timing: Timing, now: int
) -> list[PlannedJob]:
    """The jobs one message creates: a push and an e-mail per recipient who wants them.

    DMs and mentions push at once; a small channel's push waits, and is skipped if
    the member read the message meanwhile. E-mail is always for what stays unread.
    """
    mentioned = mentions(body) if "@" in body else set()
    jobs: list[PlannedJob] = []
    for r in recipients:
        if r.muted:
            continue
        reason: Reason
        if reach_ == "dm":
            reason = "dm"
        elif mention_key(r.display_name) in mentioned:
            reason = "mention"
        elif reach_ == "channel":
            reason = "channel"
        else:
            continue
        if r.push and r.has_device:
            delay = timing.small_channel_push_delay_ms if reason == "channel" else 0
            jobs.append(PlannedJob(r.user_id, "push", reason, now + delay))
        if r.email:
            jobs.append(PlannedJob(r.user_id, "email", reason, now + timing.email_delay_ms))
    return jobs


def backoff_s(
    attempts: int, base_s: float, cap_s: float, retry_after_s: float | None = None
) -> float:
    """Delay before the next attempt: full jitter, never sooner than the provider asked."""
    return Backoff(base_s, cap_s).delay(attempts - 1, floor_s=retry_after_s)


@dataclass(frozen=True)
class Device:
    id: str
    user_id: str
    platform: str
    token: str
    created_at: int


@dataclass(frozen=True)
class Job:
    """A claimed notification job."""

    id: str
    user_id: str
    channel_id: str
    seq: int
    kind: JobKind
    reason: Reason
    attempts: int
    due_at: int
