"""A repository revision in the local Hugging Face cache, found with ``huggingface_hub``'s cache APIs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import get_cached_repo_tree, scan_cache_dir
from huggingface_hub.errors import CachedRepoTreeNotFoundError, CacheNotFound

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class CachedFile:
    path: Path  # the file in the revision's snapshot (a link to its blob)
    sha256: str | None  # the blob's name when that is a sha256 (LFS files); None: hash the file to know


@dataclass(frozen=True)
class CachedRevision:
    commit: str
    files: dict[str, CachedFile]  # the top-level files cached
    listing: frozenset[str] | None  # every top-level file of the repository, when its tree was cached too

    def names(self) -> frozenset[str]:
        """The repository's top-level files: all of them when known, else those cached."""
        return self.listing if self.listing is not None else frozenset(self.files)


def find_cached(repo_id: str, revision: str, cache_dir: Path | None = None) -> CachedRevision | None:
    """The cached revision of model ``repo_id`` that ``revision`` (a commit SHA or a cached branch or
    tag) names, or None."""
    try:
        scanned = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return None
    revisions = [
        cached
        for repo in scanned.repos
        if repo.repo_type == "model" and repo.repo_id == repo_id
        for cached in repo.revisions
    ]
    found = next((r for r in revisions if revision in (r.commit_hash, *r.refs)), None)
    if found is None:
        return None
    files = {
        f.file_name: CachedFile(f.file_path, _blob_sha256(f.blob_path))
        for f in found.files
        if f.file_path.parent == found.snapshot_path
    }
    try:
        tree = get_cached_repo_tree(repo_id, revision=found.commit_hash, cache_dir=cache_dir)
        listing = frozenset(f.path for f in tree if "/" not in f.path)
    except CachedRepoTreeNotFoundError:
        listing = None
    return CachedRevision(commit=found.commit_hash, files=files, listing=listing)


def _blob_sha256(blob: Path) -> str | None:
    """The cache names a blob by its ETag: the sha256 for LFS files (a git SHA-1 for the others)."""
    return blob.name if _SHA256_HEX.match(blob.name) else None
