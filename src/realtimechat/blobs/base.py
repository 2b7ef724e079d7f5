"""The object store interface: presigned-style URLs, and the few calls the server makes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class UploadTarget:
    """Where and how a client uploads the bytes of one file."""

    url: str
    method: str = "PUT"
    headers: dict[str, str] = field(default_factory=dict)  # the client must send these


@dataclass(frozen=True)
class StoredObject:
    size: int
    sha256: str | None  # hex; None when the store cannot tell without reading it


class StoreUnavailable(Exception):
    """The object store did not answer in time, or refused (its outage, not bad input)."""


class LinkError(Exception):
    """A blob URL that must not be honoured (altered, not ours, or expired)."""


class TooLarge(Exception):
    """More bytes arrived than the write allowed."""


class DigestMismatch(Exception):
    """The bytes written do not have the sha256 they were declared with."""


class LinkServer(Protocol):
    """A store whose signed links the node serves itself, under /api/v1/blobs/."""

    def verify(self, method: str, key: str, params: Mapping[str, str]) -> dict[str, str]:
        """The link's signed parameters, or LinkError if it must not be honoured."""
        ...

    async def write(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        max_bytes: int,
        expected_sha256: str | None = None,
    ) -> StoredObject:
        """Stream `chunks` into `key`: TooLarge, DigestMismatch or StoreUnavailable, or stored."""
        ...

    async def open(self, key: str) -> Path:
        """The file to send for `key`; FileNotFoundError if absent."""
        ...


class ObjectStore(Protocol):
    """Bytes by key. URLs let clients move bytes without passing them through a node."""

    name: str

    def upload_target(
        self, key: str, size: int, content_type: str, sha256: str, base_url: str, expires_s: int
    ) -> UploadTarget:
        """A URL the client PUTs exactly `size` bytes to, valid for `expires_s`."""
        ...

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
        """A URL that serves the object (as an attachment named `filename`) until it expires.

        A store that serves its links itself binds `viewer` (the user the link is for)
        into the link, so access can be checked again when it is used; others ignore it.
        """
        ...

    async def stat(self, key: str) -> StoredObject | None:
        """Size (and sha256, where the store checked it) of a stored object; None if absent."""
        ...

    async def sha256(self, key: str) -> str:
        """The object's sha256 (hex), reading it if the store does not know it."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; absent is fine."""
        ...

    async def keys(self, prefix: str) -> list[str]:
        """Every stored key under `prefix`."""
        ...

    async def ping(self) -> None:
        """A cheap call that fails when the store is unreachable."""
        ...

    def link_server(self) -> LinkServer | None:
        """Itself, if the node serves this store's links; None when they point elsewhere."""
        ...

    async def close(self) -> None: ...
