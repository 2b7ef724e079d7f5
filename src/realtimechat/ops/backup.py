"""Backup and restore of the embedded mode: the SQLite database, secret.key and local files.

`backup` copies the database with SQLite's online backup API, which reads one consistent
snapshot while a server goes on writing (WAL mode: writers are not blocked), and packs it
with `secret.key`, the local `files/` directory and a `manifest.json` into a `.tar.gz`.
`restore` checks the archive (manifest checksum, `PRAGMA integrity_check`, no path that
leaves the data directory) in a staging directory inside the data directory, then renames
the database into place, so `realtimechat.db` is at every instant either the old file or
the whole new one. Every channel gets a new epoch: a client that saw events younger than
the backup then resyncs instead of taking the seqs new events reuse for ones it has seen.

A server database (PostgreSQL) is backed up with its own tools: `pg_dump -Fc` and WAL
archiving (docs/operations.md, "Backup and restore").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import os
import shutil
import sqlite3
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import orjson
from sqlalchemy.engine import make_url

from realtimechat.ids import new_epoch
from realtimechat.settings import Settings

__all__ = [
    "BackupError",
    "BackupReport",
    "NotEmbedded",
    "RestoreRefused",
    "RestoreReport",
    "backup",
    "restore",
]

FORMAT = 1  # manifest format; restore refuses archives of a format it does not know
DB_NAME = "realtimechat.db"
SECRET_NAME = "secret.key"
FILES_DIR = "files"
MANIFEST = "manifest.json"
POSTGRES_HINT = (
    "backup and restore here cover the embedded SQLite mode only; on PostgreSQL use "
    "`pg_dump -Fc` and `pg_restore` (plus WAL archiving for point-in-time recovery): "
    'see docs/operations.md, "Backup and restore"'
)


class BackupError(Exception):
    """A backup or restore that could not be done; the message says why."""


class NotEmbedded(BackupError):
    """The settings point at a server database, which has its own backup tools."""


class RestoreRefused(BackupError):
    """Restoring would overwrite existing data and --force was not given."""


@dataclass
class BackupReport:
    """What a backup wrote."""

    archive: Path
    archive_bytes: int
    db_bytes: int
    db_sha256: str
    alembic_revision: str | None
    messages: int
    events: int
    files: int
    secret_key: bool
    duration_s: float

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON."""
        return {
            **{k: v for k, v in self.__dict__.items() if k != "archive"},
            "archive": str(self.archive),
        }


@dataclass
class RestoreReport:
    """What a restore put in place."""

    data_dir: Path
    created_at: str
    alembic_revision: str | None
    messages: int
    events: int
    files: int
    secret_key: bool
    moved_aside: Path | None  # the data a --force restore replaced
    epochs_renewed: int
    duration_s: float
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON."""
        out = dict(self.__dict__)
        out["data_dir"] = str(self.data_dir)
        out["moved_aside"] = str(self.moved_aside) if self.moved_aside else None
        return out


def sqlite_path(settings: Settings) -> Path:
    """The embedded database file; NotEmbedded when the settings name a server database."""
    url = make_url(settings.db_url())
    if url.get_backend_name() != "sqlite" or not url.database:
        raise NotEmbedded(POSTGRES_HINT)
    return Path(url.database)


def files_dir(settings: Settings) -> Path | None:
    """The local upload directory, or None when uploads live in S3 (not ours to copy)."""
    if settings.files.backend != "local":
        return None
    return settings.files_dir()


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _inspect(db: Path) -> tuple[str | None, int, int]:
    """(alembic revision, messages, events) of a database file, checking its integrity."""
    # Read-only and immutable: checking an archive must not create a journal beside it.
    conn = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise BackupError(f"integrity_check of {db.name} failed: {'; '.join(problems[:5])}")
        revision = None
        with contextlib.suppress(sqlite3.OperationalError):
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            revision = str(row[0]) if row else None
        counts = []
        for table in ("messages", "events"):
            try:
                counts.append(int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]))  # noqa: S608
            except sqlite3.OperationalError:
                counts.append(0)  # an empty, never-migrated database
        return revision, counts[0], counts[1]
    finally:
        conn.close()


def _snapshot(source: Path, dest: Path) -> None:
    """Copy `source` to `dest` with the online backup API: one consistent snapshot."""
    src = sqlite3.connect(source, timeout=30)
    dst = sqlite3.connect(dest)
    try:
        # pages=-1 copies everything in one step under one read transaction: in WAL mode
        # that is a consistent snapshot and writers go on meanwhile. (Copying in slices
        # would restart whenever another connection writes, i.e. forever under load.)
        src.backup(dst, pages=-1)
        # A self-contained file: without this the copy keeps WAL mode and opening it
        # leaves -wal and -shm files beside it.
        dst.execute("PRAGMA journal_mode=DELETE")
        dst.commit()
    finally:
        dst.close()
        src.close()


def _add_tree(tar: tarfile.TarFile, root: Path, arcroot: str) -> int:
    """Add the regular files under `root`; files removed while we walk are skipped."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue  # restore accepts regular files only
            if name.endswith(".tmp"):
                continue  # an upload still being written: not an object yet
            arcname = f"{arcroot}/{path.relative_to(root).as_posix()}"
            # An upload cancelled or reconciled away during the backup: not an error.
            with contextlib.suppress(FileNotFoundError):
                tar.add(path, arcname=arcname, recursive=False)
                count += 1
    return count


