"""An in-memory unit of work: the repositories of services/uow.py over plain dicts.

A write runs on a deep copy of the state and replaces the state only when the work
returns (a raise leaves nothing behind), then publishes the events appended, as the
SQL unit of work does after its commit. `lose_next_race()` makes the next write
lose a unique-key race to a copy of itself, as two tries of one send can on a
pooled database.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import orjson

from realtimechat.domain.errors import AlreadyExists
from realtimechat.domain.files import FileRecord, FileState
from realtimechat.domain.models import (
    Channel,
    Event,
    Invitation,
    Member,
    Message,
    Role,
    Team,
    User,
)
from realtimechat.domain.notifications import (
    Device,
    Job,
    JobKind,
    PlannedJob,
    Reason,
    Recipient,
    mention_key,
)
from realtimechat.domain.records import LoginFailures, RefreshToken, SendSlot, StoredStats
from realtimechat.ids import new_id
from realtimechat.services.uow import Tx, UnitOfWork

T = TypeVar("T")


@dataclass
class JobRow:
    id: str
    user_id: str
    channel_id: str
    seq: int
    kind: JobKind
    reason: Reason
    state: str
    due_at: int
    attempts: int = 0
    claimed_until: int = 0
    last_error: str | None = None
    updated_at: int = 0


@dataclass
class MemberRow:
    role: Role
    read_seq: int
    joined_at: int


@dataclass
class State:
    """Everything the fake database holds."""

    users: dict[str, tuple[User, str]] = field(default_factory=dict)
    teams: dict[str, Team] = field(default_factory=dict)
    team_members: dict[tuple[str, str], tuple[Role, int]] = field(default_factory=dict)
    invitations: dict[tuple[str, str], Invitation] = field(default_factory=dict)
    channels: dict[str, Channel] = field(default_factory=dict)
    dm_keys: dict[str, str] = field(default_factory=dict)
    members: dict[tuple[str, str], MemberRow] = field(default_factory=dict)
    messages: dict[str, tuple[Message, str]] = field(default_factory=dict)
    events: dict[tuple[str, int], tuple[Event, str | None]] = field(default_factory=dict)
    outbox: dict[tuple[str, int], list[int]] = field(default_factory=dict)  # [created, claim]
    files: dict[str, FileRecord] = field(default_factory=dict)
    shares: list[tuple[str, str, str]] = field(default_factory=list)  # file, message, channel
    team_storage: dict[str, int] = field(default_factory=dict)
    jobs: dict[str, JobRow] = field(default_factory=dict)
    devices: dict[str, Device] = field(default_factory=dict)
    settings: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    muted: dict[tuple[str, str], bool] = field(default_factory=dict)
    flags: dict[str, bool] = field(default_factory=dict)
    revoked: dict[str, tuple[int, int]] = field(default_factory=dict)  # revoked_at, expires
    failures: dict[str, LoginFailures] = field(default_factory=dict)
    tokens: dict[str, RefreshToken] = field(default_factory=dict)


class _Repo:
    def __init__(self, tx: FakeTx) -> None:
        self.s = tx.state
        self.tx = tx


class FakeUsers(_Repo):
    def add(self, user: User, password_hash: str) -> None:
        if user.id in self.s.users or any(u.email == user.email for u, _ in self.s.users.values()):
            raise AlreadyExists()
        self.s.users[user.id] = (user, password_hash)

    def get(self, user_id: str) -> User | None:
        found = self.s.users.get(user_id)
        return found[0] if found else None

    def with_hash_by_email(self, email: str) -> tuple[User, str] | None:
        return next((u for u in self.s.users.values() if u[0].email == email), None)

    def share_team(self, a: str, b: str) -> bool:
        teams_a = {t for t, u in self.s.team_members if u == a}
        return any(t in teams_a for t, u in self.s.team_members if u == b)

    def email(self, user_id: str) -> str | None:
        user = self.get(user_id)
        return user.email if user else None


class FakeTeams(_Repo):
    def add(self, team: Team) -> None:
        self.s.teams[team.id] = replace(team, role=None)

    def get(self, team_id: str) -> Team | None:
        return self.s.teams.get(team_id)

    def role(self, team_id: str, user_id: str) -> Role | None:
        found = self.s.team_members.get((team_id, user_id))
        return found[0] if found else None

    def add_member(self, team_id: str, user_id: str, role: Role, at: int) -> None:
        if (team_id, user_id) in self.s.team_members:
            raise AlreadyExists()
        self.s.team_members[(team_id, user_id)] = (role, at)

    def add_member_if_absent(self, team_id: str, user_id: str, role: Role, at: int) -> bool:
        if (team_id, user_id) in self.s.team_members:
            return False
        self.s.team_members[(team_id, user_id)] = (role, at)
        return True

    def of_user(self, user_id: str) -> list[Team]:
        found = [
            replace(self.s.teams[t], role=role)
            for (t, u), (role, _) in self.s.team_members.items()
            if u == user_id
        ]
        return sorted(found, key=lambda t: t.created_at)

    def members(self, team_id: str) -> list[Member]:
        rows = [
            Member(u, self.s.users[u][0].display_name, role, at)
            for (t, u), (role, at) in self.s.team_members.items()
            if t == team_id
        ]
        return sorted(rows, key=lambda m: m.joined_at)


class FakeInvitations(_Repo):
    def prune(self, team_id: str, now: int) -> None:
        for key, inv in list(self.s.invitations.items()):
            if inv.team_id == team_id and inv.expires_at <= now:
                del self.s.invitations[key]

    def pending_besides(self, team_id: str, email: str, now: int) -> int:
        return sum(
            1
            for inv in self.s.invitations.values()
            if inv.team_id == team_id and inv.email != email and inv.expires_at > now
        )

    def put(self, invitation: Invitation) -> None:
        self.s.invitations[(invitation.team_id, invitation.email)] = invitation

    def of_user(self, user_id: str, now: int) -> list[Invitation]:
        email = FakeUsers(self.tx).email(user_id)
        found = [i for i in self.s.invitations.values() if i.email == email and i.expires_at > now]
        return sorted(found, key=lambda i: i.created_at)

    def delete(self, team_id: str, email: str) -> None:
        self.s.invitations.pop((team_id, email), None)


class FakeChannels(_Repo):
    def add(self, channel: Channel, dm_key: str | None = None) -> None:
        if dm_key is not None:
            if dm_key in self.s.dm_keys:
                raise AlreadyExists()
            self.s.dm_keys[dm_key] = channel.id
        self.s.channels[channel.id] = channel

    def by_dm_key(self, dm_key: str) -> Channel | None:
        channel_id = self.s.dm_keys.get(dm_key)
        return self.s.channels[channel_id] if channel_id else None

    def rename(self, channel_id: str, name: str) -> None:
        self.s.channels[channel_id] = replace(self.s.channels[channel_id], name=name)

    def next_seq(self, channel_id: str) -> int:
        channel = self.s.channels[channel_id]
        self.s.channels[channel_id] = replace(channel, last_seq=channel.last_seq + 1)
        return channel.last_seq + 1

    def next_seq_for_new_send(
        self, channel_id: str, user_id: str, client_msg_id: str, small_max: int
    ) -> SendSlot | None:
        channel = self.s.channels.get(channel_id)
        if channel is None or (channel_id, user_id) not in self.s.members:
            return None
        if FakeMessages(self.tx).by_client_id(user_id, client_msg_id) is not None:
            return None
        return SendSlot(self.next_seq(channel_id), channel.kind, self.member_count(channel_id))

    def last_seqs(self, channel_ids: list[str]) -> dict[str, int]:
        return {c: self.s.channels[c].last_seq for c in channel_ids if c in self.s.channels}

    def access(
        self, channel_id: str, user_id: str
    ) -> tuple[Channel, Role | None, Role | None] | None:
        channel = self.s.channels.get(channel_id)
        if channel is None:
            return None
        member = self.s.members.get((channel_id, user_id))
        team_role = FakeTeams(self.tx).role(channel.team_id, user_id) if channel.team_id else None
        return channel, member.role if member else None, team_role

    def membership(self, channel_id: str, user_id: str) -> tuple[Role, int] | None:
        member = self.s.members.get((channel_id, user_id))
        return (member.role, member.read_seq) if member else None

    def member_count(self, channel_id: str) -> int:
        return sum(1 for c, _ in self.s.members if c == channel_id)

    def add_member(
        self, channel_id: str, user_id: str, role: Role, at: int, read_seq: int = 0
    ) -> None:
        if (channel_id, user_id) in self.s.members:
            raise AlreadyExists()
        self.s.members[(channel_id, user_id)] = MemberRow(role, read_seq, at)

    def remove_member(self, channel_id: str, user_id: str) -> None:
        self.s.members.pop((channel_id, user_id), None)

    def members(self, channel_id: str) -> list[Member]:
        rows = [
            Member(u, self.s.users[u][0].display_name, m.role, m.joined_at)
            for (c, u), m in self.s.members.items()
            if c == channel_id
        ]
        return sorted(rows, key=lambda m: m.joined_at)

    def member_ids(self, channel_id: str) -> list[str]:
        return [u for c, u in self.s.members if c == channel_id]

    def set_read_seq(self, channel_id: str, user_id: str, seq: int) -> int:
        member = self.s.members.get((channel_id, user_id))
        if member is None:
            return 0
        member.read_seq = max(member.read_seq, seq)
        return member.read_seq

    def of_user(self, user_id: str) -> list[tuple[Channel, Role, int]]:
        rows = [
            (self.s.channels[c], m.role, m.read_seq)
            for (c, u), m in self.s.members.items()
            if u == user_id
        ]
        return sorted(rows, key=lambda r: r[0].created_at)

    def of_team_for(self, team_id: str, user_id: str) -> list[tuple[Channel, Role | None, int]]:
        rows: list[tuple[Channel, Role | None, int]] = []
        for channel in self.s.channels.values():
            member = self.s.members.get((channel.id, user_id))
            if channel.team_id == team_id and (channel.kind == "public" or member):
                rows.append(
                    (channel, member.role if member else None, member.read_seq if member else 0)
                )
        return sorted(rows, key=lambda r: r[0].created_at)

    def unread_count(self, channel_id: str, user_id: str, read_seq: int) -> int:
        return sum(
            1
            for m, _ in self.s.messages.values()
            if m.channel_id == channel_id
            and m.seq > read_seq
            and m.sender_id != user_id
            and m.deleted_at is None
        )

    def unread_counts(self, user_id: str) -> dict[str, int]:
        counts = {
            c: self.unread_count(c, user_id, m.read_seq)
            for (c, u), m in self.s.members.items()
            if u == user_id
        }
        return {c: n for c, n in counts.items() if n}


class FakeMessages(_Repo):
    def get(self, message_id: str) -> Message | None:
        found = self.s.messages.get(message_id)
        return found[0] if found else None

    def by_client_id(self, sender_id: str, client_msg_id: str) -> tuple[Message, str] | None:
        return next(
            (
                (m, h)
                for m, h in self.s.messages.values()
                if m.sender_id == sender_id and m.client_msg_id == client_msg_id
            ),
            None,
        )

    def add(self, msg: Message, request_hash: str, event: Event, jobs: list[PlannedJob]) -> None:
        if self.by_client_id(msg.sender_id, msg.client_msg_id) is not None:
            raise AlreadyExists()
        self.s.messages[msg.id] = (msg, request_hash)
        FakeEvents(self.tx).store(event, msg.id)
        for j in jobs:
            job_id = new_id()
            self.s.jobs[job_id] = JobRow(
                job_id, j.user_id, msg.channel_id, msg.seq, j.kind, j.reason, "pending", j.due_at
            )

    def update(self, msg: Message) -> None:
        self.s.messages[msg.id] = (msg, self.s.messages[msg.id][1])

    def history(self, channel_id: str, before_seq: int | None, limit: int) -> list[Message]:
        rows = [
            m
            for m, _ in self.s.messages.values()
            if m.channel_id == channel_id and (before_seq is None or m.seq < before_seq)
        ]
        return sorted(rows, key=lambda m: -m.seq)[:limit]

    def scrub_events(self, message_id: str, payload: bytes) -> None:
        for key, (ev, mid) in self.s.events.items():
            if mid == message_id:
                self.s.events[key] = (replace(ev, data=payload), mid)


class FakeEvents(_Repo):
    def store(self, ev: Event, message_id: str | None) -> None:
        """Store an event and record it for publishing (the tx's outbox row too)."""
        if not self.tx.writable:
            raise RuntimeError("an event appended in a read transaction would be lost")
        key = (ev.channel_id, ev.seq)
        if key in self.s.events:
            raise AlreadyExists()
        self.s.events[key] = (ev, message_id)
        if self.tx.needs_outbox:
            self.s.outbox[key] = [ev.created_at, 0]
        self.tx.appended.append(ev)

    def append(
        self,
        channel_id: str,
        type_: str,
        data: Mapping[str, Any],
        *,
        message_id: str | None = None,
        joined: tuple[str, ...] = (),
        left: tuple[str, ...] = (),
    ) -> Event:
        seq = FakeChannels(self.tx).next_seq(channel_id)
        ev = Event(channel_id, seq, type_, orjson.dumps(data), self.tx.now(), joined, left)
        self.store(ev, message_id)
        return ev

    def after(self, channel_id: str, after_seq: int, limit: int) -> list[Event]:
        rows = [
            ev for (c, seq), (ev, _) in self.s.events.items() if c == channel_id and seq > after_seq
        ]
        return sorted(rows, key=lambda e: e.seq)[:limit]

    def joins_since(self, user_ids: list[str], since: int) -> list[Event]:
        wanted = set(user_ids)
        found = [
            ev
            for ev, _ in self.s.events.values()
            if ev.created_at >= since and wanted.intersection(ev.joined)
        ]
        return sorted(found, key=lambda e: (e.channel_id, e.seq))


class FakeOutbox(_Repo):
    def claim(self, *, older_than: int, now: int, until: int, limit: int) -> list[Event]:
        due = sorted(
            (row[0], key)
            for key, row in self.s.outbox.items()
            if row[0] < older_than and row[1] < now
        )[:limit]
        for _, key in due:
            self.s.outbox[key][1] = until
        return sorted((self.s.events[k][0] for _, k in due), key=lambda e: (e.channel_id, e.seq))

    def delete(self, keys: list[tuple[str, int]]) -> None:
        for key in keys:
            self.s.outbox.pop(key, None)

    def lag(self, now: int) -> tuple[int, int]:
        oldest = min((row[0] for row in self.s.outbox.values()), default=None)
        return len(self.s.outbox), 0 if oldest is None else now - oldest


class FakeFiles(_Repo):
    def add(self, f: FileRecord, now: int) -> None:
        self.s.files[f.id] = f

    def get(self, file_id: str) -> FileRecord | None:
        return self.s.files.get(file_id)

    def by_ids(self, ids: list[str]) -> dict[str, FileRecord]:
        return {i: self.s.files[i] for i in ids if i in self.s.files}

    def set_state(self, file_id: str, from_state: str, to_state: FileState, now: int) -> bool:
        f = self.s.files.get(file_id)
        if f is None or f.state != from_state:
            return False
        self.s.files[file_id] = replace(f, state=to_state)
        return True

    def reserve(self, team_id: str, size: int, quota: int) -> bool:
        used = self.s.team_storage.get(team_id, 0)
        if used + size > quota:
            self.s.team_storage.setdefault(team_id, 0)
            return False
        self.s.team_storage[team_id] = used + size
        return True

    def release(self, team_id: str | None, size: int) -> None:
        if team_id is not None and team_id in self.s.team_storage:
            self.s.team_storage[team_id] = max(self.s.team_storage[team_id] - size, 0)

    def used_bytes(self, team_id: str) -> int:
        return self.s.team_storage.get(team_id, 0)

    def share(self, message_id: str, channel_id: str, file_ids: list[str]) -> None:
        self.s.shares += [(f, message_id, channel_id) for f in file_ids]

    def unshare_message(self, message_id: str) -> None:
        self.s.shares = [s for s in self.s.shares if s[1] != message_id]

    def may_download(self, f: FileRecord, user_id: str) -> bool:
        if f.uploader_id == user_id:
            return True
        return any(
            file_id == f.id
            and (channel_id, user_id) in self.s.members
            and self.s.messages[message_id][0].deleted_at is None
            for file_id, message_id, channel_id in self.s.shares
        )

    def team_file_count(self, team_id: str, live_since: int) -> int:
        return sum(
            1
            for f in self.s.files.values()
            if f.team_id == team_id
            and (f.state == "ready" or (f.state == "pending" and f.created_at >= live_since))
        )

    def _pending_before(self, team_id: str | None, before: int) -> list[FileRecord]:
        return [
            f
            for f in self.s.files.values()
            if f.state == "pending"
            and f.created_at < before
            and (team_id is None or f.team_id == team_id)
        ]

    def expire_pending(self, team_id: str, before: int, now: int) -> list[FileRecord]:
        released = [
            f
            for f in self._pending_before(team_id, before)
            if self.set_state(f.id, "pending", "deleted", now)
        ]
        if released:
            self.release(team_id, sum(f.size for f in released))
        return released

    def expired_pending_bytes(self, team_id: str, before: int) -> int:
        return sum(f.size for f in self._pending_before(team_id, before))

    def pending_of_user(self, user_id: str, since: int) -> tuple[int, int]:
        mine = [
            f
            for f in self.s.files.values()
            if f.state == "pending" and f.created_at >= since and f.uploader_id == user_id
        ]
        return len(mine), sum(f.size for f in mine)

    def stale_pending(self, before: int, limit: int) -> list[FileRecord]:
        return sorted(self._pending_before(None, before), key=lambda f: f.created_at)[:limit]

    def live_keys(self) -> set[str]:
        return {f.storage_key for f in self.s.files.values() if f.state in ("pending", "ready")}

    def recount_usage(self) -> dict[str, tuple[int, int]]:
        actual: dict[str, int] = {}
        for f in self.s.files.values():
            if f.state in ("pending", "ready") and f.team_id is not None:
                actual[f.team_id] = actual.get(f.team_id, 0) + f.size
        fixed: dict[str, tuple[int, int]] = {}
        for team_id in set(actual) | set(self.s.team_storage):
            want, have = actual.get(team_id, 0), self.s.team_storage.get(team_id)
            if have != want:
                self.s.team_storage[team_id] = want
                fixed[team_id] = (have or 0, want)
        return fixed


class FakeNotifications(_Repo):
    def _recipient(self, channel_id: str, user_id: str) -> Recipient:
        user = self.s.users[user_id][0]
        push, email = self.user_settings(user_id)
        has_device = any(d.user_id == user_id for d in self.s.devices.values())
        muted = self.channel_muted(user_id, channel_id)
        return Recipient(user_id, user.display_name, push, email, muted, has_device)

    def recipients(
        self, channel_id: str, sender_id: str, mention_keys: set[str] | None
    ) -> list[Recipient]:
        found = [
            self._recipient(channel_id, u)
            for c, u in self.s.members
            if c == channel_id and u != sender_id
        ]
        if mention_keys is None:
            return found
        return [r for r in found if mention_key(r.display_name) in mention_keys]

    def _claim(self, rows: list[JobRow], now: int, lease_ms: int) -> list[Job]:
        for row in rows:
            row.state, row.claimed_until, row.attempts = "sending", now + lease_ms, row.attempts + 1
        return [
            Job(r.id, r.user_id, r.channel_id, r.seq, r.kind, r.reason, r.attempts, r.due_at)
            for r in rows
        ]

    def claim_jobs(self, kinds: list[str], now: int, lease_ms: int, limit: int) -> list[Job]:
        due = sorted(
            (
                r
                for r in self.s.jobs.values()
                if r.kind in kinds
                and (
                    (r.state == "pending" and r.due_at <= now)
                    or (r.state == "sending" and r.claimed_until <= now)
                )
            ),
            key=lambda r: r.due_at,
        )[:limit]
        jobs = self._claim(due, now, lease_ms)
        mailed = {j.user_id for j in jobs if j.kind == "email"}
        rest = [
            r
            for r in self.s.jobs.values()
            if r.kind == "email" and r.state == "pending" and r.user_id in mailed
        ]
        jobs += self._claim(rest, now, lease_ms)
        return sorted(jobs, key=lambda j: (j.due_at, j.id))

    def finish_jobs(self, ids: list[str], state: str, now: int, error: str | None = None) -> None:
        for job_id in ids:
            row = self.s.jobs[job_id]
            if row.state == "sending":
                row.state, row.updated_at, row.last_error, row.claimed_until = state, now, error, 0

    def retry_jobs(
        self, ids: list[str], due_at: int, now: int, error: str, *, refund: bool = False
    ) -> None:
        for job_id in ids:
            row = self.s.jobs[job_id]
            if row.state == "sending":
                row.state, row.due_at, row.updated_at = "pending", due_at, now
                row.last_error, row.claimed_until = error, 0
                row.attempts -= 1 if refund else 0

    def delete_finished(self, sent_before: int, dead_before: int, limit: int = 1000) -> int:
        old = [
            r.id
            for r in self.s.jobs.values()
            if (r.state in ("sent", "skipped") and r.updated_at < sent_before)
            or (r.state == "dead" and r.updated_at < dead_before)
        ][:limit]
        for job_id in old:
            del self.s.jobs[job_id]
        return len(old)

    def job_counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {"push": {}, "email": {}}
        for r in self.s.jobs.values():
            out[r.kind][r.state] = out[r.kind].get(r.state, 0) + 1
        return out

    def job_context(self, channel_id: str, seq: int, user_id: str) -> dict[str, Any] | None:
        msg = next(
            (m for m, _ in self.s.messages.values() if m.channel_id == channel_id and m.seq == seq),
            None,
        )
        member = self.s.members.get((channel_id, user_id))
        if msg is None or member is None or msg.deleted_at is not None:
            return None
        channel = self.s.channels[channel_id]
        push, email = self.user_settings(user_id)
        return {
            "body": msg.body,
            "deleted_at": None,
            "sender": self.s.users[msg.sender_id][0].display_name,
            "channel": channel.name,
            "kind": channel.kind,
            "read_seq": member.read_seq,
            "push": push,
            "email": email,
            "muted": self.channel_muted(user_id, channel_id),
        }

    def register_device(
        self, user_id: str, platform: str, token: str, now: int
    ) -> tuple[Device, bool]:
        old = next((d for d in self.s.devices.values() if d.token == token), None)
        if old is not None:
            if old.user_id == user_id and old.platform == platform:
                return old, False
            moved = Device(old.id, user_id, platform, token, now)
            self.s.devices[old.id] = moved
            return moved, old.user_id != user_id
        device = Device(new_id(), user_id, platform, token, now)
        self.s.devices[device.id] = device
        return device, True

    def devices(self, user_id: str) -> list[Device]:
        found = [d for d in self.s.devices.values() if d.user_id == user_id]
        return sorted(found, key=lambda d: d.created_at)

    def delete_device(self, user_id: str, device_id: str) -> bool:
        device = self.s.devices.get(device_id)
        if device is None or device.user_id != user_id:
            return False
        del self.s.devices[device_id]
        return True

    def forget_token(self, token: str) -> None:
        for device in [d for d in self.s.devices.values() if d.token == token]:
            del self.s.devices[device.id]

    def user_settings(self, user_id: str) -> tuple[bool, bool]:
        return self.s.settings.get(user_id, (True, True))

    def put_user_settings(self, user_id: str, push: bool, email: bool) -> None:
        self.s.settings[user_id] = (push, email)

    def channel_muted(self, user_id: str, channel_id: str) -> bool:
        return self.s.muted.get((user_id, channel_id), False)

    def put_channel_muted(self, user_id: str, channel_id: str, muted: bool) -> None:
        self.s.muted[(user_id, channel_id)] = muted


class FakeFlags(_Repo):
    def all(self) -> dict[str, bool]:
        return dict(self.s.flags)

    def set(self, name: str, enabled: bool, now: int) -> None:
        self.s.flags[name] = enabled


class FakeSessions(_Repo):
    def revoke(self, session_id: str, now: int, expires_at: int) -> None:
        old = self.s.revoked.get(session_id)
        if old is None or old[1] < expires_at:
            self.s.revoked[session_id] = (now, expires_at)

    def revoked_since(self, since: int, now: int) -> list[tuple[str, int]]:
        return [
            (sid, exp) for sid, (at, exp) in self.s.revoked.items() if at >= since and exp > now
        ]

    def delete_expired_revocations(self, now: int) -> int:
        gone = [sid for sid, (_, exp) in self.s.revoked.items() if exp <= now]
        for sid in gone:
            del self.s.revoked[sid]
        return len(gone)

    def failures(self, account_key: str) -> LoginFailures:
        return self.s.failures.get(account_key, LoginFailures())

    def set_failures(self, account_key: str, state: LoginFailures) -> None:
        if state.failures == 0:
            self.s.failures.pop(account_key, None)
        else:
            self.s.failures[account_key] = state

    def delete_stale_failures(self, before: int) -> int:
        gone = [
            k
            for k, f in self.s.failures.items()
            if f.last_failed_at < before and f.locked_until < before
        ]
        for k in gone:
            del self.s.failures[k]
        return len(gone)


class FakeTokens(_Repo):
    def by_hash(self, token_hash: str) -> RefreshToken | None:
        return next((t for t in self.s.tokens.values() if t.token_hash == token_hash), None)

    def add(
        self, *, user_id: str, token_hash: str, family_id: str, now: int, expires_at: int
    ) -> None:
        token = RefreshToken(new_id(), user_id, token_hash, family_id, now, expires_at, None, None)
        self.s.tokens[token.id] = token

    def mark_used(self, token_id: str, now: int) -> None:
        self.s.tokens[token_id] = replace(self.s.tokens[token_id], used_at=now)

    def revoke_family(self, family_id: str, now: int) -> None:
        for t in list(self.s.tokens.values()):
            if t.family_id == family_id and t.revoked_at is None:
                self.s.tokens[t.id] = replace(t, revoked_at=now)

    def delete_expired(self, now: int, limit: int = 1000) -> int:
        gone = [t.id for t in self.s.tokens.values() if t.expires_at < now][:limit]
        for token_id in gone:
            del self.s.tokens[token_id]
        return len(gone)


class FakeStats(_Repo):
    def stored(self, now: int) -> StoredStats:
        rows, lag = FakeOutbox(self.tx).lag(now)
        jobs = FakeNotifications(self.tx).job_counts()
        return StoredStats(jobs, rows, lag, sum(self.s.team_storage.values()))


class FakeTx:
    """One transaction over a copy of the state."""

    def __init__(
        self, state: State, *, writable: bool, outbox: bool, now: Callable[[], int]
    ) -> None:
        self.state = state
        self.writable = writable
        self.needs_outbox = outbox
        self.now = now
        self.appended: list[Event] = []
        self.users = FakeUsers(self)
        self.teams = FakeTeams(self)
        self.invitations = FakeInvitations(self)
        self.channels = FakeChannels(self)
        self.messages = FakeMessages(self)
        self.events = FakeEvents(self)
        self.outbox = FakeOutbox(self)
        self.files = FakeFiles(self)
        self.notifications = FakeNotifications(self)
        self.flags = FakeFlags(self)
        self.sessions = FakeSessions(self)
        self.tokens = FakeTokens(self)
        self.stats = FakeStats(self)


class FakeUnitOfWork:
    """The unit of work over `State`, publishing committed events to `publish`."""

    def __init__(
        self,
        *,
        publish: Callable[[Sequence[Event]], None] | None = None,
        outbox: bool = False,
        clock: Callable[[], int] = lambda: 1_000_000,
    ) -> None:
        self.state = State()
        self.publish = publish
        self.outbox = outbox
        self.clock = clock
        self.commits = 0
        self.rollbacks = 0
        self._lose_race = False

    def lose_next_race(self) -> None:
        """The next write finds a copy of itself committed first: AlreadyExists."""
        self._lose_race = True

    def _tx(self, *, writable: bool) -> FakeTx:
        return FakeTx(
            copy.deepcopy(self.state), writable=writable, outbox=self.outbox, now=self.clock
        )

    def _commit(self, tx: FakeTx) -> None:
        self.state = tx.state
        self.commits += 1
        if tx.appended and self.publish is not None:
            self.publish(list(tx.appended))

    async def write(self, work: Callable[[Tx], T]) -> T:
        tx = self._tx(writable=True)
        if self._lose_race:
            self._lose_race = False
            rival = self._tx(writable=True)
            work(rival)
            self._commit(rival)
            work(tx)  # runs on the state from before the rival's commit
            self.rollbacks += 1
            raise AlreadyExists()
        try:
            result = work(tx)
        except BaseException:
            self.rollbacks += 1
            raise
        self._commit(tx)
        return result

    async def read(self, work: Callable[[Tx], T]) -> T:
        return work(self._tx(writable=False))


_: type[UnitOfWork] = FakeUnitOfWork


def seed_users(uow: FakeUnitOfWork, *user_ids: str) -> None:
    """Accounts `uid` with e-mail `uid@example.com` and display name `uid`."""
    for uid in user_ids:
        uow.state.users[uid] = (User(uid, f"{uid}@example.com", uid, 0), "hash")
