"""Consistency between the database and the blob store: ``fsck`` finds drift, ``gc`` removes garbage.

Three sources are compared: the blobs the store holds, the rows of the ``blobs`` table, and the
digests that versions' files reference. A blob is *missing* when a version references it or a row
records it but the store has no bytes; *corrupt* when its stored bytes do not hash to its digest or
differ in size from the row; *unreferenced* when it is stored or recorded but no version uses it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from registry.db.queries import maintenance as queries
from registry.storage import BlobNotFound, BlobStore


@dataclass(frozen=True, slots=True)
class BlobProblem:
    digest: str
    size: int | None
    referenced_by: list[str]
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": f"sha256:{self.digest}",
            "size": self.size,
            "referenced_by": self.referenced_by,
            "detail": self.detail,
        }


@dataclass
class FsckReport:
    missing: list[BlobProblem] = field(default_factory=list)
    corrupt: list[BlobProblem] = field(default_factory=list)
    unreferenced: list[BlobProblem] = field(default_factory=list)
    stored: int = 0
    recorded: int = 0
    referenced: int = 0
    bytes_checked: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.unreferenced)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "stored": self.stored,
            "recorded": self.recorded,
            "referenced": self.referenced,
            "bytes_checked": self.bytes_checked,
            "missing": [p.to_json() for p in self.missing],
            "corrupt": [p.to_json() for p in self.corrupt],
            "unreferenced": [p.to_json() for p in self.unreferenced],
        }


def fsck(session: Session, store: BlobStore) -> FsckReport:
    """Compare the store with the database and rehash every stored blob (read-only)."""
    rows = {row.digest: row for row in queries.blob_rows(session)}
    referenced = queries.referenced_digests(session)
    stored = {info.digest: info for info in store.iter_blobs()}
    report = FsckReport(stored=len(stored), recorded=len(rows), referenced=len(referenced))
    vanished: set[str] = set()

    for digest in sorted(stored):
        try:
            actual, size = _rehash(store, digest)
        except BlobNotFound:  # deleted while we looked (a concurrent gc): judged as absent below
            vanished.add(digest)
            continue
        report.bytes_checked += size
        recorded = rows[digest].size if digest in rows else None
        problems = []
        if actual != digest:
            problems.append(f"stored bytes hash to sha256:{actual}")
        if recorded is not None and size != recorded:
            problems.append(f"stored {size} bytes, recorded {recorded}")
        if problems:
            report.corrupt.append(BlobProblem(digest, size, [], "; ".join(problems)))
    present = stored.keys() - vanished

    for digest in sorted((referenced | rows.keys()) - present):
        size = rows[digest].size if digest in rows else None
        where = "recorded in the blobs table" if digest in rows else "no blobs row either"
        report.missing.append(BlobProblem(digest, size, [], f"absent from the blob store ({where})"))
    for digest in sorted((present | rows.keys()) - referenced):
        size = stored[digest].size if digest in present else rows[digest].size
        if digest not in present:
            where = "only in the blobs table"
        else:
            where = "in the store" if digest in rows else "in the store, no blobs row"
        report.unreferenced.append(BlobProblem(digest, size, [], f"referenced by no version ({where})"))

    users = queries.versions_referencing(session, [p.digest for p in report.missing + report.corrupt])
    report.missing = [_with_users(p, users) for p in report.missing]
    report.corrupt = [_with_users(p, users) for p in report.corrupt]
    return report


def _rehash(store: BlobStore, digest: str) -> tuple[str, int]:
    hasher = hashlib.sha256()
    size = 0
    for chunk in store.read_range(digest):
        hasher.update(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size


def _with_users(problem: BlobProblem, users: dict[str, list[str]]) -> BlobProblem:
    return BlobProblem(problem.digest, problem.size, users.get(problem.digest, []), problem.detail)


@dataclass(frozen=True, slots=True)
class RemovedBlob:
    digest: str
    size: int
    last_written: datetime
    recorded: bool
    stored: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": f"sha256:{self.digest}",
            "size": self.size,
            "last_written": self.last_written.isoformat(),
            "recorded": self.recorded,
            "stored": self.stored,
        }


@dataclass
class GcReport:
    dry_run: bool
    cutoff: datetime
    removed: list[RemovedBlob] = field(default_factory=list)
    kept_recent: list[str] = field(default_factory=list)
    kept_referenced: list[str] = field(default_factory=list)
    uploads_purged: int | None = None

    @property
    def bytes_freed(self) -> int:
        return sum(blob.size for blob in self.removed if blob.stored)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "cutoff": self.cutoff.isoformat(),
            "removed": [blob.to_json() for blob in self.removed],
            "bytes_freed": self.bytes_freed,
            "kept_recent": [f"sha256:{d}" for d in self.kept_recent],
            "kept_referenced": [f"sha256:{d}" for d in self.kept_referenced],
            "uploads_purged": self.uploads_purged,
        }


def gc(
    session: Session, store: BlobStore, *, grace: timedelta, dry_run: bool, now: datetime | None = None
) -> GcReport:
    """Delete unreferenced blobs last written before ``now - grace``, and abandoned uploads.

    A blob counts as last written at the later of its row's ``created_at`` and its stored
    modification time (either alone when the other is absent), so re-uploading the bytes of an old
    orphan protects them again. A blob any version references is never deleted.

    The grace period is what protects a push in flight: its blobs are uploaded (each upload commits
    its row) before the version that references them is committed, so until then they look
    unreferenced. ``gc`` only takes blobs older than the grace period, which must exceed the
    longest push (24 hours is the CLI's default). For the remaining race — a client whose batch
    check saw an old orphan as present, so it did not upload it again — each row is deleted before
    its bytes, by a statement that re-checks for references, in a savepoint: a version referencing
    the blob that commits first makes the foreign key refuse the delete, and the bytes are kept
    (``kept_referenced``); one that commits after fails (its blob check answers ``blob_unknown``,
    or the foreign key refuses its files) and a retried push uploads the blob again. Run it in a
    write transaction (on SQLite that queues pushes behind it); the caller commits.

    With ``dry_run`` nothing is deleted and the uploads are not counted (``uploads_purged`` None).
    """
    now = now or datetime.now(UTC)
    report = GcReport(dry_run=dry_run, cutoff=now - grace)
    referenced = queries.referenced_digests(session)
    rows = {row.digest: row for row in queries.blob_rows(session)}
    stored = {info.digest: info for info in store.iter_blobs()}

    candidates = []
    for digest in sorted((rows.keys() | stored.keys()) - referenced):
        row, info = rows.get(digest), stored.get(digest)
        times = ([_utc(row.created_at)] if row is not None else []) + ([info.modified] if info else [])
        if max(times) > report.cutoff:
            report.kept_recent.append(digest)
            continue
        size = info.size if info is not None else rows[digest].size
        candidates.append(RemovedBlob(digest, size, max(times), row is not None, info is not None))
    if dry_run:
        report.removed = candidates
        return report

    recorded = [blob.digest for blob in candidates if blob.recorded]
    deleted_rows = queries.delete_unreferenced_blob_rows(session, recorded)
    for blob in candidates:
        if blob.recorded and blob.digest not in deleted_rows:
            report.kept_referenced.append(blob.digest)
            continue
        if blob.stored:
            if not blob.recorded and _rewritten_since(store, blob.digest, report.cutoff):
                report.kept_recent.append(blob.digest)
                continue
            store.delete(blob.digest)
        report.removed.append(blob)
    report.uploads_purged = store.purge_uploads(report.cutoff)
    return report


def _rewritten_since(store: BlobStore, digest: str, cutoff: datetime) -> bool:
    """Whether a row-less blob was uploaded again after we listed it (an upload in flight)."""
    try:
        info = store.stat(digest)
    except BlobNotFound:
        return False
    return info.modified > cutoff


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; the registry stores UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
