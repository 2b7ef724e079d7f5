"""Files: upload (see `realtimechat_client.upload`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from realtimechat_client.models import FileInfo
from realtimechat_client.transport import Transport
from realtimechat_client.upload import upload_file

__all__ = ["FilesAPI"]


class FilesAPI:
    _transport: Transport

    async def upload_file(
        self,
        team_id: str,
        path: str | Path,
        *,
        name: str | None = None,
        content_type: str | None = None,
        progress: Callable[[int, int], None] | None = None,
        chunk_bytes: int = 256 * 1024,
    ) -> FileInfo:
        """Upload a file to the team's storage; the ready file (attach it by its id)."""
        return await upload_file(
            self._transport, team_id, path, name=name, content_type=content_type,
            progress=progress, chunk_bytes=chunk_bytes,
        )  # fmt: skip
