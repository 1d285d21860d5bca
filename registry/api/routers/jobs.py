from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response, status

from registry.api.deps import Caller, ReadSession, RegistryDep, WriteSession
from registry.api.pagination import Cursor, link_next
from registry.api.schemas import JobIn, JobOut, job_out
from registry.errors import InvalidInput
from registry.services import jobs

router = APIRouter(prefix="/jobs", tags=["jobs"])


@router.post("", status_code=status.HTTP_202_ACCEPTED, name="job.submit", responses={200: {"model": JobOut}})
def submit(
    body: JobIn,
    session: WriteSession,
    principal: Caller,
    registry: RegistryDep,
    background: BackgroundTasks,
    response: Response,
) -> JobOut:
    """Submit a job (read on every input, write on ``into``); it is dispatched once committed. An
    identical job is returned instead (200)."""
    if body.device not in ("auto", "gpu", "cpu"):
        raise InvalidInput(f"device must be auto, gpu or cpu, not {body.device!r}")
    use_gpu = body.device == "gpu" or (body.device == "auto" and registry.executor.gpu_available())
    job, created = jobs.submit_job(
        session,
        kind=body.kind,
        inputs=body.inputs,
        params=body.params,
        principal=principal,
        into=body.into,
        queue="gpu" if use_gpu else "cpu",
    )
    if created:
        background.add_task(registry.executor.submit, job.id, job.queue)
    else:
        response.status_code = status.HTTP_200_OK
    return job_out(job, created=created)


@router.get("")
def list_jobs(
    request: Request,
    response: Response,
    session: ReadSession,
    principal: Caller,
    status_: str | None = Query(None, alias="status"),
    kind: str | None = None,
    limit: int = Query(50, ge=1, le=500),
    cursor: Cursor = None,
) -> list[JobOut]:
    """The jobs the caller may see (it may read all their inputs), newest first; one page."""
    page = jobs.list_jobs(session, principal, status=status_, kind=kind, limit=limit, cursor=cursor)
    link_next(request, response, page.next_cursor)
    return [job_out(j) for j in page.items]


@router.get("/{job_id}")
def get_job(job_id: str, session: ReadSession, principal: Caller) -> JobOut:
    return job_out(jobs.show_job(session, job_id, principal))


@router.post("/{job_id}/cancel", name="job.cancel")
def cancel(job_id: str, session: WriteSession, principal: Caller) -> JobOut:
    """Cancel a queued job, or ask a running one to stop between steps (write on its output)."""
    return job_out(jobs.cancel_job(session, job_id, principal))
