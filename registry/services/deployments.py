"""Deployments: the adapters a pool of inference servers should serve on one base, as desired state.

Each entry names a version by the ref it was added with: a tag ref follows the tag, a digest or number
ref is pinned. Every add, remove and move of a followed tag makes a generation holding the resolved
state ``[{name, repo, ref, digest, number}]``. An entry whose version is made for another base is refused
when added (409); a followed tag moving onto one makes a ``refused`` generation, and the deployment keeps
its current one. Authorization is a repository's: read, write or admin of the deployment's namespace.

Rollouts: with a canary selector (``key=value``), a new generation is first a ``canary`` — served by the
replicas whose labels match — and ``promote`` (or auto-promotion, see registry.services.replicas) makes a
new applied generation of it for every replica; ``rollback`` makes a new applied generation of the one
before (or abandons the canary). Promote and rollback always make new numbers, so the number a watch
waits past only grows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from registry.db.models import (
    Deployment,
    DeploymentEntry,
    DeploymentGeneration,
    Repository,
    Version,
    as_utc,
    utcnow,
)
from registry.db.queries import deployments as queries
from registry.db.queries import get_tag
from registry.errors import BaseMismatch, Conflict, InvalidInput, NotFound, RegistryError, Unauthorized
from registry.principal import Principal
from registry.refs import RepoRef, validate_name
from registry.selectors import parse_label
from registry.services import audit, bases, repos, webhooks
from registry.services.bases import get_base
from registry.services.pages import check_limit
from registry.services.versions import get_version

MAX_ENGINE_NAME = 256
MAX_AUTO_PROMOTE_AFTER = 30 * 24 * 3600
EVENT = "deployment.changed"


def get_deployment(
    session: Session,
    namespace: str,
    name: str,
    principal: Principal,
    *,
    need: str = "read",
    lock: bool = False,
) -> Deployment:
    """The deployment, if ``principal`` may ``need`` it; one it may not read is reported as missing."""
    validate_name(namespace, "namespace")
    validate_name(name, "deployment")
    if need != "read":
        principal.require(need, namespace)
    deployment = queries.get_deployment(session, namespace, name, lock=lock)
    if deployment is None or not principal.can_read(namespace, "private"):
        raise _cannot_see(principal, f"{namespace}/{name}")
    return deployment


def create_deployment(
    session: Session, namespace: str, name: str, base: str, principal: Principal
) -> Deployment:
    """A new, empty deployment for ``base`` (any form ``bases.resolve_base`` takes), at generation 1."""
    principal.require("write", validate_name(namespace, "namespace"))
    validate_name(name, "deployment")
    if queries.get_deployment(session, namespace, name) is not None:
        raise Conflict(f"deployment {namespace}/{name} already exists", code="deployment_exists")
    deployment = Deployment(
        namespace=namespace,
        name=name,
        base_id=get_base(session, base).id,
        current_generation=0,
        latest_generation=0,
        created_by=principal.name,
    )
    session.add(deployment)
    session.flush()
    _generation(session, deployment, [], cause="create", actor=principal.name)
    audit.record(
        session,
        principal,
        "deployment.create",
        target=deployment.full_name,
        namespace=namespace,
        detail={"base": f"sha256:{deployment.base.content_digest}"},
    )
    return deployment


def list_deployments(
    session: Session, principal: Principal, *, namespace: str | None = None, limit: int = 100
) -> Sequence[Deployment]:
    """The deployments ``principal`` may read, by name, optionally of one namespace."""
    if namespace is not None:
        validate_name(namespace, "namespace")
    return queries.list_deployments(
        session, readable_in=principal.readable_namespaces, namespace=namespace, limit=check_limit(limit)
    )


def add_adapter(
    session: Session, namespace: str, name: str, ref: str, alias: str | None, principal: Principal
) -> DeploymentGeneration:
    """Add the adapter ``ref`` (``ns/name[:tag]``, ``@digest``, ``#N``) under ``alias`` (default: ``ref``
    as given); refused (409) when its version is made for another base or the name is taken."""
    deployment = get_deployment(session, namespace, name, principal, need="write", lock=True)
    target = RepoRef.parse(ref)
    engine_name = _engine_name(alias if alias is not None else ref)
    if any(entry.name == engine_name for entry in deployment.entries):
        raise Conflict(
            f"{deployment.full_name} already serves an adapter named {engine_name!r}: remove it first "
            "or add this one with another --as",
            code="name_taken",
        )
    version = get_version(session, repos.get_repository(session, target.repo, principal), target.ref)
    refusal = _base_refusal(deployment, version, ref)
    if refusal is not None:
        raise BaseMismatch(refusal)
    pinned = f"sha256:{version.digest}" if target.ref.kind == "digest" else str(target.ref)
    entry = DeploymentEntry(
        name=engine_name,
        ref=ref,
        repo=str(target.repo),
        ref_kind=target.ref.kind,
        ref_value=version.digest if target.ref.kind == "digest" else target.ref.value,
    )
    deployment.entries.append(entry)
    session.flush()
    state = [*newest_state(session, deployment), _item(entry, version)]
    generation = _generation(session, deployment, state, cause=f"add {engine_name}", actor=principal.name)
    _audit(session, principal, "deployment.add", deployment, generation, name=engine_name, ref=pinned)
    return generation


def remove_adapter(
    session: Session, namespace: str, name: str, alias: str, principal: Principal
) -> DeploymentGeneration:
    """Remove the adapter served as ``alias``."""
    deployment = get_deployment(session, namespace, name, principal, need="write", lock=True)
    entry = next((e for e in deployment.entries if e.name == alias), None)
    if entry is None:
        raise NotFound(f"{deployment.full_name} serves no adapter named {alias!r}")
    deployment.entries.remove(entry)
    session.flush()
    state = [item for item in newest_state(session, deployment) if item["name"] != alias]
    generation = _generation(session, deployment, state, cause=f"rm {alias}", actor=principal.name)
    _audit(session, principal, "deployment.remove", deployment, generation, name=alias)
    return generation


def follow_tag(session: Session, repository: Repository, tag_name: str, principal: Principal) -> None:
    """After ``repository:tag_name`` moved or was removed: a generation of every deployment following it,
    ``refused`` (the current one stays) when the tag is gone, or its version yanked or made for another
    base."""
    tag = get_tag(session, repository, tag_name)
    # by id: the tag's loaded ``version`` may still be the one it was moved off
    version = session.get(Version, tag.version_id) if tag is not None else None
    where = f"{repository.full_name}:{tag_name}"
    for deployment in queries.following(session, repository.full_name, tag_name):
        followers = {
            e.name: e
            for e in deployment.entries
            if e.repo == repository.full_name and e.ref_kind == "tag" and e.ref_value == tag_name
        }
        state = newest_state(session, deployment)
        reason = (
            f"tag {where} was deleted; {', '.join(sorted(followers))} keep serving their current digests"
            if version is None
            else f"{where} is #{version.number} (sha256:{version.digest[:12]}), which was yanked"
            if version.yanked_at is not None
            else _base_refusal(deployment, version, where)
        )
        if reason is None:
            assert version is not None
            if all(i["digest"] == f"sha256:{version.digest}" for i in state if i["name"] in followers):
                continue
            state = [_item(followers[i["name"]], version) if i["name"] in followers else i for i in state]
        generation = _generation(
            session, deployment, state, cause=f"tag {where}", actor=principal.name, refused=reason
        )
        _audit(session, principal, "deployment.follow", deployment, generation, tag=where)


def newest_state(session: Session, deployment: Deployment) -> list[dict[str, Any]]:
    """The state changes build on: the canary's while one is tried, else the current generation's."""
    newest = canary_generation(session, deployment) or current_generation(session, deployment)
    return list(newest.state)


def current_generation(session: Session, deployment: Deployment) -> DeploymentGeneration:
    """The applied generation: what every replica outside a canary serves."""
    found = queries.get_generation(session, deployment, deployment.current_generation)
    assert found is not None, f"{deployment.full_name} has no generation {deployment.current_generation}"
    return found


def canary_generation(session: Session, deployment: Deployment) -> DeploymentGeneration | None:
    """The generation being tried on the canary replicas, if any."""
    if deployment.canary_generation is None:
        return None
    found = queries.get_generation(session, deployment, deployment.canary_generation)
    assert found is not None, f"{deployment.full_name} has no generation {deployment.canary_generation}"
    return found


def watermark(deployment: Deployment) -> int:
    """The newest generation some replica should serve: what a watch waits past."""
    return max(deployment.current_generation, deployment.canary_generation or 0)


def promote_at(deployment: Deployment) -> datetime | None:
    """When the canary becomes due for auto-promotion (if its replicas converged without errors)."""
    if deployment.canary_started_at is None or deployment.auto_promote_after is None:
        return None
    return as_utc(deployment.canary_started_at) + timedelta(seconds=deployment.auto_promote_after)


def set_rollout(
    session: Session,
    namespace: str,
    name: str,
    canary: str | None,
    auto_promote_after: int | None,
    principal: Principal,
) -> Deployment:
    """Set how new generations roll out: first to the replicas matching ``canary`` (``key=value``), to
    every replica after ``promote`` or ``auto_promote_after`` seconds; None: to every replica at once.
    Refused (409) while a canary is being tried."""
    deployment = get_deployment(session, namespace, name, principal, need="write", lock=True)
    if deployment.canary_generation is not None:
        raise Conflict(
            f"generation {deployment.canary_generation} of {deployment.full_name} is on its canary replicas: "
            "`lorareg deploy promote` or `lorareg deploy rollback` it before changing the rollout",
            code="canary_in_progress",
        )
    if canary is not None:
        parse_label(canary)
    if auto_promote_after is not None and (
        canary is None or not 0 <= auto_promote_after <= MAX_AUTO_PROMOTE_AFTER
    ):
        raise InvalidInput(
            "auto-promotion needs a canary selector and a delay of 0 to 30 days"
            if canary is not None
            else "auto-promotion needs a canary selector (--canary key=value)"
        )
    deployment.canary_selector = canary
    deployment.auto_promote_after = auto_promote_after
    audit.record(
        session,
        principal,
        "deployment.rollout",
        target=deployment.full_name,
        namespace=namespace,
        detail={"canary": canary, "auto_promote_after": auto_promote_after},
    )
    return deployment


def promote(
    session: Session, namespace: str, name: str, principal: Principal, *, automatic: bool = False
) -> DeploymentGeneration:
    """Serve the canary's state on every replica: a new applied generation (409 when there is no canary).
    ``automatic``: the registry promotes for a heartbeat (see registry.services.replicas)."""
    deployment = get_deployment(
        session, namespace, name, principal, need="read" if automatic else "write", lock=True
    )
    canary = canary_generation(session, deployment)
    if canary is None:
        raise Conflict(f"{deployment.full_name} has no canary generation to promote", code="no_canary")
    canary.status = "promoted"
    _end_canary(deployment)
    actor = f"auto-promote ({deployment.auto_promote_after} s)" if automatic else principal.name
    generation = _generation(
        session, deployment, list(canary.state), cause=f"promote {canary.number}", actor=actor, rollout=False
    )
    _audit(session, principal, "deployment.promote", deployment, generation, canary=str(canary.number))
    return generation


def rollback(
    session: Session, namespace: str, name: str, to: int | None, principal: Principal
) -> DeploymentGeneration:
    """Serve an earlier state on every replica, as a new applied generation with its entries: the
    applied generation ``to``; without it, the current one when a canary is tried (the canary is
    abandoned), else the one current before it. Refused when a version of it was yanked or deleted."""
    deployment = get_deployment(session, namespace, name, principal, need="write", lock=True)
    canary = canary_generation(session, deployment)
    if to is not None:
        target = queries.get_generation(session, deployment, to)
        if target is None:
            raise NotFound(f"{deployment.full_name} has no generation {to}")
        if target.status != "applied":
            raise Conflict(
                f"generation {to} of {deployment.full_name} is {target.status}: it never served every "
                "replica; roll back to an applied generation (`lorareg deploy show` lists them)",
                code="not_applied",
            )
        if target.number == deployment.current_generation and canary is None:
            raise Conflict(f"generation {to} is {deployment.full_name}'s current generation", code="current")
    elif canary is not None:
        target = current_generation(session, deployment)
    else:
        found = queries.previous_applied(session, deployment, deployment.current_generation)
        if found is None:
            raise Conflict(
                f"generation {deployment.current_generation} is the first applied generation of "
                f"{deployment.full_name}: there is nothing to roll back to",
                code="nothing_to_roll_back",
            )
        target = found
    _check_servable(session, target)
    if canary is not None:
        canary.status = "rolled_back"
        _end_canary(deployment)
    _restore_entries(session, deployment, target.state)
    cause = f"rollback to {target.number}" + (f" (canary {canary.number} abandoned)" if canary else "")
    generation = _generation(
        session, deployment, list(target.state), cause=cause, actor=principal.name, rollout=False
    )
    _audit(session, principal, "deployment.rollback", deployment, generation, to=str(target.number))
    return generation


def history(session: Session, deployment: Deployment, *, limit: int = 100) -> Sequence[DeploymentGeneration]:
    """The deployment's generations, refused ones too, newest first."""
    return queries.generations(session, deployment, limit=check_limit(limit))


