"""Blobs: the batch check of what is missing, and verified uploads."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

from registry.db import queries
from registry.errors import InvalidInput, NotFound
from registry.storage import BlobNotFound, BlobStore
from registry.storage.base import SHA256_HEX

MAX_BATCH = 1000


def parse_digest(value: str) -> str:
    """Accept ``sha256:<hex>`` or bare hex; return the hex."""
    digest = value.removeprefix("sha256:").lower()
    if not SHA256_HEX.match(digest):
        raise InvalidInput(f"invalid blob digest {value!r}: expected sha256:<64 hex>")
    return digest


def missing_blobs(session: Session, store: BlobStore, wanted: dict[str, int]) -> list[str]:
    """The digests among ``wanted`` (digest → size) that must be uploaded."""
    if len(wanted) > MAX_BATCH:
        raise InvalidInput(f"a batch may check at most {MAX_BATCH} blobs, got {len(wanted)}")
    known = queries.known_blobs(session, wanted)
    missing = []
    for digest, size in wanted.items():
        if known.get(digest) != size or not _stored(store, digest):
            missing.append(digest)
    return missing


def _stored(store: BlobStore, digest: str) -> bool:
    try:
        store.stat(digest)
    except BlobNotFound:
        return False
    return True


def verify_upload(session: Session, store: BlobStore, digest: str, *, max_size: int) -> int:
    """Publish bytes a client PUT straight to object storage once they hash to ``digest``; record the blob."""
    try:
        size = store.promote_upload(digest, max_size=max_size)
    except BlobNotFound:
        raise NotFound(
            f"nothing was uploaded for sha256:{digest}; PUT it to the URL the batch call returned first"
        ) from None
    queries.record_blob(session, digest, size)
    return size


def upload_blob(
    session: Session, store: BlobStore, digest: str, chunks: Iterable[bytes], *, max_size: int
) -> int:
    """Store the uploaded bytes if they hash to ``digest``; record the blob; return its size."""
    size = store.ingest(digest, chunks, max_size=max_size)
    queries.record_blob(session, digest, size)
    return size
