"""Who a message may notify: the channel's other members with their settings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from realtimechat.domain.notifications import Recipient
from realtimechat.storage.prepared import Prepared
from realtimechat.storage.tables import (
    channel_members,
    channel_notification_settings,
    devices,
    notification_settings,
    users,
)

NS = notification_settings
CS = channel_notification_settings
# A user's switches and the channel's mute, with their defaults when never set
# (queries that use them outer-join NS and CS).
SETTINGS = (
    sa.func.coalesce(NS.c.push, sa.true()).label("push"),
    sa.func.coalesce(NS.c.email, sa.true()).label("email"),
    sa.func.coalesce(CS.c.muted, sa.false()).label("muted"),
)


def recipients_query() -> sa.Select[Any]:
    """The other members of channel :cid (all but :sender), with their settings."""
    has_device = sa.exists().where(devices.c.user_id == channel_members.c.user_id)
    return (
        sa.select(
            channel_members.c.user_id,
            users.c.display_name,
            *SETTINGS,
            has_device.label("has_device"),
        )
        .select_from(
            channel_members.join(users, users.c.id == channel_members.c.user_id)
            .outerjoin(NS, NS.c.user_id == channel_members.c.user_id)
            .outerjoin(
                CS,
                sa.and_(
                    CS.c.user_id == channel_members.c.user_id,
                    CS.c.channel_id == channel_members.c.channel_id,
                ),
            )
        )
        .where(
            channel_members.c.channel_id == sa.bindparam("cid"),
            channel_members.c.user_id != sa.bindparam("sender"),
        )
    )


# On the send path of every DM and small-channel message (storage/prepared.py).
RECIPIENTS = Prepared(recipients_query())


def recipient(row: Sequence[Any]) -> Recipient:
    """A Recipient from (user_id, display_name, push, email, muted, has_device)."""
    user_id, display_name, push, email, muted, has_device = row
    return Recipient(
        str(user_id), str(display_name), bool(push), bool(email), bool(muted), bool(has_device)
    )