def changed_deployment(
    session: Session, namespace: str, name: str, since: int | None, principal: Principal
) -> Deployment | None:
    """One check of a watch: the deployment once its current or canary generation is past ``since`` (at
    once for None), else None. Raises :class:`NotFound` when it is gone or not readable."""
    deployment = get_deployment(session, namespace, name, principal)
    if since is not None and watermark(deployment) <= since:
        return None
    return deployment


def _generation(
    session: Session,
    deployment: Deployment,
    state: list[dict[str, Any]],
    *,
    cause: str,
    actor: str | None,
    refused: str | None = None,
    rollout: bool = True,
) -> DeploymentGeneration:
    """Record the next generation, and make it current — or, with a canary selector and ``rollout``,
    the canary (superseding the one tried before) — unless ``refused``; tell the webhooks."""
    deployment.latest_generation += 1
    number = deployment.latest_generation
    if refused is not None:
        status = "refused"
    elif rollout and deployment.canary_selector is not None:
        status = "canary"
        superseded = canary_generation(session, deployment)
        if superseded is not None:
            superseded.status = "superseded"
        deployment.canary_generation, deployment.canary_started_at = number, utcnow()
    else:
        status = "applied"
        deployment.current_generation = number
    generation = DeploymentGeneration(
        deployment_id=deployment.id,
        number=number,
        status=status,
        reason=refused,
        cause=cause,
        state=state,
        actor=actor,
    )
    session.add(generation)
    session.flush()
    webhooks.emit(
        session,
        EVENT,
        {
            "deployment": deployment.full_name,
            "generation": generation.number,
            "current_generation": deployment.current_generation,
            "canary_generation": deployment.canary_generation,
            "status": generation.status,
            "reason": refused,
            "cause": cause,
            "state": state,
            "actor": actor,
        },
        namespace=deployment.namespace,
    )
    return generation


