"""Object store on the node's own disk, with HMAC-signed URLs that the node itself serves."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, ParamSpec, TypeVar
from urllib.parse import quote, urlencode

from realtimechat.blobs.base import DigestMismatch as DigestMismatch
from realtimechat.blobs.base import LinkError as LinkError
from realtimechat.blobs.base import StoredObject, StoreUnavailable, UploadTarget
from realtimechat.blobs.base import TooLarge as TooLarge

if TYPE_CHECKING:
    from _hashlib import HASH

_P = ParamSpec("_P")
_T = TypeVar("_T")

_KEY_RE = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")
_PREFIX_RE = re.compile(r"[A-Za-z0-9/_-]*")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
# Disk writes go to a thread in batches of this size: few thread hops, bounded memory.
_WRITE_BATCH = 256 * 1024
_READ_CHUNK = 1024 * 1024
_SIDECAR = ".sha256"
_URL_PATH = "/api/v1/blobs/"


class BadSignature(LinkError):
    """The URL's signature does not match its method, key and parameters."""


class Expired(LinkError):
    """The URL was genuine but its expiry time has passed."""


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative key, else raise ValueError."""
    # '.' is outside the alphabet, so neither '..' nor our '.tmp'/'.sha256' names can be keys.
    if not _KEY_RE.fullmatch(key):
        raise ValueError(f"invalid blob key {key!r}: segments of [A-Za-z0-9_-] joined by '/'")
    return key


class LocalDiskStore:
    """Blobs as files under `root`; URLs point at this node's /api/v1/blobs route."""

    name = "local"

    def __init__(self, root: Path, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the URL signing secret must be at least 16 bytes")
        self.root = root
        self._secret = secret
        self._clock = clock

    # -- URLs -----------------------------------------------------------------------------

    def upload_target(
        self, key: str, size: int, content_type: str, sha256: str, base_url: str, expires_s: int
    ) -> UploadTarget:
        """A signed PUT URL on this node, bound to the declared size and sha256."""
        digest = sha256.lower()
        if not _HEX64_RE.fullmatch(digest):
            raise ValueError("sha256 must be 64 hex digits")
        if size < 0:
            raise ValueError("size must not be negative")
        params = {"expires": str(self._expiry(expires_s)), "size": str(size), "sha256": digest}
        return UploadTarget(
            url=self._signed_url("PUT", key, params, base_url),
            method="PUT",
            headers={"Content-Type": content_type},
        )

    def download_url(
        self,
        key: str,
        filename: str,
        content_type: str,
        base_url: str,
        expires_s: int,
        *,
        viewer: str | None = None,
    ) -> str:
        """A signed GET URL on this node that serves the file as an attachment."""
        params = {"expires": str(self._expiry(expires_s)), "filename": filename, "ct": content_type}
        if viewer is not None:
            params["viewer"] = viewer
        return self._signed_url("GET", key, params, base_url)

    def verify(self, method: str, key: str, params: Mapping[str, str]) -> dict[str, str]:
        """Check a URL's signature, then its expiry; return its parameters without `sig`."""
        if not _KEY_RE.fullmatch(key):
            # We never sign such a key, so no genuine URL names one.
            raise BadSignature(f"{key!r} is not a blob key")
        given = params.get("sig")
        if given is None:
            raise BadSignature("the URL has no signature")
        signed = {k: v for k, v in params.items() if k != "sig"}
        if not hmac.compare_digest(given, self._sign(method, key, signed)):
            raise BadSignature("the URL's signature does not match; it was altered or not ours")
        try:
            expires = int(signed["expires"])
        except (KeyError, ValueError):
            # Only reachable with our own signature over a malformed URL: treat as forged.
            raise BadSignature("the URL has no valid expiry") from None
        if self._clock() >= expires:
            raise Expired(f"the URL expired at {expires} (unix time)")
        return signed

    def _expiry(self, expires_s: int) -> int:
        if expires_s <= 0:
            raise ValueError("expires_s must be positive")
        return int(self._clock()) + expires_s

    def _signed_url(self, method: str, key: str, params: dict[str, str], base_url: str) -> str:
        check_key(key)
        query = urlencode({**params, "sig": self._sign(method, key, params)})
        return f"{base_url.rstrip('/')}{_URL_PATH}{quote(key, safe='/')}?{query}"

    def _sign(self, method: str, key: str, params: Mapping[str, str]) -> str:
        # Sorted and form-encoded, so each (name, value) pair has exactly one rendering and
        # nothing can be moved between the method, the key and the parameters.
        canonical = "\n".join(
            ["rtc-blob-v1", method.upper(), key, urlencode(sorted(params.items()))]
        )
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()

    # -- bytes ----------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        """Where the object with `key` lives (whether or not it exists)."""
        return self.root / check_key(key)

    async def open(self, key: str) -> Path:
        """The file to stream for `key`; FileNotFoundError if absent."""
        path = self.path(key)
        if not await asyncio.to_thread(path.is_file):
            raise FileNotFoundError(key)
        return path

    async def write(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        max_bytes: int,
        expected_sha256: str | None = None,
    ) -> StoredObject:
        """Stream `chunks` into `key`, replacing it only if every check passes."""
        final = self.path(key)
        tmp = final.with_name(f"{final.name}.{secrets.token_hex(8)}.tmp")
        file: IO[bytes] | None = None
        hasher = hashlib.sha256()
        size = 0
        try:
            file = await _disk(_open_exclusive, tmp)
            batch: list[bytes] = []
            pending = 0
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"more than {max_bytes} bytes")
                batch.append(chunk)
                pending += len(chunk)
                if pending >= _WRITE_BATCH:
                    await _disk(_write_batch, file, hasher, batch)
                    batch, pending = [], 0
            await _disk(_write_batch, file, hasher, batch)
            digest = hasher.hexdigest()
            if expected_sha256 is not None and digest != expected_sha256.lower():
                raise DigestMismatch(f"received bytes have sha256 {digest}")
            await _disk(_commit, file, tmp, final, digest, size)
            file = None
        except BaseException:
            # Synchronous on purpose: it must also run when the task is being cancelled.
            with contextlib.suppress(OSError):  # the first failure is the one to report
                if file is not None:
                    file.close()
                tmp.unlink(missing_ok=True)
            raise
        return StoredObject(size=size, sha256=digest)

    async def stat(self, key: str) -> StoredObject | None:
        """Size, and the sha256 recorded at write time when it still matches the file."""
        return await _disk(_stat, self.path(key))

    async def sha256(self, key: str) -> str:
        """The recorded sha256, else one computed by reading the file."""
        path = self.path(key)
        found = await _disk(_stat, path)
        if found is None:
            raise FileNotFoundError(key)
        if found.sha256 is not None:
            return found.sha256
        return await _disk(_hash_file, path)

    async def delete(self, key: str) -> None:
        """Remove the file and its sidecar; absent is fine."""
        await _disk(_delete, self.path(key))

    async def keys(self, prefix: str) -> list[str]:
        """Every stored key starting with `prefix`, sorted."""
        if not _PREFIX_RE.fullmatch(prefix) or prefix.startswith("/") or "//" in prefix:
            raise ValueError(f"invalid key prefix {prefix!r}")
        return await _disk(_walk, self.root, prefix)

    async def ping(self) -> None:
        """Fail with StoreUnavailable unless a file can be created under the root."""
        await _disk(_probe, self.root)

    def link_server(self) -> LocalDiskStore:
        """This store: its links point at the node, which serves them."""
        return self

    async def close(self) -> None:
        """Nothing to release: every file is closed when its call ends."""


