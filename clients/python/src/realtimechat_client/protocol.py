"""The WebSocket wire protocol shared by the server and the client.

Every frame is a JSON text object with a `type`. `ClientFrame` is what a client may
send, `ServerFrame` what the server sends; each is a union discriminated on `type`.
The limits on the fields (ids, lengths, counts) are the protocol's: a frame that
breaks one is answered with an `error` frame (`validation_error`, naming the `field`)
and the session goes on. Close codes and the other limits are constants below.

Client frames are strict (a JSON string is not a number, `true` is not a seq) and
ignore fields they do not know, as the server always has; server frames are lax about
types (an ISO time becomes a `datetime`) so a client reads them without ceremony.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from annotated_types import Ge, MaxLen, MinLen
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    field_validator,
)

# Close codes beyond the standard ones (RFC 6455 1012 "service restart", 1013 "try again later").
CLOSE_INTERNAL_ERROR = 1011
CLOSE_GOING_AWAY = 1012
CLOSE_TRY_AGAIN = 1013
CLOSE_UNAUTHORIZED = 4401
CLOSE_AUTH_TIMEOUT = 4408
CLOSE_BAD_FRAME = 4400

# Fields the server echoes in its answers (ids, the frame's type) are JSON scalars, and
# strings of at most this many characters: an answer is never bigger than it has to be.
MAX_ECHO_CHARS = 128
ECHOED = ("client_msg_id", "channel_id", "id")
"""The fields of a client frame its error answer carries back (with `type` as `ref`)."""
MAX_ID_CHARS = 36  # ids are UUIDs
MAX_FILE_ID_CHARS = 64
MAX_CLIENT_MSG_ID_CHARS = 100
MAX_ATTACHMENTS = 100  # the protocol's bound; a server may allow fewer
MAX_CURSORS = 5000  # per resume frame
MAX_ERROR_MESSAGE_CHARS = 500  # an error frame's message is cut (with "…") beyond this

# The text a server stores: valid UTF-8 without control characters (lone surrogates
# cannot be encoded; the others hide or forge text). The server applies the same rules
# to its HTTP input (a test holds the two to agreement).
_LINE_BAD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_TEXT_BAD = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")  # \t and \n kept
LINE_RULE = "must be UTF-8 text without control characters"
TEXT_RULE = "must be UTF-8 text without control characters other than \\n and \\t"


def _rule(pattern: re.Pattern[str], rule: str) -> AfterValidator:
    def check(value: str) -> str:
        found = pattern.search(value)
        if found is not None:
            raise ValueError(
                f"{rule}; found U+{ord(found.group()):04X} at position {found.start()}"
            )
        return value

    return AfterValidator(check)


Line = Annotated[str, _rule(_LINE_BAD, LINE_RULE)]
"""One line of text: ids, names, tokens."""
Text = Annotated[str, _rule(_TEXT_BAD, TEXT_RULE)]
"""Free text that may span lines: message bodies."""
ChannelId = Annotated[Line, MinLen(1), MaxLen(MAX_ID_CHARS)]
FileId = Annotated[Line, MinLen(1), MaxLen(MAX_FILE_ID_CHARS)]
ClientMsgId = Annotated[Line, MinLen(1), MaxLen(MAX_CLIENT_MSG_ID_CHARS)]
"""The sender's idempotency key: a retry with the same one is answered, not sent twice."""
EchoId = bool | int | float | Annotated[str, MaxLen(MAX_ECHO_CHARS)] | None
"""A value the server echoes (a ping's id): a JSON scalar, a short string."""
Seq = Annotated[int, Strict(), Ge(0)]


class Cursor(BaseModel):
    """Where a client is in a channel: its last seq, and the epoch that seq belongs to."""

    model_config = ConfigDict(strict=True, frozen=True)

    seq: Seq
    epoch: str | None = None


CursorValue = Seq | Cursor
"""A resume cursor: a bare seq, or {"seq": n, "epoch": "…"} (a changed epoch: resync)."""
CURSOR: TypeAdapter[CursorValue] = TypeAdapter(CursorValue)


# ---- client → server ------------------------------------------------------------------


class ClientFrameBase(BaseModel):
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


def _cursor_object(value: object) -> object:
    # A cursors value that is not an object was always ignored, not refused: the
    # session then starts at each channel's current seq.
    return value if isinstance(value, dict) else {}


class Auth(ClientFrameBase):
    """The first frame of every session; later, a fresh token for the same user."""

    type: Literal["auth"] = "auth"
    token: str
    # Per channel id; each entry is checked on its own (a bad one is an error frame
    # about that channel, the others still resume).
    cursors: dict[str, object] = Field(default_factory=dict)

    _cursors_object = field_validator("cursors", mode="before")(_cursor_object)


class Send(ClientFrameBase):
    """Send a message; answered with `send_ok` (or an `error` carrying the client_msg_id)."""

    type: Literal["send"] = "send"
    channel_id: ChannelId
    client_msg_id: ClientMsgId
    body: Text = ""
    attachments: Annotated[list[FileId], MaxLen(MAX_ATTACHMENTS)] | None = None


