"""Open the blob store named by a URL (``file:///path`` or ``s3://bucket/optional/prefix``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from registry.config import Settings
from registry.storage.base import BlobStore
from registry.storage.filesystem import FilesystemBlobStore

if TYPE_CHECKING:
    from minio import Minio


def open_blob_store(url: str, settings: Settings | None = None) -> BlobStore:
    """Return the store for ``url``; the scheme picks the backend, ``settings`` configure S3."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return FilesystemBlobStore(Path(parsed.path if parsed.scheme else url))
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"blob store URL {url!r} names no bucket: use s3://bucket/optional/prefix")
        from registry.storage.s3 import S3BlobStore  # minio is a server-only dependency

        settings = settings or Settings()
        presigner = (
            minio_client(settings, settings.s3_public_endpoint) if settings.s3_public_endpoint else None
        )
        return S3BlobStore(minio_client(settings), parsed.netloc, parsed.path, presigner=presigner)
    raise ValueError(f"unsupported blob store URL {url!r}: use file:///path or s3://bucket/optional/prefix")


def minio_client(settings: Settings, endpoint: str | None = None) -> Minio:
    """A client for ``endpoint`` or ``settings.s3_endpoint`` (host:port or a URL; AWS when unset)."""
    from minio import Minio

    endpoint, secure = endpoint or settings.s3_endpoint or "s3.amazonaws.com", settings.s3_secure
    if "://" in endpoint:  # a URL rather than host:port: its scheme decides TLS
        parsed = urlparse(endpoint)
        endpoint, secure = parsed.netloc, parsed.scheme == "https"
    return Minio(
        endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        secure=secure,
        region=settings.s3_region,
    )
