"""An ObjectStore in a dict, for unit tests of FileService (no disk, no network)."""

from __future__ import annotations

import hashlib

from realtimechat.blobs.base import ObjectStore, StoredObject, UploadTarget


class MemoryStore:
    """Bytes by key; a test "uploads" by putting bytes in `objects`."""

    name = "memory"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def upload_target(
        self, key: str, size: int, content_type: str, sha256: str, base_url: str, expires_s: int
    ) -> UploadTarget:
        return UploadTarget(f"{base_url}/blobs/{key}")

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
        return f"{base_url}/blobs/{key}?download"

    async def stat(self, key: str) -> StoredObject | None:
        data = self.objects.get(key)
        return None if data is None else StoredObject(len(data), None)

    async def sha256(self, key: str) -> str:
        return hashlib.sha256(self.objects[key]).hexdigest()

    async def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    async def keys(self, prefix: str) -> list[str]:
        return [k for k in self.objects if k.startswith(prefix)]

    async def ping(self) -> None:
        return None

    def link_server(self) -> None:
        """None: links point at no node."""
        return None

    async def close(self) -> None:
        return None


_: type[ObjectStore] = MemoryStore
