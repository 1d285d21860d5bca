"""Migrations: up, down, up again on SQLite and PostgreSQL; the models and the migrations never drift."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text

from registry.db import migrate
from registry.db.models import Base, Version, described_by_models
from tests.service_checks import fresh_postgres_database

MIGRATION_DB = "lorareg_migrations"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of its own (never the one the live-server tests use)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    with fresh_postgres_database(MIGRATION_DB) as url:
        yield url


def tables(url: str) -> set[str]:
    """The tables the models describe (not SQLite's full-text index tables)."""
    engine = create_engine(url)
    try:
        found = set(inspect(engine).get_table_names()) - {"alembic_version"}
        return {name for name in found if described_by_models(None, name, "table", True, None)}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    assert tables(empty_database) == set(Base.metadata.tables)
    assert migrate.current_revision(empty_database) == migrate.head_revision(empty_database)
    migrate.downgrade(empty_database, "base")
    assert tables(empty_database) == set()
    migrate.upgrade(empty_database)
    assert tables(empty_database) == set(Base.metadata.tables)


def test_models_and_migrations_do_not_drift(empty_database: str) -> None:
    migrate.upgrade(empty_database)
    engine = create_engine(empty_database)
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": described_by_models}
        )
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == [], f"the models differ from the migrations; add a migration: {diff}"


def test_0006_copies_each_versions_files_onto_its_row(empty_database: str) -> None:
    """Versions pushed before 0006 resolve after it: their files are backfilled from version_files."""
    migrate.upgrade(empty_database, "0005")
    engine = create_engine(empty_database)
    digest, blob_a, blob_b = "1" * 64, "a" * 64, "b" * 64
    with engine.begin() as connection:
        connection.execute(
            text("INSERT INTO repositories (id, namespace, name, created_at) VALUES (1, 'acme', 'bot', :t)"),
            {"t": NOW},
        )
        connection.execute(
            text(
                "INSERT INTO base_models (id, name, content_digest, manifest, created_at) "
                "VALUES (1, 'b', :d, '{}', :t)"
            ),
            {"d": "2" * 64, "t": NOW},
        )
        for blob in (blob_a, blob_b):
            connection.execute(
                text("INSERT INTO blobs (digest, size, created_at) VALUES (:d, 5, :t)"), {"d": blob, "t": NOW}
            )
        connection.execute(
            text(
                "INSERT INTO versions (id, repository_id, number, digest, manifest, config, base_id, "
                "base_sha, provenance, created_at) VALUES (1, 1, 1, :d, '{}', '{}', 1, :b, '{}', :t)"
            ),
            {"d": digest, "b": "2" * 64, "t": NOW},
        )
        for path, blob, size in (("b.json", blob_b, 7), ("a.safetensors", blob_a, 5)):
            connection.execute(
                text(
                    "INSERT INTO version_files (version_id, path, blob_digest, size) VALUES (1, :p, :d, :s)"
                ),
                {"p": path, "d": blob, "s": size},
            )
    migrate.upgrade(empty_database)
    with engine.connect() as connection:
        listed = connection.execute(select(Version.file_list).where(Version.id == 1)).scalar_one()
    engine.dispose()
    assert listed == [
        {"path": "a.safetensors", "digest": blob_a, "size": 5},
        {"path": "b.json", "digest": blob_b, "size": 7},
    ]
