"""Resolving a reference: one statement on SQLite and PostgreSQL, whatever kind of reference, and no
transaction around it (a lookup: inline on SQLite, on psycopg's asyncio driver on PostgreSQL)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from psycopg import pq
from sqlalchemy import event

from registry.db.lookups import Lookups
from registry.errors import BaseMismatch, Gone, InvalidInput, NotFound
from registry.principal import REGISTRY
from registry.refs import RepoRef
from registry.services import versions
from registry.services.yank import yank
from tests.conftest import TinyBase
from tests.services.conftest import LocalRegistry, Pushed

OTHER_BASE = "ab" * 32
# A message in libpq's protocol trace: direction, length, type, then its fields (SQL may span lines).
TRACED_MESSAGE = re.compile(r"^([FB])\t\d+\t(\w+)\t?(.*?)(?=^[FB]\t\d+\t|\Z)", re.MULTILINE | re.DOTALL)
QUOTED = re.compile(r'"((?:[^"]|"")*)"')


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for the test, as a server has: lookups' connections belong to the loop."""
    with asyncio.Runner() as runner:
        yield runner


@pytest.fixture
def lookups(registry: LocalRegistry, runner: asyncio.Runner) -> Iterator[Lookups]:
    lookups = Lookups.open(registry.url)
    yield lookups
    runner.run(lookups.close())


class SentStatements:
    """The statements lookups send to the database (BEGIN and COMMIT included, were any sent).

    On SQLite, as SQLAlchemy hands them to the driver. On PostgreSQL, as libpq puts them on the wire (its
    protocol trace has one Query or Execute message per statement), since lookups there skip SQLAlchemy's
    execution."""

    def __init__(self, lookups: Lookups, trace: Path) -> None:
        self._recorded: list[str] = []
        self._trace_path = trace
        self._traced = lookups.engine.dialect.name == "postgresql"
        if self._traced:
            self._trace = trace.open("a")
            event.listen(lookups.engine, "connect", self._trace_connection)
        else:
            event.listen(lookups.engine, "before_cursor_execute", self._record)

    def _record(self, _conn, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        self._recorded.append(statement)

    def _trace_connection(self, dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        pgconn = dbapi_connection.driver_connection.pgconn
        pgconn.trace(self._trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    def _from_trace(self) -> list[str]:
        """The SQL of each Query, and of each Execute (its Parse's), that the client sent."""
        statements, parsed = [], ""
        for direction, message, text in TRACED_MESSAGE.findall(self._trace_path.read_text()):
            if direction != "F":
                continue
            quoted = QUOTED.findall(text)
            if message == "Parse":  # the statement's name, then its SQL
                parsed = quoted[1]
            elif message in ("Query", "Execute"):
                statements.append(quoted[0] if message == "Query" else parsed)
        return statements

    @contextmanager
    def counted(self) -> Iterator[list[str]]:
        """The statements sent inside the block."""
        before = len(self._statements())
        found: list[str] = []
        yield found
        found.extend(self._statements()[before:])

    def _statements(self) -> list[str]:
        return self._from_trace() if self._traced else self._recorded


@pytest.fixture
def sent(lookups: Lookups, tmp_path: Path) -> SentStatements:
    # The trace file stays open as long as this object: libpq writes to it until the lookups close.
    return SentStatements(lookups, tmp_path / "libpq.trace")


@pytest.fixture
def pushed(registry: LocalRegistry, tiny_base: TinyBase, adapter_factory: Callable) -> list[Pushed]:
    return [registry.push("acme/bot", adapter_factory(seed=s), tiny_base) for s in (1, 2)]


def resolve(
    runner: asyncio.Runner, lookups: Lookups, ref: str, base_sha: str | None = None
) -> versions.Resolved:
    return runner.run(versions.resolve(lookups, RepoRef.parse(ref), REGISTRY, base_sha=base_sha))


@pytest.mark.parametrize("spelling", ["acme/bot", "acme/bot:latest", "acme/bot#2", "digest", "prefix"])
def test_every_kind_of_reference_resolves_in_one_query(
    runner: asyncio.Runner,
    lookups: Lookups,
    sent: SentStatements,
    pushed: list[Pushed],
    tiny_base: TinyBase,
    spelling: str,
) -> None:
    second = pushed[1]
    ref = {"digest": f"acme/bot@sha256:{second.digest}", "prefix": f"acme/bot@{second.digest[:12]}"}.get(
        spelling, spelling
    )
    with sent.counted() as statements:
        resolved = resolve(runner, lookups, ref, base_sha=tiny_base.content_digest)
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT"), statements
    assert (resolved.repo, resolved.number, resolved.digest) == ("acme/bot", 2, second.digest)
    assert {f["path"]: f["digest"] for f in resolved.files} == second.files
    assert resolved.base_content_digest == tiny_base.content_digest
    assert resolved.config["r"] == 8


def test_a_base_mismatch_names_both_shas(
    runner: asyncio.Runner, lookups: Lookups, sent: SentStatements, pushed: list[Pushed], tiny_base
) -> None:
    with sent.counted() as statements, pytest.raises(BaseMismatch) as refused:
        resolve(runner, lookups, "acme/bot:latest", base_sha=OTHER_BASE)
    assert len(statements) == 1, statements
    assert OTHER_BASE in refused.value.message and tiny_base.content_digest in refused.value.message


def test_failures_say_what_is_missing(runner: asyncio.Runner, lookups: Lookups, pushed: list[Pushed]) -> None:
    with pytest.raises(NotFound, match="repository acme/nope does not exist"):
        resolve(runner, lookups, "acme/nope:latest")
    with pytest.raises(NotFound, match="no tag acme/bot:prod"):
        resolve(runner, lookups, "acme/bot:prod")
    with pytest.raises(NotFound, match="no version acme/bot#9"):
        resolve(runner, lookups, "acme/bot#9")
    with pytest.raises(InvalidInput, match="sha256"):
        resolve(runner, lookups, "acme/bot@sha256:xyz")


def test_yanked_versions_answer_only_to_their_digest(
    registry: LocalRegistry,
    runner: asyncio.Runner,
    lookups: Lookups,
    pushed: list[Pushed],
) -> None:
    with registry.db.transaction() as session:
        yank(session, RepoRef.parse("acme/bot#1"), reason="leaks PII", principal=REGISTRY)
    with pytest.raises(Gone, match="leaks PII"):
        resolve(runner, lookups, "acme/bot#1")
    assert resolve(runner, lookups, f"acme/bot@sha256:{pushed[0].digest}").yanked
