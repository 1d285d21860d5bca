"""Yanking: hide a version from tags and numbers without rewriting it; unyanking: show it again.

A yank moves ``latest`` off the version (to the newest unyanked one, or removes it when none is left)
and leaves every other tag where it is: those tags then resolve to nothing (410) until moved. Unyanking
moves ``latest`` back only when the yank moved it and nothing has moved it since; every other tag
already points at the version again.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from registry.db import queries
from registry.db.models import Repository, Version, as_utc, utcnow
from registry.principal import Principal
from registry.refs import DEFAULT_TAG, RepoRef
from registry.services import audit, deployments, repos, search_index, webhooks
from registry.services.tags import retarget_tag, set_tag
from registry.services.versions import get_version


@dataclass(frozen=True)
class TagMove:
    tag: str
    to: Version | None  # None: the tag was removed


@dataclass(frozen=True)
class YankResult:
    version: Version
    changed: bool  # False: it already was (or was not) yanked, and nothing moved
    tags_moved: list[TagMove]


def yank(session: Session, target: RepoRef, *, reason: str | None, principal: Principal) -> YankResult:
    """Yank a version (it stays pullable by digest) and move ``latest`` to the newest unyanked one."""
    repository, version = _locked(session, target, principal)
    if version.yanked_at is not None:
        return YankResult(version, False, [])
    version.yanked_at = utcnow()
    version.yank_reason = reason
    session.flush()
    moved = []
    latest = queries.get_tag(session, repository, DEFAULT_TAG, lock=True)
    if latest is not None and latest.version_id == version.id:
        replacement = queries.newest_unyanked_version(session, repository)
        retarget_tag(session, repository, latest, replacement, actor=principal.name)
        moved.append(TagMove(DEFAULT_TAG, replacement))
    _announce(session, principal, repository, version, "yank", moved, reason=reason)
    return YankResult(version, True, moved)


def unyank(session: Session, target: RepoRef, *, principal: Principal) -> YankResult:
    """Make a yanked version resolve again; ``latest`` returns to it if the yank moved it off."""
    repository, version = _locked(session, target, principal)
    if version.yanked_at is None:
        return YankResult(version, False, [])
    yanked_at = as_utc(version.yanked_at)
    version.yanked_at = None
    version.yank_reason = None
    session.flush()
    moved = []
    last = next(iter(queries.tag_history(session, repository, DEFAULT_TAG, limit=1)), None)
    if last is not None and last.old_version_id == version.id and as_utc(last.created_at) >= yanked_at:
        set_tag(session, repository, DEFAULT_TAG, version, actor=principal.name)
        moved.append(TagMove(DEFAULT_TAG, version))
    _announce(session, principal, repository, version, "unyank", moved, reason=None)
    return YankResult(version, True, moved)


def _locked(session: Session, target: RepoRef, principal: Principal) -> tuple[Repository, Version]:
    repository = repos.get_repository(session, target.repo, principal, need="write", lock=True)
    return repository, get_version(session, repository, target.ref, allow_yanked=True)


def _announce(
    session: Session,
    principal: Principal,
    repository: Repository,
    version: Version,
    action: str,
    moved: list[TagMove],
    *,
    reason: str | None,
) -> None:
    """Audit the (un)yank, tell the webhooks (``version.yanked`` / ``version.unyanked``) and the
    deployments following the tags it moved."""
    search_index.refresh(session, repository)
    for move in moved:
        deployments.follow_tag(session, repository, move.tag, principal)
    digest = f"sha256:{version.digest}"
    audit.record(
        session,
        principal,
        f"version.{action}",
        target=f"{repository.full_name}@{digest}",
        namespace=repository.namespace,
        detail={
            "number": version.number,
            "reason": reason,
            "tags_moved": {m.tag: f"sha256:{m.to.digest}" if m.to else None for m in moved},
        },
    )
    webhooks.emit(
        session,
        f"version.{action}ed",
        {"repo": repository.full_name, "number": version.number, "digest": digest, "reason": reason},
        namespace=repository.namespace,
    )
