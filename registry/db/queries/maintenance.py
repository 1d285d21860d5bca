"""Queries for fsck and gc: the blob rows, what versions reference, and guarded deletes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.db.models import Blob, Repository, Version, VersionFile


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


def delete_unreferenced_blob_rows(session: Session, digests: Iterable[str]) -> set[str]:
    """Delete the blob rows of ``digests`` that no version references; return the digests deleted.

    Each delete re-checks, in the statement itself, that no ``version_files`` row references the
    digest, and runs in a savepoint: a version committed (or being committed) meanwhile makes the
    foreign key refuse the delete, and that digest is skipped instead of failing the whole run.
    """
    deleted: set[str] = set()
    for digest in dict.fromkeys(digests):
        statement = (
            delete(Blob)
            .where(Blob.digest == digest, ~exists().where(VersionFile.blob_digest == digest))
            .execution_options(synchronize_session=False)
        )
        try:
            with session.begin_nested():
                removed = session.execute(statement).rowcount
        except IntegrityError:
            continue
        if removed:
            deleted.add(digest)
    return deleted
