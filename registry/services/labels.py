"""Labels: key-value pairs on a repository or on one of its (immutable) versions, e.g.
``validation=approved`` set by CI after its checks. Every change is a ``label_events`` row with its actor."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from registry.db import queries
from registry.db.models import LabelEvent, Repository, RepositoryLabel, Version, VersionLabel, utcnow
from registry.db.queries.labels import Label
from registry.errors import InvalidInput, NotFound
from registry.principal import Principal
from registry.refs import Ref, RepoName
from registry.services import audit, repos, search_index
from registry.services.pages import Page, check_limit, numeric_cursor, page_of
from registry.services.versions import get_version

KEY = re.compile(r"^[a-z0-9][a-z0-9._/-]*$")
MAX_KEY = 128
MAX_VALUE_BYTES = 1024
MAX_LABELS = 64  # on one repository, or on one version


@dataclass(frozen=True)
class Labelled:
    """What labels are on: a repository itself (``version`` None), or one of its versions."""

    repository: Repository
    version: Version | None

    def __str__(self) -> str:
        name = self.repository.full_name
        return name if self.version is None else f"{name}#{self.version.number}"


def validate_key(key: str) -> str:
    if not KEY.match(key) or len(key) > MAX_KEY:
        shown = key.encode("unicode_escape").decode("ascii")[: MAX_KEY + 8]
        raise InvalidInput(
            f"invalid label key {shown!r}: lowercase letters, digits, '.', '_', '/' and '-', starting with "
            f"a letter or digit, at most {MAX_KEY} characters (e.g. validation or ci/suite)"
        )
    return key


def validate_value(key: str, value: str) -> str:
    size = len(value.encode())
    if size > MAX_VALUE_BYTES:
        raise InvalidInput(f"label {key}'s value is {size} bytes (UTF-8); at most {MAX_VALUE_BYTES}")
    return value


def list_labels(
    session: Session, repo: RepoName, principal: Principal, *, ref: Ref | None = None
) -> Sequence[Label]:
    """The labels of a repository (``ref`` None) or of the version ``ref`` names (yanked ones too)."""
    target = _target(session, repo, ref, principal, need="read")
    return queries.labels_of(session, target.repository, target.version)


def set_labels(
    session: Session,
    repo: RepoName,
    labels: Mapping[str, str],
    principal: Principal,
    *,
    ref: Ref | None = None,
    remove: Sequence[str] = (),
) -> list[str]:
    """Set ``labels`` and remove the keys of ``remove`` (absent ones are no change), all or nothing;
    return the keys that changed (a label set to its current value did not)."""
    for key, value in labels.items():
        validate_value(validate_key(key), value)
    both = sorted(set(labels) & {validate_key(key) for key in remove})
    if both:
        raise InvalidInput(f"label {both[0]} is both set and removed; give it once")
    target = _target(session, repo, ref, principal, need="write")
    current = {label.key: label for label in queries.labels_of(session, target.repository, target.version)}
    count = len((current.keys() - set(remove)) | labels.keys())
    if count > MAX_LABELS:
        raise InvalidInput(
            f"{target} would have {count} labels; at most {MAX_LABELS}: remove some (lorareg label "
            f"{target} --rm KEY)"
        )
    changed = [key for key, value in labels.items() if _set(session, target, current, key, value, principal)]
    for key in dict.fromkeys(remove):
        if key in current:
            _remove(session, target, current[key], principal)
            changed.append(key)
    session.flush()
    if changed:
        search_index.refresh(session, target.repository)
    audit.record(
        session,
        principal,
        "label.set",
        target=str(target),
        namespace=repo.namespace,
        detail={"set": list(labels), "removed": list(remove), "changed": changed},
    )
    return changed


def remove_label(
    session: Session, repo: RepoName, key: str, principal: Principal, *, ref: Ref | None = None
) -> None:
    """Remove one label; :class:`NotFound` if it is not there."""
    validate_key(key)
    target = _target(session, repo, ref, principal, need="write")
    label = next(
        (la for la in queries.labels_of(session, target.repository, target.version) if la.key == key), None
    )
    if label is None:
        raise NotFound(f"no label {key} on {target}")
    _remove(session, target, label, principal)
    session.flush()
    search_index.refresh(session, target.repository)
    audit.record(
        session, principal, "label.delete", target=str(target), namespace=repo.namespace, detail={"key": key}
    )


def history(
    session: Session,
    repo: RepoName,
    principal: Principal,
    *,
    ref: Ref | None = None,
    key: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> Page[LabelEvent]:
    """Every label change of a repository (``ref`` None) or of one version, newest first, a page at a
    time; only those of ``key`` if given."""
    before = numeric_cursor(cursor) if cursor is not None else None
    target = _target(session, repo, ref, principal, need="read")
    found = queries.label_history(
        session,
        target.repository,
        target.version,
        key=validate_key(key) if key is not None else None,
        before=before,
        limit=check_limit(limit) + 1,
    )
    return page_of(found, limit, lambda event: str(event.id))


def _target(
    session: Session, repo: RepoName, ref: Ref | None, principal: Principal, *, need: str
) -> Labelled:
    """The repository (locked for writes: label changes of one repository are serialized) and the version."""
    repository = repos.get_repository(session, repo, principal, need=need, lock=need != "read")
    version = get_version(session, repository, ref, allow_yanked=True) if ref is not None else None
    return Labelled(repository, version)


def _set(
    session: Session, target: Labelled, current: dict[str, Label], key: str, value: str, principal: Principal
) -> bool:
    label = current.get(key)
    if label is not None and label.value == value:
        return False
    old = label.value if label is not None else None
    if label is None:
        session.add(_new_label(target, key, value, principal.name))
    else:
        label.value, label.updated_at, label.updated_by = value, utcnow(), principal.name
    _record(session, target, key, old, value, principal)
    return True


def _remove(session: Session, target: Labelled, label: Label, principal: Principal) -> None:
    session.delete(label)
    _record(session, target, label.key, label.value, None, principal)


def _new_label(target: Labelled, key: str, value: str, actor: str) -> Label:
    if target.version is None:
        return RepositoryLabel(repository_id=target.repository.id, key=key, value=value, updated_by=actor)
    return VersionLabel(version_id=target.version.id, key=key, value=value, updated_by=actor)


def _record(
    session: Session, target: Labelled, key: str, old: str | None, new: str | None, principal: Principal
) -> None:
    session.add(
        LabelEvent(
            repository_id=target.repository.id,
            version_id=target.version.id if target.version is not None else None,
            key=key,
            old_value=old,
            new_value=new,
            actor=principal.name,
        )
    )
