"""Queries on versions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.db.models import (
    BaseModel,
    Repository,
    Version,
    VersionFile,
)


def next_version_number(session: Session, repository: Repository) -> int:
    current = session.scalar(select(func.max(Version.number)).where(Version.repository_id == repository.id))
    return (current or 0) + 1


def get_version_by_digest(session: Session, repository: Repository, digest: str) -> Version | None:
    return session.scalars(
        select(Version).where(Version.repository_id == repository.id, Version.digest == digest)
    ).one_or_none()


def find_versions_by_digest_prefix(
    session: Session, repository: Repository, prefix: str
) -> Sequence[Version]:
    return session.scalars(
        select(Version)
        .where(Version.repository_id == repository.id, Version.digest.startswith(prefix, autoescape=True))
        .limit(2)
    ).all()


def get_version_by_number(session: Session, repository: Repository, number: int) -> Version | None:
    return session.scalars(
        select(Version).where(Version.repository_id == repository.id, Version.number == number)
    ).one_or_none()


def list_versions(session: Session, repository: Repository, *, limit: int, offset: int) -> Sequence[Version]:
    return session.scalars(
        select(Version)
        .where(Version.repository_id == repository.id)
        .order_by(Version.number.desc())
        .limit(limit)
        .offset(offset)
    ).all()


def newest_unyanked_version(session: Session, repository: Repository) -> Version | None:
    return session.scalars(
        select(Version)
        .where(Version.repository_id == repository.id, Version.yanked_at.is_(None))
        .order_by(Version.number.desc())
        .limit(1)
    ).first()


def add_files(session: Session, version: Version, files: Iterable[tuple[str, str, int]]) -> None:
    session.add_all(VersionFile(version_id=version.id, path=p, blob_digest=d, size=s) for p, d, s in files)


def versions_on_base(session: Session, base: BaseModel) -> Sequence[Version]:
    return session.scalars(
        select(Version)
        .where(Version.base_id == base.id, Version.yanked_at.is_(None))
        .order_by(Version.repository_id, Version.number.desc())
    ).all()
