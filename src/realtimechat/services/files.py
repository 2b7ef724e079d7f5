"""File sharing: reserve quota, hand out upload URLs, verify, share, download, reconcile.

The bytes never pass through this service: clients upload straight to the object
store with a signed URL, and `complete` checks what arrived against what was
declared. Quota is reserved before any byte is stored and given back whenever a
file is cancelled, abandoned or fails verification.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from realtimechat.blobs.base import ObjectStore, StoreUnavailable, UploadTarget
from realtimechat.domain.errors import (
    ChecksumMismatch,
    Conflict,
    FeatureDisabled,
    InvalidAttachment,
    NotFound,
    QuotaExceeded,
    TooLarge,
    Unavailable,
    UploadIncomplete,
    ValidationFailed,
)
from realtimechat.domain.files import FileRecord, declared_problem, storage_key
from realtimechat.domain.models import Channel
from realtimechat.ids import new_id, now_ms
from realtimechat.settings import FileSettings
from realtimechat.storage import files as repo
from realtimechat.storage import notifications as flags_repo
from realtimechat.storage import repositories as chat_repo
from realtimechat.storage.database import Database

log = logging.getLogger(__name__)
T = TypeVar("T")


def resolve_attachments(
    conn: Connection, user_id: str, channel: Channel, file_ids: list[Any]
) -> list[FileRecord]:
    """The files a message may carry: ready, of the channel's team (for a DM: any the
    sender may see), and visible to the sender. Anything else is refused whole."""
    if not all(isinstance(f, str) for f in file_ids):
        raise InvalidAttachment("attachments are file ids (strings)", field="attachments")
    if len(set(file_ids)) != len(file_ids):
        raise InvalidAttachment("an attachment is listed twice", field="attachments")
    found = repo.files_by_ids(conn, file_ids)
    out = []
    for file_id in file_ids:
        f = found.get(file_id)
        ok = (
            f is not None
            and f.state == "ready"
            and (channel.team_id is None or f.team_id == channel.team_id)
            and repo.may_download(conn, f, user_id)
        )
        if f is None or not ok:
            raise InvalidAttachment(
                f"attachment {file_id} is not a ready file of this team that you may share",
                field="attachments",
            )
        out.append(f)
    return out


@dataclass
class ReconcileReport:
    """What one reconciliation pass fixed."""

    abandoned: list[str] = field(default_factory=list)  # pending uploads removed
    orphans: list[str] = field(default_factory=list)  # objects with no live file row
    usage: dict[str, tuple[int, int]] = field(default_factory=dict)  # team: (was, now)

    def to_json(self) -> dict[str, Any]:
        return {
            "abandoned_uploads": self.abandoned,
            "orphaned_objects": self.orphans,
            "usage_corrected": {t: {"was": a, "now": b} for t, (a, b) in self.usage.items()},
        }

    def __bool__(self) -> bool:
        return bool(self.abandoned or self.orphans or self.usage)


class FileService:
    """Uploads, downloads and quota."""

    def __init__(self, *, db: Database, store: ObjectStore, settings: FileSettings) -> None:
        self._db = db
        self.store = store
        self._settings = settings

    async def ready(self) -> None:
        """Create the bucket if the store can and it is missing (dev and tests); a store
        that cannot be reached is reported by /readyz, not fatal at start."""
        ensure = getattr(self.store, "ensure_bucket", None)
        if ensure is not None:
            try:
                await ensure()
            except StoreUnavailable as exc:
                log.warning("file storage unreachable at start: %s", exc)

    async def create(
        self,
        user_id: str,
        team_id: str,
        name: str,
        size: int,
        content_type: str,
        sha256: str,
        base_url: str,
    ) -> tuple[FileRecord, UploadTarget, int]:
        """Reserve the size against the team's quota; (file, upload target, expires_at ms)."""
        problem = declared_problem(name, size, content_type, sha256)
        if problem is not None:
            field_name, _, text = problem.partition(": ")
            raise ValidationFailed(f"{field_name}: {text}", field=field_name)
        limit = self._settings.max_file_bytes
        if size > limit:
            raise TooLarge(
                f"{name} is {size} bytes; files are limited to {limit} bytes",
                size=size,
                max_bytes=limit,
            )
        if not (await self._db.read(flags_repo.flags)).get("uploads", True):
            raise FeatureDisabled(detail="uploads are switched off for now; try again later")
        quota = self._settings.team_quota_bytes
        at = now_ms()
        file_id = new_id()
        f = FileRecord(
            file_id,
            team_id,
            user_id,
            name,
            size,
            content_type,
            sha256,
            "pending",
            storage_key(team_id, file_id),
            at,
        )

        def work(conn: Connection) -> None:
            if chat_repo.team_role(conn, team_id, user_id) is None:
                raise NotFound("team not found")
            if not repo.reserve(conn, team_id, size, quota):
                used = repo.used_bytes(conn, team_id)
                raise QuotaExceeded(
                    f"the team uses {used} of {quota} bytes; {size} more do not fit",
                    used_bytes=used,
                    quota_bytes=quota,
                )
            repo.insert_file(conn, f, at)

        await self._db.write(work)
        ttl = self._settings.url_ttl_s
        target = self.store.upload_target(
            f.storage_key, size, content_type, sha256, self._base(base_url), ttl
        )
        return f, target, at + ttl * 1000

    async def complete(self, user_id: str, file_id: str) -> FileRecord:
        """Check the stored bytes against the declaration; the file is ready, or gone."""
        f = await self._own(user_id, file_id)
        if f.state == "ready":
            return f
        if f.state == "deleted":
            raise Conflict("this upload was cancelled or expired; start a new one")
        stored = await self._guard(self.store.stat(f.storage_key))
        if stored is None:
            raise UploadIncomplete(
                "nothing was uploaded to this file's URL yet; PUT the bytes, then complete"
            )
        digest = stored.sha256 or await self._guard(self.store.sha256(f.storage_key))
        if stored.size != f.size or digest != f.sha256:
            await self._discard(f)
            raise ChecksumMismatch(
                f"received {stored.size} bytes with sha256 {digest}; declared {f.size} "
                f"bytes with sha256 {f.sha256}. The upload was discarded and its quota "
                "given back.",
            )
        moved = await self._db.write(
            lambda c: repo.set_state(c, f.id, "pending", "ready", now_ms())
        )
        if not moved:
            raise Conflict("this upload was cancelled while it was being completed")
        return FileRecord(**{**f.__dict__, "state": "ready"})

    async def cancel(self, user_id: str, file_id: str) -> None:
        """Delete an upload (pending or ready) of one's own; its quota is given back."""
        f = await self._own(user_id, file_id)
        if f.state != "deleted":
            await self._discard(f)

    async def get(self, user_id: str, file_id: str) -> FileRecord:
        """A ready file the user may see (else 404, as for one that does not exist)."""

        def work(conn: Connection) -> FileRecord:
            f = repo.file_by_id(conn, file_id)
            if f is None or f.state != "ready" or not repo.may_download(conn, f, user_id):
                raise NotFound("file not found")
            return f

        return await self._db.read(work)

    async def download_url(self, user_id: str, file_id: str, base_url: str) -> str:
        """A signed, expiring URL of a file the user may download."""
        f = await self.get(user_id, file_id)
        return self.store.download_url(
            f.storage_key, f.name, f.content_type, self._base(base_url), self._settings.url_ttl_s
        )

    async def usage(self, user_id: str, team_id: str) -> dict[str, Any]:
        def work(conn: Connection) -> dict[str, Any]:
            if chat_repo.team_role(conn, team_id, user_id) is None:
                raise NotFound("team not found")
            return {
                "team_id": team_id,
                "used_bytes": repo.used_bytes(conn, team_id),
                "quota_bytes": self._settings.team_quota_bytes,
                "files": repo.team_file_count(conn, team_id),
                "max_file_bytes": self._settings.max_file_bytes,
            }

        return await self._db.read(work)

    async def reconcile(self, now: int | None = None) -> ReconcileReport:
        """Remove abandoned uploads and orphaned objects; correct usage counters."""
        now = now_ms() if now is None else now
        report = ReconcileReport()
        # Never while its upload URL is still valid: the client may yet use it.
        age_s = max(self._settings.pending_timeout_s, self._settings.url_ttl_s)
        before = now - age_s * 1000
        while True:
            stale = await self._db.read(lambda c: repo.stale_pending(c, before, 100))
            for f in stale:
                await self._discard(f)
                report.abandoned.append(f.id)
            if len(stale) < 100:
                break
        # Keys listed before the rows are read: an upload created in between has a row.
        stored = await self._guard(self.store.keys("teams/"))
        live = await self._db.read(repo.live_keys)
        for key in stored:
            if key not in live:
                await self._guard(self.store.delete(key))
                report.orphans.append(key)
        report.usage = await self._db.write(repo.recount_usage)
        if report:
            log.info("file reconciliation fixed: %s", report.to_json())
        return report

    async def _own(self, user_id: str, file_id: str) -> FileRecord:
        f = await self._db.read(lambda c: repo.file_by_id(c, file_id))
        if f is None or f.uploader_id != user_id:
            raise NotFound("file not found")
        return f

    async def _discard(self, f: FileRecord) -> None:
        """Mark the file deleted and give its quota back, then remove its bytes.

        The row first: an object left behind by a failed delete is an orphan that
        reconciliation removes; a row pointing at removed bytes would be worse.
        """

        def work(conn: Connection) -> None:
            for state in ("pending", "ready"):
                if repo.set_state(conn, f.id, state, "deleted", now_ms()):
                    repo.release(conn, f.team_id, f.size)
                    return

        await self._db.write(work)
        try:
            await self.store.delete(f.storage_key)
        except StoreUnavailable as exc:
            log.warning("could not delete %s now (%s); reconciliation will", f.storage_key, exc)

    async def _guard(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except StoreUnavailable as exc:
            raise Unavailable(detail=f"file storage is unavailable: {exc}") from exc

    def _base(self, request_base: str) -> str:
        return (self._settings.public_url or request_base).rstrip("/")
