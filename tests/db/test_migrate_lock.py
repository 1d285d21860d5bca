"""Replicas starting at once migrate one after another: each ``migrate.upgrade`` (what ``lorareg serve``
runs first) holds the database's migration lock, so all succeed and the schema reaches head once."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from registry.db import migrate
from registry.db.models import Base
from tests.db.test_migrations import tables
from tests.service_checks import fresh_postgres_database

REPLICAS = 4


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own: a new SQLite file, or a scratch PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'race' / 'lorareg.db'}"
        return
    with fresh_postgres_database(f"mig_race_{uuid.uuid4().hex[:10]}") as url:
        yield url


def _replica(url: str, start: multiprocessing.synchronize.Barrier, errors: multiprocessing.Queue) -> None:
    start.wait(timeout=60)
    try:
        migrate.upgrade(url)
    except Exception as exc:
        errors.put(f"{type(exc).__name__}: {exc}")
        raise


def test_replicas_migrating_at_once_all_succeed(fresh_database: str) -> None:
    context = multiprocessing.get_context("spawn")
    start, errors = context.Barrier(REPLICAS), context.Queue()
    replicas = [
        context.Process(target=_replica, args=(fresh_database, start, errors)) for _ in range(REPLICAS)
    ]
    for replica in replicas:
        replica.start()
    for replica in replicas:
        replica.join(timeout=120)

    failures = [errors.get() for _ in range(errors.qsize())] if not errors.empty() else []
    assert [r.exitcode for r in replicas] == [0] * REPLICAS, failures
    assert migrate.current_revision(fresh_database) == migrate.head_revision(fresh_database)
    engine = create_engine(fresh_database)
    try:
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT count(*) FROM alembic_version")) == 1
    finally:
        engine.dispose()
    assert tables(fresh_database) == set(Base.metadata.tables)


def test_the_lock_is_exclusive(fresh_database: str) -> None:
    migrate.upgrade(fresh_database)  # the PostgreSQL lock needs the database; SQLite, its directory
    context = multiprocessing.get_context("spawn")
    trying, acquired = context.Event(), context.Event()
    with migrate.migration_lock(fresh_database):
        other = context.Process(target=_take_lock, args=(fresh_database, trying, acquired))
        other.start()
        assert trying.wait(timeout=60)
        assert not acquired.wait(timeout=1.0)  # it waits while this process holds the lock
    assert acquired.wait(timeout=30)  # and takes it once released
    other.join(timeout=30)
    assert other.exitcode == 0


def _take_lock(
    url: str, trying: multiprocessing.synchronize.Event, acquired: multiprocessing.synchronize.Event
) -> None:
    trying.set()
    with migrate.migration_lock(url):
        acquired.set()
