"""Devices and notification settings: what a user asks to be told, and where."""

from __future__ import annotations

from collections.abc import Callable

from realtimechat.domain.errors import NotFound, ValidationFailed
from realtimechat.domain.notifications import Device
from realtimechat.ids import now_ms
from realtimechat.services.channels import member_channel
from realtimechat.services.uow import Tx, UnitOfWork

PLATFORMS = ("android", "ios", "web")
MAX_TOKEN = 4096


class NotificationService:
    """What a user asks to be told, and where."""

    def __init__(self, *, uow: UnitOfWork, clock: Callable[[], int] = now_ms) -> None:
        self._uow = uow
        self._clock = clock

    async def register_device(self, user_id: str, platform: str, token: str) -> tuple[Device, bool]:
        """Register a push token; (device, created)."""
        if platform not in PLATFORMS:
            raise ValidationFailed(
                f"platform must be one of {', '.join(PLATFORMS)}", field="platform"
            )
        if not token.strip() or len(token) > MAX_TOKEN:
            raise ValidationFailed(f"token must be 1 to {MAX_TOKEN} characters", field="token")
        at = self._clock()
        return await self._uow.write(
            lambda tx: tx.notifications.register_device(user_id, platform, token, at)
        )

    async def devices(self, user_id: str) -> list[Device]:
        return await self._uow.read(lambda tx: tx.notifications.devices(user_id))

    async def delete_device(self, user_id: str, device_id: str) -> None:
        """Forget one of the user's devices; another user's is as unknown as none."""
        if not await self._uow.write(lambda tx: tx.notifications.delete_device(user_id, device_id)):
            raise NotFound("device not found")

    async def settings(self, user_id: str) -> tuple[bool, bool]:
        """(push, email)."""
        return await self._uow.read(lambda tx: tx.notifications.user_settings(user_id))

    async def put_settings(
        self, user_id: str, push: bool | None, email: bool | None
    ) -> tuple[bool, bool]:
        """Change either switch; (push, email) after the change."""

        def work(tx: Tx) -> tuple[bool, bool]:
            old_push, old_email = tx.notifications.user_settings(user_id)
            new = (old_push if push is None else push, old_email if email is None else email)
            tx.notifications.put_user_settings(user_id, *new)
            return new

        return await self._uow.write(work)

    async def channel_muted(self, user_id: str, channel_id: str) -> bool:
        def work(tx: Tx) -> bool:
            member_channel(tx, channel_id, user_id)
            return tx.notifications.channel_muted(user_id, channel_id)

        return await self._uow.read(work)

    async def put_channel_muted(self, user_id: str, channel_id: str, muted: bool) -> bool:
        def work(tx: Tx) -> bool:
            member_channel(tx, channel_id, user_id)
            tx.notifications.put_channel_muted(user_id, channel_id, muted)
            return muted

        return await self._uow.write(work)

    async def job_counts(self) -> dict[str, dict[str, int]]:
        return await self._uow.read(lambda tx: tx.notifications.job_counts())
