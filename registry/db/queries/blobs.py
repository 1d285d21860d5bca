"""Queries on blobs."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.db.models import (
    Blob,
)
from registry.db.queries._dialect import insert_for


def known_blobs(session: Session, digests: Iterable[str]) -> dict[str, int]:
    """Digest → size of the blobs among ``digests`` that the registry holds."""
    rows = session.execute(select(Blob.digest, Blob.size).where(Blob.digest.in_(list(digests))))
    return {digest: size for digest, size in rows}


def record_blob(session: Session, digest: str, size: int) -> None:
    session.execute(
        insert_for(session, Blob)
        .values(digest=digest, size=size, created_at=func.now())
        .on_conflict_do_nothing(index_elements=["digest"])
    )
