"""Versions: resolving references, the log, yanking."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from registry.db import queries
from registry.db.models import Repository, Version
from registry.errors import BaseMismatch, Gone, InvalidInput, NotFound
from registry.refs import Ref, RepoRef, validate_file_path
from registry.services import repos
from registry.services.bases import base_answers_to, validate_sha
from registry.storage import BlobStore


def get_version(session: Session, repository: Repository, ref: Ref, *, allow_yanked: bool = False) -> Version:
    """The version ``ref`` names. Tags and numbers refuse yanked versions; digests never do."""
    where = f"{repository.full_name}{':' if ref.kind == 'tag' else '@' if ref.kind == 'digest' else ''}{ref}"
    if ref.kind == "digest":
        if len(ref.value) == 64:
            version = queries.get_version_by_digest(session, repository, ref.value)
        else:
            found = queries.find_versions_by_digest_prefix(session, repository, ref.value)
            if len(found) > 1:
                raise InvalidInput(
                    f"digest prefix {ref.value} is ambiguous in {repository.full_name}; give more characters"
                )
            version = found[0] if found else None
        if version is None:
            raise NotFound(f"no version {where}")
        return version
    if ref.kind == "number":
        version = queries.get_version_by_number(session, repository, int(ref.value))
        if version is None:
            raise NotFound(f"no version {where}")
    else:
        tag = queries.get_tag(session, repository, ref.value)
        if tag is None:
            raise NotFound(f"no tag {where}")
        version = tag.version
    if version.yanked_at is not None and not allow_yanked:
        raise Gone(
            f"{where} is version #{version.number}, which was yanked"
            f"{': ' + version.yank_reason if version.yank_reason else ''}; "
            f"pull it by digest if you must: {repository.full_name}@sha256:{version.digest}"
        )
    return version


def resolve(session: Session, target: RepoRef, *, base_sha: str | None = None) -> Version:
    """Resolve a reference, refusing it when the caller runs a different base model."""
    repository = repos.get_repository(session, target.repo)
    version = get_version(session, repository, target.ref)
    if base_sha is not None and not base_answers_to(version.base, validate_sha(base_sha)):
        raise BaseMismatch(
            f"{target} was made for base {version.base.name} (sha {version.base_sha}), not for base "
            f"{base_sha}; pick an adapter trained on {base_sha} or run the base it was made for"
        )
    return version


def log(session: Session, repository: Repository, *, limit: int = 50, offset: int = 0) -> Sequence[Version]:
    return queries.list_versions(session, repository, limit=limit, offset=offset)


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


def get_by_digest(session: Session, repo: str, digest: str) -> Version:
    """A version named by repository and full digest (yanked ones too)."""
    target = RepoRef.parse(f"{repo}@{digest}")
    return get_version(session, repos.get_repository(session, target.repo), target.ref, allow_yanked=True)
