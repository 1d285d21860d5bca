"""Blob store on an S3-compatible server (AWS S3, MinIO, …) through the ``minio`` client.

Keys are the layout of :mod:`registry.storage.base` under an optional prefix. Bytes are staged under
``uploads/``, hashed, and only then copied to their blob key. Vendor errors become
:class:`BlobNotFound` or :class:`OSError`; nothing above this module sees a minio type.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from typing import BinaryIO, cast

from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.error import MinioException, S3Error
from urllib3.exceptions import HTTPError
from urllib3.response import BaseHTTPResponse

from registry.errors import DigestMismatch, TooLarge
from registry.storage.base import CHUNK_SIZE, SHA256_HEX, UPLOAD_ID, BlobInfo, BlobNotFound, blob_key

PART_SIZE = 16 * 1024 * 1024
_MISSING = {"NoSuchKey", "NoSuchObject", "NotFound"}
_NO_COPY = {"NotImplemented", "MethodNotAllowed"}
_VENDOR_ERRORS = (MinioException, HTTPError)


def _code(err: Exception) -> str | None:
    """The S3 error code; servers that answer errors as ``text/xml`` (rclone) reach us unparsed."""
    if isinstance(err, S3Error):
        return err.code
    match = re.search(r"<Code>(\w+)</Code>", str(err))
    return match.group(1) if match else None


def _too_large(digest: str, max_size: int) -> TooLarge:
    return TooLarge(f"upload of sha256:{digest} exceeds the limit of {max_size} bytes")


class _VerifyingReader:
    """A ``read()``-able stream over chunks that counts and hashes them.

    It raises :class:`TooLarge` as soon as more than ``max_size`` bytes arrive and
    :class:`DigestMismatch` at the end of the stream, before returning EOF: an upload fed from it
    fails (and is aborted) instead of completing with bytes that do not hash to ``digest``.
    """

    def __init__(self, digest: str, chunks: Iterable[bytes], max_size: int) -> None:
        self.digest = digest
        self.max_size = max_size
        self.size = 0
        self._chunks = iter(chunks)
        self._hasher = hashlib.sha256()
        self._pending = b""

    def read(self, n: int = -1) -> bytes:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                self._verify()
                return b""
            self.size += len(chunk)
            if self.size > self.max_size:
                raise _too_large(self.digest, self.max_size)
            self._hasher.update(chunk)
            self._pending = bytes(chunk)
        out = self._pending if n < 0 else self._pending[:n]
        self._pending = self._pending[len(out) :]
        return out

    def drain(self) -> int:
        while self.read(PART_SIZE):
            pass
        return self.size

    def _verify(self) -> None:
        actual = self._hasher.hexdigest()
        if actual != self.digest:
            raise DigestMismatch(
                f"uploaded bytes hash to sha256:{actual}, not the declared sha256:{self.digest}; "
                "the file changed or the upload was corrupted, upload it again"
            )


class S3BlobStore:
    """Blobs as objects ``<prefix>/blobs/sha256/ab/<digest>`` in ``bucket`` (created if missing)."""

    def __init__(
        self, client: Minio, bucket: str, prefix: str = "", *, presigner: Minio | None = None
    ) -> None:
        """``presigner``, when given, signs the URLs handed to clients (an endpoint they can reach)."""
        self.client = client
        self.presigner = presigner or client
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self._self_copy = True  # until the server shows it cannot copy an object onto itself
        with self._vendor_errors():
            try:
                if not client.bucket_exists(bucket):
                    client.make_bucket(bucket)
            except _VENDOR_ERRORS as err:
                if _code(err) != "BucketAlreadyOwnedByYou":  # another replica made it first
                    raise

    def key(self, digest: str) -> str:
        return self.prefix + blob_key(digest)

    def upload_key(self, digest: str, upload_id: str) -> str:
        if not SHA256_HEX.match(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        if not UPLOAD_ID.fullmatch(upload_id):
            raise ValueError(f"not an upload id: {upload_id!r}")
        return f"{self.prefix}uploads/sha256/{digest}/{upload_id}"

    @contextmanager
    def _vendor_errors(self, digest: str = "") -> Iterator[None]:
        try:
            yield
        except _VENDOR_ERRORS as err:
            if digest and _code(err) in _MISSING:
                raise BlobNotFound(digest) from None
            raise OSError(f"S3 request to bucket {self.bucket!r} failed: {err}") from err

    def stat(self, digest: str) -> BlobInfo:
        with self._vendor_errors(digest):
            obj = self.client.stat_object(self.bucket, self.key(digest))
        return BlobInfo(digest, cast(int, obj.size), cast(datetime, obj.last_modified))

    def read_range(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        if end is not None and end <= start:
            self.stat(digest)
            return iter(())
        response = self._get(digest, start, None if end is None else end - start)
        return iter(()) if response is None else self._stream(digest, response)

    def _stream(self, digest: str, response: BaseHTTPResponse) -> Iterator[bytes]:
        try:
            with self._vendor_errors(digest):
                yield from response.stream(CHUNK_SIZE)
        finally:
            response.close()
            response.release_conn()

    def read_at(self, digest: str, offset: int, length: int) -> bytes:
        if length <= 0:
            self.stat(digest)
            return b""
        response = self._get(digest, offset, length)
        if response is None:
            return b""
        try:
            with self._vendor_errors(digest):
                return response.read()
        finally:
            response.close()
            response.release_conn()

    def _get(self, digest: str, offset: int, length: int | None) -> BaseHTTPResponse | None:
        """A ranged GET of the blob; None when ``offset`` is past its end."""
        with self._vendor_errors(digest):
            try:
                return self.client.get_object(
                    self.bucket, self.key(digest), offset=offset, length=length or 0
                )
            except _VENDOR_ERRORS as err:
                if _code(err) == "InvalidRange":
                    return None
                raise

    def ingest(self, digest: str, chunks: Iterable[bytes], *, max_size: int) -> int:
        reader = _VerifyingReader(digest, chunks, max_size)
        if self._refresh(digest):
            return reader.drain()  # still verified: wrong bytes are refused even for a known blob
        staged = f"{self.prefix}uploads/{uuid.uuid4().hex}"
        try:
            with self._vendor_errors():
                self._put(staged, reader)
                self._publish(digest, staged, max_size, etag=None)
        finally:
            self._remove(staged)
        return reader.size

    def upload_url(self, digest: str, *, upload_id: str, expires: timedelta) -> str:
        with self._vendor_errors():
            key = self.upload_key(digest, upload_id)
            return self.presigner.presigned_put_object(self.bucket, key, expires=expires)

    def promote_upload(self, digest: str, *, upload_id: str, max_size: int) -> int:
        staged = self.upload_key(digest, upload_id)
        with self._vendor_errors(digest):
            try:
                response = self.client.get_object(self.bucket, staged)
            except _VENDOR_ERRORS as err:
                if _code(err) in _MISSING:
                    raise BlobNotFound(
                        f"nothing was uploaded for sha256:{digest} as upload {upload_id}"
                    ) from None
                raise
            try:
                if int(response.headers.get("Content-Length") or 0) > max_size:
                    raise _too_large(digest, max_size)
                etag = response.headers.get("ETag")
                size = _VerifyingReader(digest, response.stream(CHUNK_SIZE), max_size).drain()
            except (DigestMismatch, TooLarge):
                self._remove(staged)
                raise
            finally:
                response.close()
                response.release_conn()
            if not self._refresh(digest):
                self._publish(digest, staged, max_size, etag=etag)
        self._remove(staged)
        return size

    def _refresh(self, digest: str) -> bool:
        """Mark an existing blob as written just now, as gc's grace period reads it (Last-Modified).

        The object is copied onto itself with new metadata. False when there is no such blob, or when
        the server cannot copy an object onto itself (rclone answers without an ETag): the caller then
        uploads the bytes again, which refreshes them too.
        """
        if not self._self_copy:
            return False
        key = self.key(digest)
        written = datetime.now(UTC).isoformat()
        metadata: dict[str, str | list[str] | tuple[str]] = {
            "Content-Type": "application/octet-stream",
            "x-amz-meta-lorareg-written": written,
        }
        try:
            self.client.copy_object(
                self.bucket, key, CopySource(self.bucket, key), metadata=metadata, metadata_directive=REPLACE
            )
            return True
        except ValueError:  # minio could not parse the answer
            self._self_copy = False
            return False
        except _VENDOR_ERRORS as err:
            if _code(err) in _MISSING:
                return False
            if _code(err) in _NO_COPY:
                self._self_copy = False
                return False
            raise OSError(f"S3 request to bucket {self.bucket!r} failed: {err}") from err

    def _publish(self, digest: str, staged: str, max_size: int, *, etag: str | None) -> None:
        """Copy verified bytes from ``staged`` to the blob key (streamed if the server cannot copy)."""
        final = self.key(digest)
        try:
            # match_etag: refuse the copy if a client re-PUT the staged object since we hashed it.
            self.client.copy_object(self.bucket, final, CopySource(self.bucket, staged, match_etag=etag))
            return
        except _VENDOR_ERRORS as err:
            if _code(err) not in _NO_COPY:
                raise
        response = self.client.get_object(self.bucket, staged)
        try:  # hashed again on the way: the blob key never receives bytes that do not verify
            reader = _VerifyingReader(digest, response.stream(CHUNK_SIZE), max_size)
            self._put(final, reader)
        finally:
            response.close()
            response.release_conn()

    def _put(self, key: str, reader: _VerifyingReader) -> None:
        # One part at a time: minio leaks its upload threads when the stream raises mid-way.
        stream = cast(BinaryIO, reader)
        self.client.put_object(
            self.bucket, key, stream, length=-1, part_size=PART_SIZE, num_parallel_uploads=1
        )

    def _remove(self, key: str) -> None:
        """Best effort: a staged object left behind is removed later by :meth:`purge_uploads`."""
        with suppress(_VENDOR_ERRORS):
            self.client.remove_object(self.bucket, key)

    def download_url(self, digest: str, *, expires: timedelta) -> str:
        """A presigned GET of the blob; it does not check that the blob exists."""
        with self._vendor_errors():
            return self.presigner.presigned_get_object(self.bucket, self.key(digest), expires=expires)

    def delete(self, digest: str) -> None:
        with self._vendor_errors():
            self.client.remove_object(self.bucket, self.key(digest))

    def iter_blobs(self) -> Iterator[BlobInfo]:
        with self._vendor_errors():
            for obj in self.client.list_objects(
                self.bucket, prefix=f"{self.prefix}blobs/sha256/", recursive=True
            ):
                name = cast(str, obj.object_name)
                digest = name.rsplit("/", 1)[-1]
                if SHA256_HEX.match(digest) and name == self.key(digest):
                    yield BlobInfo(digest, cast(int, obj.size), cast(datetime, obj.last_modified))

    def check(self) -> None:
        with self._vendor_errors():
            if not self.client.bucket_exists(self.bucket):
                raise FileNotFoundError(f"bucket {self.bucket!r} does not exist")

    def purge_uploads(self, older_than: datetime) -> int:
        removed = 0
        with self._vendor_errors():
            for obj in self.client.list_objects(self.bucket, prefix=f"{self.prefix}uploads/", recursive=True):
                if cast(datetime, obj.last_modified) < older_than:
                    self.client.remove_object(self.bucket, cast(str, obj.object_name))
                    removed += 1
        return removed
