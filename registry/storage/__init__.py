"""Content-addressed blob storage: one protocol, one implementation per backend."""

from registry.storage.base import BlobInfo, BlobNotFound, BlobStore, blob_key
from registry.storage.factory import open_blob_store

__all__ = ["BlobInfo", "BlobNotFound", "BlobStore", "blob_key", "open_blob_store"]
