"""Deployments through the real services on SQLite: generations on add/rm and on followed tag moves, pins,
base checks (a refused add; a refused move, like a move onto a yanked version or a deleted tag),
authorization, audit and the ``deployment.changed`` event."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from make_tiny_adapter import make_adapter
from sqlalchemy import select

from registry.adapters.base_manifest import read_base_manifest
from registry.db.models import AuditEvent, Webhook, WebhookDelivery
from registry.errors import BaseMismatch, Conflict, Forbidden, NotFound, Unauthorized
from registry.principal import ANONYMOUS_READER, REGISTRY, Principal
from registry.refs import Ref, RepoName, RepoRef
from registry.services import deployments, tags, yank
from registry.services.bases import register_base
from tests.conftest import TinyBase
from tests.services.conftest import LocalRegistry, Pushed

ALPHA_WRITER = Principal(name="alpha-writer", scope="write", namespaces=("alpha",))
ALPHA_READER = Principal(name="alpha-reader", scope="read", namespaces=("alpha",))
BETA_ADMIN = Principal(name="beta-admin", scope="admin", namespaces=("beta",))
REPO = "alpha/bot"


@pytest.fixture
def bot(sqlite_registry: LocalRegistry, tiny_base: TinyBase, adapter_factory) -> list[Pushed]:
    """alpha/bot #1 and #2 on tiny-llama; ``prod`` on #1."""
    pushed = [sqlite_registry.push(REPO, adapter_factory(seed=seed), tiny_base) for seed in (1, 2)]
    _move(sqlite_registry, "prod", "#1")
    return pushed


@pytest.fixture
def foreign(sqlite_registry: LocalRegistry, other_base: TinyBase, tmp_path: Path) -> Pushed:
    """alpha/bot #3, made for another base (other-llama)."""
    with sqlite_registry.db.transaction() as session:
        register_base(session, REGISTRY, name="other-llama", manifest=read_base_manifest(other_base.path))
    directory = tmp_path / "foreign"
    make_adapter(copy.deepcopy(other_base.model), directory, seed=5, r=4, base_name="other-llama")
    return sqlite_registry.push(REPO, directory, other_base)


def _move(local: LocalRegistry, tag: str, target: str) -> None:
    with local.db.transaction() as session:
        tags.move_tag(
            session, RepoName.parse(REPO), tag, Ref.parse(target), expected=True, principal=REGISTRY
        )


def _create(local: LocalRegistry) -> None:
    with local.db.transaction() as session:
        deployments.create_deployment(session, "alpha", "chat", "tiny-llama", ALPHA_WRITER)


def _add(local: LocalRegistry, ref: str, alias: str | None = None) -> int:
    with local.db.transaction() as session:
        return deployments.add_adapter(session, "alpha", "chat", ref, alias, ALPHA_WRITER).number


def _shown(local: LocalRegistry) -> tuple[int, list[dict], list[tuple[int, str, str | None]]]:
    """The current generation's number and state, and the history as (number, status, reason)."""
    with local.db.transaction(write=False) as session:
        found = deployments.get_deployment(session, "alpha", "chat", ALPHA_READER)
        current = deployments.current_generation(session, found)
        history = [(g.number, g.status, g.reason) for g in deployments.history(session, found)]
        return current.number, list(current.state), history


def test_generations_follow_tags_and_keep_pins(sqlite_registry: LocalRegistry, bot: list[Pushed]) -> None:
    _create(sqlite_registry)
    assert _add(sqlite_registry, f"{REPO}:prod") == 2
    assert _add(sqlite_registry, f"{REPO}@sha256:{bot[0].digest[:16]}", "pinned") == 3
    number, state, _ = _shown(sqlite_registry)
    assert number == 3
    assert state == [
        {
            "name": f"{REPO}:prod",
            "repo": REPO,
            "ref": f"{REPO}:prod",
            "digest": f"sha256:{bot[0].digest}",
            "number": 1,
        },
        {
            "name": "pinned",
            "repo": REPO,
            "ref": f"{REPO}@sha256:{bot[0].digest[:16]}",
            "digest": f"sha256:{bot[0].digest}",
            "number": 1,
        },
    ]

    _move(sqlite_registry, "prod", "#2")  # the followed entry moves, the pinned one does not
    number, state, history = _shown(sqlite_registry)
    assert number == 4 and history[0] == (4, "applied", None)
    assert [(i["name"], i["digest"]) for i in state] == [
        (f"{REPO}:prod", f"sha256:{bot[1].digest}"),
        ("pinned", f"sha256:{bot[0].digest}"),
    ]
    _move(sqlite_registry, "latest", "#1")  # a tag nobody follows: no generation
    assert _shown(sqlite_registry)[0] == 4

    with sqlite_registry.db.transaction() as session:
        removed = deployments.remove_adapter(session, "alpha", "chat", f"{REPO}:prod", ALPHA_WRITER)
    assert removed.number == 5 and [i["name"] for i in removed.state] == ["pinned"]
    _move(sqlite_registry, "prod", "#1")  # no longer followed
    number, _, history = _shown(sqlite_registry)
    assert number == 5 and [h[0] for h in history] == [5, 4, 3, 2, 1]

    with sqlite_registry.db.transaction(write=False) as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.target == "alpha/chat").order_by(AuditEvent.id)
        ).all()
    assert actions == [
        "deployment.create",
        "deployment.add",
        "deployment.add",
        "deployment.follow",
        "deployment.remove",
    ]


