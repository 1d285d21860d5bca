"""Request dependencies: the per-request session (committed by the dependency), the blob store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from registry.config import Settings
from registry.db.session import Database
from registry.jobs.executors import Executor
from registry.principal import ANONYMOUS_ADMIN, ANONYMOUS_READER, Principal
from registry.services import tokens
from registry.storage import BlobStore


@dataclass(frozen=True)
class Registry:
    """What the app holds for its lifetime."""

    settings: Settings
    db: Database
    store: BlobStore
    executor: Executor


def get_registry(request: Request) -> Registry:
    return request.app.state.registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


def get_read_session(registry: RegistryDep) -> Iterator[Session]:
    with registry.db.transaction(write=False) as session:
        yield session


def get_write_session(registry: RegistryDep) -> Iterator[Session]:
    """One write transaction per request: committed when the handler returns, rolled back on error."""
    with registry.db.transaction(write=True) as session:
        yield session


ReadSession = Annotated[Session, Depends(get_read_session, scope="function")]
WriteSession = Annotated[Session, Depends(get_write_session, scope="function")]


def authorize(scope: str) -> Callable[..., Principal]:
    """A dependency that admits callers with ``scope`` (in the path's ``namespace``, if any).

    With ``LOREG_AUTH=off`` everyone is admin. Tokens are looked up in a read-only transaction; the
    last-used time is written separately, at most once a minute per token.
    """

    def dependency(request: Request, registry: RegistryDep) -> Principal:
        settings = registry.settings
        if settings.auth == "off":
            return ANONYMOUS_ADMIN
        header = request.headers.get("authorization")
        if header is None and scope == "read" and settings.anonymous_read:
            return ANONYMOUS_READER
        with registry.db.transaction(write=False) as session:
            principal = tokens.authenticate(session, header)
        principal.require(scope, request.path_params.get("namespace"))
        if principal.stale_last_use:
            with registry.db.transaction(write=True) as session:
                tokens.record_use(session, principal)
        return principal

    return dependency


Reader = Annotated[Principal, Depends(authorize("read"))]
Writer = Annotated[Principal, Depends(authorize("write"))]
Admin = Annotated[Principal, Depends(authorize("admin"))]
