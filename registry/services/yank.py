"""Yanking: hide a version from tags and numbers without rewriting it."""

from __future__ import annotations

from sqlalchemy.orm import Session

from registry.db import queries
from registry.db.models import Version, utcnow
from registry.principal import Principal
from registry.refs import DEFAULT_TAG, RepoRef
from registry.services import audit, repos, webhooks
from registry.services.tags import retarget_tag
from registry.services.versions import get_version


def yank(session: Session, target: RepoRef, *, reason: str | None, principal: Principal) -> Version:
    """Yank a version (it stays pullable by digest) and move ``latest`` to the newest unyanked one."""
    repository = repos.get_repository(session, target.repo, principal, need="write", lock=True)
    version = get_version(session, repository, target.ref, allow_yanked=True)
    if version.yanked_at is not None:
        return version
    version.yanked_at = utcnow()
    version.yank_reason = reason
    session.flush()
    audit.record(
        session,
        principal,
        "version.yank",
        target=f"{repository.full_name}@sha256:{version.digest}",
        namespace=repository.namespace,
        detail={"number": version.number, "reason": reason},
    )
    webhooks.emit(
        session,
        "version.yanked",
        {
            "repo": repository.full_name,
            "number": version.number,
            "digest": f"sha256:{version.digest}",
            "reason": reason,
        },
        namespace=repository.namespace,
    )
    latest = queries.get_tag(session, repository, DEFAULT_TAG, lock=True)
    if latest is not None and latest.version_id == version.id:
        replacement = queries.newest_unyanked_version(session, repository)
        retarget_tag(session, repository, latest, replacement, actor=principal.name)
    return version
