"""The client's content-addressed blob cache (``~/.cache/lorareg``, env ``LOREG_CACHE``).

Every pull goes through it: a blob is stored once, at ``<cache>/blobs/sha256/<ab>/<digest>``, only
after its sha256 has been verified (it is written to a temporary file inside the cache, hashed while
written, then renamed into place), so the cache never holds a partial or wrong blob and a second pull
of the same content reads no bytes from the server.

Pulled files are *hard links* to the cached blobs where the output directory is on the same
filesystem (a copy otherwise). Cached blobs are made read-only (mode 0444) so that an editor or a
script writing to a pulled file fails instead of silently changing the cache. The caveat of hard
links: the pulled file and the cached blob are the same inode, so whoever ``chmod``s a pulled file
writable and edits it in place corrupts the cache too: the next pull of that digest would hand out
the edited bytes (:meth:`BlobCache.get` drops a blob whose size changed, but not one edited in
place at the same length). Copy a pulled file before editing it; delete ``<cache>/blobs`` to repair.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from cli.server_files import hex_digest

READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH


class DigestMismatch(Exception):
    """The bytes offered to the cache do not hash to the digest they claim."""

    def __init__(self, digest: str, actual: str, size: int) -> None:
        super().__init__(f"content hashes to sha256:{actual} ({size} bytes), expected sha256:{digest}")
        self.digest, self.actual, self.size = digest, actual, size


class BlobCache:
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser()

    def path(self, digest: str) -> Path:
        """Where blob ``digest`` (64 hex) lives. Anything else raises ``InvalidInput``: no name a server
        sent becomes a path in the cache."""
        hex_digest(f"sha256:{digest}", "blob digest")
        return self.root / "blobs" / "sha256" / digest[:2] / digest

    def get(self, digest: str, size: int | None = None) -> Path | None:
        """The cached blob for ``digest``, or None. A blob of the wrong size (edited through a hard
        link) is dropped."""
        path = self.path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if size is not None and st.st_size != size:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            return None
        return path

    def store(self, digest: str, chunks: Iterable[bytes]) -> Path:
        """Write ``chunks`` into the cache as ``digest``: a temporary file, verified, then renamed into
        place and made read-only. Raises :class:`DigestMismatch` (and keeps nothing) on a mismatch."""
        final = self.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f"{digest[:12]}.", dir=tmp_dir)
        tmp = Path(name)
        try:
            hasher = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            if (actual := hasher.hexdigest()) != digest:
                raise DigestMismatch(digest, actual, size)
            os.chmod(tmp, READ_ONLY)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return final

    def version_path(self, digest: str) -> Path:
        """Where the files of the version ``digest`` (64 hex) are materialized:
        ``<cache>/versions/<digest>``, a directory engines load adapters from."""
        hex_digest(f"sha256:{digest}", "version digest")
        return self.root / "versions" / digest

    def materialize(self, digest: str, fetch: Callable[[Path], object]) -> Path:
        """The version ``digest``'s directory, made once (atomically) per machine: ``fetch(staging)``
        writes the files into a new staging directory beside it, which is then renamed into place.
        Another process making it first is fine: the same content."""
        directory = self.version_path(digest)
        if directory.is_dir():
            return directory
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=directory.parent))
        try:
            fetch(staging)
            os.rename(staging, directory)
        except OSError:
            if not directory.is_dir():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return directory

    @staticmethod
    def place(blob: Path, dest: Path) -> bool:
        """Make ``dest`` hold ``blob``'s bytes: a hard link when possible (True), else a copy (False:
        across filesystems, or where links are refused)."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        try:
            os.link(blob, dest)
            return True
        except OSError:
            shutil.copyfile(blob, dest)
            return False
