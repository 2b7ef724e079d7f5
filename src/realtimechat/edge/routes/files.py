"""File uploads and downloads, team storage usage, and the local-disk blob links."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import FileResponse, RedirectResponse, Response

from realtimechat.blobs.base import StoreUnavailable
from realtimechat.blobs.local import BadSignature, DigestMismatch, LinkError, LocalDiskStore
from realtimechat.blobs.local import TooLarge as BlobTooLarge
from realtimechat.domain.errors import (
    ChecksumMismatch,
    LinkInvalid,
    NotFound,
    TooLarge,
    Unavailable,
)
from realtimechat.edge.auth import AppDeps, CurrentUser
from realtimechat.edge.responses import json
from realtimechat.edge.schemas import FileIn
from realtimechat.ids import iso

router = APIRouter(prefix="/api/v1")


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.post("/files", status_code=201, tags=["files"])
async def create_file(body: FileIn, request: Request, user: CurrentUser, deps: AppDeps) -> Response:
    """Reserve quota for an upload; answers where to PUT the bytes (then call complete)."""
    f, target, expires_at = await deps.files.create(
        user.user_id,
        body.team_id,
        body.name,
        body.size,
        body.content_type,
        body.sha256,
        _base_url(request),
    )
    upload = {
        "url": target.url,
        "method": target.method,
        "headers": target.headers,
        "expires_at": iso(expires_at),
    }
    return json({**f.to_json(), "upload": upload}, 201)


@router.post("/files/{file_id}/complete", tags=["files"])
async def complete_file(file_id: str, user: CurrentUser, deps: AppDeps) -> Response:
    """Verify the uploaded bytes' size and sha256; the file is then ready to attach."""
    return json((await deps.files.complete(user.user_id, file_id)).to_json())


@router.delete("/files/{file_id}", status_code=204, tags=["files"])
async def delete_file(file_id: str, user: CurrentUser, deps: AppDeps) -> Response:
    """Cancel an upload (or delete one's file); its quota is given back."""
    await deps.files.cancel(user.user_id, file_id)
    return Response(status_code=204)


@router.get("/files/{file_id}", tags=["files"])
async def download_file(
    file_id: str, request: Request, user: CurrentUser, deps: AppDeps
) -> Response:
    """Redirect (302) to a signed, expiring download URL."""
    url = await deps.files.download_url(user.user_id, file_id, _base_url(request))
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


@router.get("/files/{file_id}/meta", tags=["files"])
async def file_meta(file_id: str, user: CurrentUser, deps: AppDeps) -> Response:
    return json((await deps.files.get(user.user_id, file_id)).to_json())


@router.get("/teams/{team_id}/storage", tags=["files"])
async def team_storage(team_id: str, user: CurrentUser, deps: AppDeps) -> Response:
    """The team's storage: bytes used (pending uploads included) against its quota."""
    return json(await deps.files.usage(user.user_id, team_id))


def _local(deps: AppDeps) -> LocalDiskStore:
    store = deps.files.store
    if not isinstance(store, LocalDiskStore):
        raise NotFound("not found")  # with S3 the links point at the bucket, not here
    return store


@router.put("/blobs/{key:path}", include_in_schema=False)
async def put_blob(key: str, request: Request, deps: AppDeps) -> Response:
    """A signed upload link of the local-disk store: streamed to disk, never held."""
    store = _local(deps)
    try:
        params = store.verify("PUT", key, dict(request.query_params))
    except LinkError as exc:
        raise LinkInvalid(str(exc)) from None
    declared = int(params["size"])
    try:
        stored = await store.write(key, request.stream(), declared, params["sha256"])
    except BlobTooLarge:
        raise TooLarge(f"this upload was declared as {declared} bytes") from None
    except DigestMismatch as exc:
        raise ChecksumMismatch(f"{exc}; declared {params['sha256']}") from None
    except StoreUnavailable as exc:  # the disk is full or failing: retry later
        raise Unavailable(detail=f"file storage is unavailable: {exc}") from exc
    return json({"size": stored.size, "sha256": stored.sha256})


@router.get("/blobs/{key:path}", include_in_schema=False)
async def get_blob(key: str, request: Request, deps: AppDeps) -> Response:
    """A signed download link of the local-disk store."""
    store = _local(deps)
    try:
        params = store.verify("GET", key, dict(request.query_params))
        path = await store.open(key)
    except (LinkError, BadSignature) as exc:
        raise LinkInvalid(str(exc)) from None
    except FileNotFoundError:
        raise NotFound("file not found") from None
    return FileResponse(
        path,
        media_type=params.get("ct", "application/octet-stream"),
        filename=params.get("filename"),
        content_disposition_type="attachment",
    )
