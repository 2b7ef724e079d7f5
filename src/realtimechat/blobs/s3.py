"""Object store on S3 or an S3-compatible server (MinIO, moto, ...), through boto3."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar, cast
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionError, HTTPClientError

from realtimechat.blobs.base import StoredObject, StoreUnavailable, UploadTarget
from realtimechat.settings import FileSettings

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.literals import BucketLocationConstraintType

_P = ParamSpec("_P")
_T = TypeVar("_T")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_READ_CHUNK = 1024 * 1024
# Error codes S3 uses for its own trouble (throttling, overload), as opposed to bad requests.
_OUTAGE_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "RequestTimeTooSkewed"}
)


class S3Store:
    """Blobs in one S3 bucket; clients move the bytes through presigned URLs."""

    name = "s3"

    def __init__(self, settings: FileSettings) -> None:
        if not settings.s3_bucket:
            raise ValueError("the S3 backend needs files.s3_bucket")
        self.bucket = settings.s3_bucket
        self._region = settings.s3_region
        secret = settings.s3_secret_access_key
        config = Config(
            region_name=settings.s3_region,
            connect_timeout=settings.timeout_s,
            read_timeout=settings.timeout_s,
            # Two attempts in all: one retry rides out a blip, and an outage is still
            # reported within about two timeouts instead of the SDK's default minute.
            retries={"total_max_attempts": 2, "mode": "standard"},
            signature_version="s3v4",
            s3={"addressing_style": "path"},
        )
        # Without explicit keys boto3 falls back to its usual chain (env, profile, role).
        self._client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
            config=config,
        )

    def upload_target(
        self, key: str, size: int, content_type: str, sha256: str, base_url: str, expires_s: int
    ) -> UploadTarget:
        """A presigned PUT bound to the size, content type and sha256 the client declared."""
        digest = sha256.lower()
        if not _HEX64_RE.fullmatch(digest):
            raise ValueError("sha256 must be 64 hex digits")
        checksum = base64.b64encode(bytes.fromhex(digest)).decode()
        url = self._client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ContentType": content_type,
                "ContentLength": size,
                "ChecksumSHA256": checksum,
            },
            ExpiresIn=expires_s,
        )
        # All three are signed. Content-Length is not listed: every HTTP client derives
        # it from the body, and browsers refuse to let scripts set it.
        return UploadTarget(
            url=url,
            method="PUT",
            headers={"Content-Type": content_type, "x-amz-checksum-sha256": checksum},
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
        """A presigned GET that S3 answers as an attachment named `filename`.

        S3 cannot ask us again when the link is used, so `viewer` is not checked: the
        link's short lifetime is what bounds access after it is lost.
        """
        return self._client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentDisposition": content_disposition(filename),
                "ResponseContentType": content_type,
            },
            ExpiresIn=expires_s,
        )

    async def stat(self, key: str) -> StoredObject | None:
        """The object's size; sha256 is None, as S3-compatible stores may not verify it."""
        try:
            head = await self._call(self._client.head_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise
        # AWS verifies x-amz-checksum-sha256 on PUT, but moto stores or drops it unchecked
        # (and others may too), so the stored checksum proves nothing: callers hash instead.
        return StoredObject(size=head["ContentLength"], sha256=None)

    async def sha256(self, key: str) -> str:
        """Hash the object by streaming it from S3, a chunk at a time."""
        try:
            return await self._call(self._hash_object, key)
        except ClientError as exc:
            if _status(exc) == 404:
                raise FileNotFoundError(key) from exc
            raise

    def _hash_object(self, key: str) -> str:
        body = self._client.get_object(Bucket=self.bucket, Key=key)["Body"]
        hasher = hashlib.sha256()
        try:
            for chunk in body.iter_chunks(_READ_CHUNK):
                hasher.update(chunk)
        finally:
            body.close()
        return hasher.hexdigest()

    async def delete(self, key: str) -> None:
        """Remove the object; S3 answers the same whether or not it existed."""
        await self._call(self._client.delete_object, Bucket=self.bucket, Key=key)

    async def keys(self, prefix: str) -> list[str]:
        """Every key under `prefix`, across all result pages."""
        return await self._call(self._list, prefix)

    def _list(self, prefix: str) -> list[str]:
        found: list[str] = []
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            found.extend(obj["Key"] for obj in page.get("Contents", []) if "Key" in obj)
        return found

    async def ping(self) -> None:
        """HEAD the bucket: fails when S3 is unreachable or the bucket is gone."""
        await self._call(self._client.head_bucket, Bucket=self.bucket)

    async def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (embedded, development and tests)."""
        try:
            await self.ping()
            return
        except ClientError as exc:
            if _status(exc) != 404:
                raise
        try:
            if self._region == "us-east-1":
                await self._call(self._client.create_bucket, Bucket=self.bucket)
            else:
                await self._call(
                    self._client.create_bucket,
                    Bucket=self.bucket,
                    CreateBucketConfiguration={
                        # Any region name the endpoint knows; the stubs list only AWS's.
                        "LocationConstraint": cast("BucketLocationConstraintType", self._region)
                    },
                )
        except ClientError as exc:
            # Another node created it between our HEAD and CREATE: that is what we wanted.
            if _code(exc) != "BucketAlreadyOwnedByYou":
                raise

    def link_server(self) -> None:
        """None: presigned links point at the bucket, not at the node."""
        return None

    async def close(self) -> None:
        """Close the client's connection pool."""
        await asyncio.to_thread(self._client.close)

    async def _call(self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
        # boto3 blocks, so each call runs on a thread; transport failures and S3's own
        # 5xx become StoreUnavailable, while 4xx (our mistakes) stay ClientError.
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except (ConnectionError, HTTPClientError) as exc:
            raise StoreUnavailable(f"S3 unreachable: {exc}") from exc
        except ClientError as exc:
            if _status(exc) >= 500 or _code(exc) in _OUTAGE_CODES:
                raise StoreUnavailable(f"S3 failed: {exc}") from exc
            raise


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266)."""
    fallback = "".join(
        ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\%' else "_" for ch in filename
    )
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
