"""Deployments: the adapters a pool of inference servers should serve on one base, as desired state.

Each entry names a version by the ref it was added with: a tag ref follows the tag, a digest or number
ref is pinned. Every add, remove and move of a followed tag makes a generation holding the resolved
state ``[{name, repo, ref, digest, number}]``. An entry whose version is made for another base is refused
when added (409); a followed tag moving onto one makes a ``refused`` generation, and the deployment keeps
its current one. Authorization is a repository's: read, write or admin of the deployment's namespace.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from registry.db.models import Deployment, DeploymentEntry, DeploymentGeneration, Repository, Version
from registry.db.queries import deployments as queries
from registry.db.queries import get_tag
from registry.errors import BaseMismatch, Conflict, InvalidInput, NotFound, RegistryError, Unauthorized
from registry.principal import Principal
from registry.refs import RepoRef, validate_name
from registry.services import audit, repos, webhooks
from registry.services.bases import get_base
from registry.services.pages import check_limit
from registry.services.versions import get_version

MAX_ENGINE_NAME = 256
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
    state = [*current_state(session, deployment), _item(entry, version)]
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
    state = [item for item in current_state(session, deployment) if item["name"] != alias]
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
        state = current_state(session, deployment)
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


def current_state(session: Session, deployment: Deployment) -> list[dict[str, Any]]:
    return list(current_generation(session, deployment).state)


def current_generation(session: Session, deployment: Deployment) -> DeploymentGeneration:
    found = queries.get_generation(session, deployment, deployment.current_generation)
    assert found is not None, f"{deployment.full_name} has no generation {deployment.current_generation}"
    return found


def history(session: Session, deployment: Deployment, *, limit: int = 100) -> Sequence[DeploymentGeneration]:
    """The deployment's generations, refused ones too, newest first."""
    return queries.generations(session, deployment, limit=check_limit(limit))


def changed_deployment(
    session: Session, namespace: str, name: str, since: int | None, principal: Principal
) -> Deployment | None:
    """One check of a watch: the deployment once its current generation is past ``since`` (at once for
    None), else None. Raises :class:`NotFound` when it is gone or not readable."""
    deployment = get_deployment(session, namespace, name, principal)
    if since is not None and deployment.current_generation <= since:
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
) -> DeploymentGeneration:
    """Record the next generation (and make it current unless ``refused``); tell the webhooks."""
    deployment.latest_generation += 1
    if refused is None:
        deployment.current_generation = deployment.latest_generation
    generation = DeploymentGeneration(
        deployment_id=deployment.id,
        number=deployment.latest_generation,
        status="applied" if refused is None else "refused",
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
            "status": generation.status,
            "reason": refused,
            "cause": cause,
            "state": state,
            "actor": actor,
        },
        namespace=deployment.namespace,
    )
    return generation


def _item(entry: DeploymentEntry, version: Version) -> dict[str, Any]:
    return {
        "name": entry.name,
        "repo": entry.repo,
        "ref": entry.ref,
        "digest": f"sha256:{version.digest}",
        "number": version.number,
    }


def _base_refusal(deployment: Deployment, version: Version, where: str) -> str | None:
    """Why ``version`` cannot be served by ``deployment`` (made for another base), or None."""
    if version.base_id == deployment.base_id:
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
