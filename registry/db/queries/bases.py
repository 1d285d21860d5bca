"""Queries on base models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, joinedload, lazyload, undefer

from registry.db.models import (
    BaseModel,
    BaseModelSha,
)
from registry.db.queries._dialect import insert_for

_WITH_BASE = joinedload(BaseModelSha.base).lazyload(BaseModel.shas)


def get_base_by_digest(session: Session, content_digest: str) -> BaseModel | None:
    return session.scalars(select(BaseModel).where(BaseModel.content_digest == content_digest)).one_or_none()


def get_bases_by_name(session: Session, name: str) -> Sequence[BaseModel]:
    """One statement: their SHAs load only if asked for (resolving a name needs none of them)."""
    return session.scalars(
        select(BaseModel).where(BaseModel.name == name).options(lazyload(BaseModel.shas))
    ).all()


def list_bases(session: Session, *, with_manifests: bool = False) -> Sequence[BaseModel]:
    query = select(BaseModel).order_by(BaseModel.name, BaseModel.id)
    return session.scalars(query.options(undefer(BaseModel.manifest)) if with_manifests else query).all()


def get_base_sha(session: Session, sha: str) -> BaseModelSha | None:
    """The SHA with its base, in one statement."""
    return session.get(BaseModelSha, sha, options=[_WITH_BASE])


def find_base_shas(
    session: Session, prefix: str, *, content_only: bool, limit: int
) -> Sequence[BaseModelSha]:
    """The SHAs bases answer to that start with ``prefix`` (hex: nothing to escape), at most ``limit``."""
    query = select(BaseModelSha).where(BaseModelSha.sha.like(f"{prefix}%")).options(_WITH_BASE)
    if content_only:
        query = query.where(BaseModelSha.kind == "content")
    return session.scalars(query.order_by(BaseModelSha.sha).limit(limit)).all()


def ensure_base(session: Session, *, name: str, content_digest: str, manifest: dict[str, Any]) -> bool:
    """Insert the base model unless one with this content digest exists (a concurrent registration
    waits for the other to commit, then finds it); return whether it was inserted."""
    inserted = session.execute(
        insert_for(session, BaseModel)
        .values(name=name, content_digest=content_digest, manifest=manifest, created_at=func.now())
        .on_conflict_do_nothing(index_elements=["content_digest"])
        .returning(BaseModel.id)
    ).first()
    return inserted is not None


def ensure_base_sha(session: Session, *, sha: str, kind: str, base_id: int) -> bool:
    """Let the base answer to ``sha`` unless some base already does; return whether it was inserted."""
    inserted = session.execute(
        insert_for(session, BaseModelSha)
        .values(sha=sha, kind=kind, base_id=base_id)
        .on_conflict_do_nothing(index_elements=["sha"])
        .returning(BaseModelSha.sha)
    ).first()
    return inserted is not None
