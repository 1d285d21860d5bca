"""Tags: compare-and-set moves, removal, history."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from sqlalchemy.orm import Session

from registry.db import queries
from registry.db.models import Repository, Tag, TagEvent, Version, utcnow
from registry.errors import Conflict, NotFound, StaleExpectation
from registry.principal import Principal
from registry.refs import Ref, RepoName, validate_name
from registry.services import audit, deployments, repos, search_index, webhooks
from registry.services.versions import get_version


def set_tag(
    session: Session,
    repository: Repository,
    name: str,
    version: Version,
    *,
    expected: Version | Literal[True] | None = True,
    actor: str | None,
) -> bool:
    """Point tag ``name`` at ``version``; return whether it moved.

    ``expected=True`` moves unconditionally; a :class:`Version` (or ``None`` for "the tag must not
    exist") makes the move a compare-and-set that raises :class:`StaleExpectation` when the tag is
    elsewhere.
    """
    validate_name(name, "tag")
    tag = queries.get_tag(session, repository, name, lock=True)
    if tag is None:
        if expected is not True and expected is not None:
            raise StaleExpectation(
                f"tag {repository.full_name}:{name} does not exist, but the move expected it at "
                f"#{expected.number} (sha256:{expected.digest[:12]}); look again and retry"
            )
        if not queries.insert_tag_if_absent(session, repository, name, version):
            raise StaleExpectation(f"tag {repository.full_name}:{name} was created concurrently; retry")
        _record(session, repository, name, None, version, actor)
        return True
    if expected is not True and (expected is None or tag.version_id != expected.id):
        raise StaleExpectation(
            f"tag {repository.full_name}:{name} points at #{tag.version.number} "
            f"(sha256:{tag.version.digest[:12]}), not at the expected "
            f"{'(no tag)' if expected is None else f'#{expected.number} (sha256:{expected.digest[:12]})'}; "
            "another move happened first: look again and retry"
        )
    if tag.version_id == version.id:
        return False
    retarget_tag(session, repository, tag, version, actor=actor)
    return True


def retarget_tag(
    session: Session, repository: Repository, tag: Tag, version: Version | None, *, actor: str | None
) -> None:
    """Move an existing tag (locked by the caller) to ``version``, or delete it for ``None``."""
    old = tag.version
    if version is None:
        session.delete(tag)
    else:
        tag.version_id = version.id
        tag.updated_at = utcnow()
    session.flush()
    _record(session, repository, tag.name, old, version, actor)


def move_tag(
    session: Session,
    repo: RepoName,
    name: str,
    target: Ref,
    *,
    expected: Ref | Literal[True] | None,
    principal: Principal,
    allow_yanked: bool = False,
) -> tuple[Version, bool]:
    """The API's tag move: resolve ``target`` (and ``expected``), then :func:`set_tag`. A yanked target
    is refused unless ``allow_yanked``."""
    repository = repos.get_repository(session, repo, principal, need="write", lock=True)
    version = get_version(session, repository, target, allow_yanked=allow_yanked)
    if version.yanked_at is not None and not allow_yanked:
        raise Conflict(
            f"{repo}#{version.number} (sha256:{version.digest[:12]}) was yanked"
            f"{': ' + version.yank_reason if version.yank_reason else ''}; a tag is not moved onto a "
            "yanked version unless you mean it: pass --allow-yanked",
            code="yanked_target",
        )
    expected_version = (
        get_version(session, repository, expected, allow_yanked=True)
        if isinstance(expected, Ref)
        else expected
    )
    old = queries.get_tag(session, repository, name)
    old_digest = f"sha256:{old.version.digest}" if old is not None else None
    moved = set_tag(session, repository, name, version, expected=expected_version, actor=principal.name)
    if moved:
        search_index.refresh(session, repository)
        deployments.follow_tag(session, repository, name, principal)
    audit.record(
        session,
        principal,
        "tag.move",
        target=f"{repo}:{name}",
        namespace=repo.namespace,
        detail={"from": old_digest, "to": f"sha256:{version.digest}", "moved": moved},
    )
    return version, moved


def remove_tag(session: Session, repo: RepoName, name: str, *, principal: Principal) -> None:
    repository = repos.get_repository(session, repo, principal, need="write", lock=True)
    tag = queries.get_tag(session, repository, validate_name(name, "tag"), lock=True)
    if tag is None:
        raise NotFound(f"no tag {repo}:{name}")
    old_digest = f"sha256:{tag.version.digest}"
    retarget_tag(session, repository, tag, None, actor=principal.name)
    search_index.refresh(session, repository)
    deployments.follow_tag(session, repository, name, principal)
    audit.record(
        session,
        principal,
        "tag.delete",
        target=f"{repo}:{name}",
        namespace=repo.namespace,
        detail={"from": old_digest},
    )


def list_tags(session: Session, repo: RepoName, principal: Principal) -> Sequence[Tag]:
    return queries.list_tags(session, repos.get_repository(session, repo, principal))


def get_tag(session: Session, repo: RepoName, name: str, principal: Principal) -> Tag:
    tag = queries.get_tag(session, repos.get_repository(session, repo, principal), name)
    if tag is None:
        raise NotFound(f"no tag {repo}:{name}")
    return tag


def history(
    session: Session, repo: RepoName, name: str, principal: Principal, *, limit: int = 100
) -> Sequence[TagEvent]:
    repository = repos.get_repository(session, repo, principal)
    return queries.tag_history(session, repository, validate_name(name, "tag"), limit=limit)


def changed_tag(
    session: Session, repo: RepoName, name: str, since: str | None, principal: Principal
) -> Tag | None:
    """One check of a watch: the tag when it no longer points at ``since`` (or ``since`` is None),
    else None. Raises :class:`NotFound` when the tag (or its repository) is gone."""
    repository = repos.get_repository(session, repo, principal)
    tag = queries.get_tag_with_version(session, repository.id, validate_name(name, "tag"))
    if tag is None:
        raise NotFound(f"no tag {repo}:{name}")
    if since is not None and tag.version.digest == since.removeprefix("sha256:"):
        return None
    return tag


def _record(
    session: Session,
    repository: Repository,
    tag: str,
    old: Version | None,
    new: Version | None,
    actor: str | None,
) -> None:
    """Append the move to the tag's history, and tell the webhooks."""
    session.add(
        TagEvent(
            repository_id=repository.id,
            tag=tag,
            old_version_id=old.id if old else None,
            new_version_id=new.id if new else None,
            actor=actor,
        )
    )
    session.flush()
    webhooks.emit(
        session,
        "tag.moved",
        {
            "repo": repository.full_name,
            "tag": tag,
            "actor": actor,
            "old": f"sha256:{old.digest}" if old else None,
            "new": f"sha256:{new.digest}" if new else None,
        },
        namespace=repository.namespace,
    )
