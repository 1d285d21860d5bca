"""The web UI's logins: a token, given once on the login page, opens a session; the browser then holds
only the session's random secret (an HttpOnly cookie), of which the database keeps the sha256.

A session ends when it expires (at most ``LIFETIME``, never after its token), when its owner logs out, or
when its token is revoked or expires. What a session may do is exactly what its token may do.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy.orm import Session

from registry.db.lookups import Lookups
from registry.db.models import as_utc, utcnow
from registry.db.queries.web_sessions import (
    add_web_session,
    delete_expired_web_sessions,
    delete_web_session,
    web_session_query,
)
from registry.errors import Unauthorized
from registry.principal import Principal
from registry.services import audit
from registry.services.tokens import hash_secret, principal_of

LIFETIME = timedelta(hours=12)
SECRET_BYTES = 32


def open_session(session: Session, principal: Principal) -> tuple[str, int]:
    """Open a session for ``principal`` (authenticated by its token); return the cookie's secret and how
    many seconds it lasts. Expired sessions are removed on the way."""
    if principal.token_id is None:
        raise Unauthorized("only a token opens a session: paste one made with `lorareg token create`")
    now = utcnow()
    expires_at = now + LIFETIME
    if principal.expires_at is not None:
        expires_at = min(expires_at, principal.expires_at)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    delete_expired_web_sessions(session, now)
    add_web_session(session, hash_secret(secret), principal.token_id, expires_at)
    audit.record(session, principal, "session.open", target=f"token {principal.name}")
    return secret, max(int((expires_at - now).total_seconds()), 0)


async def session_principal(lookups: Lookups, secret: str) -> Principal | None:
    """The principal of the session whose cookie holds ``secret``; None when there is no such session or
    it has ended (expired, or its token revoked or expired). One lookup."""
    rows = await lookups.rows(*web_session_query(hash_secret(secret)))
    if not rows or as_utc(rows[0].session_expires_at) <= utcnow():
        return None
    try:
        return principal_of(rows[0])
    except Unauthorized:
        return None


def close_session(session: Session, secret: str, principal: Principal) -> None:
    """End the session whose cookie holds ``secret`` (logging out)."""
    if delete_web_session(session, hash_secret(secret)):
        audit.record(session, principal, "session.close", target=f"token {principal.name}")
