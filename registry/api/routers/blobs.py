"""Blobs, content-addressed and shared by every namespace, but read only through a repository: a blob
is downloadable (and reported present by the batch check) only for a caller that may read a version
referencing it, or that uploaded it. Knowing a digest is never a way in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy.orm import Session

from registry.api.caching import immutable
from registry.api.deps import Caller, ReadSession, Registry, RegistryDep, WriteSession, in_transaction
from registry.api.errors import error_response
from registry.api.schemas import BlobBatchIn, BlobBatchOut, UploadTarget
from registry.api.streaming import blob_response
from registry.errors import TooLarge
from registry.services import blobs
from registry.storage import BlobNotFound

router = APIRouter(prefix="/blobs", tags=["blobs"])


@router.post("/batch")
def batch(body: BlobBatchIn, session: ReadSession, principal: Caller, registry: RegistryDep) -> BlobBatchOut:
    """Which of these blobs must be uploaded, and where to: a presigned URL on object storage (then
    ``verify_url``), or this API. Blobs the caller cannot read are reported missing; uploading them
    again is deduplicated."""
    wanted = {blobs.parse_digest(b.digest): b.size for b in body.blobs}
    missing = blobs.missing_blobs(session, registry.store, wanted, principal)
    return BlobBatchOut(missing=[_upload_target(registry, digest, wanted[digest]) for digest in missing])


def _upload_target(registry: Registry, digest: str, size: int) -> UploadTarget:
    settings = registry.settings
    upload_id = blobs.new_upload_id()
    direct = (
        registry.store.upload_url(
            digest, upload_id=upload_id, expires=timedelta(seconds=settings.presign_expiry)
        )
        if settings.presign_uploads
        else None
    )
    if direct is None:
        return UploadTarget(
            digest=f"sha256:{digest}", size=size, method="PUT", url=f"/api/v1/blobs/sha256:{digest}"
        )
    return UploadTarget(
        digest=f"sha256:{digest}",
        size=size,
        method="PUT",
        url=direct,
        headers={"Content-Type": "application/octet-stream"},
        verify_url=f"/api/v1/blobs/sha256:{digest}/verify?upload={upload_id}",
    )


@router.post("/sha256:{hex_digest}/verify")
def verify(
    hex_digest: str,
    session: WriteSession,
    principal: Caller,
    registry: RegistryDep,
    upload: str = Query(max_length=64, description="the upload id of the verify_url the batch returned"),
) -> dict:
    """Check a blob uploaded straight to object storage: kept if it hashes to its digest, else deleted."""
    digest = blobs.parse_digest(hex_digest)
    size = blobs.verify_upload(
        session, registry.store, digest, upload, principal, max_size=registry.settings.max_blob_size
    )
    return {"digest": f"sha256:{digest}", "size": size}


@router.put("/sha256:{hex_digest}", status_code=status.HTTP_201_CREATED)
async def upload(hex_digest: str, request: Request, principal: Caller, registry: RegistryDep) -> dict:
    """Upload a blob's bytes; they are hashed on the fly and refused unless they match the digest. The
    bytes stream with no database session held; the blob is recorded once they are stored."""
    digest = blobs.parse_digest(hex_digest)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > registry.settings.max_blob_size:
        raise TooLarge(
            f"blob sha256:{digest} is {declared} bytes; this registry accepts at most "
            f"{registry.settings.max_blob_size} bytes per file (LOREG_MAX_BLOB_SIZE)"
        )
    body = request.stream()

    def chunks() -> Iterator[bytes]:
        while True:
            try:
                yield anyio.from_thread.run(body.__anext__)
            except StopAsyncIteration:
                return

    size = await anyio.to_thread.run_sync(
        lambda: blobs.store_upload(
            registry.store, digest, chunks(), principal, max_size=registry.settings.max_blob_size
        )
    )
    await in_transaction(registry, lambda session: blobs.record_upload(session, digest, size, principal))
    return {"digest": f"sha256:{digest}", "size": size}


@router.api_route("/sha256:{hex_digest}", methods=["GET", "HEAD"])
async def download(hex_digest: str, request: Request, registry: RegistryDep, principal: Caller) -> Response:
    """A blob's bytes, with ``ETag`` = its digest, ``Range`` and immutable caching; on object storage a 307
    to a short-lived presigned URL (unless ``LOREG_PRESIGN_DOWNLOADS=false``). 404 unless the caller may
    read a version that references it."""
    digest = blobs.parse_digest(hex_digest)
    store = registry.store
    allowed = principal.readable_namespaces is None or await registry.lookups.run(
        lambda connection: blobs.readable(Session(connection), principal, digest)
    )
    try:
        if not allowed:
            raise BlobNotFound(digest)
        size = (await anyio.to_thread.run_sync(store.stat, digest)).size
    except BlobNotFound:  # one answer for "no such blob" and "not yours": existence is not confirmed
        message = f"no blob sha256:{digest} in a repository this caller can read"
        return error_response(request, status.HTTP_404_NOT_FOUND, "blob_not_found", message)
    headers = {
        "ETag": f'"{digest}"',
        "Cache-Control": immutable(principal, "public" if principal.anonymous else "private"),
        "Accept-Ranges": "bytes",
    }
    if request.headers.get("if-none-match", "").strip() in (f'"{digest}"', digest, "*"):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return blob_response(request, store, registry.settings, digest, size, headers)