def _end_canary(deployment: Deployment) -> None:
    deployment.canary_generation = deployment.canary_started_at = None


def _restore_entries(session: Session, deployment: Deployment, state: list[dict[str, Any]]) -> None:
    """Make the entries those ``state`` was resolved from (a tag ref follows its tag again)."""
    deployment.entries.clear()
    session.flush()  # the old rows go before rows of the same names come back
    for item in state:
        ref = RepoRef.parse(item["ref"]).ref
        value = item["digest"].removeprefix("sha256:") if ref.kind == "digest" else ref.value
        deployment.entries.append(
            DeploymentEntry(
                name=item["name"], ref=item["ref"], repo=item["repo"], ref_kind=ref.kind, ref_value=value
            )
        )
    session.flush()


def _check_servable(session: Session, generation: DeploymentGeneration) -> None:
    """Refuse (409) a state holding a version since yanked, or deleted with its repository."""
    digests = {item["digest"].removeprefix("sha256:"): item for item in generation.state}
    yanked = queries.version_states(session, digests)
    unservable = [
        f"{item['name']} ({item['repo']}#{item['number']}: {'yanked' if d in yanked else 'deleted'})"
        for d, item in digests.items()
        if yanked.get(d, True)
    ]
    if unservable:
        raise Conflict(
            f"generation {generation.number} serves versions that can no longer be served: "
            f"{', '.join(unservable)}; roll back to another generation (--to N)",
            code="unservable",
        )


