"""Request bodies of the HTTP API (they also document it in /openapi.json).

Also the one place where HTTP input is held to what storage can take: the Annotated
types below bound every integer to the database's signed 64-bit range and every string
to valid UTF-8 without control characters (domain/text.py); every body, query and path
parameter uses them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from annotated_types import Ge, Le, MaxLen, MinLen
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from realtimechat.domain.text import line_problem, text_problem, utf8_problem
from realtimechat_client import protocol

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _checked(problem: Callable[[str], str | None]) -> AfterValidator:
    def check(value: str) -> str:
        found = problem(value)
        if found is not None:
            raise ValueError(found)
        return value

    return AfterValidator(check)


Int64 = Annotated[int, Ge(INT64_MIN), Le(INT64_MAX)]
"""Any integer a database column can hold."""
Count = Annotated[int, Ge(0), Le(INT64_MAX)]
"""A non-negative integer a database column can hold: sizes, sequence numbers, limits."""
Line = Annotated[str, _checked(line_problem)]
"""One line of text: names, ids, tokens."""
Text = Annotated[str, _checked(text_problem)]
"""Free text that may span lines: message bodies."""
Secret = Annotated[str, _checked(utf8_problem)]
"""A password: anything the client can type, as long as it can be encoded."""
Id = Annotated[Line, MinLen(1), MaxLen(64)]
"""An id in a path (ids are UUIDs; a longer or garbled one names nothing)."""


class Body(BaseModel):
    """Base of every request body: unknown fields and wrongly typed JSON values are refused.

    Strict mode: `"private": "yes"`, `"seq": "5"` or `"seq": 5.0` are 422s, not coerced.
    """

    model_config = ConfigDict(extra="forbid", strict=True)


class RegisterIn(Body):
    email: Line = Field(max_length=320)
    password: Secret = Field(min_length=8, max_length=1024)
    display_name: Line = Field(min_length=1, max_length=100)


class LoginIn(Body):
    email: Line = Field(max_length=320)
    password: Secret = Field(max_length=1024)


class RefreshIn(Body):
    refresh_token: Line = Field(min_length=1, max_length=200)


class TeamIn(Body):
    name: Line = Field(min_length=1, max_length=100)


class AddMemberIn(Body):
    user_id: Line | None = Field(default=None, max_length=36)
    email: Line | None = Field(default=None, max_length=320)


class ChannelIn(Body):
    name: Line = Field(min_length=1, max_length=100)
    private: bool = False


class ChannelPatch(Body):
    name: Line = Field(min_length=1, max_length=100)


class UserRef(Body):
    user_id: Line = Field(min_length=1, max_length=36)


class SendIn(Body):
    """The `send` frame's fields (realtimechat_client.protocol.Send), with its limits."""

    channel_id: Line = Field(min_length=1, max_length=protocol.MAX_ID_CHARS)
    body: Text = ""
    client_msg_id: Line | None = Field(
        default=None, min_length=1, max_length=protocol.MAX_CLIENT_MSG_ID_CHARS
    )
    # Bounded here too, so a huge list is refused before it is fingerprinted.
    attachments: list[Id] = Field(default_factory=list, max_length=protocol.MAX_ATTACHMENTS)


class EditIn(Body):
    body: Text


class ReadIn(Body):
    seq: Count


class DeviceIn(Body):
    platform: Line = Field(max_length=20, description="android, ios or web")
    token: Line = Field(description="the push token the platform gave the app")


class NotificationSettingsIn(Body):
    push: bool | None = None
    email: bool | None = None


class ChannelNotificationsIn(Body):
    muted: bool


class FlagIn(Body):
    enabled: bool


class FileIn(Body):
    team_id: Line = Field(min_length=1, max_length=36)
    name: Line = Field(min_length=1, max_length=255)
    size: Count = Field(description="bytes the client will upload")
    content_type: Line = Field(default="application/octet-stream", max_length=255)
    sha256: Line = Field(max_length=64, description="hex digest of the bytes, checked on complete")
