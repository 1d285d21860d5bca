"""The blob store contract, run against every backend: a directory, moto's S3 and rclone's S3."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from registry.config import Settings
from registry.errors import DigestMismatch, TooLarge
from registry.storage import BlobNotFound, BlobStore, blob_key, open_blob_store
from registry.storage.filesystem import FilesystemBlobStore
from tests.s3_servers import S3Server

MiB = 1024 * 1024
EXPIRES = timedelta(minutes=5)
UPLOAD = "a" * 32  # an upload id (registry.storage.base.UPLOAD_ID)
OCTET_STREAM = {"Content-Type": "application/octet-stream"}  # moto stores 0 bytes without it


def open_store(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if kind == "filesystem":
        return open_blob_store(f"file://{tmp_path / 'blobs'}")
    server: S3Server = request.getfixturevalue(f"{kind}_s3")
    prefix = "under/a/prefix" if kind == "moto" else ""  # both key layouts get exercised
    return open_blob_store(server.blob_url(prefix), Settings(**server.settings_overrides()))


@pytest.fixture(params=["filesystem", "moto", "rclone"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    return open_store(request.param, request, tmp_path)


@pytest.fixture(params=["moto", "rclone"])
def presigning_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """The backends that hand clients presigned URLs."""
    return open_store(request.param, request, tmp_path)


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
    assert store.ingest(digest, [data], max_size=100) == len(data)
    assert [b.digest for b in store.iter_blobs()] == [digest]
    with pytest.raises(DigestMismatch):  # a known digest does not excuse wrong bytes
        store.ingest(digest, [b"other bytes"], max_size=100)
    assert b"".join(store.read_range(digest)) == data


def test_ingesting_a_stored_blob_again_refreshes_its_modification_time(store: BlobStore) -> None:
    """gc reads the modification time as "written then": a push re-uploading an old orphan protects it."""
    data = b"uploaded twice"
    digest = digest_of(data)
    store.ingest(digest, [data], max_size=100)
    first = store.stat(digest).modified
    time.sleep(1.1)  # S3's Last-Modified has one-second resolution
    assert store.ingest(digest, [data], max_size=100) == len(data)
    assert store.stat(digest).modified > first
    assert [(b.digest, b.modified > first) for b in store.iter_blobs()] == [(digest, True)]
    assert b"".join(store.read_range(digest)) == data
    assert store.purge_uploads(datetime.now(UTC) + timedelta(days=1)) == 0  # no staged copy left


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


def abandon_upload(store: BlobStore, data: bytes) -> None:
    """Leave staged bytes behind, as a client that never commits (or a crash) does."""
    url = store.upload_url(digest_of(data), upload_id=UPLOAD, expires=EXPIRES)
    if url is not None:
        httpx.put(url, content=data, headers=OCTET_STREAM).raise_for_status()
    else:
        assert isinstance(store, FilesystemBlobStore)
        (store.uploads / "crashed-upload").write_bytes(data)


def test_ranged_reads(store: BlobStore) -> None:
    data = os.urandom(5000)
    digest = digest_of(data)
    store.ingest(digest, chunked(data), max_size=len(data))
    for start, end in [(0, None), (0, 1), (1234, 4321), (4990, None), (4990, 9000), (100, 100), (6000, None)]:
        assert b"".join(store.read_range(digest, start, end)) == data[start:end], (start, end)
    assert store.read_at(digest, 0, 8) == data[:8]
    assert store.read_at(digest, 4996, 8) == data[4996:]  # fewer bytes at the end
    assert store.read_at(digest, 5000, 8) == b""
    assert store.read_at(digest, 9000, 8) == b""


def test_multipart_size_ingest(store: BlobStore) -> None:
    data = os.urandom(40 * MiB)  # several 16 MiB parts on S3
    digest = digest_of(data)
    assert store.ingest(digest, chunked(data, MiB), max_size=64 * MiB) == len(data)
    assert store.stat(digest).size == len(data)
    hasher = hashlib.sha256()
    for chunk in store.read_range(digest):
        hasher.update(chunk)
    assert hasher.hexdigest() == digest
    assert store.purge_uploads(datetime.now(UTC) + timedelta(days=1)) == 0  # no staged copy left


def test_oversize_stream_is_refused_midway(store: BlobStore) -> None:
    data = os.urandom(20 * MiB)
    with pytest.raises(TooLarge):
        store.ingest(digest_of(data), chunked(data, MiB), max_size=17 * MiB)
    assert list(store.iter_blobs()) == []
    assert store.purge_uploads(datetime.now(UTC) + timedelta(days=1)) == 0


def test_filesystem_has_no_presigned_urls(tmp_path: Path) -> None:
    store = open_blob_store(f"file://{tmp_path}")
    digest = digest_of(b"bytes")
    store.ingest(digest, [b"bytes"], max_size=100)
    assert store.upload_url(digest, upload_id=UPLOAD, expires=EXPIRES) is None  # uploads go through the API
    assert store.download_url(digest, expires=EXPIRES) is None  # and so do downloads
    with pytest.raises(BlobNotFound):
        store.promote_upload(digest, upload_id=UPLOAD, max_size=100)


def test_presigned_upload_round_trip(presigning_store: BlobStore) -> None:
    store = presigning_store
    data = b"adapter bytes " * 1000
    digest = digest_of(data)
    url = store.upload_url(digest, upload_id=UPLOAD, expires=EXPIRES)
    assert url is not None
    with pytest.raises(BlobNotFound):  # nothing uploaded yet
        store.promote_upload(digest, upload_id=UPLOAD, max_size=len(data))
    httpx.put(url, content=data, headers=OCTET_STREAM).raise_for_status()
    with pytest.raises(BlobNotFound):  # not published before it is verified
        store.stat(digest)
    assert store.promote_upload(digest, upload_id=UPLOAD, max_size=len(data)) == len(data)
    assert b"".join(store.read_range(digest)) == data
    assert store.purge_uploads(datetime.now(UTC) + timedelta(days=1)) == 0
    with pytest.raises(BlobNotFound):  # promoted already: a retry is the service's to answer
        store.promote_upload(digest, upload_id=UPLOAD, max_size=len(data))
    other = store.upload_url(digest, upload_id="1" * 32, expires=EXPIRES)
    assert other is not None and other != url  # each upload has a staging place of its own


def test_promoting_a_stored_blob_again_refreshes_its_modification_time(presigning_store: BlobStore) -> None:
    store = presigning_store
    data = b"presigned twice"
    digest = digest_of(data)
    url = store.upload_url(digest, upload_id=UPLOAD, expires=EXPIRES)
    assert url is not None
    httpx.put(url, content=data, headers=OCTET_STREAM).raise_for_status()
    store.promote_upload(digest, upload_id=UPLOAD, max_size=len(data))
    first = store.stat(digest).modified
    time.sleep(1.1)
    httpx.put(url, content=data, headers=OCTET_STREAM).raise_for_status()
    assert store.promote_upload(digest, upload_id=UPLOAD, max_size=len(data)) == len(data)
    assert store.stat(digest).modified > first
    assert [b.modified > first for b in store.iter_blobs()] == [True]
    assert b"".join(store.read_range(digest)) == data


def test_lying_presigned_upload_is_refused_and_removed(presigning_store: BlobStore) -> None:
    store = presigning_store
    declared = digest_of(b"what the client promised")
    url = store.upload_url(declared, upload_id=UPLOAD, expires=EXPIRES)
    assert url is not None
    httpx.put(url, content=b"something else", headers=OCTET_STREAM).raise_for_status()
    with pytest.raises(DigestMismatch, match=declared):
        store.promote_upload(declared, upload_id=UPLOAD, max_size=100)
    with pytest.raises(BlobNotFound):
        store.stat(declared)
    assert store.purge_uploads(datetime.now(UTC) + timedelta(days=1)) == 0  # the staged object is gone
    with pytest.raises(BlobNotFound):
        store.promote_upload(declared, upload_id=UPLOAD, max_size=100)


def test_oversize_presigned_upload_is_refused(presigning_store: BlobStore) -> None:
    store = presigning_store
    data = b"x" * 5000
    url = store.upload_url(digest_of(data), upload_id=UPLOAD, expires=EXPIRES)
    assert url is not None
    httpx.put(url, content=data, headers=OCTET_STREAM).raise_for_status()
    with pytest.raises(TooLarge, match="4096"):
        store.promote_upload(digest_of(data), upload_id=UPLOAD, max_size=4096)
    assert store.purge_uploads(datetime.now(UTC) + timedelta(days=1)) == 0


def test_presigned_download(presigning_store: BlobStore) -> None:
    store = presigning_store
    data = b"weights" * 100
    digest = digest_of(data)
    store.ingest(digest, [data], max_size=len(data))
    url = store.download_url(digest, expires=EXPIRES)
    assert url is not None
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == data


def test_purge_uploads_removes_abandoned_uploads_only(store: BlobStore) -> None:
    published = b"published"
    store.ingest(digest_of(published), [published], max_size=100)
    abandon_upload(store, b"abandoned")
    assert store.purge_uploads(datetime.now(UTC) - timedelta(hours=1)) == 0  # too recent
    assert store.purge_uploads(datetime.now(UTC) + timedelta(minutes=1)) == 1
    assert store.purge_uploads(datetime.now(UTC) + timedelta(minutes=1)) == 0
    assert b"".join(store.read_range(digest_of(published))) == published


def test_iter_blobs_lists_exactly_the_published_blobs(store: BlobStore) -> None:
    blobs = [f"blob {i}".encode() * (i + 1) for i in range(5)]
    for data in blobs:
        store.ingest(digest_of(data), [data], max_size=1000)
    abandon_upload(store, b"staged, never published")
    with pytest.raises(DigestMismatch):
        store.ingest(digest_of(b"declared"), [b"refused"], max_size=1000)
    listed = {info.digest: info.size for info in store.iter_blobs()}
    assert listed == {digest_of(data): len(data) for data in blobs}
    store.delete(digest_of(blobs[0]))
    assert {info.digest for info in store.iter_blobs()} == {digest_of(data) for data in blobs[1:]}


def test_check_fails_once_the_store_is_gone(store: BlobStore) -> None:
    store.check()
    if isinstance(store, FilesystemBlobStore):
        (store.root / "blobs" / "sha256").rmdir()
    else:
        store.client.remove_bucket(store.bucket)  # type: ignore[attr-defined]
    with pytest.raises(OSError, match=r"missing|does not exist"):
        store.check()
