"""Queries on base models."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.db.models import (
    BaseModel,
    BaseModelSha,
)


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
