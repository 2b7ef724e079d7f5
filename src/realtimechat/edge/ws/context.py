"""What the WebSocket session's modules use of the node: narrow callables, no `Deps`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from realtimechat.bus.base import Ephemeral
from realtimechat.domain.models import Channel
from realtimechat.edge.commands import Services
from realtimechat.edge.hub import Hub
from realtimechat.services.auth import Principal
from realtimechat.settings import WebSocketSettings

Verify = Callable[[str], Principal]
MemberChannels = Callable[[str, list[str]], Awaitable[dict[str, Channel]]]
HitFrame = Callable[[str], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Context:
    """The node's side of every session: shared by all of them, built once."""

    hub: Hub
    settings: WebSocketSettings
    verify: Verify  # an access token's principal (ChatError if invalid, expired or revoked)
    member_channels: MemberChannels  # those of the ids the user is a member of
    publish_ephemeral: Callable[[Ephemeral], None]
    hit_frame: HitFrame  # spends one frame of the key's budget (RateLimited when none)
    services: Services  # what commands run on