async def _disk(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    # One place that keeps disk I/O off the event loop and turns a failing disk
    # (full, read-only, gone) into the store outage callers already handle.
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        # A thread cannot be stopped. Let it finish before the caller's cleanup runs, so
        # that cleanup never closes or unlinks a file the thread is still using.
        await asyncio.wait([work])
        if not work.cancelled():
            work.exception()  # retrieved: the cancellation is what gets reported
        raise
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise StoreUnavailable(f"local blob store: {exc}") from exc


def _open_exclusive(tmp: Path) -> IO[bytes]:
    tmp.parent.mkdir(parents=True, exist_ok=True)
    return tmp.open("xb")


def _write_batch(file: IO[bytes], hasher: HASH, batch: list[bytes]) -> None:
    for chunk in batch:
        hasher.update(chunk)
        file.write(chunk)


def _commit(file: IO[bytes], tmp: Path, final: Path, digest: str, size: int) -> None:
    with file:
        file.flush()
        os.fsync(file.fileno())
        inode = os.fstat(file.fileno()).st_ino
    sidecar = _sidecar(final)
    side_tmp = sidecar.with_name(f"{sidecar.name}.{secrets.token_hex(8)}.tmp")
    try:
        with side_tmp.open("x") as side:
            # The inode ties the record to this very file: whatever order a crash or a
            # concurrent writer leaves things in, a stale record is detected, never believed.
            side.write(f"{digest} {size} {inode}\n")
            side.flush()
            os.fsync(side.fileno())
        sidecar.unlink(missing_ok=True)
        tmp.replace(final)
        side_tmp.replace(sidecar)
    finally:
        side_tmp.unlink(missing_ok=True)
    _fsync_dir(final.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + _SIDECAR)


def _stat(path: Path) -> StoredObject | None:
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not path.is_file():
        return None
    try:
        digest, size, inode = _sidecar(path).read_text().split()
        trusted = (int(size), int(inode)) == (st.st_size, st.st_ino)
    except (FileNotFoundError, ValueError):
        trusted = False
    if not trusted or not _HEX64_RE.fullmatch(digest):
        return StoredObject(size=st.st_size, sha256=None)
    return StoredObject(size=st.st_size, sha256=digest)


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_READ_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _delete(path: Path) -> None:
    path.unlink(missing_ok=True)
    _sidecar(path).unlink(missing_ok=True)


def _walk(root: Path, prefix: str) -> list[str]:
    # Only the directory the prefix names needs walking; the rest of the prefix filters names.
    start = root / prefix.rpartition("/")[0]
    found: list[str] = []
    for dirpath, _dirs, files in os.walk(start):
        rel = Path(dirpath).relative_to(root).as_posix()
        for name in files:
            if "." in name:  # temp files and sidecars; keys never contain '.'
                continue
            key = name if rel == "." else f"{rel}/{name}"
            if key.startswith(prefix):
                found.append(key)
    return sorted(found)


def _probe(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    probe = root / f".ping.{secrets.token_hex(8)}.tmp"
    try:
        probe.write_bytes(b"ok")
    finally:
        probe.unlink(missing_ok=True)
