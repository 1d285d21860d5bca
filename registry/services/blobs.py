"""Blobs: the batch check of what is missing, and verified uploads."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from registry.db import queries
from registry.errors import InvalidInput, NotFound
from registry.refs import validate_file_path
from registry.storage import BlobNotFound, BlobStore
from registry.storage.base import SHA256_HEX

MAX_BATCH = 1000
MAX_FILES = 1000


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


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str
    digest: str
    size: int


def check_files(session: Session, store: BlobStore, entries: list[FileEntry]) -> dict[str, FileEntry]:
    """Validate a file list (safe paths, no duplicates) whose every blob was uploaded with that size."""
    if len(entries) > MAX_FILES:
        raise InvalidInput(f"a version may have at most {MAX_FILES} files, got {len(entries)}")
    files: dict[str, FileEntry] = {}
    for entry in entries:
        path = validate_file_path(entry.path)
        if path in files:
            raise InvalidInput(f"file {path!r} is listed twice")
        if entry.size < 0:
            raise InvalidInput(f"file {path!r} has a negative size")
        files[path] = FileEntry(path, parse_digest(entry.digest), entry.size)
    known = queries.known_blobs(session, (f.digest for f in files.values()))
    for entry in files.values():
        if known.get(entry.digest) != entry.size or not stored_with_size(store, entry):
            raise InvalidInput(
                f"file {entry.path!r} references blob sha256:{entry.digest} ({entry.size} bytes), which was "
                "never uploaded; upload the missing blobs (POST /api/v1/blobs/batch) before committing",
                code="blob_unknown",
            )
    return files


def stored_with_size(store: BlobStore, entry: FileEntry) -> bool:
    try:
        return store.stat(entry.digest).size == entry.size
    except BlobNotFound:
        return False
