from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Query, Response, status

from registry.api.deps import Reader, ReadSession, RegistryDep, Writer, WriteSession
from registry.api.schemas import JobIn, JobOut, job_out
from registry.errors import InvalidInput
from registry.services import jobs

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses={200: {"model": JobOut}})
def submit(
    body: JobIn,
    session: WriteSession,
    principal: Writer,
    registry: RegistryDep,
    background: BackgroundTasks,
    response: Response,
) -> JobOut:
    """Submit a job; it is dispatched once committed. An identical job is returned instead (200)."""
    if body.device not in ("auto", "gpu", "cpu"):
        raise InvalidInput(f"device must be auto, gpu or cpu, not {body.device!r}")
    if body.into:
        principal.require("write", body.into.partition("/")[0])
    use_gpu = body.device == "gpu" or (body.device == "auto" and registry.executor.gpu_available())
    job, created = jobs.submit_job(
        session,
        kind=body.kind,
        inputs=body.inputs,
        params=body.params,
        into=body.into,
        queue="gpu" if use_gpu else "cpu",
        submitted_by=principal.name,
    )
    if created:
        background.add_task(registry.executor.submit, job.id, job.queue)
    else:
        response.status_code = status.HTTP_200_OK
    return job_out(job, created=created)


@router.get("")
def list_jobs(
    session: ReadSession,
    _: Reader,
    status_: str | None = Query(None, alias="status"),
    kind: str | None = None,
    limit: int = Query(50, ge=1, le=500),
) -> list[JobOut]:
    return [job_out(j) for j in jobs.list_jobs(session, status=status_, kind=kind, limit=limit)]


@router.get("/{job_id}")
def get_job(job_id: str, session: ReadSession, _: Reader) -> JobOut:
    return job_out(jobs.get_job(session, job_id))


@router.post("/{job_id}/cancel")
def cancel(job_id: str, session: WriteSession, _: Writer) -> JobOut:
    """Cancel a queued job, or ask a running one to stop between steps."""
    return job_out(jobs.cancel_job(session, job_id))