def _item(entry: DeploymentEntry, version: Version) -> dict[str, Any]:
    return {
        "name": entry.name,
        "repo": entry.repo,
        "ref": entry.ref,
        "digest": f"sha256:{version.digest}",
        "number": version.number,
    }


def _base_refusal(deployment: Deployment, version: Version, where: str) -> str | None:
    """Why ``version`` cannot be served by ``deployment`` (made for another base, not of its quantized
    pair), or None."""
    if bases.pair_of(version.base) == bases.pair_of(deployment.base):
        return None
    return (
        f"{where} is #{version.number} (sha256:{version.digest[:12]}), made for base {version.base.name} "
        f"(sha256:{version.base.content_digest[:12]}), not for {deployment.full_name}'s base "
        f"{deployment.base.name} (sha256:{deployment.base.content_digest[:12]})"
    )


def _engine_name(value: str) -> str:
    if (
        not value
        or len(value) > MAX_ENGINE_NAME
        or not value.isprintable()
        or any(c.isspace() for c in value)
    ):
        raise InvalidInput(
            f"invalid adapter name {value!r}: 1 to {MAX_ENGINE_NAME} printable characters, no spaces"
        )
    return value


def _audit(
    session: Session,
    principal: Principal,
    action: str,
    deployment: Deployment,
    generation: DeploymentGeneration,
    **detail: str,
) -> None:
    audit.record(
        session,
        principal,
        action,
        target=deployment.full_name,
        namespace=deployment.namespace,
        detail={"generation": generation.number, "status": generation.status, **detail},
    )


def _cannot_see(principal: Principal, name: str) -> RegistryError:
    """Worded alike whether or not the deployment exists."""
    if principal.anonymous:
        return Unauthorized(
            f"deployment {name} is not readable without a token (--token, LOREG_TOKEN or `lorareg login`)"
        )
    return NotFound(f"deployment {name} does not exist or is not readable with this token")