def backup(settings: Settings, out: Path) -> BackupReport:
    """Write a consistent backup of the embedded data directory to `out` (a .tar.gz)."""
    started = time.monotonic()
    db = sqlite_path(settings)
    if not db.exists():
        raise BackupError(f"no database at {db} (is --data-dir right?)")
    out = Path(out)
    if out.is_dir():
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        out = out / f"realtimechat-backup-{stamp}.tar.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    data_dir = Path(settings.data_dir)
    secret = data_dir / SECRET_NAME
    uploads = files_dir(settings)
    created_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with tempfile.TemporaryDirectory(prefix=".rtc-backup-", dir=out.parent) as tmp:
        snap = Path(tmp) / DB_NAME
        _snapshot(db, snap)
        revision, messages, events = _inspect(snap)
        db_sha = _sha256(snap)
        db_bytes = snap.stat().st_size
        partial = Path(tmp) / "archive.tar.gz"
        with tarfile.open(partial, "w:gz") as tar:
            tar.add(snap, arcname=DB_NAME)
            has_secret = secret.is_file()
            if has_secret:
                tar.add(secret, arcname=SECRET_NAME)
            n_files = 0
            if uploads is not None and uploads.is_dir():
                n_files = _add_tree(tar, uploads, FILES_DIR)
            manifest = {
                "format": FORMAT,
                "created_at": created_at,
                "alembic_revision": revision,
                "counts": {"messages": messages, "events": events, "files": n_files},
                "database": {"name": DB_NAME, "bytes": db_bytes, "sha256": db_sha},
                "secret_key": has_secret,
                "files_backend": settings.files.backend,
            }
            raw = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(raw)
            info.mtime = int(time.time())
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(raw))
        # Renamed into place: a crash never leaves a half-written archive under `out`.
        partial.chmod(0o600)  # it holds the signing secret
        os.replace(partial, out)
    return BackupReport(
        archive=out,
        archive_bytes=out.stat().st_size,
        db_bytes=db_bytes,
        db_sha256=db_sha,
        alembic_revision=revision,
        messages=messages,
        events=events,
        files=n_files,
        secret_key=has_secret,
        duration_s=round(time.monotonic() - started, 3),
    )


def _member_target(staging: Path, member: tarfile.TarInfo) -> Path | None:
    """Where a member goes inside `staging`; None for a directory entry; raise if unsafe."""
    name = PurePosixPath(member.name)
    parts = name.parts
    unsafe = (
        name.is_absolute()
        or not parts
        or any(p in ("..", "") for p in parts)
        or "\\" in member.name
        or not (member.isfile() or member.isdir())  # no links, devices or fifos
        or parts[0] not in (DB_NAME, SECRET_NAME, MANIFEST, FILES_DIR)
        or (parts[0] != FILES_DIR and len(parts) != 1)
    )
    if unsafe:
        raise BackupError(f"refusing archive member {member.name!r}: not a path this writes")
    if member.isdir():
        return None
    target = staging.joinpath(*parts).resolve()
    if not target.is_relative_to(staging.resolve()):
        raise BackupError(f"refusing archive member {member.name!r}: it leaves the data dir")
    return target


def _extract(archive: Path, staging: Path) -> None:
    """Extract the members we know, one by one, after checking each path."""
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            target = _member_target(staging, member)
            if target is None:
                continue
            source = tar.extractfile(member)
            if source is None:
                raise BackupError(f"archive member {member.name!r} has no data")
            target.parent.mkdir(parents=True, exist_ok=True)
            with source, target.open("xb") as f:
                shutil.copyfileobj(source, f)


def _read_manifest(staging: Path) -> dict[str, Any]:
    path = staging / MANIFEST
    if not path.is_file():
        raise BackupError(f"the archive has no {MANIFEST}: not a realtimechat backup")
    manifest = orjson.loads(path.read_bytes())
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError(f"unknown backup format in {MANIFEST}: {manifest.get('format')!r}")
    return manifest


def _renew_epochs(db: Path) -> int:
    """Give every channel a new epoch; how many channels there are."""
    # Events after the backup are gone and their seqs will be reused: a cursor of the
    # old epoch must not be taken to cover the new events (the SDK and the web client
    # continue from min(cursor, last_seq) when the epoch changes).
    conn = sqlite3.connect(db)
    try:
        ids = [row[0] for row in conn.execute("SELECT id FROM channels")]
        conn.executemany(
            "UPDATE channels SET epoch = ? WHERE id = ?", [(new_epoch(), cid) for cid in ids]
        )
        conn.commit()
        return len(ids)
    finally:
        conn.close()