def test_incompatible_adds_and_moves_are_refused(
    sqlite_registry: LocalRegistry, bot: list[Pushed], foreign: Pushed
) -> None:
    _create(sqlite_registry)
    with pytest.raises(BaseMismatch, match="other-llama"):
        _add(sqlite_registry, f"{REPO}#3")
    _add(sqlite_registry, f"{REPO}:prod", "bot")
    with pytest.raises(Conflict, match="already serves an adapter named 'bot'"):
        _add(sqlite_registry, f"{REPO}#2", "bot")

    _move(sqlite_registry, "prod", "#3")  # onto the other base: recorded, not applied
    number, state, history = _shown(sqlite_registry)
    assert number == 2 and state[0]["digest"] == f"sha256:{bot[0].digest}"
    assert history[0][:2] == (3, "refused") and "other-llama" in (history[0][2] or "")

    _move(sqlite_registry, "prod", "#2")  # back on the deployment's base: applied
    number, state, _ = _shown(sqlite_registry)
    assert number == 4 and state[0]["digest"] == f"sha256:{bot[1].digest}"

    with sqlite_registry.db.transaction() as session:
        yank.yank(session, RepoRef.parse(f"{REPO}#1"), reason="leaks", principal=REGISTRY)
        tags.move_tag(
            session,
            RepoName.parse(REPO),
            "prod",
            Ref.parse("#1"),
            expected=True,
            principal=REGISTRY,
            allow_yanked=True,
        )
    number, state, history = _shown(sqlite_registry)
    assert number == 4 and state[0]["digest"] == f"sha256:{bot[1].digest}"
    assert history[0][:2] == (5, "refused") and "yanked" in (history[0][2] or "")

    with sqlite_registry.db.transaction() as session:
        tags.remove_tag(session, RepoName.parse(REPO), "prod", principal=REGISTRY)
    number, state, history = _shown(sqlite_registry)
    assert number == 4 and state[0]["digest"] == f"sha256:{bot[1].digest}"
    assert history[0][:2] == (6, "refused") and "deleted" in (history[0][2] or "")


def test_watch_check_sees_only_applied_generations(
    sqlite_registry: LocalRegistry, bot: list[Pushed], foreign: Pushed
) -> None:
    _create(sqlite_registry)

    def changed(since: int | None) -> int | None:
        with sqlite_registry.db.transaction(write=False) as session:
            found = deployments.changed_deployment(session, "alpha", "chat", since, ALPHA_READER)
            return found.current_generation if found is not None else None

    assert changed(None) == 1 and changed(1) is None
    _add(sqlite_registry, f"{REPO}:prod")
    assert changed(1) == 2 and changed(2) is None
    _move(sqlite_registry, "prod", "#3")  # refused: nothing for a watcher
    assert changed(2) is None


def test_authorization_is_the_namespace(sqlite_registry: LocalRegistry, bot: list[Pushed]) -> None:
    _create(sqlite_registry)
    with sqlite_registry.db.transaction() as session:
        with pytest.raises(NotFound, match="does not exist or is not readable"):
            deployments.get_deployment(session, "alpha", "chat", BETA_ADMIN)
        with pytest.raises(Unauthorized):
            deployments.get_deployment(session, "alpha", "chat", ANONYMOUS_READER)
        with pytest.raises(Forbidden):
            deployments.add_adapter(session, "alpha", "chat", f"{REPO}:prod", None, BETA_ADMIN)
        with pytest.raises(Forbidden):
            deployments.add_adapter(session, "alpha", "chat", f"{REPO}:prod", None, ALPHA_READER)
        with pytest.raises(Forbidden):
            deployments.create_deployment(session, "alpha", "other", "tiny-llama", BETA_ADMIN)
        with pytest.raises(Conflict, match="already exists"):
            deployments.create_deployment(session, "alpha", "chat", "tiny-llama", ALPHA_WRITER)
        deployments.create_deployment(session, "beta", "chat", "tiny-llama", BETA_ADMIN)
    with sqlite_registry.db.transaction(write=False) as session:
        assert [d.full_name for d in deployments.list_deployments(session, ALPHA_READER)] == ["alpha/chat"]
        assert [d.full_name for d in deployments.list_deployments(session, BETA_ADMIN)] == ["beta/chat"]
        assert deployments.list_deployments(session, ANONYMOUS_READER) == []
        assert len(deployments.list_deployments(session, REGISTRY)) == 2
    # a beta deployment cannot serve alpha's private adapter
    with sqlite_registry.db.transaction() as session, pytest.raises(NotFound):
        deployments.add_adapter(session, "beta", "chat", f"{REPO}:prod", None, BETA_ADMIN)


def test_changes_are_sent_to_webhooks(sqlite_registry: LocalRegistry, bot: list[Pushed]) -> None:
    with sqlite_registry.db.transaction() as session:
        session.add(
            Webhook(url="http://127.0.0.1:9/", secret="s", events=["deployment.changed"], namespace="alpha")
        )
    _create(sqlite_registry)
    _add(sqlite_registry, f"{REPO}:prod")
    _move(sqlite_registry, "prod", "#2")
    with sqlite_registry.db.transaction(write=False) as session:
        payloads = session.scalars(select(WebhookDelivery.payload).order_by(WebhookDelivery.id)).all()
    assert [(p["event"], p["generation"], p["status"]) for p in payloads] == [
        ("deployment.changed", 1, "applied"),
        ("deployment.changed", 2, "applied"),
        ("deployment.changed", 3, "applied"),
    ]
    assert payloads[2]["state"][0]["digest"] == f"sha256:{bot[1].digest}"
    assert payloads[2]["cause"] == f"tag {REPO}:prod"
