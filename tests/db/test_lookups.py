"""Lookups on PostgreSQL survive a lost connection: the lookup that finds it dead is a retryable
``Unavailable`` (a 503 with ``Retry-After``), and the next one reconnects, on both the fast path
(``rows``, straight on psycopg) and the general one (``run``, through SQLAlchemy)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from registry.config import Settings
from registry.db import migrate, queries
from registry.db.lookups import Lookups
from registry.errors import Unavailable
from tests.conftest import start_server
from tests.service_checks import fresh_postgres_database

UNKNOWN_SECRET_HASH = "0" * 64


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database(f"lorareg_lookups_{uuid.uuid4().hex[:12]}") as url:
        migrate.upgrade(url)
        yield url


def terminate_other_backends(url: str) -> int:
    """Kill every other session on the database, as a restart or a failover would; how many there were."""
    parsed = make_url(url)
    address = {"host": parsed.host, "port": parsed.port, "user": parsed.username, "dbname": parsed.database}
    with psycopg.connect(**address) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    return killed[0] if killed else 0


async def token_rows(lookups: Lookups) -> list:
    return list(await lookups.rows(*queries.token_query(UNKNOWN_SECRET_HASH)))


async def one(lookups: Lookups) -> int:
    return await lookups.run(lambda connection: connection.exec_driver_sql("SELECT 1").scalar_one())


def test_a_lost_connection_fails_one_lookup_and_the_next_reconnects(postgres_url: str) -> None:
    async def scenario() -> None:
        lookups = Lookups.open(postgres_url)
        try:
            assert await token_rows(lookups) == []
            assert terminate_other_backends(postgres_url) == 1  # the pool's one connection
            with pytest.raises(Unavailable, match="lost the connection to the database"):
                await token_rows(lookups)
            assert await token_rows(lookups) == []  # a new connection, not the dead one again

            assert await one(lookups) == 1
            assert terminate_other_backends(postgres_url) == 1
            with pytest.raises(Unavailable, match="lost the connection to the database"):
                await one(lookups)
            assert await one(lookups) == 1
        finally:
            await lookups.close()

    asyncio.run(scenario())


def test_a_server_answers_503_once_then_resolves_again(postgres_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, database_url=postgres_url)
    for url in start_server(settings):
        with httpx.Client(base_url=url, timeout=30) as http:
            missing = "/api/v1/repos/acme/nothing/resolve/latest"
            assert http.get(missing).status_code == 404  # both lookups ran: the version's, then the reason's
            assert terminate_other_backends(postgres_url) >= 1
            lost = http.get(missing)
            assert lost.status_code == 503 and lost.headers["retry-after"] == "1", lost.text
            assert lost.json()["error"]["code"] == "unavailable"
            again = http.get(missing)
            assert again.status_code == 404 and "acme/nothing" in again.json()["error"]["message"]
