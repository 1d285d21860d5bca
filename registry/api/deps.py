"""Request dependencies: the registry, the per-request session (committed by the dependency), the caller."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, TypeVar

import anyio
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from registry.config import Settings
from registry.db.lookups import Lookups
from registry.db.session import MAX_CONNECTIONS, Database
from registry.jobs.executors import Executor
from registry.principal import ANONYMOUS_ADMIN, ANONYMOUS_READER, OPEN_READER, Principal
from registry.services import tokens
from registry.services.search import AnswerCache
from registry.storage import BlobStore

T = TypeVar("T")
RESERVED_CONNECTIONS = 4  # the webhook dispatcher and in-process jobs, which take no slot


@dataclass(frozen=True)
class Registry:
    """What the app holds for its lifetime."""

    settings: Settings
    db: Database
    lookups: Lookups
    store: BlobStore
    executor: Executor
    search_cache: AnswerCache[tuple[bytes, str | None]]  # the search API's answers: body, next cursor
    # Requests that may hold a database connection at once: fewer than the pool's connections, so that
    # a handler never waits for one in a worker thread (the rest wait here, on the event loop). Lookups
    # have connections of their own.
    session_slots: anyio.Semaphore = field(
        default_factory=lambda: anyio.Semaphore(MAX_CONNECTIONS - RESERVED_CONNECTIONS)
    )


def get_registry(request: Request) -> Registry:
    return request.app.state.registry


RegistryDep = Annotated[Registry, Depends(get_registry)]


@asynccontextmanager
async def _transaction(registry: Registry, *, write: bool) -> AsyncIterator[Session]:
    """A request's transaction, entered once a session slot is free.

    A request holds its connection from its first query (in the handler's worker thread) until its
    transaction ends, after the handler returns, in another worker thread. Were more requests in flight
    than connections, the worker threads could all be waiting for a connection while the requests holding
    the connections wait for a thread: the slots keep the surplus waiting on the event loop instead.
    """
    async with registry.session_slots:
        transaction = registry.db.transaction(write=write)
        session = transaction.__enter__()  # touches no connection yet
        try:
            yield session
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(transaction.__exit__, type(exc), exc, exc.__traceback__)
            raise
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(transaction.__exit__, None, None, None)


async def in_transaction(registry: Registry, work: Callable[[Session], T], *, write: bool = True) -> T:
    """``work(session)`` in a short transaction of its own, in a worker thread, once a session slot is
    free: for routes that must not hold a session for their whole duration (uploads, long polls)."""

    def run() -> T:
        with registry.db.transaction(write=write) as session:
            return work(session)

    async with registry.session_slots:
        return await anyio.to_thread.run_sync(run)


async def get_read_session(registry: RegistryDep) -> AsyncIterator[Session]:
    async with _transaction(registry, write=False) as session:
        yield session


async def get_write_session(registry: RegistryDep) -> AsyncIterator[Session]:
    """One write transaction per request: committed when the handler returns, rolled back on error."""
    async with _transaction(registry, write=True) as session:
        yield session


ReadSession = Annotated[Session, Depends(get_read_session, scope="function")]
WriteSession = Annotated[Session, Depends(get_write_session, scope="function")]


async def caller(request: Request) -> Principal:
    """Who is calling: the token's principal, the anonymous caller (no token: public repositories only,
    or everything with ``LOREG_ANONYMOUS_READ``), or everyone's admin with ``LOREG_AUTH=off``. What the
    caller may do is decided by the services, with the repository in hand.

    The token is checked by a lookup, on the event loop; its last-used time is written separately, at
    most once a minute per token.
    """
    registry = get_registry(request)
    settings = registry.settings
    if settings.auth == "off":
        principal = ANONYMOUS_ADMIN
    elif (header := request.headers.get("authorization")) is None:
        principal = OPEN_READER if settings.anonymous_read else ANONYMOUS_READER
    else:
        principal = await tokens.authenticate(registry.lookups, header)
        if principal.stale_last_use:
            async with registry.session_slots:
                await anyio.to_thread.run_sync(record_use, registry.db, principal)
    request.state.principal = principal
    return principal


def record_use(db: Database, principal: Principal) -> None:
    """Write the token's last-used time, in a transaction of its own."""
    with db.transaction(write=True) as session:
        tokens.record_use(session, principal)


Caller = Annotated[Principal, Depends(caller)]
