"""Push devices, notification settings, and the admin API of feature flags."""

from __future__ import annotations

import hmac
from typing import Annotated

from annotated_types import MaxLen
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from realtimechat.domain.errors import NotFound, Unauthorized
from realtimechat.domain.notifications import Device
from realtimechat.edge.auth import CurrentUser
from realtimechat.edge.deps import Config, Notifications, Uow
from realtimechat.edge.responses import json
from realtimechat.edge.schemas import (
    ChannelNotificationsIn,
    DeviceIn,
    FlagIn,
    Id,
    Line,
    NotificationSettingsIn,
)
from realtimechat.ids import iso
from realtimechat.services.flags import Flag, read_flags, set_flag

router = APIRouter(prefix="/api/v1")


def _device(d: Device) -> dict[str, object]:
    return {"id": d.id, "platform": d.platform, "token": d.token, "created_at": iso(d.created_at)}


def _flag(f: Flag) -> dict[str, object]:
    return {"name": f.name, "enabled": f.enabled, "description": f.description}


@router.post("/devices", status_code=201, tags=["notifications"])
async def register_device(
    body: DeviceIn, user: CurrentUser, notifications: Notifications
) -> Response:
    """Register this device's push token (201; 200 if it was already registered)."""
    device, created = await notifications.register_device(user.user_id, body.platform, body.token)
    return json(_device(device), 201 if created else 200)


@router.get("/devices", tags=["notifications"])
async def list_devices(user: CurrentUser, notifications: Notifications) -> Response:
    devices = await notifications.devices(user.user_id)
    return json({"devices": [_device(d) for d in devices]})


@router.delete("/devices/{device_id}", status_code=204, tags=["notifications"])
async def delete_device(device_id: Id, user: CurrentUser, notifications: Notifications) -> Response:
    await notifications.delete_device(user.user_id, device_id)
    return Response(status_code=204)


@router.get("/notification-settings", tags=["notifications"])
async def get_settings(user: CurrentUser, notifications: Notifications) -> Response:
    push, email = await notifications.settings(user.user_id)
    return json({"push": push, "email": email})


@router.put("/notification-settings", tags=["notifications"])
async def put_settings(
    body: NotificationSettingsIn, user: CurrentUser, notifications: Notifications
) -> Response:
    """Turn push or e-mail notifications on or off (a field left out stays as it is)."""
    push, email = await notifications.put_settings(user.user_id, body.push, body.email)
    return json({"push": push, "email": email})


@router.get("/channels/{channel_id}/notification-settings", tags=["notifications"])
async def get_channel_settings(
    channel_id: Id, user: CurrentUser, notifications: Notifications
) -> Response:
    muted = await notifications.channel_muted(user.user_id, channel_id)
    return json({"channel_id": channel_id, "muted": muted})


@router.put("/channels/{channel_id}/notification-settings", tags=["notifications"])
async def put_channel_settings(
    channel_id: Id, body: ChannelNotificationsIn, user: CurrentUser, notifications: Notifications
) -> Response:
    """Mute a channel: none of its messages notify (mentions included)."""
    muted = await notifications.put_channel_muted(user.user_id, channel_id, body.muted)
    return json({"channel_id": channel_id, "muted": muted})


async def admin(request: Request, settings: Config) -> None:
    """The operator's bearer token (RTC_ADMIN_TOKEN); without one the admin API is absent."""
    expected = settings.admin_token
    if expected is None:
        raise NotFound("not found")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.get_secret_value().encode()
    ):
        raise Unauthorized("send Authorization: Bearer <RTC_ADMIN_TOKEN>")


Admin = Annotated[None, Depends(admin)]


@router.get("/admin/flags", tags=["admin"])
async def list_flags(_: Admin, uow: Uow) -> Response:
    return json({"flags": [_flag(f) for f in await read_flags(uow)]})


@router.put("/admin/flags/{name}", tags=["admin"])
async def put_flag(
    name: Annotated[Line, MaxLen(100)], body: FlagIn, _: Admin, uow: Uow
) -> Response:
    """Switch a feature on or off at runtime, on every node."""
    return json(_flag(await set_flag(uow, name, body.enabled)))
