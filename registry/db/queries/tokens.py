"""Queries on tokens."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.orm import Session

from registry.db.models import Token


def get_token_by_hash(connection: Connection, secret_hash: str) -> Row[Any] | None:
    """What authentication needs of the token with this secret hash (a lookup: one statement, no ORM)."""
    statement = select(
        Token.id,
        Token.name,
        Token.scope,
        Token.namespaces,
        Token.expires_at,
        Token.last_used_at,
        Token.revoked_at,
    ).where(Token.secret_hash == secret_hash)
    return connection.execute(statement).one_or_none()


def get_token(session: Session, token_id: int) -> Token | None:
    return session.get(Token, token_id)


def list_tokens(session: Session) -> Sequence[Token]:
    return session.scalars(select(Token).order_by(Token.id)).all()


def any_active_admin(session: Session, now: datetime) -> bool:
    query = select(Token.id).where(
        Token.scope == "admin",
        Token.revoked_at.is_(None),
        (Token.expires_at.is_(None)) | (Token.expires_at > now),
    )
    return session.scalars(query.limit(1)).first() is not None


def touch_token(session: Session, token_id: int, now: datetime) -> None:
    session.execute(update(Token).where(Token.id == token_id).values(last_used_at=now))
