"""Queries on base models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.db.models import (
    BaseModel,
    BaseModelSha,
)
from registry.db.queries._dialect import insert_for


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


def ensure_base_sha(session: Session, *, sha: str, kind: str, base_id: int) -> None:
    """Let the base answer to ``sha`` unless some base already does."""
    session.execute(
        insert_for(session, BaseModelSha)
        .values(sha=sha, kind=kind, base_id=base_id)
        .on_conflict_do_nothing(index_elements=["sha"])
    )
