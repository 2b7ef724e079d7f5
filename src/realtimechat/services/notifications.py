"""Devices, notification settings and the feature flags that switch features off."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from realtimechat.domain.errors import NotFound, ValidationFailed
from realtimechat.domain.notifications import Device
from realtimechat.ids import now_ms
from realtimechat.services.channels import member_channel
from realtimechat.storage import notifications as notes
from realtimechat.storage.database import Database

PLATFORMS = ("android", "ios", "web")
# Runtime switches; a flag that was never set is on.
FLAGS = {
    "push": "push notifications go out (off: jobs wait, none are dropped)",
    "email": "e-mail notifications go out (off: jobs wait, none are dropped)",
    "uploads": "file uploads are accepted",
}
MAX_TOKEN = 4096


@dataclass(frozen=True)
class Flag:
    name: str
    enabled: bool
    description: str


def check_flag(name: str) -> str:
    if name not in FLAGS:
        raise NotFound(f"no feature flag {name!r}; known: {', '.join(sorted(FLAGS))}")
    return name


def flag_list(values: dict[str, bool]) -> list[Flag]:
    """Every known flag with its value (on unless set off)."""
    return [Flag(n, values.get(n, True), d) for n, d in sorted(FLAGS.items())]


async def read_flags(db: Database) -> list[Flag]:
    """The known flags, as stored."""
    return flag_list(await db.read(notes.flags))


async def set_flag(db: Database, name: str, enabled: bool) -> Flag:
    """Turn a known flag on or off; takes effect on every node at its next poll."""
    check_flag(name)
    await db.write(lambda c: notes.set_flag(c, name, enabled, now_ms()))
    return Flag(name, enabled, FLAGS[name])


class NotificationService:
    """What a user asks to be told, and where."""

    def __init__(self, *, db: Database) -> None:
        self._db = db

    async def register_device(self, user_id: str, platform: str, token: str) -> tuple[Device, bool]:
        """Register a push token; (device, created)."""
        if platform not in PLATFORMS:
            raise ValidationFailed(
                f"platform must be one of {', '.join(PLATFORMS)}", field="platform"
            )
        if not token.strip() or len(token) > MAX_TOKEN:
            raise ValidationFailed(f"token must be 1 to {MAX_TOKEN} characters", field="token")
        return await self._db.write(
            lambda c: notes.register_device(c, user_id, platform, token, now_ms())
        )

    async def devices(self, user_id: str) -> list[Device]:
        return await self._db.read(lambda c: notes.user_devices(c, user_id))

    async def delete_device(self, user_id: str, device_id: str) -> None:
        """Forget one of the user's devices; another user's is as unknown as none."""
        if not await self._db.write(lambda c: notes.delete_device(c, user_id, device_id)):
            raise NotFound("device not found")

    async def settings(self, user_id: str) -> tuple[bool, bool]:
        """(push, email)."""
        return await self._db.read(lambda c: notes.user_settings(c, user_id))

    async def put_settings(
        self, user_id: str, push: bool | None, email: bool | None
    ) -> tuple[bool, bool]:
        """Change either switch; (push, email) after the change."""

        def work(conn: Connection) -> tuple[bool, bool]:
            old_push, old_email = notes.user_settings(conn, user_id)
            new = (old_push if push is None else push, old_email if email is None else email)
            notes.put_user_settings(conn, user_id, *new)
            return new

        return await self._db.write(work)

    async def channel_muted(self, user_id: str, channel_id: str) -> bool:
        def work(conn: Connection) -> bool:
            member_channel(conn, channel_id, user_id)
            return notes.channel_muted(conn, user_id, channel_id)

        return await self._db.read(work)

    async def put_channel_muted(self, user_id: str, channel_id: str, muted: bool) -> bool:
        def work(conn: Connection) -> bool:
            member_channel(conn, channel_id, user_id)
            notes.put_channel_muted(conn, user_id, channel_id, muted)
            return muted

        return await self._db.write(work)

    async def job_counts(self) -> dict[str, dict[str, int]]:
        return await self._db.read(notes.job_counts)
