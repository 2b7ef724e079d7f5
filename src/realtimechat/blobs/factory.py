"""Pick and configure the object store that settings.files asks for."""

from __future__ import annotations

from realtimechat.blobs.base import ObjectStore
from realtimechat.blobs.local import LocalDiskStore
from realtimechat.settings import Settings


def build_store(settings: Settings, secret: bytes) -> ObjectStore:
    """The configured store; `secret` signs local-disk URLs (unused for S3)."""
    files = settings.files
    if files.backend == "local":
        return LocalDiskStore(settings.files_dir(), secret)
    if not files.s3_bucket:
        raise ValueError("RTC_FILES__BACKEND=s3 needs RTC_FILES__S3_BUCKET")
    # Half a key pair would silently fall through to boto3's ambient credentials.
    if (files.s3_access_key_id is None) != (files.s3_secret_access_key is None):
        raise ValueError(
            "set both RTC_FILES__S3_ACCESS_KEY_ID and RTC_FILES__S3_SECRET_ACCESS_KEY, "
            "or neither (to use the environment's AWS credentials)"
        )
    from realtimechat.blobs.s3 import S3Store  # boto3 costs ~0.7 s to import: only for S3

    return S3Store(files)
