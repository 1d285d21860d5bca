"""Tags: compare-and-set moves, removal, history."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from registry.db import queries
from registry.db.models import Repository, Tag, TagEvent, Version, utcnow
from registry.errors import NotFound, StaleExpectation
from registry.refs import Ref, RepoName, validate_name
from registry.services import repos, webhooks
from registry.services.versions import get_version


def set_tag(
    session: Session,
    repository: Repository,
    name: str,
    version: Version,
    *,
    expected: Version | bool | None = True,
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
    expected: Ref | bool | None,
    actor: str | None,
) -> tuple[Version, bool]:
    """The API's tag move: resolve ``target`` (and ``expected``), then :func:`set_tag`."""
    repository = repos.get_repository(session, repo, lock=True)
    version = get_version(session, repository, target)
    expected_version: Version | bool | None = expected
    if isinstance(expected, Ref):
        expected_version = get_version(session, repository, expected, allow_yanked=True)
    return version, set_tag(session, repository, name, version, expected=expected_version, actor=actor)


def remove_tag(session: Session, repo: RepoName, name: str, *, actor: str | None) -> None:
    repository = repos.get_repository(session, repo, lock=True)
    tag = queries.get_tag(session, repository, validate_name(name, "tag"), lock=True)
    if tag is None:
        raise NotFound(f"no tag {repo}:{name}")
    retarget_tag(session, repository, tag, None, actor=actor)


def history(session: Session, repo: RepoName, name: str, *, limit: int = 100) -> Sequence[TagEvent]:
    repository = repos.get_repository(session, repo)
    return queries.tag_history(session, repository, validate_name(name, "tag"), limit=limit)


def changed_tag(session: Session, repo: RepoName, name: str, since: str | None) -> Tag | None:
    """One check of a watch: the tag when it no longer points at ``since`` (or ``since`` is None),
    else None. Raises :class:`NotFound` when the tag (or its repository) is gone."""
    repository = repos.get_repository(session, repo)
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
