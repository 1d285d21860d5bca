"""Blob store on a local directory (the embedded default)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from registry.errors import DigestMismatch, TooLarge
from registry.storage.base import CHUNK_SIZE, SHA256_HEX, BlobInfo, BlobNotFound, blob_key


class FilesystemBlobStore:
    """Blobs as files under ``root``; uploads staged in ``root/uploads`` and renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.uploads = root / "uploads"
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        self.uploads.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / blob_key(digest)

    def stat(self, digest: str) -> BlobInfo:
        try:
            st = self.path(digest).stat()
        except FileNotFoundError:
            raise BlobNotFound(digest) from None
        return BlobInfo(digest, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def read_range(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        try:
            handle = self.path(digest).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(digest) from None
        return self._stream(handle, start, end)

    @staticmethod
    def _stream(handle, start: int, end: int | None) -> Iterator[bytes]:
        with handle:
            handle.seek(start)
            remaining = None if end is None else max(end - start, 0)
            while remaining is None or remaining > 0:
                chunk = handle.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
                if not chunk:
                    return
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk

    def read_at(self, digest: str, offset: int, length: int) -> bytes:
        try:
            with self.path(digest).open("rb") as handle:
                handle.seek(offset)
                return handle.read(length)
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def ingest(self, digest: str, chunks: Iterable[bytes], *, max_size: int) -> int:
        staged = self.uploads / uuid.uuid4().hex
        hasher = hashlib.sha256()
        size = 0
        try:
            with staged.open("wb") as out:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_size:
                        raise TooLarge(f"upload of sha256:{digest} exceeds the limit of {max_size} bytes")
                    hasher.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            actual = hasher.hexdigest()
            if actual != digest:
                raise DigestMismatch(
                    f"uploaded bytes hash to sha256:{actual}, not the declared sha256:{digest}; "
                    "the file changed or the upload was corrupted, upload it again"
                )
            final = self.path(digest)
            _make_directory(final.parent)
            # An existing blob is replaced too: its mtime then says it was just written, which is what
            # gc's grace period reads (a push re-uploading an old orphan protects it again).
            os.replace(staged, final)
            _fsync_directory(final.parent)  # the rename is durable only once its directory is synced
            return size
        finally:
            staged.unlink(missing_ok=True)

    def upload_url(self, digest: str, *, upload_id: str, expires: timedelta) -> None:
        return None

    def promote_upload(self, digest: str, *, upload_id: str, max_size: int) -> int:
        raise BlobNotFound(digest)  # clients upload through the API, never straight to the directory

    def download_url(self, digest: str, *, expires: timedelta) -> None:
        return None

    def delete(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)

    def iter_blobs(self) -> Iterator[BlobInfo]:
        for path in sorted((self.root / "blobs" / "sha256").glob("??/*")):
            if SHA256_HEX.match(path.name):
                try:
                    st = path.stat()
                except FileNotFoundError:  # deleted since the listing (a concurrent gc)
                    continue
                yield BlobInfo(path.name, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def check(self) -> None:
        for directory in (self.root / "blobs" / "sha256", self.uploads):
            if not directory.is_dir():
                raise FileNotFoundError(f"blob directory {directory} is missing")
            if not os.access(directory, os.R_OK | os.W_OK | os.X_OK):
                raise PermissionError(f"blob directory {directory} is not readable and writable")

    def purge_uploads(self, older_than: datetime) -> int:
        removed = 0
        for path in self.uploads.iterdir():
            try:
                modified = path.stat().st_mtime
            except FileNotFoundError:  # an upload that just finished (or failed) and cleaned up
                continue
            if datetime.fromtimestamp(modified, UTC) < older_than:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def _make_directory(path: Path) -> None:
    """Create ``path`` (whose parent exists) if missing, durably: a new entry needs its parent synced."""
    try:
        path.mkdir()
    except FileExistsError:
        return
    _fsync_directory(path.parent)


def _fsync_directory(path: Path) -> None:
    """Flush a directory's entries (a rename, a new file) to disk: POSIX fsyncs the directory itself."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
