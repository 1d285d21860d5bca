"""Jobs: submission (inputs resolved to digests, identical jobs reused), state, cancellation.

This module only keeps the ``jobs`` table true; :mod:`registry.jobs` runs them.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from registry.adapters.config import MERGE_BASE_TYPES
from registry.compute.methods import METHODS
from registry.db import queries
from registry.db.models import Job, Version, as_utc, utcnow
from registry.errors import Conflict, InvalidInput, NotFound
from registry.principal import Principal
from registry.refs import RepoName, RepoRef
from registry.services import audit, repos, versions, webhooks
from registry.services.pages import Page, check_limit, page_of

KINDS = {  # kind -> (min inputs, max inputs, the kind of version they must be)
    "merge": (1, None, "adapter"),
    "diff": (2, 2, "adapter"),
    "merge_base": (1, 1, "adapter"),
    "extract": (1, 1, "model"),
}
WANTED_HINT = {
    "adapter": "",
    "model": " (a fine-tuned model: `lorareg push DIR REPO --model --base BASE` makes one)",
}
A_KIND = {"adapter": "an adapter", "model": "a model"}
NEEDS_BASE_WEIGHTS = ("merge_base", "extract")
EXTRACT_PARAMS = {"rank", "energy"}
DIFF_SCALES = ("max", "fixed")  # colour range: this plot's largest value, or 0..√2 for every plot
MERGE_PARAMS = {"method", "weights", "svd_rank", "svd_clamp", "density", "majority_sign_method", "seed"}
FINISHED = ("succeeded", "failed", "cancelled")
MAX_SCANNED = 5000  # jobs read for one page of a list, at most


def submit_job(
    session: Session,
    *,
    kind: str,
    inputs: Sequence[str],
    params: dict[str, Any],
    principal: Principal,
    into: str | None = None,
    queue: str = "cpu",
) -> tuple[Job, bool]:
    """Create a job (or return the identical one already queued, running or done) and whether it is new.
    ``principal`` must be able to read every input and write the output repository."""
    principal.require("write")
    if kind not in KINDS:
        raise InvalidInput(f"unknown job kind {kind!r}; use one of {', '.join(KINDS)}")
    low, high, wanted_kind = KINDS[kind]
    if len(inputs) < low or (high is not None and len(inputs) > high):
        wanted = f"exactly {low}" if low == high else f"at least {low}"
        raise InvalidInput(f"a {kind} job takes {wanted} input versions, got {len(inputs)}")
    output = _output(kind, into)
    if output is not None:
        principal.require("write", output["repo"].partition("/")[0])
    targets = [RepoRef.parse(ref) for ref in inputs]
    found = [versions.find_version(session, target, principal) for target in targets]
    _check_inputs(kind, wanted_kind, found)
    resolved = [_described(version) for version in found]
    params = _check_params(kind, params, len(resolved))
    identity: dict[str, Any] = {"kind": kind, "inputs": resolved, "params": params, "output": output}
    refs = [str(target) for target in targets]  # as the caller named them
    if kind == "diff":
        identity["refs"] = refs  # the heatmap's title names them
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    existing = queries.find_reusable_job(session, key)
    if existing is not None:
        return existing, False  # its inputs and output are the ones just checked
    job = Job(
        id=uuid.uuid4().hex,
        kind=kind,
        key=key,
        inputs={"versions": [{**item, "ref": ref} for item, ref in zip(resolved, refs, strict=True)]},
        params=params,
        output=output,
        queue=queue,
        status="queued",
        attempts=0,
        submitted_by=principal.name,
        cancel_requested=False,
    )
    session.add(job)
    session.flush()
    audit.record(
        session,
        principal,
        "job.submit",
        target=f"job {job.id}",
        namespace=_namespace(job),
        detail={
            "kind": kind,
            "inputs": [f"{i['repo']}@sha256:{i['digest']}" for i in resolved],
            "into": into,
        },
    )
    return job, True


def get_job(session: Session, job_id: str, *, lock: bool = False) -> Job:
    job = queries.get_job(session, job_id, lock=lock)
    if job is None:
        raise NotFound(f"no job {job_id}; `lorareg jobs` lists them")
    return job


def show_job(session: Session, job_id: str, principal: Principal, *, lock: bool = False) -> Job:
    """A job ``principal`` may see: one whose every input it may read (an unrestricted admin sees all).
    Others are reported exactly like jobs that do not exist."""
    principal.require("read")
    job = queries.get_job(session, job_id, lock=lock)
    if job is None or not _visible(session, principal, job):
        raise NotFound(f"no job {job_id} visible to this token; `lorareg jobs` lists them")
    return job


def list_jobs(
    session: Session,
    principal: Principal,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[Job]:
    """The jobs ``principal`` may see, newest first; ``cursor`` continues a previous page. Jobs are read
    in batches and filtered, at most ``MAX_SCANNED`` of them per page."""
    principal.require("read")
    check_limit(limit)
    before = queries.get_job(session, cursor) if cursor is not None else None
    if cursor is not None and before is None:
        raise InvalidInput(f"invalid cursor {cursor!r}: pass the one a previous page returned")
    visible: list[Job] = []
    scanned = 0
    while len(visible) <= limit and scanned < MAX_SCANNED:
        batch = queries.list_jobs(session, status=status, kind=kind, before=before, limit=limit + 1)
        if not batch:
            break
        scanned += len(batch)
        visible.extend(j for j in batch if _visible(session, principal, j))
        before = batch[-1]
    page = page_of(visible, limit, lambda job: job.id)
    if page.next_cursor is None and scanned >= MAX_SCANNED and before is not None:
        return Page(page.items, before.id)  # more may follow past what this page scanned
    return page


def cancel_job(session: Session, job_id: str, principal: Principal) -> Job:
    """Cancel a queued job at once; ask a running one to stop (its worker checks between steps). Needs
    write on the job's output repository (a diff: on every input's namespace)."""
    job = show_job(session, job_id, principal, lock=True)
    for namespace in _namespaces_written(job):
        principal.require("write", namespace)
    if job.status in FINISHED:
        raise Conflict(f"job {job_id} already {job.status}; nothing to cancel")
    if job.status == "queued":
        job.status, job.finished_at = "cancelled", utcnow()
    job.cancel_requested = True
    session.flush()
    audit.record(session, principal, "job.cancel", target=f"job {job.id}", namespace=_namespace(job))
    return job


def _visible(session: Session, principal: Principal, job: Job) -> bool:
    if principal.unrestricted:
        return True
    names = [RepoName.parse(item["repo"]) for item in job.inputs["versions"]]
    outside = [n for n in names if not principal.in_namespace(n.namespace)]
    return all(repos.is_public(session, name) for name in outside)


def _namespace(job: Job) -> str | None:
    """The namespace a job writes into (None for a diff, which writes nothing)."""
    return job.output["repo"].partition("/")[0] if job.output else None


def _namespaces_written(job: Job) -> list[str]:
    if job.output:
        return [job.output["repo"].partition("/")[0]]
    return sorted({item["repo"].partition("/")[0] for item in job.inputs["versions"]})


def claim_job(
    session: Session,
    job_id: str,
    *,
    worker: str,
    device: str,
    stale_after: timedelta,
    now: datetime | None = None,
) -> Job | None:
    """Mark the job running on ``worker``, or None when there is nothing to do: it is finished, cancelled,
    or running on another worker whose heartbeat is fresh. A stale heartbeat means that worker died:
    this one takes over (another attempt)."""
    now = now or utcnow()
    job = queries.get_job(session, job_id, lock=True)
    if job is None or job.status in FINISHED:
        return None
    if (
        job.status == "running"
        and job.heartbeat_at is not None
        and as_utc(job.heartbeat_at) > now - stale_after
    ):
        return None
    if job.cancel_requested:
        job.status, job.finished_at = "cancelled", now
        return None
    job.status, job.worker, job.device = "running", worker, device
    job.attempts += 1
    job.started_at = job.heartbeat_at = now
    job.error = None
    session.flush()
    return job


def heartbeat(session: Session, job_id: str, *, progress: str | None = None) -> bool:
    """Record that the job's worker is alive; return whether cancellation was requested."""
    job = get_job(session, job_id, lock=True)
    job.heartbeat_at = utcnow()
    if progress is not None:
        job.progress = progress
    return job.cancel_requested


