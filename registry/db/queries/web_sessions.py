"""Queries on the web UI's sessions."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, delete, select
from sqlalchemy.orm import Session

from registry.db.models import Token, WebSession
from registry.db.queries.tokens import AUTHENTICATION_COLUMNS


@functools.cache
def _session_statement() -> Select[Any]:
    return (
        select(*AUTHENTICATION_COLUMNS, WebSession.expires_at.label("session_expires_at"))
        .join(Token, Token.id == WebSession.token_id)
        .where(WebSession.secret_hash == bindparam("secret_hash"))
    )


def web_session_query(secret_hash: str) -> tuple[Select[Any], dict[str, Any]]:
    """The lookup of a session's token (the columns of ``token_query``) and the session's expiry."""
    return _session_statement(), {"secret_hash": secret_hash}


def add_web_session(session: Session, secret_hash: str, token_id: int, expires_at: datetime) -> None:
    session.add(WebSession(secret_hash=secret_hash, token_id=token_id, expires_at=expires_at))


def delete_web_session(session: Session, secret_hash: str) -> bool:
    """Delete one session; whether it existed."""
    return session.execute(delete(WebSession).where(WebSession.secret_hash == secret_hash)).rowcount > 0


def delete_expired_web_sessions(session: Session, now: datetime) -> None:
    session.execute(delete(WebSession).where(WebSession.expires_at <= now))
