"""What only the directory store does: a published blob survives a power cut (its rename is fsynced)."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from registry.storage.filesystem import FilesystemBlobStore


def test_publishing_fsyncs_the_directories_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename is durable only once its directory is fsynced (a power cut cannot be simulated here, so
    the test records which directories are fsynced, and whether the blob was in place by then)."""
    store = FilesystemBlobStore(tmp_path)
    data = b"durable bytes"
    digest = hashlib.sha256(data).hexdigest()
    final = store.path(digest)
    real_fsync = os.fsync
    synced: list[tuple[str, bool]] = []  # (directory, whether the blob was published when it was synced)

    def recording_fsync(fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            names = {
                p.stat().st_ino: str(p.relative_to(tmp_path)) for p in (final.parent, final.parent.parent)
            }
            synced.append((names.get(st.st_ino, "another directory"), final.exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    store.ingest(digest, [data], max_size=100)
    # the new ab/ directory's entry in its parent, then the blob's rename into ab/
    assert synced == [("blobs/sha256", False), (f"blobs/sha256/{digest[:2]}", True)]

    synced.clear()
    store.ingest(digest, [data], max_size=100)  # published again: the directory exists, the rename is new
    assert synced == [(f"blobs/sha256/{digest[:2]}", True)]
    assert final.read_bytes() == data
