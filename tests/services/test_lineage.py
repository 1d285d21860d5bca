"""The lineage graph of a repository, read through the service from versions pushed through the services:
parents across repositories, a parent the viewer may not read shown opaque, the newest-N bound, and a
statement count that does not grow with the repository."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from registry.errors import NotFound
from registry.principal import REGISTRY, Principal
from registry.refs import RepoName, RepoRef
from registry.services import repos
from registry.services.blobs import FileEntry, upload_blob
from registry.services.lineage import Lineage, Node, lineage
from registry.services.push import PushRequest, push_version
from registry.services.yank import yank
from tests.conftest import TinyBase
from tests.helpers import file_entries
from tests.services.conftest import MAX_SIZE, LocalRegistry

ACME_READER = Principal(name="acme-reader", scope="read", namespaces=("acme",))
LINEAGE_STATEMENTS = 4  # the repository, its newest versions, their parent links, their tags


@dataclass(frozen=True)
class Pushed:
    repo: str
    number: int
    digest: str

    @property
    def ref(self) -> str:
        return f"{self.repo}@sha256:{self.digest}"


@dataclass
class Versions:
    """Pushes versions made of one adapter's uploaded weights and a README of their own (new content)."""

    registry: LocalRegistry
    weights: list[FileEntry]  # the adapter's files but its README
    base: TinyBase

    def push(
        self,
        session: Session,
        repo: str,
        note: str,
        *,
        parents: list[Pushed] | None = None,
        tags: tuple[str, ...] = (),
        provenance: dict[str, Any] | None = None,
    ) -> Pushed:
        readme = f"# {note}\n".encode()
        digest = hashlib.sha256(readme).hexdigest()
        upload_blob(session, self.registry.store, digest, [readme], max_size=MAX_SIZE)
        request = PushRequest(
            files=[*self.weights, FileEntry("README.md", f"sha256:{digest}", len(readme))],
            base_sha=self.base.content_digest,
            message=note,
            tags=list(tags),
            parents=None if parents is None else [p.ref for p in parents],
            provenance=provenance or {},
        )
        result = push_version(
            session,
            self.registry.store,
            RepoName.parse(repo),
            request,
            principal=REGISTRY,
            max_config_size=MAX_SIZE,
        ).version
        return Pushed(repo, result.number, result.digest)

    def chain(self, repo: str, count: int, start: int = 1) -> None:
        """``count`` more versions of ``repo``, each the child of the one before (its ``latest``)."""
        with self.registry.db.transaction() as session:
            for n in range(start, start + count):
                self.push(session, repo, f"{repo} {n}")


@pytest.fixture
def versions(sqlite_registry: LocalRegistry, adapter_factory: Callable, tiny_base: TinyBase) -> Versions:
    adapter = adapter_factory(seed=1)
    weights = [
        FileEntry(
            entry["path"], sqlite_registry.upload((adapter / entry["path"]).read_bytes()), entry["size"]
        )
        for entry in file_entries(adapter)
        if entry["path"] != "README.md"
    ]
    return Versions(sqlite_registry, weights, tiny_base)


@pytest.fixture
def merged(versions: Versions) -> dict[str, Pushed]:
    """acme/bot #1 ← #2 (stable) ← #3, a merge job's output whose parents are #2, the public pub/base#1
    and the private secret/base#1; #1 is yanked."""
    with versions.registry.db.transaction() as session:
        secret = versions.push(session, "secret/base", "secret base")
        public = versions.push(session, "pub/base", "public base")
        repos.set_visibility(session, RepoName.parse("pub/base"), "public", REGISTRY)
        first = versions.push(session, "acme/bot", "first")
        second = versions.push(session, "acme/bot", "second", tags=("stable",))
        third = versions.push(
            session,
            "acme/bot",
            "merge of three",
            parents=[second, public, secret],
            provenance={"job": "j1", "kind": "merge", "params": {}},
        )
        yank(session, RepoRef.parse("acme/bot#1"), reason="bad", principal=REGISTRY)
    return {"secret": secret, "public": public, "first": first, "second": second, "third": third}


def read(registry: LocalRegistry, repo: str, principal: Principal, **options: int) -> Lineage:
    with registry.db.transaction(write=False) as session:
        return lineage(session, RepoName.parse(repo), principal, **options)


