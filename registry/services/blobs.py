"""Blobs: the batch check of what is missing, and verified uploads."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from registry.db import queries
from registry.errors import InvalidInput, NotFound
from registry.principal import Principal
from registry.refs import validate_file_path
from registry.storage import BlobNotFound, BlobStore
from registry.storage.base import SHA256_HEX, UPLOAD_ID

MAX_BATCH = 1000
MAX_FILES = 1000


def parse_digest(value: str) -> str:
    """Accept ``sha256:<hex>`` or bare hex; return the hex."""
    digest = value.removeprefix("sha256:").lower()
    if not SHA256_HEX.match(digest):
        raise InvalidInput(f"invalid blob digest {value!r}: expected sha256:<64 hex>")
    return digest


def missing_blobs(
    session: Session, store: BlobStore, wanted: dict[str, int], principal: Principal
) -> list[str]:
    """The digests among ``wanted`` (digest → size) that ``principal`` must upload: all but those it may
    already reference (see :func:`visible`). A blob stored for another namespace is reported missing,
    so the batch never tells who holds what; its upload is deduplicated by the store."""
    principal.require("write")
    if len(wanted) > MAX_BATCH:
        raise InvalidInput(f"a batch may check at most {MAX_BATCH} blobs, got {len(wanted)}")
    known = queries.known_blobs(session, wanted)
    held = visible(session, principal, [d for d, size in wanted.items() if known.get(d) == size])
    return [digest for digest in wanted if digest not in held or not _stored(store, digest)]


def visible(session: Session, principal: Principal, digests: Iterable[str]) -> set[str]:
    """The known blobs among ``digests`` that ``principal`` may read and reference: any, for a principal
    of every namespace; else those a version of a repository it can read references, and those its
    token uploaded. Knowing a digest is never enough."""
    wanted = list(digests)
    if (readable_in := principal.readable_namespaces) is None:
        return set(queries.known_blobs(session, wanted))
    return queries.visible_blobs(session, wanted, readable_in=readable_in, token_id=principal.token_id)


def readable(session: Session, principal: Principal, digest: str) -> bool:
    """Whether ``principal`` may download the blob: through a version it can read (or its own upload).
    A principal of every namespace reads any stored blob."""
    return principal.readable_namespaces is None or digest in visible(session, principal, [digest])


def store_upload(
    store: BlobStore, digest: str, chunks: Iterable[bytes], principal: Principal, *, max_size: int
) -> int:
    """Store uploaded bytes if they hash to ``digest`` (no database work: the upload may be slow); the
    caller then records them with :func:`record_upload`."""
    principal.require("write")
    return store.ingest(digest, chunks, max_size=max_size)


def record_upload(session: Session, digest: str, size: int, principal: Principal) -> None:
    """Record a blob whose bytes ``principal`` uploaded (and verified): it may reference it from now on."""
    queries.record_blob(session, digest, size)
    if principal.token_id is not None:
        queries.record_upload(session, digest, principal.token_id)


def _stored(store: BlobStore, digest: str) -> bool:
    try:
        store.stat(digest)
    except BlobNotFound:
        return False
    return True


def new_upload_id() -> str:
    """The staging place of one presigned upload (see ``BlobStore.upload_url``)."""
    return uuid.uuid4().hex


def verify_upload(
    session: Session, store: BlobStore, digest: str, upload_id: str, principal: Principal, *, max_size: int
) -> int:
    """Publish bytes a client PUT straight to object storage (as ``upload_id``, which only that client
    was handed) once they hash to ``digest``; record the blob, and that ``principal`` holds it. A retry
    after the bytes were promoted answers the size again only if ``principal`` already holds the blob."""
    principal.require("write")
    if not UPLOAD_ID.fullmatch(upload_id):
        raise InvalidInput(f"invalid upload id {upload_id!r}: pass the verify_url the batch call returned")
    try:
        size = store.promote_upload(digest, upload_id=upload_id, max_size=max_size)
    except BlobNotFound:
        known = queries.known_blobs(session, [digest])
        if digest in known and digest in visible(session, principal, [digest]):
            return known[digest]  # promoted by an earlier call of this client, which recorded it
        raise NotFound(
            f"nothing was uploaded for sha256:{digest}; PUT it to the URL the batch call returned first"
        ) from None
    record_upload(session, digest, size, principal)
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


def check_files(
    session: Session, store: BlobStore, entries: list[FileEntry], principal: Principal
) -> dict[str, FileEntry]:
    """Validate a file list (safe paths, no duplicates) whose every blob was uploaded with that size and
    may be referenced by ``principal`` (see :func:`visible`)."""
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
    known = queries.known_blobs(session, (f.digest for f in files.values()), lock=True)
    held = visible(session, principal, known)
    for entry in files.values():
        if (
            entry.digest not in held
            or known[entry.digest] != entry.size
            or not stored_with_size(store, entry)
        ):
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
