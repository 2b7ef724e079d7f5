"""Uploading a file: reserve, stream the bytes to storage, complete (or give the quota back)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import mimetypes
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import httpx

from realtimechat_client.errors import ChatAPIError
from realtimechat_client.models import FileInfo, FileUpload
from realtimechat_client.transport import Transport

__all__ = ["upload_file"]


async def upload_file(
    transport: Transport,
    team_id: str,
    path: str | Path,
    *,
    name: str | None = None,
    content_type: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_bytes: int = 256 * 1024,
) -> FileInfo:
    """Upload a file to the team's storage; the ready file (attach it by its id).

    Reserves quota, streams the bytes straight to storage (never all in memory), then
    asks the server to verify them. `progress(sent, total)` is called as bytes go out.
    Cancelling the task, or any failure, cancels the upload so its quota is given back.
    """
    path = Path(path)
    size = (await asyncio.to_thread(path.stat)).st_size
    name = name or path.name
    content_type = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    digest = await asyncio.to_thread(_sha256_of, path)
    created = cast(
        FileUpload,
        await transport.json(
            "POST",
            "/api/v1/files",
            json={
                "team_id": team_id,
                "name": name,
                "size": size,
                "content_type": content_type,
                "sha256": digest,
            },
        ),
    )
    file_id = created["id"]
    try:
        target = created["upload"]

        async def body() -> AsyncIterator[bytes]:
            sent = 0
            f = await asyncio.to_thread(path.open, "rb")
            try:
                while chunk := await asyncio.to_thread(f.read, chunk_bytes):
                    yield chunk
                    sent += len(chunk)
                    if progress is not None:
                        progress(sent, size)
            finally:
                f.close()

        # Storage is not the API: no bearer token goes there, and S3 wants a length.
        headers = {**target["headers"], "Content-Length": str(size)}
        async with httpx.AsyncClient(timeout=transport.options.timeout_s) as storage:
            resp = await storage.request(
                target["method"], target["url"], content=body(), headers=headers
            )
        if resp.status_code >= 300:
            raise ChatAPIError(resp.status_code, "upload_failed", resp.text[:300])
        return cast(
            FileInfo,
            await transport.json("POST", f"/api/v1/files/{file_id}/complete", idempotent=True),
        )
    except BaseException:
        # Shielded: a cancelled upload must still give its quota back.
        with contextlib.suppress(Exception):
            await asyncio.shield(
                transport.json("DELETE", f"/api/v1/files/{file_id}", idempotent=True)
            )
        raise


def _sha256_of(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
