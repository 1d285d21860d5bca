"""Queries on tokens."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.orm import Session

from registry.db.models import Token

# What authentication reads of a token (see ``registry.services.tokens.principal_of``).
AUTHENTICATION_COLUMNS = (
    Token.id,
    Token.name,
    Token.scope,
    Token.namespaces,
    Token.expires_at,
    Token.last_used_at,
    Token.revoked_at,
)


@functools.cache
def _token_statement() -> Select[Any]:
    return select(*AUTHENTICATION_COLUMNS).where(Token.secret_hash == bindparam("secret_hash"))


def token_query(secret_hash: str) -> tuple[Select[Any], dict[str, Any]]:
    """The lookup of what authentication needs of the token with this secret hash (a prebuilt statement
    and its parameters, see ``Lookups.rows``)."""
    return _token_statement(), {"secret_hash": secret_hash}


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
