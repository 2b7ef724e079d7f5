"""The unit of work the services run on, and the repositories a transaction holds.

A service hands `UnitOfWork.write` a plain function of a `Tx`; the whole function
runs in one transaction (on the embedded default: on the database thread, in one
hop, possibly sharing a group commit). It commits when the function returns and
rolls back when it raises. The events the function appended (`tx.events.append`,
or a sent message's event) are published to the bus after the commit, in commit
order, and never for a transaction that rolled back; when the bus can lose a
publish, the unit of work also writes their outbox rows in the same transaction.

The functions must be synchronous and touch nothing but the `Tx`: a batch may run
a function again after another job of the batch failed.

Storage implements these protocols (storage/uow.py); tests/support/fake_uow.py
implements them in memory for the unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

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
from realtimechat.domain.notifications import Device, Job, PlannedJob, Recipient
from realtimechat.domain.records import LoginFailures, RefreshToken, SendSlot, StoredStats

T = TypeVar("T")


class Users(Protocol):
    """Accounts."""

    def add(self, user: User, password_hash: str) -> None: ...
    def get(self, user_id: str) -> User | None: ...
    def with_hash_by_email(self, email: str) -> tuple[User, str] | None:
        """The account of an address with its password hash."""

    def share_team(self, a: str, b: str) -> bool:
        """Whether the two users are members of one team."""

    def email(self, user_id: str) -> str | None: ...


class Teams(Protocol):
    """Teams and their members."""

    def add(self, team: Team) -> None: ...
    def get(self, team_id: str) -> Team | None: ...
    def role(self, team_id: str, user_id: str) -> Role | None:
        """The user's role in the team, None for a non-member."""

    def add_member(self, team_id: str, user_id: str, role: Role, at: int) -> None: ...
    def add_member_if_absent(self, team_id: str, user_id: str, role: Role, at: int) -> bool:
        """Add the membership unless it exists (another node may add it at once)."""

    def of_user(self, user_id: str) -> list[Team]:
        """The user's teams (with their role), oldest first."""

    def members(self, team_id: str) -> list[Member]: ...


class Invitations(Protocol):
    """Pending invitations to teams, by e-mail address."""

    def prune(self, team_id: str, now: int) -> None:
        """Forget the team's expired invitations."""

    def pending_besides(self, team_id: str, email: str, now: int) -> int:
        """How many unexpired invitations the team has to addresses other than `email`."""

    def put(self, invitation: Invitation) -> None:
        """Insert the invitation, or refresh the team's one to that address."""

    def of_user(self, user_id: str, now: int) -> list[Invitation]:
        """The unexpired invitations to the user's own address, oldest first."""

    def delete(self, team_id: str, email: str) -> None: ...


class Channels(Protocol):
    """Channels, their members, seq allocation and unread counts."""

    def add(self, channel: Channel, dm_key: str | None = None) -> None: ...
    def by_dm_key(self, dm_key: str) -> Channel | None: ...
    def rename(self, channel_id: str, name: str) -> None: ...
    def next_seq(self, channel_id: str) -> int:
        """Allocate the channel's next seq; the row lock orders writers per channel."""

    def next_seq_for_new_send(
        self, channel_id: str, user_id: str, client_msg_id: str, small_max: int
    ) -> SendSlot | None:
        """A seq for a first send by a member, in one round trip; else None (a retry,
        or not a member). May read the recipients of a DM or a small channel too."""

    def last_seqs(self, channel_ids: list[str]) -> dict[str, int]:
        """Each channel's last allocated seq (missing ids are left out)."""

    def access(
        self, channel_id: str, user_id: str
    ) -> tuple[Channel, Role | None, Role | None] | None:
        """The channel with the user's channel role and team role (None where none)."""

    def membership(self, channel_id: str, user_id: str) -> tuple[Role, int] | None:
        """(role, read_seq) of a member."""

    def member_count(self, channel_id: str) -> int: ...
    def add_member(
        self, channel_id: str, user_id: str, role: Role, at: int, read_seq: int = 0
    ) -> None: ...
    def remove_member(self, channel_id: str, user_id: str) -> None: ...
    def members(self, channel_id: str) -> list[Member]: ...
    def member_ids(self, channel_id: str) -> list[str]: ...
    def set_read_seq(self, channel_id: str, user_id: str, seq: int) -> int:
        """Move the read marker forward (never back); the resulting marker."""

    def of_user(self, user_id: str) -> list[tuple[Channel, Role, int]]:
        """Every channel the user is a member of, with role and read marker."""

    def of_team_for(self, team_id: str, user_id: str) -> list[tuple[Channel, Role | None, int]]:
        """Public channels of the team and the private ones the user is in, with the
        user's role and read marker (None, 0 where not a member)."""

    def unread_count(self, channel_id: str, user_id: str, read_seq: int) -> int: ...
    def unread_counts(self, user_id: str) -> dict[str, int]:
        """Unread messages (by others, not deleted) per channel the user is in."""