def _move(src: Path, dest_dir: Path) -> None:
    if src.exists() or src.is_symlink():
        dest_dir.mkdir(parents=True, exist_ok=True)
        # shutil.move: RTC_FILES__LOCAL_DIR may be on another filesystem.
        shutil.move(src, dest_dir / src.name)


def restore(settings: Settings, archive: Path, force: bool = False) -> RestoreReport:
    """Restore a backup into the settings' data directory (stop its servers first)."""
    started = time.monotonic()
    db = sqlite_path(settings)
    data_dir = Path(settings.data_dir)
    archive = Path(archive)
    if not archive.is_file():
        raise BackupError(f"no archive at {archive}")
    existing = sorted(p.name for p in data_dir.iterdir()) if data_dir.is_dir() else []
    if existing and not force:
        shown = ", ".join(existing[:5]) + (", …" if len(existing) > 5 else "")
        raise RestoreRefused(
            f"{data_dir} is not empty ({shown}); restore into an empty directory, or pass "
            "--force to replace its database, secret.key and files (the old ones are moved "
            "aside, not deleted)"
        )
    uploads = files_dir(settings)
    if uploads is not None and not force and uploads.is_dir() and any(uploads.iterdir()):
        raise RestoreRefused(f"{uploads} (RTC_FILES__LOCAL_DIR) is not empty; pass --force")
    data_dir.mkdir(parents=True, exist_ok=True)
    db.parent.mkdir(parents=True, exist_ok=True)
    warnings: list[str] = []
    # Staged beside the database: the final renames stay on one filesystem (atomic).
    with tempfile.TemporaryDirectory(prefix=".rtc-restore-", dir=db.parent) as tmp:
        staging = Path(tmp)
        try:
            _extract(archive, staging)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise BackupError(f"cannot read {archive}: {exc}") from exc
        manifest = _read_manifest(staging)
        staged_db = staging / DB_NAME
        if not staged_db.is_file():
            raise BackupError(f"the archive has no {DB_NAME}")
        expected = str(manifest.get("database", {}).get("sha256", ""))
        actual = _sha256(staged_db)
        if actual != expected:
            raise BackupError(
                f"{DB_NAME} does not match the manifest (sha256 {actual}, manifest {expected}): "
                "the archive is damaged"
            )
        revision, messages, events = _inspect(staged_db)  # raises unless integrity_check ok
        epochs = _renew_epochs(staged_db) if revision is not None else 0
        has_secret = (staging / SECRET_NAME).is_file()
        if not has_secret:
            warnings.append(
                "the archive has no secret.key: a new one will be generated, so every "
                "access token issued before is rejected and users must log in again"
            )
        staged_files = staging / FILES_DIR
        n_files = sum(1 for p in staged_files.rglob("*") if p.is_file())
        if n_files and uploads is None:
            warnings.append(
                f"the archive holds {n_files} local upload(s) but uploads are configured to "
                "live in S3 now: they were not restored"
            )

        moved_aside: Path | None = None
        if existing:
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            moved_aside = data_dir / f"pre-restore-{stamp}"
            moved_aside.mkdir()
            # The old database's WAL and shared memory go with it: left beside the new
            # file, SQLite would replay the old WAL's frames into it.
            if db.exists():
                try:
                    os.link(db, moved_aside / db.name)
                except OSError:
                    shutil.copy2(db, moved_aside / db.name)
            for suffix in ("-wal", "-shm", "-journal"):
                _move(db.with_name(db.name + suffix), moved_aside)
            _move(data_dir / SECRET_NAME, moved_aside)
            if uploads is not None:
                _move(uploads, moved_aside)
        for suffix in ("-wal", "-shm", "-journal"):
            # An empty dir has none; a forced restore moved them. Never leave one behind.
            db.with_name(db.name + suffix).unlink(missing_ok=True)
        os.replace(staged_db, db)
        if has_secret:
            os.replace(staging / SECRET_NAME, data_dir / SECRET_NAME)
            (data_dir / SECRET_NAME).chmod(0o600)
        if uploads is not None and staged_files.is_dir():
            uploads.parent.mkdir(parents=True, exist_ok=True)
            if uploads.is_dir():
                uploads.rmdir()  # empty (checked above): shutil.move would nest into it
            shutil.move(staged_files, uploads)
    return RestoreReport(
        data_dir=data_dir,
        created_at=str(manifest.get("created_at", "")),
        alembic_revision=revision,
        messages=messages,
        events=events,
        files=n_files,
        secret_key=has_secret,
        moved_aside=moved_aside,
        epochs_renewed=epochs,
        duration_s=round(time.monotonic() - started, 3),
        warnings=warnings,
    )
