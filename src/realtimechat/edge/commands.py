"""Commands: what a client asks the server to do, the same over REST and WebSocket.

A command is a frozen dataclass of input already validated once, by the REST body
model (edge/schemas.py) or the frame's protocol model (realtimechat_client.protocol).
`run` executes it the one way: a tracing span named "<transport> <command>", the
handler (which calls the service), the command's metric counted by the one rule
(edge/observe.count_send: the outcome is the HTTP status class of the result), and a
ChatError let through for the transport to answer (edge/errors.py: problem+json, or an
error frame).

Adding a command (react, pin, ...):
1. a dataclass here, subclassing `Command[Result]`;
2. a handler `async def react(services, actor, cmd) -> Result` that calls the service;
3. one line in `HANDLERS`.
The REST route builds it from its body model and awaits `run`. Over the WebSocket its
frame is a model in the protocol's `ClientFrame` union, and one line in
edge/ws/dispatch.FRAMES builds the command from the frame and the answer from the result.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar, cast

from realtimechat.domain.errors import ChatError
from realtimechat.domain.models import Message
from realtimechat.edge.errors import status_of
from realtimechat.edge.observe import count_send
from realtimechat.observability.tracing import tracer
from realtimechat.services.messages import MessageService

Transport = Literal["rest", "ws"]
R = TypeVar("R")
C = TypeVar("C", bound="Command[Any]")


class Services(Protocol):
    """The services commands call."""

    @property
    def messages(self) -> MessageService: ...


class Command(Generic[R]):
    """Base of every command; `R` is what running it gives."""

    __slots__ = ()

    def span_attributes(self) -> dict[str, str]:
        """What the command's tracing span carries (ids only, never text)."""
        return {}


@dataclass(frozen=True, slots=True)
class Handler(Generic[C, R]):
    """How a command runs: its handler, its name (spans) and the metric it counts."""

    run: Callable[[Services, str, C], Awaitable[R]]
    name: str
    count: Callable[[Transport, int], None] | None = None


# ---- the commands ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    message: Message
    created: bool  # False: a retry of a send already stored


@dataclass(frozen=True, slots=True)
class SendMessage(Command[Sent]):
    """Send once per (sender, client_msg_id)."""

    channel_id: str
    body: str
    client_msg_id: str
    attachments: tuple[str, ...] = ()

    def span_attributes(self) -> dict[str, str]:
        return {"rtc.channel_id": self.channel_id}


async def send_message(services: Services, actor: str, cmd: SendMessage) -> Sent:
    """Store the message (or find the retried one) and publish it."""
    msg, created = await services.messages.send(
        actor, cmd.channel_id, cmd.body, cmd.client_msg_id, list(cmd.attachments)
    )
    return Sent(msg, created)


HANDLERS: dict[type[Command[Any]], Handler[Any, Any]] = {
    SendMessage: Handler(send_message, "send", count_send),
}


# ---- running one -----------------------------------------------------------------------


async def run(cmd: Command[R], services: Services, *, actor: str, transport: Transport) -> R:
    """Run a command for `actor` (a user id); raises the ChatError it ends in."""
    handler = HANDLERS[type(cmd)]
    try:
        with tracer.start_as_current_span(
            f"{transport} {handler.name}", attributes=cmd.span_attributes()
        ):
            result = await handler.run(services, actor, cmd)
    except ChatError as exc:
        _count(handler, transport, status_of(exc))
        raise
    except Exception:
        _count(handler, transport, 500)
        raise
    # A cancelled command (its connection went away) is not counted: it has no outcome.
    _count(handler, transport, 200)
    return cast(R, result)


def _count(handler: Handler[Any, Any], transport: Transport, status: int) -> None:
    if handler.count is not None:
        handler.count(transport, status)


def refused(command: type[Command[Any]], transport: Transport) -> None:
    """Count a command refused before it ran (its input was invalid: a 422)."""
    _count(HANDLERS[command], transport, 422)
