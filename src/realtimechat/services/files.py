"""File sharing: reserve quota, hand out upload URLs, verify, share, download, reconcile.

The bytes never pass through this service: clients upload straight to the object
store with a signed URL, and `complete` checks what arrived against what was
declared. Quota is reserved before any byte is stored and given back whenever a
file is cancelled, abandoned or fails verification.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from realtimechat.blobs.base import (
    DigestMismatch,
    LinkError,
    LinkServer,
    ObjectStore,
    StoredObject,
    StoreUnavailable,
    UploadTarget,
)
from realtimechat.blobs.base import TooLarge as BlobTooLarge
from realtimechat.domain.errors import (
    ChecksumMismatch,
    Conflict,
    FeatureDisabled,
    InvalidAttachment,
    LinkInvalid,
    NotFound,
    PendingUploadsLimit,
    QuotaExceeded,
    TooLarge,
    Unavailable,
    UploadAlreadyComplete,
    UploadCancelled,
    UploadExpired,
    UploadIncomplete,
    ValidationFailed,
)
from realtimechat.domain.files import FileRecord, declared_problem, file_id_of_key, storage_key
from realtimechat.domain.models import Channel
from realtimechat.ids import new_id, now_ms
from realtimechat.services.uow import Tx, UnitOfWork
from realtimechat.settings import FileSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


def resolve_attachments(
    tx: Tx, user_id: str, channel: Channel, file_ids: list[str]
) -> list[FileRecord]:
    """The files a message may carry: ready, of the channel's team (for a DM: any the
    sender may see), and visible to the sender. Anything else is refused whole."""
    if len(set(file_ids)) != len(file_ids):
        raise InvalidAttachment("an attachment is listed twice", field="attachments")
    found = tx.files.by_ids(file_ids)
    out = []
    for file_id in file_ids:
        f = found.get(file_id)
        ok = (
            f is not None
            and f.state == "ready"
            and (channel.team_id is None or f.team_id == channel.team_id)
            and tx.files.may_download(f, user_id)
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
    """Uploads, downloads and quota.

    A reservation lives `pending_timeout_s` (at least the upload URL's lifetime): past
    that it no longer counts against the quota, its URL refuses bytes and `complete`
    refuses it, whether or not the worker's reconciliation has removed it yet.
    """

    def __init__(
        self,
        *,
        uow: UnitOfWork,
        store: ObjectStore,
        settings: FileSettings,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._uow = uow
        self.store = store
        self._settings = settings
        self._clock = clock  # UTC milliseconds

    @property
    def _pending_ms(self) -> int:
        # Never shorter than the upload URL: a client may use its URL until it expires.
        return max(self._settings.pending_timeout_s, self._settings.url_ttl_s) * 1000

    def _live_since(self, now: int) -> int:
        """Reservations made at or after this are live at `now`; earlier ones expired."""
        return now - self._pending_ms + 1

    def _expired(self, f: FileRecord, now: int) -> bool:
        return f.created_at < self._live_since(now)

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
        if not (await self._uow.read(lambda tx: tx.flags.all())).get("uploads", True):
            raise FeatureDisabled(detail="uploads are switched off for now; try again later")
        quota = self._settings.team_quota_bytes
        at = self._clock()
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

        live_since = self._live_since(at)

        def work(tx: Tx) -> list[FileRecord]:
            if tx.teams.role(team_id, user_id) is None:
                raise NotFound("team not found")
            # Expired reservations stop counting now, not at the next reconciliation.
            expired = tx.files.expire_pending(team_id, live_since, at)
            self._check_pending(*tx.files.pending_of_user(user_id, live_since), size)
            if not tx.files.reserve(team_id, size, quota):
                used = tx.files.used_bytes(team_id)
                raise QuotaExceeded(
                    f"the team uses {used} of {quota} bytes; {size} more do not fit",
                    used_bytes=used,
                    quota_bytes=quota,
                )
            tx.files.add(f, at)
            return expired

        for gone in await self._uow.write(work):
            await self._delete_bytes(gone.storage_key)
        ttl = self._settings.url_ttl_s
        target = self.store.upload_target(
            f.storage_key, size, content_type, sha256, self._base(base_url), ttl
        )
        return f, target, at + ttl * 1000

    def _check_pending(self, count: int, pending_bytes: int, size: int) -> None:
        max_count = self._settings.max_pending_per_user
        max_bytes = self._settings.max_pending_bytes_per_user
        if count + 1 > max_count or pending_bytes + size > max_bytes:
            raise PendingUploadsLimit(
                f"you have {count} uploads ({pending_bytes} bytes) waiting for their bytes; "
                f"at most {max_count} uploads and {max_bytes} bytes may wait at once. "
                "Upload and complete them, cancel them (DELETE /api/v1/files/{id}), "
                "or let them expire.",
                pending_uploads=count,
                pending_bytes=pending_bytes,
                max_pending_uploads=max_count,
                max_pending_bytes=max_bytes,
            )

    async def complete(self, user_id: str, file_id: str) -> FileRecord:
        """Check the stored bytes against the declaration; the file is ready, or gone."""
        f = await self._own(user_id, file_id)
        if f.state == "ready":
            return f
        if f.state == "deleted":
            raise Conflict("this upload was cancelled or expired; start a new one")
        if self._expired(f, self._clock()):
            await self._discard(f)
            raise UploadExpired(
                "this upload was not completed in time and its quota was given back; "
                "start a new one"
            )
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
        moved = await self._uow.write(
            lambda tx: tx.files.set_state(f.id, "pending", "ready", self._clock())
        )
        if not moved:
            raise Conflict("this upload was cancelled while it was being completed")
        return FileRecord(**{**f.__dict__, "state": "ready"})

    async def cancel(self, user_id: str, file_id: str) -> None:
        """Delete an upload (pending or ready) of one's own; its quota is given back."""
        f = await self._own(user_id, file_id)
        if f.state != "deleted":
            await self._discard(f)

    async def begin_upload(self, key: str) -> FileRecord:
        """The pending upload whose signed URL names `key`, if it still takes bytes."""
        f = await self._uow.read(lambda tx: tx.files.get(file_id_of_key(key)))
        if f is None or f.storage_key != key:
            raise NotFound("no upload is waiting at this URL")
        await self._refuse_unless_open(f)
        return f

    async def end_upload(self, f: FileRecord) -> None:
        """After bytes were stored for `f`: keep them only if it still takes bytes.

        A cancel or expiry that raced the upload may have deleted the object before
        this write replaced it; whoever looks last removes it, so nothing is left.
        """
        current = await self._uow.read(lambda tx: tx.files.get(f.id))
        try:
            await self._refuse_unless_open(current or replace(f, state="deleted"))
        except (UploadCancelled, UploadExpired):
            await self._delete_bytes(f.storage_key)
            raise

    async def _refuse_unless_open(self, f: FileRecord) -> None:
        if f.state == "ready":
            raise UploadAlreadyComplete("this upload is complete; its bytes cannot change")
        if self._expired(f, self._clock()):
            if f.state == "pending":
                await self._discard(f)
            raise UploadExpired(
                "this upload's reservation expired and its quota was given back; "
                "declare the file again (POST /api/v1/files)"
            )
        if f.state == "deleted":
            raise UploadCancelled("this upload was cancelled; its URL no longer takes bytes")

    async def get(self, user_id: str, file_id: str) -> FileRecord:
        """A ready file the user may see (else 404, as for one that does not exist)."""

        def work(tx: Tx) -> FileRecord:
            f = tx.files.get(file_id)
            if f is None or f.state != "ready" or not tx.files.may_download(f, user_id):
                raise NotFound("file not found")
            return f

        return await self._uow.read(work)

    async def download_url(self, user_id: str, file_id: str, base_url: str) -> str:
        """A signed, expiring URL of a file the user may download."""
        f = await self.get(user_id, file_id)
        return self.store.download_url(
            f.storage_key,
            f.name,
            f.content_type,
            self._base(base_url),
            self._settings.download_url_ttl_s,
            viewer=user_id,
        )

    async def check_download(self, key: str, viewer: str | None) -> FileRecord:
        """The ready file a download link names, if its viewer may still download it.

        Links of a store that serves them itself carry their viewer, so access lost
        since the link was made (file deleted, message unshared, membership ended)
        is lost for the link too.
        """

        def work(tx: Tx) -> FileRecord:
            f = tx.files.get(file_id_of_key(key))
            if (
                f is None
                or f.storage_key != key
                or f.state != "ready"
                or (viewer is not None and not tx.files.may_download(f, viewer))
            ):
                raise NotFound("file not found")
            return f

        return await self._uow.read(work)

    async def usage(self, user_id: str, team_id: str) -> dict[str, Any]:
        live_since = self._live_since(self._clock())

        def work(tx: Tx) -> dict[str, Any]:
            if tx.teams.role(team_id, user_id) is None:
                raise NotFound("team not found")
            # Expired reservations no longer count, even before they are released.
            expired = tx.files.expired_pending_bytes(team_id, live_since)
            return {
                "team_id": team_id,
                "used_bytes": max(tx.files.used_bytes(team_id) - expired, 0),
                "quota_bytes": self._settings.team_quota_bytes,
                "files": tx.files.team_file_count(team_id, live_since),
                "max_file_bytes": self._settings.max_file_bytes,
            }

        return await self._uow.read(work)

    async def reconcile(self, now: int | None = None) -> ReconcileReport:
        """Remove abandoned uploads and orphaned objects; correct usage counters."""
        now = self._clock() if now is None else now
        report = ReconcileReport()
        before = self._live_since(now)
        while True:
            stale = await self._uow.read(lambda tx: tx.files.stale_pending(before, 100))
            for f in stale:
                await self._discard(f)
                report.abandoned.append(f.id)
            if len(stale) < 100:
                break
        # Keys listed before the rows are read: an upload created in between has a row.
        stored = await self._guard(self.store.keys("teams/"))
        live = await self._uow.read(lambda tx: tx.files.live_keys())
        for key in stored:
            if key not in live:
                await self._guard(self.store.delete(key))
                report.orphans.append(key)
        report.usage = await self._uow.write(lambda tx: tx.files.recount_usage())
        if report:
            log.info("file reconciliation fixed: %s", report.to_json())
        return report

    async def _own(self, user_id: str, file_id: str) -> FileRecord:
        f = await self._uow.read(lambda tx: tx.files.get(file_id))
        if f is None or f.uploader_id != user_id:
            raise NotFound("file not found")
        return f

    async def _discard(self, f: FileRecord) -> None:
        """Mark the file deleted and give its quota back, then remove its bytes.

        The row first: an object left behind by a failed delete is an orphan that
        reconciliation removes; a row pointing at removed bytes would be worse.
        """

        def work(tx: Tx) -> None:
            for state in ("pending", "ready"):
                if tx.files.set_state(f.id, state, "deleted", self._clock()):
                    tx.files.release(f.team_id, f.size)
                    return

        await self._uow.write(work)
        await self._delete_bytes(f.storage_key)

    async def _delete_bytes(self, key: str) -> None:
        try:
            await self.store.delete(key)
        except StoreUnavailable as exc:
            log.warning("could not delete %s now (%s); reconciliation will", key, exc)

    async def _guard(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except StoreUnavailable as exc:
            raise Unavailable(detail=f"file storage is unavailable: {exc}") from exc

    def _base(self, request_base: str) -> str:
        return (self._settings.public_url or request_base).rstrip("/")

    # -- the links a store that the node serves itself signs (local disk) ------------------

    async def receive_upload(
        self, key: str, params: Mapping[str, str], chunks: AsyncIterator[bytes]
    ) -> StoredObject:
        """Store the bytes sent to a signed upload link: streamed, never held in memory."""
        links = self._link_server()
        try:
            signed = links.verify("PUT", key, params)
        except LinkError as exc:
            raise LinkInvalid(str(exc)) from None
        declared = int(signed["size"])
        # A cancelled or expired upload's URL is still correctly signed: ask whether it
        # still takes bytes, and again once they are stored (a cancel may have raced them).
        upload = await self.begin_upload(key)
        try:
            stored = await links.write(key, chunks, declared, signed["sha256"])
        except BlobTooLarge:
            raise TooLarge(f"this upload was declared as {declared} bytes") from None
        except DigestMismatch as exc:
            raise ChecksumMismatch(f"{exc}; declared {signed['sha256']}") from None
        except StoreUnavailable as exc:  # the disk is full or failing: retry later
            raise Unavailable(detail=f"file storage is unavailable: {exc}") from exc
        await self.end_upload(upload)
        return stored

    async def open_download(self, key: str, params: Mapping[str, str]) -> tuple[FileRecord, Path]:
        """The file a signed download link names and where its bytes are, if still allowed."""
        links = self._link_server()
        try:
            signed = links.verify("GET", key, params)
        except LinkError as exc:
            raise LinkInvalid(str(exc)) from None
        # Still there, and still the viewer's to see: losing access ends the link too.
        f = await self.check_download(key, signed.get("viewer"))
        try:
            return f, await links.open(key)
        except FileNotFoundError:
            raise NotFound("file not found") from None

    def _link_server(self) -> LinkServer:
        links = self.store.link_server()
        if links is None:
            raise NotFound("not found")  # with S3 the links point at the bucket, not here
        return links
