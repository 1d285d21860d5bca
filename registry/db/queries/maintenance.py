"""Queries for fsck and gc: the blob rows, what versions reference, guarded deletes and claims."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.db.models import Blob, Repository, Version, VersionFile
from registry.db.queries._dialect import insert_for

BATCH = 500


def blob_rows(session: Session) -> Sequence[Blob]:
    """Every row of the blobs table (digest, recorded size, created_at)."""
    return session.scalars(select(Blob).order_by(Blob.digest)).all()


def referenced_digests(session: Session) -> set[str]:
    """The digests of every blob some version's files reference (yanked versions included)."""
    return set(session.scalars(select(VersionFile.blob_digest).distinct()))


def versions_referencing(session: Session, digests: Iterable[str]) -> dict[str, list[str]]:
    """Digest → the versions (``ns/name#number``) whose files reference it, for ``digests``."""
    wanted = list(dict.fromkeys(digests))
    found: dict[str, list[str]] = defaultdict(list)
    for start in range(0, len(wanted), 500):
        rows = session.execute(
            select(VersionFile.blob_digest, Repository.namespace, Repository.name, Version.number)
            .join(Version, Version.id == VersionFile.version_id)
            .join(Repository, Repository.id == Version.repository_id)
            .where(VersionFile.blob_digest.in_(wanted[start : start + 500]))
            .order_by(Repository.namespace, Repository.name, Version.number)
        )
        for digest, namespace, name, number in rows:
            label = f"{namespace}/{name}#{number}"
            if label not in found[digest]:
                found[digest].append(label)
    return dict(found)


def referenced_among(session: Session, digests: Iterable[str]) -> set[str]:
    """The digests among ``digests`` that some version's files reference."""
    wanted = list(dict.fromkeys(digests))
    found: set[str] = set()
    for start in range(0, len(wanted), BATCH):
        found.update(
            session.scalars(
                select(VersionFile.blob_digest)
                .where(VersionFile.blob_digest.in_(wanted[start : start + BATCH]))
                .distinct()
            )
        )
    return found


def delete_unreferenced_blob_rows(
    session: Session, digests: Iterable[str], *, recorded_before: datetime | None = None
) -> set[str]:
    """Delete the blob rows of ``digests`` that no version references; return the digests deleted.

    Each delete re-checks, in the statement itself, that no ``version_files`` row references the
    digest (and, with ``recorded_before``, that the row is no newer), and runs in a savepoint: a
    version committed (or being committed) meanwhile makes the foreign key refuse the delete, and
    that digest is skipped instead of failing the whole run.
    """
    deleted: set[str] = set()
    for digest in dict.fromkeys(digests):
        conditions = [Blob.digest == digest, ~exists().where(VersionFile.blob_digest == digest)]
        if recorded_before is not None:
            conditions.append(Blob.created_at <= recorded_before)
        statement = delete(Blob).where(*conditions).execution_options(synchronize_session=False)
        try:
            with session.begin_nested():
                removed = session.execute(statement).rowcount
        except IntegrityError:
            continue
        if removed:
            deleted.add(digest)
    return deleted


def claim_blob(session: Session, digest: str, size: int) -> bool:
    """Insert a placeholder row for ``digest`` unless one exists (committed or being inserted).

    True when inserted: until the caller rolls it back, every writer that records the digest waits
    (PostgreSQL: on the conflicting key; SQLite: on the write lock), so gc may delete the bytes.
    """
    statement = (
        insert_for(session, Blob)
        .values(digest=digest, size=size, created_at=func.now())
        .on_conflict_do_nothing(index_elements=["digest"])
        .returning(Blob.digest)  # an ORM insert's rowcount is -1 on psycopg
    )
    return session.execute(statement).first() is not None


def version_files(session: Session) -> Iterator[tuple[str, str, Any, list[tuple[str, str, int]]]]:
    """Every version, as (``ns/name#number``, digest, its ``file_list``, its version_files rows as
    (path, digest, size)), in batches of versions so memory stays bounded."""
    after = 0
    while True:
        versions = session.execute(
            select(
                Version.id,
                Repository.namespace,
                Repository.name,
                Version.number,
                Version.digest,
                Version.file_list,
            )
            .join(Repository, Repository.id == Version.repository_id)
            .where(Version.id > after)
            .order_by(Version.id)
            .limit(BATCH)
        ).all()
        if not versions:
            return
        rows: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
        for version_id, path, digest, size in session.execute(
            select(VersionFile.version_id, VersionFile.path, VersionFile.blob_digest, VersionFile.size)
            .where(VersionFile.version_id.in_([v.id for v in versions]))
            .order_by(VersionFile.version_id, VersionFile.path)
        ):
            rows[version_id].append((path, digest, size))
        for version_id, namespace, name, number, digest, file_list in versions:
            yield f"{namespace}/{name}#{number}", digest, file_list, rows[version_id]
        after = versions[-1].id
