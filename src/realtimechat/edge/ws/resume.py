"""Where each channel of a session starts again, decided without I/O.

A cursor is the client's last seq in a channel, and the epoch that seq belongs to.
Within the replay limit and the same epoch the channel is rewound: everything stored
after the cursor is sent again, in order, before what comes live. Otherwise (the epoch
changed, the cursor is ahead of the channel or further back than `replay_limit`) it is
resynced: the client pages the REST events, and live delivery goes on after the current
seq. A cursor that names no channel of the user, or is malformed, gets an error frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import ValidationError

from realtimechat.domain.models import Channel
from realtimechat.edge import frames
from realtimechat_client import protocol

Action = Literal["rewind", "resync"]


@dataclass(frozen=True, slots=True)
class Step:
    """rewind: replay after `seq`; resync: the channel stands at `seq`."""

    action: Action
    seq: int


@dataclass(slots=True)
class Plan:
    steps: dict[str, Step] = field(default_factory=dict)  # per channel, in cursor order
    errors: list[dict[str, object]] = field(default_factory=list)  # frames, to send first


def parse_cursor(value: object) -> tuple[int, str | None] | None:
    """A resume cursor: a bare seq, or {"seq": n, "epoch": "…"}; None if malformed."""
    try:
        cursor = protocol.CURSOR.validate_python(value)
    except ValidationError:
        return None
    if isinstance(cursor, int):
        return cursor, None
    return cursor.seq, cursor.epoch


def plan(
    cursors: Mapping[str, object],
    channels: Mapping[str, Channel],
    *,
    published_seq: Mapping[str, int],
    replay_limit: int,
    ref: str,
) -> Plan:
    """The step for each cursor (against the user's `channels`); `ref` names the frame."""
    out = Plan()
    for channel_id, raw in cursors.items():
        if len(channel_id) > protocol.MAX_ECHO_CHARS:
            out.errors.append(
                frames.error(
                    "validation_error",
                    f"a channel id is at most {protocol.MAX_ECHO_CHARS} characters",
                    ref=ref,
                )
            )
            continue
        channel = channels.get(channel_id)
        if channel is None:
            out.errors.append(
                frames.error("not_found", "channel not found", channel_id=channel_id, ref=ref)
            )
            continue
        cursor = parse_cursor(raw)
        if cursor is None:
            out.errors.append(
                frames.error(
                    "validation_error",
                    "a cursor is a seq or {seq, epoch}",
                    channel_id=channel_id,
                    ref=ref,
                )
            )
            continue
        seq, epoch = cursor
        # The bus may have brought more than the database said when the channels were read.
        current = max(channel.last_seq, published_seq.get(channel_id, 0))
        if (
            (epoch is not None and epoch != channel.epoch)
            or seq > current
            or current - seq > replay_limit
        ):
            out.steps[channel_id] = Step("resync", current)
        else:
            out.steps[channel_id] = Step("rewind", seq)
    return out
