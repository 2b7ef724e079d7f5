"""File uploads and downloads, team storage usage, and the local-disk blob links."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, RedirectResponse, Response

from realtimechat.domain.files import is_media_type
from realtimechat.edge.auth import CurrentUser
from realtimechat.edge.deps import Config, Files
from realtimechat.edge.hosts import base_url
from realtimechat.edge.responses import json
from realtimechat.edge.schemas import FileIn, Id
from realtimechat.ids import iso

router = APIRouter(prefix="/api/v1")


@router.post("/files", status_code=201, tags=["files"])
async def create_file(
    body: FileIn, request: Request, user: CurrentUser, files: Files, settings: Config
) -> Response:
    """Reserve quota for an upload; answers where to PUT the bytes (then call complete)."""
    f, target, expires_at = await files.create(
        user.user_id,
        body.team_id,
        body.name,
        body.size,
        body.content_type,
        body.sha256,
        base_url(request, settings),
    )
    upload = {
        "url": target.url,
        "method": target.method,
        "headers": target.headers,
        "expires_at": iso(expires_at),
    }
    return json({**f.to_json(), "upload": upload}, 201)


@router.post("/files/{file_id}/complete", tags=["files"])
async def complete_file(file_id: Id, user: CurrentUser, files: Files) -> Response:
    """Verify the uploaded bytes' size and sha256; the file is then ready to attach."""
    return json((await files.complete(user.user_id, file_id)).to_json())


@router.delete("/files/{file_id}", status_code=204, tags=["files"])
async def delete_file(file_id: Id, user: CurrentUser, files: Files) -> Response:
    """Cancel an upload (or delete one's file); its quota is given back."""
    await files.cancel(user.user_id, file_id)
    return Response(status_code=204)


@router.get("/files/{file_id}", tags=["files"])
async def download_file(
    file_id: Id, request: Request, user: CurrentUser, files: Files, settings: Config
) -> Response:
    """Redirect (302) to a signed, expiring download URL."""
    url = await files.download_url(user.user_id, file_id, base_url(request, settings))
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


@router.get("/files/{file_id}/meta", tags=["files"])
async def file_meta(file_id: Id, user: CurrentUser, files: Files) -> Response:
    return json((await files.get(user.user_id, file_id)).to_json())


@router.get("/teams/{team_id}/storage", tags=["files"])
async def team_storage(team_id: Id, user: CurrentUser, files: Files) -> Response:
    """The team's storage: bytes used (pending uploads included) against its quota."""
    return json(await files.usage(user.user_id, team_id))


@router.put("/blobs/{key:path}", include_in_schema=False)
async def put_blob(key: str, request: Request, files: Files) -> Response:
    """A signed upload link of the local-disk store: streamed to disk, never held."""
    stored = await files.receive_upload(key, dict(request.query_params), request.stream())
    return json({"size": stored.size, "sha256": stored.sha256})


@router.get("/blobs/{key:path}", include_in_schema=False)
async def get_blob(key: str, request: Request, files: Files) -> Response:
    """A signed download link of the local-disk store."""
    f, path = await files.open_download(key, dict(request.query_params))
    return FileResponse(
        path,
        # A type stored before types were checked could not be sent as a header.
        media_type=f.content_type if is_media_type(f.content_type) else "application/octet-stream",
        filename=f.name,
        content_disposition_type="attachment",
    )