def finish_job(
    session: Session,
    job_id: str,
    *,
    status: str,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> Job:
    job = get_job(session, job_id, lock=True)
    job.status, job.result, job.error, job.finished_at = status, result, error, utcnow()
    session.flush()
    webhooks.emit(
        session,
        "job.finished",
        {"id": job.id, "kind": job.kind, "status": status, "error": error, "result": result},
        namespace=_namespace(job),
    )
    return job


def _check_inputs(kind: str, wanted_kind: str, found: Sequence[Version]) -> None:
    """Refuse, before any job exists, inputs the job would fail on: the wrong kind of version, inputs
    of different bases, or (merge-base, extract) a base whose weights the registry does not hold."""
    command = kind.replace("_", "-")
    computable = ("LORA", *MERGE_BASE_TYPES) if kind == "merge_base" else ("LORA",)
    for version in found:
        have = version.config.get("kind", "adapter")
        if have != wanted_kind:
            raise InvalidInput(
                f"{_label(version)} is {A_KIND[have]} version; {command} takes {wanted_kind} versions"
                + WANTED_HINT[wanted_kind]
            )
        peft_type = version.config.get("peft_type", "LORA") if have == "adapter" else "LORA"
        if peft_type not in computable:
            raise InvalidInput(
                f"{_label(version)} is a {peft_type} adapter; {command} computes with "
                f"{', '.join(computable)} adapters only (the registry stores, checks and serves it "
                "unchanged): merge or convert it with PEFT instead"
            )
    if len({version.base.content_digest for version in found}) > 1:
        raise InvalidInput(
            "the inputs were made for different base models ("
            + ", ".join(f"{_label(v)}: {v.base.name} sha256:{v.base.content_digest}" for v in found)
            + f"); {command} combines versions of one base"
        )
    base = found[0].base
    if kind in NEEDS_BASE_WEIGHTS and not base.stored_files:
        raise Conflict(
            f"{command} needs the weights of base model {base.name} (sha256:{base.content_digest}), and "
            "the registry holds only its shapes; upload them with "
            f"`lorareg base register DIR --name {base.name} --with-weights` (DIR: the base's directory)",
            code="base_weights_missing",
        )


def _label(version: Version) -> str:
    return f"{version.repository.full_name}#{version.number}"


def _described(version: Version) -> dict[str, Any]:
    return {
        "repo": version.repository.full_name,
        "digest": version.digest,
        "number": version.number,
        "base": version.base.content_digest,
        "kind": version.config.get("kind", "adapter"),
    }


def _output(kind: str, into: str | None) -> dict[str, Any] | None:
    if kind == "diff":
        return None
    if not into:
        raise InvalidInput(f"a {kind} job needs an output: into = 'ns/name[:tag]'")
    target = RepoRef.parse(into)
    if target.ref.kind != "tag":
        raise InvalidInput(f"the output {into!r} must be ns/name or ns/name:tag")
    return {"repo": str(target.repo), "tag": target.ref.value if ":" in into else None}


def _check_params(kind: str, params: dict[str, Any], inputs: int) -> dict[str, Any]:
    if kind == "merge_base":
        if params:
            raise InvalidInput(f"a {kind} job takes no parameters, got {', '.join(sorted(params))}")
        return {}
    if kind == "diff":
        if set(params) - {"scale"}:
            raise InvalidInput(f"a diff job takes only scale, got {', '.join(sorted(params))}")
        scale = params.get("scale", "max")
        if scale not in DIFF_SCALES:
            raise InvalidInput(
                f"scale must be max (this plot's largest value) or fixed (0..√2, comparable across plots), "
                f"not {scale!r}"
            )
        return {"scale": scale}
    if kind == "extract":
        given = {k: v for k, v in params.items() if v is not None}
        if set(given) - EXTRACT_PARAMS or len(given) != 1:
            raise InvalidInput("an extract job takes exactly one of rank (an integer) or energy (a fraction)")
        if "rank" in given and (not isinstance(given["rank"], int) or given["rank"] < 1):
            raise InvalidInput(f"rank must be a positive integer, got {given['rank']!r}")
        if "energy" in given and not 0 < given["energy"] <= 1:
            raise InvalidInput(f"energy must be in (0, 1], got {given['energy']!r}")
        return given
    unknown = set(params) - MERGE_PARAMS
    if unknown:
        raise InvalidInput(f"unknown merge parameters: {', '.join(sorted(unknown))}")
    method = params.get("method", "svd")
    if method not in METHODS:
        raise InvalidInput(f"unknown merge method {method!r}; use one of {', '.join(METHODS)}")
    weights = params.get("weights") or [1.0] * inputs
    if len(weights) != inputs:
        raise InvalidInput(f"{len(weights)} weights for {inputs} adapters; give one weight per adapter")
    density = params.get("density")
    if density is not None and not 0 < density <= 1:
        raise InvalidInput(f"density must be in (0, 1], got {density}")
    return {**{k: v for k, v in params.items() if v is not None}, "method": method, "weights": weights}
