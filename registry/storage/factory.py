"""Open the blob store named by a URL (``file:///path``)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from registry.storage.base import BlobStore
from registry.storage.filesystem import FilesystemBlobStore


def open_blob_store(url: str) -> BlobStore:
    """Return the store for ``url``; the scheme picks the backend."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return FilesystemBlobStore(Path(parsed.path if parsed.scheme else url))
    raise ValueError(f"unsupported blob store URL {url!r}: use file:///path")
