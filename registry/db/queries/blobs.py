"""Queries on blobs."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select, union
from sqlalchemy.orm import Session

from registry.db.models import Blob, BlobUpload, Repository, Version, VersionFile
from registry.db.queries._dialect import insert_for
from registry.db.queries.repos import readable


def known_blobs(session: Session, digests: Iterable[str], *, lock: bool = False) -> dict[str, int]:
    """Digest → size of the blobs among ``digests`` that the registry holds. ``lock`` holds their rows
    (a shared lock, on PostgreSQL) until the transaction ends, so that gc cannot delete a blob that a
    commit is about to reference."""
    query = select(Blob.digest, Blob.size).where(Blob.digest.in_(list(digests)))
    if lock:
        query = query.with_for_update(read=True, key_share=True)
    return {digest: size for digest, size in session.execute(query)}


def record_blob(session: Session, digest: str, size: int) -> None:
    session.execute(
        insert_for(session, Blob)
        .values(digest=digest, size=size, created_at=func.now())
        .on_conflict_do_nothing(index_elements=["digest"])
    )


def record_upload(session: Session, digest: str, token_id: int) -> None:
    """Remember that the token ``token_id`` uploaded the blob's bytes."""
    session.execute(
        insert_for(session, BlobUpload)
        .values(digest=digest, token_id=token_id, created_at=func.now())
        .on_conflict_do_nothing(index_elements=["digest", "token_id"])
    )


def visible_blobs(
    session: Session, digests: Iterable[str], *, readable_in: tuple[str, ...], token_id: int | None
) -> set[str]:
    """The digests among ``digests`` that a version of a repository readable by ``readable_in``
    references, or that the token ``token_id`` uploaded."""
    wanted = list(digests)
    referenced = (
        select(VersionFile.blob_digest.label("digest"))
        .join(Version, Version.id == VersionFile.version_id)
        .join(Repository, Repository.id == Version.repository_id)
        .where(VersionFile.blob_digest.in_(wanted), readable(readable_in))
    )
    if token_id is None:
        return set(session.scalars(referenced.distinct()))
    uploaded = select(BlobUpload.digest).where(BlobUpload.digest.in_(wanted), BlobUpload.token_id == token_id)
    return set(session.scalars(union(referenced, uploaded)))
