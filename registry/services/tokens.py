"""Bearer tokens: creation (the secret is shown once, stored as its sha256), authentication, scopes.

A token has one scope (see :mod:`registry.principal`) and may be limited to namespaces.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from registry.db import queries
from registry.db.lookups import Lookups
from registry.db.models import Token, as_utc, utcnow
from registry.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from registry.principal import SCOPES, Principal
from registry.refs import validate_name
from registry.services import audit

SECRET_PREFIX = "lrg_"
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_token(
    session: Session,
    principal: Principal,
    *,
    name: str,
    scope: str,
    namespaces: Sequence[str] | None = None,
    expires_in: timedelta | None = None,
) -> tuple[Token, str]:
    """Create a token; return it and its secret (never stored, never shown again). An admin limited to
    namespaces creates only tokens limited to some of them, with a scope no wider than its own."""
    principal.require("admin")
    if scope not in SCOPES:
        raise InvalidInput(f"unknown scope {scope!r}; use one of {', '.join(SCOPES)}")
    if not name or len(name) > 96:
        raise InvalidInput("a token needs a name of 1 to 96 characters, e.g. ci-publisher")
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidInput("a token's lifetime must be positive, e.g. --expires 30d")
    limited = tuple(validate_name(n, "namespace") for n in namespaces) if namespaces else None
    if not principal.covers(limited):
        raise Forbidden(
            f"{principal.name} is limited to namespaces {', '.join(principal.namespaces or ())}: it can "
            "create only tokens limited to some of them (--namespace NS)"
        )
    if not principal.has_scope(scope):
        raise Forbidden(f"{principal.name} has {principal.scope} scope and cannot create a {scope} token")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    token = Token(
        name=name,
        secret_hash=hash_secret(secret),
        scope=scope,
        namespaces=list(limited) if limited else None,
        expires_at=utcnow() + expires_in if expires_in else None,
    )
    session.add(token)
    session.flush()
    audit.record(
        session,
        principal,
        "token.create",
        target=f"token {token.id} ({name})",
        namespace=limited[0] if limited and len(limited) == 1 else None,
        detail={"scope": scope, "namespaces": list(limited) if limited else None},
    )
    return token, secret


async def authenticate(lookups: Lookups, authorization: str | None) -> Principal:
    """The principal behind an ``Authorization: Bearer …`` header; raise :class:`Unauthorized`. One
    read-only statement (a lookup, see :mod:`registry.db.lookups`)."""
    if not authorization:
        raise Unauthorized("this registry requires a token: pass --token, set LOREG_TOKEN or `lorareg login`")
    kind, _, secret = authorization.partition(" ")
    secret = secret.strip()
    if kind.lower() != "bearer" or not secret.startswith(SECRET_PREFIX):
        raise Unauthorized(f"malformed Authorization header: expected 'Bearer {SECRET_PREFIX}…'")
    rows = await lookups.rows(*queries.token_query(hash_secret(secret)))
    return principal_of(rows[0] if rows else None)


def principal_of(token: Any) -> Principal:
    """The principal of a token's row as ``token_query`` reads it (None: no such token); raise
    :class:`Unauthorized` if it is revoked or expired."""
    now = utcnow()
    if token is None:
        raise Unauthorized("unknown token; check LOREG_TOKEN or create a new one")
    if token.revoked_at is not None:
        raise Unauthorized(f"token {token.name!r} was revoked; create a new one")
    if token.expires_at is not None and as_utc(token.expires_at) <= now:
        raise Unauthorized(f"token {token.name!r} expired on {token.expires_at:%Y-%m-%d}; make a new one")
    stale = token.last_used_at is None or as_utc(token.last_used_at) < now - _LAST_USED_RESOLUTION
    namespaces = tuple(token.namespaces) if token.namespaces else None
    return Principal(
        name=token.name,
        scope=token.scope,
        namespaces=namespaces,
        token_id=token.id,
        expires_at=as_utc(token.expires_at) if token.expires_at is not None else None,
        stale_last_use=stale,
    )


def _manages(principal: Principal, token: Token) -> bool:
    """Whether ``principal`` (an admin) may see and revoke ``token``: one within its namespaces."""
    return principal.covers(token.namespaces)


def record_use(session: Session, principal: Principal) -> None:
    """Update the token's last-used time (at most once a minute, so reads stay read-only)."""
    if principal.token_id is not None:
        queries.touch_token(session, principal.token_id, utcnow())


def revoke_token(session: Session, token_id: int, principal: Principal) -> Token:
    principal.require("admin")
    token = queries.get_token(session, token_id)
    if token is None or not _manages(principal, token):
        raise NotFound(f"no token with id {token_id}; `lorareg token ls` lists them")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()
        audit.record(
            session,
            principal,
            "token.revoke",
            target=f"token {token.id} ({token.name})",
            namespace=token.namespaces[0] if token.namespaces and len(token.namespaces) == 1 else None,
        )
    return token


def list_tokens(session: Session, principal: Principal) -> list[Token]:
    """The tokens ``principal`` manages: all for an unrestricted admin, else those within its namespaces."""
    principal.require("admin")
    return [t for t in queries.list_tokens(session) if _manages(principal, t)]


def has_admin(session: Session) -> bool:
    return queries.any_active_admin(session, utcnow())
