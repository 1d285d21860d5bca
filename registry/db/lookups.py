"""Lookups: reads of one statement each, run on the event loop itself rather than in a worker thread.

Lookups are the hot path of a registry that serves inference clusters (resolving references, checking
tokens), and handing one to a worker thread costs more than the query. So:

- on SQLite a lookup runs inline, on a small pool of its own: a local indexed read of well under a
  millisecond, which in WAL mode never waits for a writer;
- on PostgreSQL it runs on psycopg's asyncio driver: the event loop serves other requests during the
  round trip instead of blocking on it. A prebuilt SELECT (``rows``) is compiled once and sent on
  psycopg's own connection, skipping SQLAlchemy's per-execution work: about a tenth of a resolve's CPU.

Neither opens a transaction (no BEGIN and COMMIT around the statement): one statement is atomic on its
own. Anything that needs one snapshot across statements uses ``Database.transaction``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import anyio
import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, Engine, Select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from registry.db.session import SQLITE_BEGIN, make_engine
from registry.errors import Unavailable

T = TypeVar("T")
# Connections for lookups, per process. SQLite's inline lookups run one at a time per event loop; an
# asyncio driver's wait for a free connection does not block the loop, so a few connections suffice.
LOOKUP_CONNECTIONS = 8


class Lookups:
    """Runs ``work(connection)`` for one-statement reads, without a thread (see the module's docstring)."""

    def __init__(self, engine: Engine, async_engine: AsyncEngine | None) -> None:
        self._engine = engine
        self._async_engine = async_engine
        # First come, first served: the pool's own queue lets a newcomer take a connection just returned
        # ahead of those waiting for one, which starved some lookups for seconds under load.
        self._turns = anyio.Semaphore(LOOKUP_CONNECTIONS)
        self._compiled: dict[Select[Any], tuple[str, dict[str, Any]]] = {}

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
        async with self._turns, self._async_engine.connect() as connection:
            try:
                return await connection.run_sync(work)
            except DBAPIError as error:
                if error.connection_invalidated:  # SQLAlchemy dropped the connection from the pool
                    raise _lost(error) from error
                raise

    async def rows(self, statement: Select[Any], parameters: Mapping[str, Any]) -> Sequence[Any]:
        """The rows of one prebuilt SELECT (built once and reused, as the ``functools.cache`` builders in
        ``registry.db.queries`` do), each with its columns as attributes."""
        if self._async_engine is None:
            with self._engine.connect() as connection:
                return connection.execute(statement, parameters).all()
        sql, defaults = self._compile(statement)
        async with self._turns, self._async_engine.connect() as connection:
            driver_connection = (await connection.get_raw_connection()).driver_connection
            try:
                async with driver_connection.cursor(row_factory=namedtuple_row) as cursor:
                    await cursor.execute(sql, {**defaults, **parameters})
                    return await cursor.fetchall()
            except psycopg.OperationalError as error:
                if driver_connection.broken:  # not through SQLAlchemy: drop it from the pool here
                    await connection.invalidate(error)
                    raise _lost(error) from error
                raise

    def _compile(self, statement: Select[Any]) -> tuple[str, dict[str, Any]]:
        """The statement's SQL for the driver, with the values of the parameters it binds itself."""
        if (found := self._compiled.get(statement)) is None:
            assert self._async_engine is not None
            compiled = statement.compile(dialect=self._async_engine.dialect)
            found = self._compiled[statement] = (str(compiled), dict(compiled.params))
        return found

    async def close(self) -> None:
        """Close the connections (from the event loop that used them)."""
        if self._async_engine is None:
            self._engine.dispose()
        else:
            await self._async_engine.dispose()


def _lost(error: Exception) -> Unavailable:
    return Unavailable(f"lost the connection to the database ({error}); retry: the next lookup reconnects")
