"""Every query the services run. Services never build SQL themselves."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from registry.db.models import (
    BaseModel,
    BaseModelSha,
    Blob,
    Repository,
    Tag,
    TagEvent,
    Version,
    VersionFile,
)


def _insert(session: Session, model: type):
    """The dialect's INSERT, so callers can use ``on_conflict_do_nothing``."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


# Repositories ---------------------------------------------------------------------------------


def get_repository(session: Session, namespace: str, name: str, *, lock: bool = False) -> Repository | None:
    query = select(Repository).where(Repository.namespace == namespace, Repository.name == name)
    if lock:
        query = query.with_for_update(of=Repository)
    return session.scalars(query).one_or_none()


def ensure_repository(session: Session, namespace: str, name: str) -> Repository:
    """Return the repository, creating it if needed, locked for the rest of the transaction."""
    session.execute(
        _insert(session, Repository)
        .values(namespace=namespace, name=name, created_at=func.now())
        .on_conflict_do_nothing(index_elements=["namespace", "name"])
    )
    repository = get_repository(session, namespace, name, lock=True)
    assert repository is not None
    return repository


def list_repositories(
    session: Session, *, namespace: str | None = None, base_id: int | None = None
) -> Sequence[Repository]:
    query = select(Repository).order_by(Repository.namespace, Repository.name)
    if namespace is not None:
        query = query.where(Repository.namespace == namespace)
    if base_id is not None:
        query = query.where(
            select(Version.id)
            .where(Version.repository_id == Repository.id, Version.base_id == base_id)
            .exists()
        )
    return session.scalars(query).all()


def delete_repository(session: Session, repository: Repository) -> None:
    session.execute(delete(Repository).where(Repository.id == repository.id))


def count_versions(session: Session, repository_ids: Iterable[int]) -> dict[int, int]:
    ids = list(repository_ids)
    rows = session.execute(
        select(Version.repository_id, func.count())
        .where(Version.repository_id.in_(ids))
        .group_by(Version.repository_id)
    )
    return {digest: size for digest, size in rows}


# Blobs ------------------------------------------------------------------------------------------


def known_blobs(session: Session, digests: Iterable[str]) -> dict[str, int]:
    """Digest → size of the blobs among ``digests`` that the registry holds."""
    rows = session.execute(select(Blob.digest, Blob.size).where(Blob.digest.in_(list(digests))))
    return {digest: size for digest, size in rows}


def record_blob(session: Session, digest: str, size: int) -> None:
    session.execute(
        _insert(session, Blob)
        .values(digest=digest, size=size, created_at=func.now())
        .on_conflict_do_nothing(index_elements=["digest"])
    )


# Base models ----------------------------------------------------------------------------------


def get_base_by_sha(session: Session, sha: str) -> BaseModel | None:
    return session.scalars(
        select(BaseModel).join(BaseModelSha).where(BaseModelSha.sha == sha.lower())
    ).one_or_none()


def get_base_by_digest(session: Session, content_digest: str) -> BaseModel | None:
    return session.scalars(select(BaseModel).where(BaseModel.content_digest == content_digest)).one_or_none()


def get_bases_by_name(session: Session, name: str) -> Sequence[BaseModel]:
    return session.scalars(select(BaseModel).where(BaseModel.name == name)).all()


def list_bases(session: Session) -> Sequence[BaseModel]:
    return session.scalars(select(BaseModel).order_by(BaseModel.name, BaseModel.id)).all()


def get_base_sha(session: Session, sha: str) -> BaseModelSha | None:
    return session.get(BaseModelSha, sha)


# Versions ---------------------------------------------------------------------------------------


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


# Tags -------------------------------------------------------------------------------------------


def get_tag(session: Session, repository: Repository, name: str, *, lock: bool = False) -> Tag | None:
    query = select(Tag).where(Tag.repository_id == repository.id, Tag.name == name)
    if lock:
        query = query.with_for_update(of=Tag)
    return session.scalars(query).one_or_none()


def insert_tag_if_absent(session: Session, repository: Repository, name: str, version: Version) -> bool:
    """Create the tag pointing at ``version``; False if it already existed."""
    result = session.execute(
        _insert(session, Tag)
        .values(repository_id=repository.id, name=name, version_id=version.id, updated_at=func.now())
        .on_conflict_do_nothing(index_elements=["repository_id", "name"])
        .returning(Tag.id)
    )
    return result.scalar_one_or_none() is not None


def list_tags(session: Session, repository: Repository) -> Sequence[Tag]:
    return session.scalars(select(Tag).where(Tag.repository_id == repository.id).order_by(Tag.name)).all()


def tags_by_version(session: Session, version_ids: Iterable[int]) -> dict[int, list[str]]:
    rows = session.execute(
        select(Tag.version_id, Tag.name).where(Tag.version_id.in_(list(version_ids))).order_by(Tag.name)
    )
    found: dict[int, list[str]] = {}
    for version_id, name in rows:
        found.setdefault(version_id, []).append(name)
    return found


def tags_of_version(session: Session, version: Version) -> list[str]:
    return tags_by_version(session, [version.id]).get(version.id, [])


def tag_history(session: Session, repository: Repository, tag: str, *, limit: int) -> Sequence[TagEvent]:
    return session.scalars(
        select(TagEvent)
        .where(TagEvent.repository_id == repository.id, TagEvent.tag == tag)
        .order_by(TagEvent.id.desc())
        .limit(limit)
    ).all()
