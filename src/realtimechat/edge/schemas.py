"""Request bodies of the HTTP API (they also document it in /openapi.json)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Body(BaseModel):
    """Base of every request body: unknown fields and wrongly typed JSON values are refused.

    Strict mode: `"private": "yes"`, `"seq": "5"` or `"seq": 5.0` are 422s, not coerced.
    """

    model_config = ConfigDict(extra="forbid", strict=True)


class RegisterIn(Body):
    email: str = Field(max_length=320)
    password: str = Field(min_length=8, max_length=1024)
    display_name: str = Field(min_length=1, max_length=100)


class LoginIn(Body):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class RefreshIn(Body):
    refresh_token: str = Field(min_length=1, max_length=200)


class TeamIn(Body):
    name: str = Field(min_length=1, max_length=100)


class AddMemberIn(Body):
    user_id: str | None = Field(default=None, max_length=36)
    email: str | None = Field(default=None, max_length=320)


class ChannelIn(Body):
    name: str = Field(min_length=1, max_length=100)
    private: bool = False


class ChannelPatch(Body):
    name: str = Field(min_length=1, max_length=100)


class UserRef(Body):
    user_id: str = Field(min_length=1, max_length=36)


class SendIn(Body):
    channel_id: str = Field(min_length=1, max_length=36)
    body: str = ""
    client_msg_id: str | None = Field(default=None, min_length=1, max_length=100)
    attachments: list[Any] = Field(default_factory=list)


class EditIn(Body):
    body: str


class ReadIn(Body):
    seq: int = Field(ge=0)


class DeviceIn(Body):
    platform: str = Field(description="android, ios or web")
    token: str = Field(description="the push token the platform gave the app")


class NotificationSettingsIn(Body):
    push: bool | None = None
    email: bool | None = None


class ChannelNotificationsIn(Body):
    muted: bool


class FlagIn(Body):
    enabled: bool


class FileIn(Body):
    team_id: str = Field(min_length=1, max_length=36)
    name: str = Field(min_length=1, max_length=255)
    size: int = Field(description="bytes the client will upload")
    content_type: str = Field(default="application/octet-stream", max_length=255)
    sha256: str = Field(description="hex digest of the bytes, checked on complete")
