"""The object store interface: presigned-style URLs, and the few calls the server makes."""

from __future__ import annotations

from dataclasses import dataclass, field
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

    async def close(self) -> None: ...