def name(node: Node) -> str:
    return f"{node.repo}#{node.number}" if node.readable else f"opaque:{node.digest}"


def edges(graph: Lineage) -> set[tuple[str, str, int]]:
    names = {node.id: name(node) for node in graph.nodes}
    return {(names[e.child_id], names[e.parent_id], e.position) for e in graph.edges}


def test_nodes_and_edges_cross_repositories_and_hide_what_the_viewer_may_not_read(
    sqlite_registry: LocalRegistry, merged: dict[str, Pushed]
) -> None:
    graph = read(sqlite_registry, "acme/bot", ACME_READER)
    secret = f"opaque:{merged['secret'].digest}"
    assert [name(node) for node in graph.nodes] == [
        "acme/bot#3",
        "acme/bot#2",
        "acme/bot#1",
        "pub/base#1",
        secret,
    ]
    assert edges(graph) == {
        ("acme/bot#3", "acme/bot#2", 0),
        ("acme/bot#3", "pub/base#1", 1),
        ("acme/bot#3", secret, 2),
        ("acme/bot#2", "acme/bot#1", 0),
    }
    third, second, first, public, opaque = graph.nodes
    assert (third.kind, third.message, third.tags, third.yanked) == (
        "merge",
        "merge of three",
        ("latest",),
        False,
    )
    assert (second.kind, second.tags, first.yanked) == (None, ("stable",), True)
    assert public.readable and public.digest == merged["public"].digest and public.tags == ("latest",)
    assert opaque == Node(
        id=opaque.id,
        repo=None,
        number=None,
        digest=merged["secret"].digest,
        created_at=None,
        yanked=False,
        tags=(),
        kind=None,
        message=None,
        readable=False,
    )
    assert "secret" not in repr(graph)  # neither the private repository's name nor its message
    assert not graph.truncated

    everything = read(sqlite_registry, "acme/bot", REGISTRY)
    assert [name(node) for node in everything.nodes][-1] == "secret/base#1"
    assert everything.nodes[-1].message == "secret base"


def test_the_repository_must_be_readable(sqlite_registry: LocalRegistry, merged: dict[str, Pushed]) -> None:
    with pytest.raises(NotFound):
        read(sqlite_registry, "secret/base", ACME_READER)


def test_only_the_newest_versions_are_read_and_links_to_older_ones_are_left_out(
    sqlite_registry: LocalRegistry, versions: Versions
) -> None:
    versions.chain("acme/long", 5)
    cut = read(sqlite_registry, "acme/long", REGISTRY, limit=3)
    assert [node.number for node in cut.nodes] == [5, 4, 3] and cut.truncated
    assert edges(cut) == {("acme/long#5", "acme/long#4", 0), ("acme/long#4", "acme/long#3", 0)}

    whole = read(sqlite_registry, "acme/long", REGISTRY, limit=5)
    assert [node.number for node in whole.nodes] == [5, 4, 3, 2, 1] and not whole.truncated
    assert len(whole.edges) == 4


@contextmanager
def statements(registry: LocalRegistry) -> Iterator[list[str]]:
    """The SQL statements sent on the registry's engine inside the block."""
    sent: list[str] = []

    def record(_conn, _cursor, statement: str, *_args) -> None:  # type: ignore[no-untyped-def]
        sent.append(statement)

    event.listen(registry.db.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(registry.db.engine, "before_cursor_execute", record)


def selects(sent: list[str]) -> list[str]:
    return [s for s in sent if s.lstrip().upper().startswith("SELECT")]


def test_the_statement_count_does_not_grow_with_the_repository(
    sqlite_registry: LocalRegistry, versions: Versions, merged: dict[str, Pushed]
) -> None:
    versions.chain("acme/bot", 7, start=4)  # 10 versions, the merge's three outside parents among them
    with statements(sqlite_registry) as small:
        assert len(read(sqlite_registry, "acme/bot", ACME_READER).nodes) == 12
    versions.chain("acme/bot", 290, start=11)  # 300
    with statements(sqlite_registry) as large:
        graph = read(sqlite_registry, "acme/bot", ACME_READER)
    assert [node.number for node in graph.nodes[:2]] == [300, 299] and graph.truncated
    assert len(graph.nodes) == 200 and len(graph.edges) == 199
    assert len(selects(small)) == len(selects(large)) == LINEAGE_STATEMENTS, large
