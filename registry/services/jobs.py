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

from registry.compute.methods import METHODS
from registry.db import queries
from registry.db.models import Job, as_utc, utcnow
from registry.errors import Conflict, InvalidInput, NotFound
from registry.refs import RepoRef
from registry.services import repos, versions, webhooks

KINDS = {  # kind -> (min inputs, max inputs, the kind of version they must be)
    "merge": (1, None, "adapter"),
    "diff": (2, 2, "adapter"),
    "merge_base": (1, 1, "adapter"),
    "extract": (1, 1, "model"),
}
EXTRACT_PARAMS = {"rank", "energy"}
MERGE_PARAMS = {"method", "weights", "svd_rank", "svd_clamp", "density", "majority_sign_method", "seed"}
FINISHED = ("succeeded", "failed", "cancelled")


def submit_job(
    session: Session,
    *,
    kind: str,
    inputs: Sequence[str],
    params: dict[str, Any],
    into: str | None = None,
    queue: str = "cpu",
    submitted_by: str | None = None,
) -> tuple[Job, bool]:
    """Create a job (or return the identical one already queued, running or done) and whether it is new."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown job kind {kind!r}; use one of {', '.join(KINDS)}")
    low, high, wanted_kind = KINDS[kind]
    if len(inputs) < low or (high is not None and len(inputs) > high):
        wanted = f"exactly {low}" if low == high else f"at least {low}"
        raise InvalidInput(f"a {kind} job takes {wanted} input versions, got {len(inputs)}")
    resolved = [_resolve(session, ref) for ref in inputs]
    for item in resolved:
        if item["kind"] != wanted_kind:
            raise InvalidInput(
                f"{item['repo']}#{item['number']} is a {item['kind']}; {kind} jobs take {wanted_kind}s"
            )
    if len({item["base"] for item in resolved}) > 1:
        raise InvalidInput(
            "the inputs were made for different base models ("
            + ", ".join(f"{item['repo']}#{item['number']}: {item['base']}" for item in resolved)
            + "); jobs combine adapters of one base"
        )
    output = _output(kind, into)
    params = _check_params(kind, params, len(resolved))
    key = hashlib.sha256(
        json.dumps(
            {"kind": kind, "inputs": resolved, "params": params, "output": output}, sort_keys=True
        ).encode()
    ).hexdigest()
    existing = queries.find_reusable_job(session, key)
    if existing is not None:
        return existing, False
    job = Job(
        id=uuid.uuid4().hex,
        kind=kind,
        key=key,
        inputs={"versions": resolved},
        params=params,
        output=output,
        queue=queue,
        status="queued",
        attempts=0,
        submitted_by=submitted_by,
        cancel_requested=False,
    )
    session.add(job)
    session.flush()
    return job, True


def get_job(session: Session, job_id: str, *, lock: bool = False) -> Job:
    job = queries.get_job(session, job_id, lock=lock)
    if job is None:
        raise NotFound(f"no job {job_id}; `lorareg jobs` lists them")
    return job


def list_jobs(session: Session, *, status: str | None = None, kind: str | None = None, limit: int = 50):
    return queries.list_jobs(session, status=status, kind=kind, limit=limit)


def cancel_job(session: Session, job_id: str) -> Job:
    """Cancel a queued job at once; ask a running one to stop (its worker checks between steps)."""
    job = get_job(session, job_id, lock=True)
    if job.status in FINISHED:
        raise Conflict(f"job {job_id} already {job.status}; nothing to cancel")
    if job.status == "queued":
        job.status, job.finished_at = "cancelled", utcnow()
    job.cancel_requested = True
    session.flush()
    return job


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
        namespace=job.output["repo"].partition("/")[0] if job.output else None,
    )
    return job


def _resolve(session: Session, ref: str) -> dict[str, Any]:
    target = RepoRef.parse(ref)
    version = versions.get_version(session, repos.get_repository(session, target.repo), target.ref)
    return {
        "repo": str(target.repo),
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
    if kind in ("diff", "merge_base"):
        if params:
            raise InvalidInput(f"a {kind} job takes no parameters, got {', '.join(sorted(params))}")
        return {}
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
