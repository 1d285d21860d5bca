"""Engines and sessions.

On SQLite, connections run in WAL mode with a busy timeout, and *write* sessions open their
transaction with ``BEGIN IMMEDIATE`` so that two writers queue instead of failing to upgrade a read
lock. PostgreSQL needs none of this: writers serialize on the row locks the queries take.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from registry.db import generations

SQLITE_BEGIN = "lorareg_sqlite_begin"  # execution option: the statement that begins a transaction
POOL_SIZE = 10
MAX_OVERFLOW = 20
MAX_CONNECTIONS = POOL_SIZE + MAX_OVERFLOW  # per process


def make_engine(url: str, *, pool_size: int = POOL_SIZE, max_overflow: int = MAX_OVERFLOW) -> Engine:
    """Create the engine for ``url`` with the settings the registry relies on."""
    pool = {"pool_size": pool_size, "max_overflow": max_overflow}
    if make_url(url).get_backend_name() != "sqlite":
        # No pre-ping (a round trip per checkout): the first disconnect error invalidates
        # the whole pool, so a database restart fails the requests in flight, not the ones after them.
        return create_engine(url, pool_recycle=1800, **pool)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60}, **pool)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # let the "begin" hook below issue BEGIN
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:  # type: ignore[no-untyped-def]
        if statement := connection.get_execution_options().get(SQLITE_BEGIN, "BEGIN"):
            connection.exec_driver_sql(statement)

    return engine


@dataclass(frozen=True)
class Database:
    """The engine plus the session factories: read sessions and write sessions."""

    engine: Engine
    reader: sessionmaker[Session]
    writer: sessionmaker[Session]

    @classmethod
    def connect(cls, url: str) -> Database:
        engine = make_engine(url)
        write_engine = engine.execution_options(**{SQLITE_BEGIN: "BEGIN IMMEDIATE"})
        writer = sessionmaker(write_engine, expire_on_commit=False)
        generations.install(writer)
        return cls(engine=engine, reader=sessionmaker(engine, expire_on_commit=False), writer=writer)

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[Session]:
        """One unit of work: committed when the block succeeds, rolled back when it raises."""
        factory = self.writer if write else self.reader
        with factory() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
