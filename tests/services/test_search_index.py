"""The search documents and their full-text index: backfilled by migration 0010, kept in step with every
change (SQLite's FTS5 table checked against its content), and every kind of search answered through
indexes (the plans, on SQLite and PostgreSQL)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, select, text

from bench.search import QUERIES, plan_of, populate
from registry.db import migrate
from registry.db.models import SEARCH_FTS_TABLE, SearchDocument
from registry.db.session import Database
from registry.principal import REGISTRY, Principal
from registry.refs import RepoName, RepoRef
from registry.services import repos, search, tags, yank
from tests.db.test_migrations import empty_database
from tests.model_cards import SQL_ADAPTER_README
from tests.services.conftest import LocalRegistry

__all__ = ["empty_database"]
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def found(db: Database, q: str) -> list[str]:
    with db.transaction(write=False) as session:
        page = search.search(session, REGISTRY, search.SearchQuery(q=q, sort="name"))
        return [hit.repo for hit in page.items]


def test_the_migration_backfills_a_document_per_repository(empty_database: str) -> None:
    migrate.upgrade(empty_database, "0009")
    engine = create_engine(empty_database)
    rows = {
        "repositories": [
            {"id": 1, "namespace": "acme", "name": "sql-bot", "description": "questions to queries"},
            {"id": 2, "namespace": "acme", "name": "empty", "description": None},
        ],
        "base_models": [{"id": 1, "name": "tiny", "content_digest": "2" * 64, "manifest": "{}"}],
        "versions": [
            {
                "id": n,
                "repository_id": 1,
                "number": n,
                "digest": str(n) * 64,
                "manifest": "{}",
                "config": "{}",
            }
            for n in (1, 2)
        ],
        "tags": [{"repository_id": 1, "name": "latest", "version_id": 1, "updated_at": NOW}],
        "version_cards": [
            {
                "version_id": 1,
                "card_data": '{"license": "Apache-2.0", "datasets": ["spider"]}',
                "markdown": "# Text to SQL",
                "generated": False,
                "warnings": "[]",
            }
        ],
    }
    extra = {"repositories": {"created_at": NOW}, "versions": {"base_id": 1, "base_sha": "2" * 64}}
    extra["versions"] |= {"provenance": "{}", "created_at": NOW}
    extra["base_models"] = {"created_at": NOW}
    with engine.begin() as connection:
        for table, values in rows.items():
            for row in values:
                row = {**row, **extra.get(table, {})}
                columns = ", ".join(row)
                connection.execute(
                    text(f"INSERT INTO {table} ({columns}) VALUES ({', '.join(f':{c}' for c in row)})"), row
                )
    migrate.upgrade(empty_database)
    with engine.connect() as connection:
        documents = connection.execute(
            select(
                SearchDocument.repository_id, SearchDocument.latest_version_id, SearchDocument.license
            ).order_by(SearchDocument.repository_id)
        ).all()
    engine.dispose()
    assert documents == [(1, 1, "apache-2.0"), (2, None, None)]  # #1 is what latest points at, not #2
    db = Database.connect(empty_database)
    try:
        for q in ("spider", "sql", "queries", "acme empty"):
            assert found(db, q) == (["acme/empty"] if q == "acme empty" else ["acme/sql-bot"])
    finally:
        db.dispose()
    migrate.downgrade(empty_database, "0009")
    assert not any(
        name.startswith(("search_documents", SEARCH_FTS_TABLE)) for name in _tables(empty_database)
    )


def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_documents_and_their_index_follow_every_change(
    registry: LocalRegistry, tiny_base, adapter_factory, tmp_path: Path
) -> None:
    card = tmp_path / "card"
    card.mkdir()
    for source in adapter_factory(seed=5).iterdir():
        (card / source.name).write_bytes(source.read_bytes())
    (card / "README.md").write_text(SQL_ADAPTER_README)
    registry.push("acme/sql-bot", card, tiny_base)
    registry.push("acme/sql-bot", adapter_factory(seed=6), tiny_base)  # #2, latest: PEFT's own README
    registry.push("acme/other", adapter_factory(seed=7), tiny_base)
    repo = RepoName.parse("acme/sql-bot")
    assert found(registry.db, "spider") == []  # the card of #1, no longer the latest
    with registry.db.transaction() as session:
        tags.move_tag(
            session, repo, "latest", RepoRef.parse("acme/sql-bot#1").ref, expected=True, principal=REGISTRY
        )
    assert found(registry.db, "spider") == ["acme/sql-bot"]
    with registry.db.transaction() as session:
        yank.yank(session, RepoRef.parse("acme/sql-bot#1"), reason="broken", principal=REGISTRY)
    assert found(registry.db, "spider") == []  # latest moved to #2
    with registry.db.transaction() as session:
        repos.describe(session, repo, "questions into queries", REGISTRY)
    assert found(registry.db, "queries") == ["acme/sql-bot"]
    with registry.db.transaction() as session:
        repos.describe(session, repo, "something else", REGISTRY)
        repos.delete_repository(session, RepoName.parse("acme/other"), REGISTRY)
    assert found(registry.db, "queries") == [] and found(registry.db, "else") == ["acme/sql-bot"]
    assert found(registry.db, "acme") == ["acme/sql-bot"]
    with registry.db.engine.connect() as connection:
        assert (
            connection.scalar(select(SearchDocument.repository_id).where(SearchDocument.repository_id == 2))
            is None
        )
        if connection.dialect.name == "sqlite":  # the external-content FTS5 table matches its content
            connection.exec_driver_sql(
                f"INSERT INTO {SEARCH_FTS_TABLE} ({SEARCH_FTS_TABLE}) VALUES ('integrity-check')"
            )


READER = Principal(name="reader", scope="read", namespaces=("team-00", "team-01"))


def reads_a_whole_table(line: str, *, sqlite: bool) -> bool:
    """A plan's line that reads a table row by row: SQLite's ``SCAN t`` (not ``SCAN t USING INDEX …``, a
    walk in index order, nor a virtual table's or a subquery's), PostgreSQL's ``Seq Scan``."""
    if not sqlite:
        return "Seq Scan" in line
    words = line.split()
    return (
        words[:1] == ["SCAN"]
        and words[1] != "CONSTANT"
        and not words[1].startswith("(")
        and (len(words) == 2 or words[2] not in ("USING", "VIRTUAL"))
    )


@pytest.mark.parametrize("kind", sorted(QUERIES))
def test_every_kind_of_search_is_answered_through_indexes(empty_database: str, kind: str) -> None:
    """The benchmark's searches on a small copy of its registry: no table is read whole (on PostgreSQL, with
    sequential scans priced out, as its planner would rank them on a large registry)."""
    populate(empty_database, repos=300)
    db = Database.connect(empty_database)
    try:
        with db.transaction(write=False) as session:
            sqlite = session.get_bind().dialect.name == "sqlite"
            if not sqlite:
                session.execute(text("SET LOCAL enable_seqscan = off"))
            plan = plan_of(session, READER, QUERIES[kind](random.Random(0)))
    finally:
        db.dispose()
    scans = [line for line in plan if reads_a_whole_table(line, sqlite=sqlite)]
    assert scans == [], "\n".join(plan)
