"""The jobs pages: the list of jobs the viewer may see, one job whole (live while it runs), and cancelling."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import Query, Request, Response

from registry.api.deps import ReadSession, WriteSession
from registry.db.models import Job, as_utc, utcnow
from registry.principal import Principal
from registry.refs import Ref, RepoName, RepoRef
from registry.services import jobs
from registry.ui.pages import Form, Viewer, page_router, redirect, render
from registry.ui.routers.compare import compare_url

router = page_router()
PAGE, MAX_PAGE = 30, 200
STATUSES = ("queued", "running", *jobs.FINISHED)
STYLESHEETS = ["compare.css"]  # the compare and jobs pages' rules


@dataclass(frozen=True)
class Link:
    text: str
    href: str
    title: str = ""


@dataclass(frozen=True)
class JobView:
    """A job as the pages show it: its inputs and output as links, how long it took."""

    job: Job
    inputs: list[Link]
    output: Link | None
    duration: str
    compare: str | None  # a diff's compare page

    @property
    def live(self) -> bool:
        return self.job.status not in jobs.FINISHED


def view(job: Job, now: datetime | None = None) -> JobView:
    """``job`` with links: each input to the exact version it read, the output to the version it made
    (or its repository until then), a diff to its compare page."""
    items = job.inputs["versions"]
    inputs = [
        Link(
            item.get("ref") or f"{item['repo']}#{item['number']}",
            f"/{item['repo']}/v/sha256:{item['digest']}",
            f"{item['repo']}#{item['number']} sha256:{item['digest']}",
        )
        for item in items
    ]
    made = (job.result or {}).get("version")
    output = None
    if made is not None:
        repo, number = made["repo"], made["number"]
        output = Link(f"{repo}#{number}", f"/{repo}/v/{number}", made["digest"])
    elif job.output is not None:
        tag = job.output.get("tag")
        output = Link(job.output["repo"] + (f":{tag}" if tag else ""), f"/{job.output['repo']}")
    compare = None
    if job.kind == "diff":
        first, second = (RepoRef(RepoName.parse(i["repo"]), Ref("number", str(i["number"]))) for i in items)
        compare = compare_url(first, second)
    return JobView(job, inputs, output, _duration(job, now or utcnow()), compare)


def _duration(job: Job, now: datetime) -> str:
    if job.started_at is None:
        return "waiting" if job.status == "queued" else ""
    if job.finished_at is None:
        return f"running for {_span(now - as_utc(job.started_at))}"
    return _span(as_utc(job.finished_at) - as_utc(job.started_at))


def _span(length: timedelta) -> str:
    """A duration for people: ``4.2 s``, ``3 min 12 s``, ``2 h 5 min``."""
    seconds = max(length.total_seconds(), 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, second = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {second} s"
    return f"{minutes // 60} h {minutes % 60} min"


def _may_cancel(viewer: Principal) -> bool:
    """Whether to offer the cancel button (the service decides, on the job's namespaces)."""
    return not viewer.anonymous and viewer.has_scope("write")


@router.get("/jobs")
def jobs_page(
    request: Request,
    session: ReadSession,
    viewer: Viewer,
    status: Annotated[str | None, Query(max_length=16)] = None,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = PAGE,
) -> Response:
    """The jobs the viewer may see (every input readable), newest first, a page at a time."""
    status, kind = status or None, kind or None
    page = jobs.list_jobs(session, viewer, status=status, kind=kind, limit=limit, cursor=cursor)
    more = request.url.include_query_params(cursor=page.next_cursor) if page.next_cursor else None
    context = {
        "views": [view(job) for job in page.items],
        "status": status,
        "kind": kind,
        "statuses": STATUSES,
        "kinds": list(jobs.KINDS),
        "more": str(more) if more else None,
        "stylesheets": STYLESHEETS,
    }
    return render(request, "jobs/list.html", context)


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, session: ReadSession, viewer: Viewer) -> Response:
    """One job: what it read, did and made; refreshed while it is queued or running."""
    shown = view(jobs.show_job(session, job_id, viewer))
    context = {
        "v": shown,
        "job": shown.job,
        "may_cancel": shown.live and _may_cancel(viewer),
        "stylesheets": STYLESHEETS,
    }
    return render(request, "jobs/job.html", context)


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: str, session: WriteSession, viewer: Viewer, form: Form) -> Response:
    """Cancel a queued job, or ask a running one to stop (write on what it writes)."""
    job = jobs.cancel_job(session, job_id, viewer)
    return redirect(f"/jobs/{job.id}")
