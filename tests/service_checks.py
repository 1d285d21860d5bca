"""Is a service the tests need up? Skip on a laptop without it; fail under ``CI=true``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

IN_CI = os.environ.get("CI") == "true"
# The server every PostgreSQL test database is made on (through its ``test`` database).
POSTGRES_URL = os.environ.get("LOREG_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# Under ``pytest -n N`` each worker ("gw0", "gw1", …) gets databases of its own: names take its suffix,
# Redis database numbers move down by REDIS_DATABASES_PER_WORKER per worker.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
REDIS_DATABASES_PER_WORKER = 3


def redis_url(database: int) -> str:
    """Redis database ``database`` (one of 11, 12, 13) of this test process."""
    index = int(WORKER.removeprefix("gw") or 0)
    return f"redis://127.0.0.1:6379/{database - REDIS_DATABASES_PER_WORKER * index}"


def require(service: str, reachable: bool, how: str) -> None:
    """Skip (on a laptop) or fail (in CI) when a service the test needs is down."""
    if reachable:
        return
    message = f"{service} is not reachable; {how}"
    if IN_CI:
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(message)


def postgres_reachable() -> bool:
    try:
        engine = create_engine(POSTGRES_URL)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@contextmanager
def fresh_postgres_database(name: str) -> Iterator[str]:
    """A new, empty PostgreSQL database of its own (dropped afterwards; ``name`` takes the xdist worker's
    suffix); yields its URL."""
    name = f"{name}_{WORKER}" if WORKER else name
    require(
        "PostgreSQL at 127.0.0.1:5432",
        postgres_reachable(),
        "start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    )
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        connection.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()
