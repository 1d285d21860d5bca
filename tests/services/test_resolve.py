"""Resolving a reference: one statement on SQLite and PostgreSQL, whatever kind of reference, and no
transaction around it (a lookup: inline on SQLite, on psycopg's asyncio driver on PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from registry.db.lookups import Lookups
from registry.errors import BaseMismatch, Gone, InvalidInput, NotFound
from registry.refs import RepoRef
from registry.services import versions
from registry.services.yank import yank
from tests.conftest import TinyBase
from tests.services.conftest import LocalRegistry, Pushed

OTHER_BASE = "ab" * 32


@pytest.fixture
def lookups(registry: LocalRegistry) -> Lookups:
    return Lookups.open(registry.url)


@contextmanager
def counted_statements(lookups: Lookups) -> Iterator[list[str]]:
    """The statements lookups send inside the block (BEGIN included, where SQLAlchemy sends it)."""
    statements: list[str] = []

    def record(_conn, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    event.listen(lookups.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(lookups.engine, "before_cursor_execute", record)


@pytest.fixture
def pushed(registry: LocalRegistry, tiny_base: TinyBase, adapter_factory: Callable) -> list[Pushed]:
    return [registry.push("acme/bot", adapter_factory(seed=s), tiny_base) for s in (1, 2)]


def resolve(lookups: Lookups, ref: str, base_sha: str | None = None) -> versions.Resolved:
    """Resolve as the API does, in a lookup; each call runs its own event loop, so it closes its
    connections before that loop ends."""

    async def look_up() -> versions.Resolved:
        try:
            return await lookups.run(
                lambda connection: versions.resolve(connection, RepoRef.parse(ref), base_sha=base_sha)
            )
        finally:
            await lookups.close()

    return asyncio.run(look_up())


@pytest.mark.parametrize("spelling", ["acme/bot", "acme/bot:latest", "acme/bot#2", "digest", "prefix"])
def test_every_kind_of_reference_resolves_in_one_query(
    lookups: Lookups, pushed: list[Pushed], tiny_base: TinyBase, spelling: str
) -> None:
    second = pushed[1]
    ref = {"digest": f"acme/bot@sha256:{second.digest}", "prefix": f"acme/bot@{second.digest[:12]}"}.get(
        spelling, spelling
    )
    with counted_statements(lookups) as statements:
        resolved = resolve(lookups, ref, base_sha=tiny_base.content_digest)
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT"), statements
    assert (resolved.repo, resolved.number, resolved.digest) == ("acme/bot", 2, second.digest)
    assert {f["path"]: f["digest"] for f in resolved.files} == second.files
    assert resolved.base_content_digest == tiny_base.content_digest
    assert resolved.config["r"] == 8


def test_a_base_mismatch_names_both_shas(lookups: Lookups, pushed: list[Pushed], tiny_base) -> None:
    with counted_statements(lookups) as statements, pytest.raises(BaseMismatch) as refused:
        resolve(lookups, "acme/bot:latest", base_sha=OTHER_BASE)
    assert len(statements) == 1, statements
    assert OTHER_BASE in refused.value.message and tiny_base.content_digest in refused.value.message


def test_failures_say_what_is_missing(lookups: Lookups, pushed: list[Pushed]) -> None:
    with pytest.raises(NotFound, match="repository acme/nope does not exist"):
        resolve(lookups, "acme/nope:latest")
    with pytest.raises(NotFound, match="no tag acme/bot:prod"):
        resolve(lookups, "acme/bot:prod")
    with pytest.raises(NotFound, match="no version acme/bot#9"):
        resolve(lookups, "acme/bot#9")
    with pytest.raises(InvalidInput, match="sha256"):
        resolve(lookups, "acme/bot@sha256:xyz")


def test_yanked_versions_answer_only_to_their_digest(
    registry: LocalRegistry, lookups: Lookups, pushed: list[Pushed]
) -> None:
    with registry.db.transaction() as session:
        yank(session, RepoRef.parse("acme/bot#1"), reason="leaks PII", actor="test")
    with pytest.raises(Gone, match="leaks PII"):
        resolve(lookups, "acme/bot#1")
    assert resolve(lookups, f"acme/bot@sha256:{pushed[0].digest}").yanked
