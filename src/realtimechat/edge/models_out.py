"""Response bodies of the HTTP API, for /openapi.json only.

The routes answer raw responses built from the domain records' `to_json()`, so these
models are never instantiated: each describes exactly what one of those produces, and
tests/integration/test_schemathesis.py checks live responses against them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from realtimechat_client import protocol

Role = Literal["owner", "admin", "member"]


class Out(BaseModel):
    """Base of every response body: the fields listed, and no others."""

    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """An RFC 9457 problem detail, as every error is answered (application/problem+json)."""

    # Errors carry extra members (errors, field, current_version, ...): open on purpose.
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="a URI naming the problem; ends with the code")
    title: str
    status: int = Field(ge=400, le=599)
    code: str = Field(description="stable machine-readable code, e.g. not_found")
    # Optional, never null: a default_factory keeps both out of the JSON Schema.
    detail: str = Field(default_factory=str, description="what went wrong in this request")


class User(Out):
    id: str
    email: str
    display_name: str
    created_at: datetime


class TokenPair(Out):
    access_token: str
    refresh_token: str | None = Field(
        default=None, description="absent in cookie mode (X-RTC-Session: cookie)"
    )
    token_type: Literal["bearer"]
    expires_in: int = Field(description="seconds until the access token expires")


class Team(Out):
    id: str
    name: str
    created_by: str
    created_at: datetime
    role: Role | None = Field(description="the caller's role in the team")


class TeamList(Out):
    teams: list[Team]


class Member(Out):
    """A team or channel member."""

    user_id: str
    display_name: str
    role: Role
    joined_at: datetime


class MemberList(Out):
    members: list[Member]


class Invitation(Out):
    """Adding by e-mail invites, whether or not the address has an account."""

    invited: Literal[True]
    email: str


class Channel(Out):
    id: str
    team_id: str | None = Field(description="null for a direct message channel")
    kind: Literal["public", "private", "dm"]
    name: str
    private: bool
    last_seq: int
    epoch: str
    created_by: str
    created_at: datetime


class ChannelView(Out):
    """A channel as the caller sees it: membership, read marker and unread count."""

    id: str
    team_id: str | None
    kind: Literal["public", "private", "dm"]
    name: str
    private: bool
    last_seq: int
    epoch: str
    created_by: str
    created_at: datetime
    is_member: bool
    role: Role | None
    read_seq: int
    unread_count: int
    member_ids: list[str] = Field(
        default_factory=list, description="only on direct message channels: the two members"
    )


class ChannelList(Out):
    channels: list[ChannelView]


class ReadMarker(Out):
    channel_id: str
    read_seq: int


# The wire's shapes are defined once, in the protocol; an answer lists no other fields.
class Attachment(protocol.Attachment):
    model_config = ConfigDict(extra="forbid")


class Message(protocol.Message):
    model_config = ConfigDict(extra="forbid")

    attachments: Sequence[Attachment]


class HistoryPage(Out):
    messages: list[Message] = Field(description="newest first")
    has_more: bool


class Event(protocol.Event):
    """One change to a channel, exactly as the WebSocket `event` frame carries it."""

    model_config = ConfigDict(extra="forbid")


class EventPage(Out):
    events: list[Event] = Field(description="in seq order")
    has_more: bool


class Device(Out):
    id: str
    platform: Literal["android", "ios", "web"]
    token: str
    created_at: datetime


class DeviceList(Out):
    devices: list[Device]


class NotificationSettings(Out):
    push: bool
    email: bool


class ChannelNotificationSettings(Out):
    channel_id: str
    muted: bool


class Flag(Out):
    name: str
    enabled: bool
    description: str


class FlagList(Out):
    flags: list[Flag]


class File(Out):
    id: str
    team_id: str | None
    uploader_id: str
    name: str
    size: int
    content_type: str
    sha256: str
    state: Literal["pending", "ready", "deleted"]
    created_at: datetime


class Upload(Out):
    """Where and how to send the file's bytes."""

    url: str
    method: str
    headers: dict[str, str] = Field(description="headers the upload must carry")
    expires_at: datetime


class FileUpload(File):
    """A new file and where to upload its bytes."""

    upload: Upload


class StorageUsage(Out):
    team_id: str
    used_bytes: int = Field(description="bytes of ready files and pending uploads")
    quota_bytes: int
    files: int
    max_file_bytes: int


class Livez(Out):
    status: Literal["ok"]


class Check(BaseModel):
    """One dependency's state; each kind reports its own details."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(description="ok, degraded or down")


class Readyz(Out):
    status: Literal["ok", "degraded", "down", "draining"]
    checks: dict[str, Check] = Field(default_factory=dict, description="one per dependency")


MODELS: tuple[type[BaseModel], ...] = (
    Problem,
    User,
    TokenPair,
    Team,
    TeamList,
    Member,
    MemberList,
    Invitation,
    Channel,
    ChannelView,
    ChannelList,
    ReadMarker,
    Attachment,
    Message,
    HistoryPage,
    Event,
    EventPage,
    Device,
    DeviceList,
    NotificationSettings,
    ChannelNotificationSettings,
    Flag,
    FlagList,
    File,
    Upload,
    FileUpload,
    StorageUsage,
    Livez,
    Check,
    Readyz,
)
