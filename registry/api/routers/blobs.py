from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import anyio
import anyio.from_thread
import anyio.to_thread
from fastapi import APIRouter, Request, Response, status

from registry.api.deps import Reader, Registry, RegistryDep, Writer, WriteSession
from registry.api.errors import error_response
from registry.api.schemas import BlobBatchIn, BlobBatchOut, UploadTarget
from registry.api.streaming import blob_response
from registry.errors import TooLarge
from registry.services import blobs
from registry.storage import BlobNotFound

router = APIRouter(prefix="/blobs", tags=["blobs"])
IMMUTABLE = "public, max-age=31536000, immutable"


@router.post("/batch")
def batch(body: BlobBatchIn, session: WriteSession, _: Writer, registry: RegistryDep) -> BlobBatchOut:
    """Which of these blobs must be uploaded, and where to: a presigned URL on object storage (then
    ``verify_url``), or this API."""
    wanted = {blobs.parse_digest(b.digest): b.size for b in body.blobs}
    missing = blobs.missing_blobs(session, registry.store, wanted)
    return BlobBatchOut(missing=[_upload_target(registry, digest, wanted[digest]) for digest in missing])


def _upload_target(registry: Registry, digest: str, size: int) -> UploadTarget:
    settings = registry.settings
    direct = (
        registry.store.upload_url(digest, expires=timedelta(seconds=settings.presign_expiry))
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
        verify_url=f"/api/v1/blobs/sha256:{digest}/verify",
    )


@router.post("/sha256:{hex_digest}/verify")
def verify(hex_digest: str, session: WriteSession, _: Writer, registry: RegistryDep) -> dict:
    """Check a blob uploaded straight to object storage: kept if it hashes to its digest, else deleted."""
    digest = blobs.parse_digest(hex_digest)
    size = blobs.verify_upload(session, registry.store, digest, max_size=registry.settings.max_blob_size)
    return {"digest": f"sha256:{digest}", "size": size}


@router.put("/sha256:{hex_digest}", status_code=status.HTTP_201_CREATED)
async def upload(
    hex_digest: str, request: Request, session: WriteSession, _: Writer, registry: RegistryDep
) -> dict:
    """Upload a blob's bytes; they are hashed on the fly and refused unless they match the digest."""
    digest = blobs.parse_digest(hex_digest)
    declared = request.headers.get("content-length")
    if declared is not None and int(declared) > registry.settings.max_blob_size:
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
        lambda: blobs.upload_blob(
            session, registry.store, digest, chunks(), max_size=registry.settings.max_blob_size
        )
    )
    return {"digest": f"sha256:{digest}", "size": size}


@router.api_route("/sha256:{hex_digest}", methods=["GET", "HEAD"])
def download(hex_digest: str, request: Request, registry: RegistryDep, _: Reader) -> Response:
    """A blob's bytes, with ``ETag`` = its digest, ``Range`` and immutable caching; on object storage a 307
    to a short-lived presigned URL (unless ``LOREG_PRESIGN_DOWNLOADS=false``)."""
    digest = blobs.parse_digest(hex_digest)
    store = registry.store
    try:
        size = store.stat(digest).size
    except BlobNotFound as exc:
        return error_response(request, status.HTTP_404_NOT_FOUND, "blob_not_found", str(exc))
    headers = {"ETag": f'"{digest}"', "Cache-Control": IMMUTABLE, "Accept-Ranges": "bytes"}
    if request.headers.get("if-none-match", "").strip() in (f'"{digest}"', digest, "*"):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return blob_response(request, store, registry.settings, digest, size, headers)