class Resume(ClientFrameBase):
    """Replay each channel after its cursor (or resync where that is too far back)."""

    type: Literal["resume"] = "resume"
    cursors: Annotated[dict[str, object], MaxLen(MAX_CURSORS)]


class Ping(ClientFrameBase):
    """Answered by a `pong` with the same id, in order with everything else sent."""

    type: Literal["ping"] = "ping"
    id: EchoId = None


class Typing(ClientFrameBase):
    """The user is typing in a channel; the other members' sessions get a `typing`."""

    type: Literal["typing"] = "typing"
    channel_id: ChannelId


ClientFrame = Annotated[Auth | Send | Resume | Ping | Typing, Field(discriminator="type")]
CLIENT_FRAME: TypeAdapter[Auth | Send | Resume | Ping | Typing] = TypeAdapter(ClientFrame)
CLIENT_FRAME_TYPES = frozenset({"auth", "send", "resume", "ping", "typing"})


# ---- server → client ------------------------------------------------------------------


class ServerFrameBase(BaseModel):
    model_config = ConfigDict(frozen=True)


class ReadyChannel(ServerFrameBase):
    id: str
    last_seq: int
    epoch: str
    kind: Literal["public", "private", "dm"]
    name: str
    team_id: str | None


class Ready(ServerFrameBase):
    """The session is open: the channels it follows and where each stands."""

    type: Literal["ready"] = "ready"
    session_id: str
    user_id: str
    channels: list[ReadyChannel]
    heartbeat_ms: int
    replay_limit: int = Field(description="a cursor further back than this is resynced")
    expires_at: int | None = Field(description="epoch seconds the token expires at")


class Attachment(ServerFrameBase):
    file_id: str
    name: str
    size: int
    content_type: str


class Message(ServerFrameBase):
    id: str
    channel_id: str
    seq: int
    sender_id: str
    client_msg_id: str
    body: str
    attachments: Sequence[Attachment]  # a list; Sequence lets the REST model narrow it
    version: int = Field(description="the ETag's number; If-Match names it")
    created_at: datetime
    edited_at: datetime | None
    deleted_at: datetime | None


class SendOk(ServerFrameBase):
    """A send stored (`created`), or the retry of one already stored (not `created`)."""

    type: Literal["send_ok"] = "send_ok"
    client_msg_id: str
    created: bool
    message: Message


class AuthOk(ServerFrameBase):
    """A re-auth took: the session goes on under the fresh token."""

    type: Literal["auth_ok"] = "auth_ok"
    expires_at: int | None


class Error(ServerFrameBase):
    """What went wrong with a frame (`ref`: its type), or why the session ends.

    It carries back the frame's short ids (client_msg_id, channel_id, id) and the
    error's own details (`field`, `retry_after_ms`, …).
    """

    model_config = ConfigDict(extra="allow")

    type: Literal["error"] = "error"
    code: str
    message: Annotated[str, MaxLen(MAX_ERROR_MESSAGE_CHARS + 1)]
    ref: str | None = None
    field: str | None = None
    client_msg_id: EchoId = None
    channel_id: EchoId = None
    id: EchoId = None
    retry_after_ms: int | None = None


class Event(ServerFrameBase):
    """One change to a channel, in seq order per channel: an `event` frame or a REST page's."""

    channel_id: str
    seq: int
    event: str = Field(description="message.created, member.joined, channel.renamed, ...")
    created_at: datetime
    # Each event type has its own payload: a message, a channel, a member change.
    data: dict[str, Any]


class EventFrame(Event):
    """An event delivered live."""

    type: Literal["event"] = "event"


class Resync(ServerFrameBase):
    """The channel cannot be replayed from the cursor: page the REST events."""

    type: Literal["resync"] = "resync"
    channel_id: str


class Pong(ServerFrameBase):
    type: Literal["pong"] = "pong"
    id: EchoId


class Heartbeat(ServerFrameBase):
    type: Literal["heartbeat"] = "heartbeat"


class GoingAway(ServerFrameBase):
    """The node is stopping: reconnect (elsewhere) after this long, then resume."""

    type: Literal["going_away"] = "going_away"
    reconnect_after_ms: int


class TypingNotice(ServerFrameBase):
    """Another member is typing in the channel (not an event: no seq)."""

    type: Literal["typing"] = "typing"
    channel_id: str
    user_id: str


AnyServerFrame = (
    Ready
    | SendOk
    | AuthOk
    | Error
    | EventFrame
    | Resync
    | Pong
    | Heartbeat
    | GoingAway
    | TypingNotice
)
ServerFrame = Annotated[AnyServerFrame, Field(discriminator="type")]
SERVER_FRAME: TypeAdapter[AnyServerFrame] = TypeAdapter(ServerFrame)


def parse_server_frame(text: str | bytes) -> AnyServerFrame:
    """A server frame from its JSON text (pydantic.ValidationError if it is none)."""
    return SERVER_FRAME.validate_json(text)
