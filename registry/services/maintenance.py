"""Consistency between the database and the blob store: ``fsck`` finds drift, ``gc`` removes garbage.

Three sources are compared: the blobs the store holds, the rows of the ``blobs`` table, and the
digests that versions' files reference. A blob is *missing* when a version references it or a row
records it but the store has no bytes; *corrupt* when its stored bytes do not hash to its digest or
differ in size from the row; *unreferenced* when it is stored or recorded but no version uses it.
A version *drifts* when its ``file_list`` (what resolve serves) and its ``version_files`` rows (what
gc keeps and fsck checks) disagree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from registry.db.queries import maintenance as queries
from registry.db.session import Database
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


@dataclass(frozen=True, slots=True)
class VersionDrift:
    """A version whose ``file_list`` and ``version_files`` rows disagree; one line per difference."""

    version: str  # ns/name#number
    digest: str
    differences: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "digest": f"sha256:{self.digest}", "differences": self.differences}


@dataclass
class FsckReport:
    missing: list[BlobProblem] = field(default_factory=list)
    corrupt: list[BlobProblem] = field(default_factory=list)
    unreferenced: list[BlobProblem] = field(default_factory=list)
    drift: list[VersionDrift] = field(default_factory=list)
    stored: int = 0
    recorded: int = 0
    referenced: int = 0
    versions: int = 0
    bytes_checked: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.unreferenced or self.drift)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "stored": self.stored,
            "recorded": self.recorded,
            "referenced": self.referenced,
            "versions": self.versions,
            "bytes_checked": self.bytes_checked,
            "missing": [p.to_json() for p in self.missing],
            "corrupt": [p.to_json() for p in self.corrupt],
            "unreferenced": [p.to_json() for p in self.unreferenced],
            "drift": [d.to_json() for d in self.drift],
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
        recorded_size = rows[digest].size if digest in rows else None
        where = "recorded in the blobs table" if digest in rows else "no blobs row either"
        report.missing.append(BlobProblem(digest, recorded_size, [], f"absent from the blob store ({where})"))
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

    for label, digest, file_list, file_rows in queries.version_files(session):
        report.versions += 1
        if differences := file_list_drift(file_list, file_rows):
            report.drift.append(VersionDrift(label, digest, differences))
    return report


def file_list_drift(file_list: Any, rows: list[tuple[str, str, int]]) -> list[str]:
    """How a version's ``file_list`` differs from its ``version_files`` rows (path, digest, size)."""
    if not isinstance(file_list, list):
        return [f"file_list is not a list: {file_list!r}"]
    differences = []
    listed: dict[str, tuple[Any, Any]] = {}
    for i, entry in enumerate(file_list):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            differences.append(f"file_list entry {i} is malformed: {entry!r}")
        elif entry["path"] in listed:
            differences.append(f"{entry['path']}: listed twice in file_list")
        else:
            listed[entry["path"]] = (entry.get("digest"), entry.get("size"))
    recorded = {path: (digest, size) for path, digest, size in rows}
    for path in sorted(listed.keys() | recorded.keys()):
        if path not in recorded:
            differences.append(f"{path}: in file_list ({_file(*listed[path])}), no version_files row")
        elif path not in listed:
            differences.append(f"{path}: a version_files row ({_file(*recorded[path])}), not in file_list")
        elif listed[path] != recorded[path]:
            differences.append(
                f"{path}: file_list says {_file(*listed[path])}, version_files {_file(*recorded[path])}"
            )
    return differences


def _file(digest: Any, size: Any) -> str:
    return f"sha256:{digest}, {size} bytes"


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
    database: Database, store: BlobStore, *, grace: timedelta, dry_run: bool, now: datetime | None = None
) -> GcReport:
    """Delete unreferenced blobs last written before ``now - grace``, and abandoned uploads.

    A blob counts as last written at the later of its row's ``created_at`` and its stored
    modification time (either alone when the other is absent); re-uploading a blob refreshes the
    latter, so a push re-uploading an old orphan protects it again. The grace period protects a push
    in flight, whose blobs look unreferenced until its version commits: keep it longer than the
    longest push (the CLI's default is 24 hours).

    Bytes go only after the rows that record them, never while a committed version references them:

    1. one committed transaction deletes the candidates' ``blobs`` rows, each by a statement that
       re-checks that no ``version_files`` row references it and that it was not recorded again
       since the cutoff, in a savepoint (a version committing meanwhile makes the foreign key refuse
       the delete: ``kept_referenced``); a version that commits later finds no row and is refused
       (``blob_unknown``, or the foreign key), so its push uploads the blob again;
    2. then, per blob, a short write transaction *claims* the digest (a placeholder row, rolled
       back): a claim that finds a row (a push recorded the blob again) keeps the bytes, and so does a
       modification time past the cutoff (it was uploaded again); otherwise the bytes are deleted
       while the claim is held. A push recording the digest meanwhile waits for the claim, then
       finds the bytes gone when it checks them before its commit: refused, never broken.

    Opens its own transactions. With ``dry_run`` it only reads, and the uploads are not counted
    (``uploads_purged`` None).
    """
    now = now or datetime.now(UTC)
    report = GcReport(dry_run=dry_run, cutoff=now - grace)
    with database.transaction(write=False) as session:
        referenced = queries.referenced_digests(session)
        rows = {row.digest: (row.size, _utc(row.created_at)) for row in queries.blob_rows(session)}
    stored = {info.digest: info for info in store.iter_blobs()}

    candidates = []
    for digest in sorted((rows.keys() | stored.keys()) - referenced):
        row, info = rows.get(digest), stored.get(digest)
        times = ([row[1]] if row is not None else []) + ([info.modified] if info else [])
        if max(times) > report.cutoff:
            report.kept_recent.append(digest)
            continue
        size = info.size if info is not None else rows[digest][0]
        candidates.append(RemovedBlob(digest, size, max(times), row is not None, info is not None))
    if dry_run:
        report.removed = candidates
        return report

    recorded = [blob.digest for blob in candidates if blob.recorded]
    with database.transaction() as session:
        deleted_rows = queries.delete_unreferenced_blob_rows(session, recorded, recorded_before=report.cutoff)
        used = queries.referenced_among(session, set(recorded) - deleted_rows)
    for blob in candidates:
        if blob.recorded and blob.digest not in deleted_rows:
            (report.kept_referenced if blob.digest in used else report.kept_recent).append(blob.digest)
        elif blob.stored and not _delete_bytes(database, store, blob, report.cutoff):
            report.kept_recent.append(blob.digest)
        else:
            report.removed.append(blob)
    report.uploads_purged = store.purge_uploads(report.cutoff)
    return report


def _delete_bytes(database: Database, store: BlobStore, blob: RemovedBlob, cutoff: datetime) -> bool:
    """Delete a blob's bytes under a claim on its digest, unless it was recorded or written since."""
    with database.writer() as session:
        try:
            if not queries.claim_blob(session, blob.digest, blob.size):
                return False  # recorded again (a push uploaded it): the row protects it now
            try:
                if store.stat(blob.digest).modified > cutoff:
                    return False  # uploaded again since we listed it; its row is coming
            except BlobNotFound:
                return True
            store.delete(blob.digest)
            return True
        finally:
            session.rollback()


def _utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; the registry stores UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
