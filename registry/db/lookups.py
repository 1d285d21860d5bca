"""Lookups: reads of one statement each, run on the event loop itself rather than in a worker thread.

Lookups are the hot path of a registry that serves inference clusters (resolving references, checking
tokens), and handing one to a worker thread costs more than the query. So:

- on SQLite a lookup runs inline, on a small pool of its own: a local indexed read of well under a
  millisecond, which in WAL mode never waits for a writer;
- on PostgreSQL it runs on psycopg's asyncio driver: the event loop serves other requests during the
  round trip instead of blocking on it.

Neither opens a transaction (no BEGIN and COMMIT around the statement): one statement is atomic on its
own. Anything that needs one snapshot across statements uses ``Database.transaction``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from registry.db.session import SQLITE_BEGIN, make_engine

T = TypeVar("T")
# Connections for lookups, per process. SQLite's inline lookups run one at a time per event loop; an
# asyncio driver's wait for a free connection does not block the loop, so a few connections suffice.
LOOKUP_CONNECTIONS = 8


class Lookups:
    """Runs ``work(connection)`` for one-statement reads, without a thread (see the module's docstring)."""

    def __init__(self, engine: Engine, async_engine: AsyncEngine | None) -> None:
        self._engine = engine
        self._async_engine = async_engine

    @classmethod
    def open(cls, url: str) -> Lookups:
        """Lookups on the database at ``url``; they connect on first use."""
        if make_url(url).get_backend_name() == "sqlite":
            engine = make_engine(url, pool_size=1, max_overflow=LOOKUP_CONNECTIONS - 1)
            return cls(engine.execution_options(**{SQLITE_BEGIN: None}), None)
        async_engine = create_async_engine(
            url, isolation_level="AUTOCOMMIT", pool_size=LOOKUP_CONNECTIONS, max_overflow=0, pool_recycle=1800
        )
        return cls(async_engine.sync_engine, async_engine)

    @property
    def engine(self) -> Engine:
        """The engine lookups' statements go through (to listen to its events)."""
        return self._engine

    async def run(self, work: Callable[[Connection], T]) -> T:
        """``work(connection)``: one statement (more only on error paths), with no transaction."""
        if self._async_engine is None:
            with self._engine.connect() as connection:
                return work(connection)
        async with self._async_engine.connect() as connection:
            return await connection.run_sync(work)

    async def close(self) -> None:
        """Close the connections (from the event loop that used them)."""
        if self._async_engine is None:
            self._engine.dispose()
        else:
            await self._async_engine.dispose()
