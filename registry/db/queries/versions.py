"""Queries on versions."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, literal, or_, select, tuple_
from sqlalchemy.orm import Session, aliased

from registry.db.models import (
    BaseModel,
    BaseModelSha,
    Repository,
    Tag,
    Version,
    VersionFile,
)
from registry.db.queries.repos import readable
from registry.refs import Ref, RepoName


def next_version_number(session: Session, repository: Repository) -> int:
    current = session.scalar(select(func.max(Version.number)).where(Version.repository_id == repository.id))
    return (current or 0) + 1


def _ref_kind(ref: Ref) -> str:
    return "prefix" if ref.kind == "digest" and len(ref.value) < 64 else ref.kind


def _ref_parameter(ref: Ref) -> str | int:
    kind = _ref_kind(ref)
    return int(ref.value) if kind == "number" else f"{ref.value}%" if kind == "prefix" else ref.value


def _named_by(statement: Select[Any], kind: str) -> Select[Any]:
    """Narrow a select over versions (already limited to one repository) to those a reference of this
    kind names; the reference is the bound parameter ``ref`` (see ``_ref_parameter``)."""
    ref = bindparam("ref")
    if kind == "tag":
        return statement.join(Tag, Tag.version_id == Version.id).where(
            Tag.repository_id == Version.repository_id, Tag.name == ref
        )
    if kind == "number":
        return statement.where(Version.number == ref)
    if kind == "digest":
        return statement.where(Version.digest == ref)
    return statement.where(Version.digest.like(ref))  # a hex prefix: nothing in it to escape


def find_versions(session: Session, repository: Repository, ref: Ref) -> Sequence[Version]:
    """The versions ``ref`` names: one, none, or two when a digest prefix is ambiguous."""
    statement = _named_by(select(Version).where(Version.repository_id == repository.id), _ref_kind(ref))
    return session.scalars(statement.limit(2), {"ref": _ref_parameter(ref)}).all()


@functools.cache
def _resolve_statement(kind: str, *, with_base: bool) -> Select[Any]:
    """Built once per kind of reference: lookups are the hot path, and building costs more than running.
    A version's base matches when the SHA names it or a base of its quantized pair (the full base a
    quantized one was made from, or one made from it: the same shapes)."""
    wanted = aliased(BaseModel)
    answers = (
        select(BaseModelSha.sha)
        .join(wanted, wanted.id == BaseModelSha.base_id)
        .where(
            BaseModelSha.sha == bindparam("base_sha"),
            func.coalesce(wanted.quantized_from_id, wanted.id)
            == func.coalesce(BaseModel.quantized_from_id, BaseModel.id),
        )
        .exists()
        if with_base
        else literal(True)
    )
    statement = (
        select(
            Version.number,
            Version.digest,
            Version.config,
            Version.file_list,
            Version.provenance,
            Version.created_at,
            Version.yanked_at,
            Version.yank_reason,
            Version.base_sha,
            Version.trained_on,
            Repository.visibility,
            BaseModel.name.label("base_name"),
            BaseModel.content_digest.label("base_content_digest"),
            answers.label("base_matches"),
        )
        .join(Repository, Repository.id == Version.repository_id)
        .join(BaseModel, BaseModel.id == Version.base_id)
        .where(Repository.namespace == bindparam("namespace"), Repository.name == bindparam("name"))
    )
    return _named_by(statement, kind).limit(2)


def resolve_query(repo: RepoName, ref: Ref, *, base_sha: str | None) -> tuple[Select[Any], dict[str, Any]]:
    """The lookup of what a loader needs of the versions ``ref`` names in ``repo``, in one indexed query
    (a prebuilt statement and its parameters): the version's own columns (its files are on the row), its
    base, and whether the base answers to ``base_sha``."""
    statement = _resolve_statement(_ref_kind(ref), with_base=base_sha is not None)
    parameters = {"namespace": repo.namespace, "name": repo.name, "ref": _ref_parameter(ref)}
    if base_sha is not None:
        parameters["base_sha"] = base_sha
    return statement, parameters


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


def versions_on_base(
    session: Session,
    base: BaseModel,
    *,
    readable_in: tuple[str, ...] | None,
    after: tuple[str, str, int] | None,
    limit: int,
) -> Sequence[Version]:
    """Unyanked versions made for ``base`` in repositories readable by ``readable_in``, by repository
    name and newest first, after ``after`` = (namespace, name, number), a cursor."""
    query = (
        select(Version)
        .join(Repository, Repository.id == Version.repository_id)
        .where(Version.base_id == base.id, Version.yanked_at.is_(None), readable(readable_in))
        .order_by(Repository.namespace, Repository.name, Version.number.desc())
        .limit(limit)
    )
    if after is not None:
        namespace, name, number = after
        query = query.where(
            or_(
                tuple_(Repository.namespace, Repository.name) > tuple_(namespace, name),
                and_(Repository.namespace == namespace, Repository.name == name, Version.number < number),
            )
        )
    return session.scalars(query).all()
