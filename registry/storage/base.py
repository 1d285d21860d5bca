"""The blob store contract.

Blobs are immutable byte strings addressed by their sha256. The store is laid out as::

    <root>/
      blobs/sha256/ab/abcdef…   one file (or object) per blob, named by its full hex digest
      uploads/<uuid>            uploads being received; moved under blobs/ only once verified
      uploads/sha256/<digest>/<upload id>
                                (S3) where a presigned PUT lands, until ``promote_upload`` verifies it

:func:`blob_key` is the one place that builds a blob's path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

UPLOAD_ID = re.compile(r"[0-9a-f]{32}")  # a presigned upload's own staging place (uuid4 hex)
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
CHUNK_SIZE = 1024 * 1024


class BlobNotFound(FileNotFoundError):
    """No blob is stored under the digest."""

    def __init__(self, digest: str) -> None:
        super().__init__(f"no blob stored under sha256:{digest}")
        self.digest = digest


@dataclass(frozen=True, slots=True)
class BlobInfo:
    digest: str
    size: int
    modified: datetime


def blob_key(digest: str) -> str:
    """The store-relative path of a blob: ``blobs/sha256/<first two hex>/<digest>``."""
    if not SHA256_HEX.match(digest):
        raise ValueError(f"not a sha256 hex digest: {digest!r}")
    return f"blobs/sha256/{digest[:2]}/{digest}"


class BlobStore(Protocol):
    """What the registry needs from a blob backend."""

    def stat(self, digest: str) -> BlobInfo:
        """Size and modification time of a blob; raises :class:`BlobNotFound`."""
        ...

    def read_range(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes ``[start, end)`` of a blob; raises :class:`BlobNotFound`."""
        ...

    def read_at(self, digest: str, offset: int, length: int) -> bytes:
        """Read up to ``length`` bytes at ``offset`` (fewer at the end of the blob)."""
        ...

    def ingest(self, digest: str, chunks: Iterable[bytes], *, max_size: int) -> int:
        """Stage ``chunks``, verify they hash to ``digest``, then publish the blob; return its size.

        Raises :class:`registry.errors.DigestMismatch` or :class:`registry.errors.TooLarge` and keeps
        nothing when the bytes are wrong. Publishing an existing blob keeps its bytes but refreshes
        its modification time (:attr:`BlobInfo.modified`, in :meth:`stat` and :meth:`iter_blobs`): gc
        reads it as "written just now", so a push re-uploading an old orphan protects it again.
        """
        ...

    def upload_url(self, digest: str, *, upload_id: str, expires: timedelta) -> str | None:
        """A presigned URL a client may PUT the blob's bytes to, or None if the backend has none. Each
        ``upload_id`` (:data:`UPLOAD_ID`) has a staging place of its own: only whoever was handed the
        URL can have put bytes there."""
        ...

    def promote_upload(self, digest: str, *, upload_id: str, max_size: int) -> int:
        """Verify the bytes a client PUT to :meth:`upload_url` and publish them; return the size.

        Bytes that do not hash to ``digest`` (or exceed ``max_size``) are deleted and refused with
        :class:`registry.errors.DigestMismatch` / :class:`registry.errors.TooLarge`; raises
        :class:`BlobNotFound` when nothing was uploaded as ``upload_id`` (or it was promoted already).
        """
        ...

    def download_url(self, digest: str, *, expires: timedelta) -> str | None:
        """A presigned URL that serves the blob, or None if clients must read it through the API."""
        ...

    def delete(self, digest: str) -> None:
        """Remove a blob; a missing blob is not an error."""
        ...

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob."""
        ...

    def check(self) -> None:
        """Raise :class:`OSError` saying why when the store cannot be used (readiness)."""
        ...

    def purge_uploads(self, older_than: datetime) -> int:
        """Remove abandoned uploads staged before ``older_than``; return how many."""
        ...
