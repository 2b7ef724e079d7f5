"""The frames of the session itself (not commands): auth again, resume, ping, typing.

Each handler gets the validated frame and the raw one (what an error answer echoes);
a ChatError it raises is answered with its error frame by the dispatcher.
"""

from __future__ import annotations

from collections.abc import Mapping

from realtimechat.bus.base import Ephemeral
from realtimechat.domain.errors import ChatError, Forbidden, NotFound
from realtimechat.edge import frames
from realtimechat.edge.connection import Connection, Resync, Rewind
from realtimechat.edge.ws import resume
from realtimechat.edge.ws.context import Context
from realtimechat.observability import metrics
from realtimechat_client import protocol

Raw = Mapping[str, object]


async def on_auth(ctx: Context, conn: Connection, frame: protocol.Auth, raw: Raw) -> None:
    """A fresh token of the same user: the socket goes on under it (`auth_ok`).

    A refused token changes nothing: the socket keeps its authentication until that
    expires (and the grace passes).
    """
    try:
        principal = ctx.verify(frame.token)
        if principal.user_id != conn.user_id:
            raise Forbidden("the token is another user's; open a new connection for them")
    except ChatError:
        metrics.WS_REAUTHS.labels("refused").inc()
        raise
    metrics.WS_REAUTHS.labels("ok").inc()
    ctx.hub.reauthenticate(conn, principal)
    conn.send_frame(frames.auth_ok(principal.expires_at))


async def on_resume(ctx: Context, conn: Connection, frame: protocol.Resume, raw: Raw) -> None:
    """Replay each channel after its cursor; subscribe to those not followed yet."""
    channels = await ctx.member_channels(conn.user_id, list(frame.cursors))
    plan = resume.plan(
        frame.cursors,
        channels,
        published_seq=ctx.hub.published_seq,
        replay_limit=ctx.settings.replay_limit,
        ref="resume",
    )
    for error in plan.errors:
        conn.send_frame(error)
    for channel_id, step in plan.steps.items():
        channel = channels[channel_id]
        if channel_id not in conn.last_sent:
            start = step.seq if step.action == "rewind" else channel.last_seq
            ctx.hub.subscribe(conn, channel_id, start, known_last=channel.last_seq)
        elif step.action == "rewind":
            conn.offer(Rewind(channel_id, step.seq))
        if step.action == "resync":
            conn.offer(Resync(channel_id, step.seq))


async def on_ping(ctx: Context, conn: Connection, frame: protocol.Ping, raw: Raw) -> None:
    """Answered in order with everything else this connection sends."""
    conn.send_frame(frames.pong(frame.id))


async def on_typing(ctx: Context, conn: Connection, frame: protocol.Typing, raw: Raw) -> None:
    """Tell the channel's other members' sessions (through the bus: every node)."""
    if frame.channel_id not in conn.last_sent:
        raise NotFound("channel not found")
    ctx.publish_ephemeral(Ephemeral(frame.channel_id, conn.user_id, "typing"))
