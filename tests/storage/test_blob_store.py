"""The blob store contract, run against every backend (the S3 backends join in issue 3)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from registry.errors import DigestMismatch, TooLarge
from registry.storage import BlobNotFound, BlobStore, blob_key, open_blob_store


@pytest.fixture(params=["filesystem"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return open_blob_store(f"file://{tmp_path / 'blobs'}")


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunked(data: bytes, size: int = 1000):
    return (data[i : i + size] for i in range(0, len(data), size))


def test_ingest_then_read_back(store: BlobStore) -> None:
    data = bytes(range(256)) * 50
    digest = digest_of(data)
    assert store.ingest(digest, chunked(data), max_size=1 << 20) == len(data)
    assert store.stat(digest).size == len(data)
    assert b"".join(store.read_range(digest)) == data
    assert b"".join(store.read_range(digest, 10, 300)) == data[10:300]
    assert store.read_at(digest, 12790, 100) == data[12790:]
    assert [b.digest for b in store.iter_blobs()] == [digest]


def test_ingest_is_idempotent(store: BlobStore) -> None:
    data = b"same bytes"
    digest = digest_of(data)
    store.ingest(digest, [data], max_size=100)
    store.ingest(digest, [data], max_size=100)
    assert [b.digest for b in store.iter_blobs()] == [digest]


def test_wrong_bytes_are_refused_and_nothing_is_kept(store: BlobStore) -> None:
    declared = digest_of(b"what the client promised")
    with pytest.raises(DigestMismatch, match=declared):
        store.ingest(declared, [b"something else"], max_size=100)
    with pytest.raises(BlobNotFound):
        store.stat(declared)
    assert list(store.iter_blobs()) == []
    assert store.purge_uploads(datetime.now(UTC) + timedelta(days=1)) == 0


def test_oversize_upload_is_refused(store: BlobStore) -> None:
    data = b"x" * 5000
    with pytest.raises(TooLarge, match="4096"):
        store.ingest(digest_of(data), chunked(data), max_size=4096)
    assert list(store.iter_blobs()) == []


def test_missing_blob(store: BlobStore) -> None:
    digest = digest_of(b"never stored")
    with pytest.raises(BlobNotFound, match=digest):
        store.stat(digest)
    with pytest.raises(BlobNotFound):
        store.read_range(digest)
    store.delete(digest)  # deleting a missing blob is not an error


def test_delete(store: BlobStore) -> None:
    digest = digest_of(b"to delete")
    store.ingest(digest, [b"to delete"], max_size=100)
    store.delete(digest)
    with pytest.raises(BlobNotFound):
        store.stat(digest)


def test_blob_key_refuses_anything_but_a_digest() -> None:
    assert blob_key("ab" * 32) == f"blobs/sha256/ab/{'ab' * 32}"
    for bad in ("../../etc/passwd", "AB" * 32, "ab" * 31):
        with pytest.raises(ValueError):
            blob_key(bad)