class Messages(Protocol):
    """Messages, with their request fingerprint for idempotent sends."""

    def get(self, message_id: str) -> Message | None: ...
    def by_client_id(self, sender_id: str, client_msg_id: str) -> tuple[Message, str] | None:
        """The sender's message of that client id, with its request fingerprint."""

    def add(self, msg: Message, request_hash: str, event: Event, jobs: list[PlannedJob]) -> None:
        """A new message with its event and notification jobs. The event is appended to
        the transaction like any other (published after commit)."""

    def update(self, msg: Message) -> None:
        """Store a message's body, attachments, version and edit/delete times."""

    def history(self, channel_id: str, before_seq: int | None, limit: int) -> list[Message]:
        """Newest first."""

    def scrub_events(self, message_id: str, payload: bytes) -> None:
        """Replace the payload of every event of a (deleted) message."""


class Events(Protocol):
    """The per-channel event log (gapless seq)."""

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
        """Allocate the channel's next seq and store the event; published after commit."""

    def after(self, channel_id: str, after_seq: int, limit: int) -> list[Event]:
        """Stored events in seq order."""

    def joins_since(self, user_ids: list[str], since: int) -> list[Event]:
        """The events that added any of the users to a channel at or after `since`."""


class Outbox(Protocol):
    """Events a bus that can lose a publish has not confirmed yet."""

    def claim(self, *, older_than: int, now: int, until: int, limit: int) -> list[Event]:
        """Claim unpublished events written before `older_than` until `until`."""

    def delete(self, keys: list[tuple[str, int]]) -> None:
        """Forget outbox rows whose events the bus has."""

    def lag(self, now: int) -> tuple[int, int]:
        """(rows waiting, age in ms of the oldest)."""


class Files(Protocol):
    """Files, where they are shared, and each team's storage usage."""

    def add(self, f: FileRecord, now: int) -> None: ...
    def get(self, file_id: str) -> FileRecord | None: ...
    def by_ids(self, ids: list[str]) -> dict[str, FileRecord]: ...
    def set_state(self, file_id: str, from_state: str, to_state: FileState, now: int) -> bool:
        """Move a file between states if it is still in `from_state`."""

    def reserve(self, team_id: str, size: int, quota: int) -> bool:
        """Add `size` to the team's usage if it stays within `quota`."""

    def release(self, team_id: str | None, size: int) -> None: ...
    def used_bytes(self, team_id: str) -> int: ...
    def share(self, message_id: str, channel_id: str, file_ids: list[str]) -> None: ...
    def unshare_message(self, message_id: str) -> None: ...
    def may_download(self, f: FileRecord, user_id: str) -> bool:
        """The uploader, or a member of a channel where a live message shares the file."""

    def team_file_count(self, team_id: str, live_since: int) -> int:
        """Ready files and unexpired reservations of the team."""

    def expire_pending(self, team_id: str, before: int, now: int) -> list[FileRecord]:
        """Mark the team's reservations made before `before` deleted, release their bytes."""

    def expired_pending_bytes(self, team_id: str, before: int) -> int: ...
    def pending_of_user(self, user_id: str, since: int) -> tuple[int, int]:
        """(count, bytes) of the user's reservations made at or after `since`."""

    def stale_pending(self, before: int, limit: int) -> list[FileRecord]: ...
    def live_keys(self) -> set[str]:
        """Storage keys of pending and ready files."""

    def recount_usage(self) -> dict[str, tuple[int, int]]:
        """Set each team's usage to its files' sum; the corrected ones (was, now)."""


