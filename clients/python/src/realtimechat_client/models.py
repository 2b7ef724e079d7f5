"""What the v1 API answers, as typed dicts: the JSON itself, with its fields named for mypy.

Typed dicts rather than classes: an answer is handed on as it came (no copy per message on
a busy live session), `answer["id"]` reads as before, and `dict(answer)` is plain JSON.
Timestamps are ISO 8601 strings in UTC, as the server sends them.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "Attachment",
    "Channel",
    "ChannelKind",
    "ChannelView",
    "Event",
    "EventPage",
    "FileInfo",
    "FileUpload",
    "HistoryPage",
    "Invitation",
    "Member",
    "Message",
    "ReadMarker",
    "Role",
    "Team",
    "TokenPair",
    "UploadTarget",
    "User",
]

Role = Literal["owner", "admin", "member"]
ChannelKind = Literal["public", "private", "dm"]


class User(TypedDict):
    id: str
    email: str
    display_name: str
    created_at: str


class TokenPair(TypedDict):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"]
    expires_in: int  # seconds until the access token expires


class Team(TypedDict):
    id: str
    name: str
    created_by: str
    created_at: str
    role: Role | None  # the caller's role in the team


class Member(TypedDict):
    """A member of a team or a channel."""

    user_id: str
    display_name: str
    role: Role
    joined_at: str


class Invitation(TypedDict):
    """Adding by e-mail invites, whether or not the address has an account."""

    invited: Literal[True]
    email: str


class Channel(TypedDict):
    id: str
    team_id: str | None  # None for a direct-message channel
    kind: ChannelKind
    name: str
    private: bool
    last_seq: int
    epoch: str
    created_by: str
    created_at: str


class ChannelView(Channel):
    """A channel as the caller sees it: membership, read marker and unread count."""

    is_member: bool
    role: Role | None
    read_seq: int
    unread_count: int
    member_ids: NotRequired[list[str]]  # direct-message channels only: the two members


class ReadMarker(TypedDict):
    channel_id: str
    read_seq: int


class Attachment(TypedDict):
    file_id: str
    name: str
    size: int
    content_type: str


class Message(TypedDict):
    id: str
    channel_id: str
    seq: int
    sender_id: str
    client_msg_id: str
    body: str
    attachments: list[Attachment]
    version: int  # what edit and delete take as `if_match`
    created_at: str
    edited_at: str | None
    deleted_at: str | None


class HistoryPage(TypedDict):
    messages: list[Message]  # newest first
    has_more: bool


class Event(TypedDict):
    """One change to a channel, as a page or the live session hands it out."""

    channel_id: str
    seq: int
    event: str  # message.created, member.joined, channel.renamed, ...
    created_at: str
    data: dict[str, Any]  # each event type has its own payload


class EventPage(TypedDict):
    events: list[Event]  # in seq order
    has_more: bool


class FileInfo(TypedDict):
    id: str
    team_id: str | None
    uploader_id: str
    name: str
    size: int
    content_type: str
    sha256: str
    state: Literal["pending", "ready", "deleted"]
    created_at: str


class UploadTarget(TypedDict):
    """Where and how to send a file's bytes."""

    url: str
    method: str
    headers: dict[str, str]
    expires_at: str


class FileUpload(FileInfo):
    """A new file and where to upload its bytes."""

    upload: UploadTarget
