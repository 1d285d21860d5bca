"""Versions: resolving references, the log, yanking."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from registry.db import queries
from registry.db.lookups import Lookups
from registry.db.models import Repository, Version
from registry.errors import BaseMismatch, Gone, InvalidInput, NotFound
from registry.principal import REGISTRY, Principal
from registry.refs import Ref, RepoName, RepoRef, validate_file_path
from registry.services import repos
from registry.services.bases import base_sha_for
from registry.storage import BlobStore

T = TypeVar("T")


def get_version(session: Session, repository: Repository, ref: Ref, *, allow_yanked: bool = False) -> Version:
    """The version ``ref`` names. Tags and numbers refuse yanked versions; digests never do."""
    where = _spelled(repository.full_name, ref)
    found = queries.find_versions(session, repository, ref)
    version = _only(found, where, ref)
    if ref.kind != "digest" and not allow_yanked:
        _refuse_yanked(
            where,
            repository.full_name,
            version.number,
            version.digest,
            version.yank_reason,
            yanked=version.yanked_at is not None,
        )
    return version


@dataclass(frozen=True)
class Resolved:
    """What a loader needs to fetch a version and check it fits its base: read in one query."""

    repo: str
    number: int
    digest: str
    config: dict[str, Any]
    files: list[dict[str, Any]]
    provenance: dict[str, Any]
    created_at: datetime
    yanked: bool
    base_name: str
    base_sha: str
    base_content_digest: str
    visibility: str
    trained_on: (
        str  # quantized or full: the base the adapter was trained on (either of a quantized pair fits)
    )


async def resolve(
    lookups: Lookups, target: RepoRef, principal: Principal, *, base_sha: str | None = None
) -> Resolved:
    """Resolve a reference (refusing yanked versions unless named by digest), refusing it when the caller
    runs a different base model or may not read the repository. One indexed query, a lookup (see
    :mod:`registry.db.lookups`), when the reference resolves."""
    wanted = await base_sha_for(lookups, base_sha) if base_sha is not None else None
    rows = await lookups.rows(*queries.resolve_query(target.repo, target.ref, base_sha=wanted))
    if rows and not principal.can_read(target.repo.namespace, rows[0].visibility):
        raise principal.cannot_see(str(target.repo))
    if not rows:  # say precisely what is missing: the repository, or the version
        await lookups.run(lambda connection: _explain_missing(connection, target, principal))
    where = _spelled(str(target.repo), target.ref)
    row = _only(rows, where, target.ref)
    if target.ref.kind != "digest":
        _refuse_yanked(
            where, str(target.repo), row.number, row.digest, row.yank_reason, yanked=row.yanked_at is not None
        )
    if not row.base_matches:
        raise BaseMismatch(
            f"{target} was made for base {row.base_name} (sha {row.base_sha}), not for base "
            f"{base_sha} (nor is that its quantized or full-precision twin); pick an adapter trained on "
            f"{base_sha} or run the base it was made for"
        )
    return Resolved(
        repo=str(target.repo),
        number=row.number,
        digest=row.digest,
        config=row.config,
        files=row.file_list,
        provenance=row.provenance,
        created_at=row.created_at,
        yanked=row.yanked_at is not None,
        base_name=row.base_name,
        base_sha=row.base_sha,
        base_content_digest=row.base_content_digest,
        visibility=row.visibility,
        trained_on=row.trained_on,
    )


def _explain_missing(connection: Connection, target: RepoRef, principal: Principal) -> None:
    """Raise NotFound for the repository or the version that ``target`` names and does not exist."""
    with Session(connection) as session:
        get_version(session, repos.get_repository(session, target.repo, principal), target.ref)


def _spelled(repo: str, ref: Ref) -> str:
    return f"{repo}{':' if ref.kind == 'tag' else '@' if ref.kind == 'digest' else ''}{ref}"


def _only(found: Sequence[T], where: str, ref: Ref) -> T:
    if not found:
        raise NotFound(f"no {'tag' if ref.kind == 'tag' else 'version'} {where}")
    if len(found) > 1:
        raise InvalidInput(
            f"digest prefix {ref.value} is ambiguous in {where.partition('@')[0]}; give more characters"
        )
    return found[0]


def _refuse_yanked(
    where: str, repo: str, number: int, digest: str, reason: str | None, *, yanked: bool
) -> None:
    if yanked:
        raise Gone(
            f"{where} is version #{number}, which was yanked{': ' + reason if reason else ''}; "
            f"pull it by digest if you must: {repo}@sha256:{digest}"
        )


def export_version(version: Version, store: BlobStore, directory: Path) -> None:
    """Write a version's files into ``directory`` from the blob store (server side: jobs)."""
    export_files([(f.path, f.blob_digest) for f in version.files], store, directory)


def export_files(files: Iterable[tuple[str, str]], store: BlobStore, directory: Path) -> None:
    """Write (path, digest) files from the blob store into ``directory``."""
    for path, digest in files:
        target = directory / validate_file_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            for chunk in store.read_range(digest):
                out.write(chunk)


def find_version(
    session: Session, target: RepoRef, principal: Principal, *, allow_yanked: bool = False
) -> Version:
    """The version ``target`` names, in a repository ``principal`` may read."""
    repository = repos.get_repository(session, target.repo, principal)
    return get_version(session, repository, target.ref, allow_yanked=allow_yanked)


def log(
    session: Session, repo: RepoName, principal: Principal, *, limit: int = 50, offset: int = 0
) -> Sequence[Version]:
    """A repository's versions, newest first."""
    repository = repos.get_repository(session, repo, principal)
    return queries.list_versions(session, repository, limit=limit, offset=offset)


def tags_by_version(session: Session, found: Iterable[Version]) -> dict[int, list[str]]:
    """The tags pointing at each of ``found`` (by version id)."""
    return queries.tags_by_version(session, (v.id for v in found))


def tags_of(session: Session, version: Version) -> list[str]:
    return list(queries.tags_of_version(session, version))


def get_by_digest(session: Session, repo: str, digest: str) -> Version:
    """A version named by repository and full digest (yanked ones too), for the registry's own work
    (jobs, whose inputs were checked against their submitter when submitted)."""
    return find_version(session, RepoRef.parse(f"{repo}@{digest}"), REGISTRY, allow_yanked=True)