class Notifications(Protocol):
    """Notification jobs, push devices and notification settings."""

    def recipients(
        self, channel_id: str, sender_id: str, mention_keys: set[str] | None
    ) -> list[Recipient]:
        """The channel's other members with their settings (only those mentioned)."""

    def claim_jobs(self, kinds: list[str], now: int, lease_ms: int, limit: int) -> list[Job]:
        """Claim due jobs (and ones whose claimer died) until now + lease_ms."""

    def finish_jobs(self, ids: list[str], state: str, now: int, error: str | None = None) -> None:
        """Mark claimed jobs sent, skipped or dead."""

    def retry_jobs(
        self, ids: list[str], due_at: int, now: int, error: str, *, refund: bool = False
    ) -> None:
        """Put claimed jobs back for a later attempt (`refund`: this claim made none)."""

    def delete_finished(self, sent_before: int, dead_before: int, limit: int = 1000) -> int: ...
    def job_counts(self) -> dict[str, dict[str, int]]:
        """Jobs by kind and state."""

    def job_context(self, channel_id: str, seq: int, user_id: str) -> dict[str, Any] | None:
        """What a job's notification says and whether it still should (None: gone)."""

    def register_device(
        self, user_id: str, platform: str, token: str, now: int
    ) -> tuple[Device, bool]: ...
    def devices(self, user_id: str) -> list[Device]: ...
    def delete_device(self, user_id: str, device_id: str) -> bool: ...
    def forget_token(self, token: str) -> None: ...
    def user_settings(self, user_id: str) -> tuple[bool, bool]:
        """(push, email); both on when never set."""

    def put_user_settings(self, user_id: str, push: bool, email: bool) -> None: ...
    def channel_muted(self, user_id: str, channel_id: str) -> bool: ...
    def put_channel_muted(self, user_id: str, channel_id: str, muted: bool) -> None: ...


class Flags(Protocol):
    """Feature flags."""

    def all(self) -> dict[str, bool]:
        """The flags that were ever set (a missing flag is on)."""

    def set(self, name: str, enabled: bool, now: int) -> None: ...


class Sessions(Protocol):
    """Revoked logins and failed sign-ins."""

    def revoke(self, session_id: str, now: int, expires_at: int) -> None:
        """Record a login as revoked (again: only the later expiry is kept)."""

    def revoked_since(self, since: int, now: int) -> list[tuple[str, int]]:
        """(session_id, expires_at) of revocations recorded since `since`, not expired."""

    def delete_expired_revocations(self, now: int) -> int: ...
    def failures(self, account_key: str) -> LoginFailures: ...
    def set_failures(self, account_key: str, state: LoginFailures) -> None:
        """Store an account key's failure state (a zero count forgets it)."""

    def delete_stale_failures(self, before: int) -> int: ...


class Tokens(Protocol):
    """Refresh tokens, stored hashed, in families."""

    def by_hash(self, token_hash: str) -> RefreshToken | None: ...
    def add(
        self, *, user_id: str, token_hash: str, family_id: str, now: int, expires_at: int
    ) -> None: ...
    def mark_used(self, token_id: str, now: int) -> None: ...
    def revoke_family(self, family_id: str, now: int) -> None: ...
    def delete_expired(self, now: int, limit: int = 1000) -> int: ...


class Stats(Protocol):
    """Figures read across tables for metrics."""

    def stored(self, now: int) -> StoredStats:
        """Job states, outbox backlog and storage used, in one transaction."""


class Tx(Protocol):
    """One transaction's repositories."""

    @property
    def users(self) -> Users: ...
    @property
    def teams(self) -> Teams: ...
    @property
    def invitations(self) -> Invitations: ...
    @property
    def channels(self) -> Channels: ...
    @property
    def messages(self) -> Messages: ...
    @property
    def events(self) -> Events: ...
    @property
    def outbox(self) -> Outbox: ...
    @property
    def files(self) -> Files: ...
    @property
    def notifications(self) -> Notifications: ...
    @property
    def flags(self) -> Flags: ...
    @property
    def sessions(self) -> Sessions: ...
    @property
    def tokens(self) -> Tokens: ...
    @property
    def stats(self) -> Stats: ...


class UnitOfWork(Protocol):
    """Runs a function of a transaction; see the module's docstring for the contract."""

    async def write(self, work: Callable[[Tx], T]) -> T:
        """Run `work` in a write transaction; answer after its commit and publish the
        events it appended."""

    async def read(self, work: Callable[[Tx], T]) -> T:
        """Run `work` in a read-only transaction (appending an event there is an error)."""
