"""Domain records as the services return them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from realtimechat.ids import iso

ChannelKind = Literal["public", "private", "dm"]
Role = Literal["owner", "admin", "member"]


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    display_name: str
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "display_name": self.display_name,
            "created_at": iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class Team:
    id: str
    name: str
    created_by: str
    created_at: int
    role: Role | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "role": self.role,
        }


@dataclass(frozen=True, slots=True)
class Channel:
    id: str
    team_id: str | None
    kind: ChannelKind
    name: str
    last_seq: int
    epoch: str
    created_by: str
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "team_id": self.team_id,
            "kind": self.kind,
            "name": self.name,
            "private": self.kind != "public",
            "last_seq": self.last_seq,
            "epoch": self.epoch,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class ChannelView:
    """A channel as one user sees it: with membership, read marker and unread count."""

    channel: Channel
    is_member: bool
    role: Role | None
    read_seq: int
    unread_count: int
    member_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out = self.channel.to_json()
        out.update(
            is_member=self.is_member,
            role=self.role,
            read_seq=self.read_seq,
            unread_count=self.unread_count,
        )
        if self.channel.kind == "dm":
            out["member_ids"] = list(self.member_ids)
        return out


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    display_name: str
    role: Role
    joined_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "display_name": self.display_name,
            "role": self.role,
            "joined_at": iso(self.joined_at),
        }


@dataclass(frozen=True, slots=True)
class Message:
    id: str
    channel_id: str
    seq: int
    sender_id: str
    client_msg_id: str
    body: str
    attachments: list[Any]
    version: int
    created_at: int
    edited_at: int | None
    deleted_at: int | None

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel_id": self.channel_id,
            "seq": self.seq,
            "sender_id": self.sender_id,
            "client_msg_id": self.client_msg_id,
            "body": self.body,
            "attachments": self.attachments,
            "version": self.version,
            "created_at": iso(self.created_at),
            "edited_at": iso(self.edited_at),
            "deleted_at": iso(self.deleted_at),
        }


@dataclass(frozen=True, slots=True)
class Event:
    """One change to a channel, as persisted and fanned out.

    `data` is the JSON text of the payload, serialised once when the event is
    written; every frame and page embeds these same bytes. `joined`/`left` name
    users whose live subscription this event starts or ends.
    """

    channel_id: str
    seq: int
    type: str
    data: bytes
    created_at: int
    joined: tuple[str, ...] = field(default=())
    left: tuple[str, ...] = field(default=())

    @classmethod
    def stored(cls, channel_id: str, seq: int, type_: str, data: bytes, created_at: int) -> Event:
        """An event read back from the database, its membership changes derived again.

        An event fanned out a second time (the outbox relay) must route exactly like
        the first publish: a join starts a subscription, a removal ends one.
        """
        joined: tuple[str, ...] = ()
        left: tuple[str, ...] = ()
        if type_ in ("member.joined", "member.left", "channel.created"):
            payload = orjson.loads(data)
            if type_ == "channel.created":
                joined = tuple(payload.get("member_ids", ()))
            elif type_ == "member.joined":
                joined = (payload["user_id"],)
            else:
                left = (payload["user_id"],)
        return cls(channel_id, seq, type_, data, created_at, joined, left)


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
        }


# The rule register applies (services/auth.py): an address is compared lower-cased and
# without surrounding space, so an invitation matches the account that address opens.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
EMAIL_MAX = 320


def normalise_email(raw: str) -> str | None:
    """The address as accounts store it, or None if it is not a valid e-mail address."""
    email = raw.strip().lower()
    return email if _EMAIL.match(email) and len(email) <= EMAIL_MAX else None


@dataclass(frozen=True, slots=True)
class Invitation:
    """A pending invitation to a team; all its inviter is told is that it was sent."""

    team_id: str
    email: str
    invited_by: str
    created_at: int
    expires_at: int

    def to_json(self) -> dict[str, Any]:
        return {"invited": True, "email": self.email}
