"""The compare page: two versions (of one repository or two) side by side, with their diff job's heatmap, or
for a writer a button that submits that job."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import BackgroundTasks, Query, Request, Response

from registry.api.deps import ReadSession, RegistryDep, WriteSession
from registry.refs import RepoName, RepoRef
from registry.services import compare as comparing
from registry.ui import heatmap
from registry.ui.pages import Form, Viewer, page_router, redirect, render

router = page_router()
PATH = "/{namespace}/{name}/compare/{spec:path}"
SAFE = "/:@"  # left as they are in a compare URL; '#' (a version number of another repository) is escaped


def compare_url(a: RepoRef, b: RepoRef) -> str:
    """The compare page of ``a`` and ``b``, on ``a``'s repository (``b`` relative to it when in it too)."""

    def side(ref: RepoRef) -> str:
        relative = str(ref.ref).removeprefix("#")
        digits_tag = ref.ref.kind == "tag" and relative.isdigit()  # would read as a version number
        return quote(relative if ref.repo == a.repo and not digits_tag else str(ref), safe=SAFE)

    return f"/{a.repo}/compare/{side(a)}{comparing.SEPARATOR}{side(b)}"


@router.get(PATH)
def compare_page(
    request: Request,
    namespace: str,
    name: str,
    spec: str,
    session: ReadSession,
    viewer: Viewer,
    metric: Annotated[str, Query(max_length=16)] = "relative",
) -> Response:
    """Both versions' headers, metric and label differences, and the diff's heatmap once it exists."""
    first, second = comparing.parse_spec(spec, RepoName.parse(f"{namespace}/{name}"))
    comparison = comparing.compare(session, first, second, viewer)
    report, job = comparison.report, comparison.job
    grid = None
    if report is not None and job is not None:
        grid = heatmap.grid(report, metric=metric, scale=job.params.get("scale", "max"))
    context = {
        "c": comparison,
        "report": report,
        "grid": grid,
        "number": heatmap.number,
        "swapped": compare_url(comparison.b.ref, comparison.a.ref),
        "stylesheets": ["compare.css"],
    }
    return render(request, "compare/compare.html", context)


@router.post(PATH)
def start_diff(
    namespace: str,
    name: str,
    spec: str,
    session: WriteSession,
    registry: RegistryDep,
    viewer: Viewer,
    form: Form,
    background: BackgroundTasks,
) -> Response:
    """Submit the diff job (dispatched once committed) and come back to the page, which follows it."""
    queue = "gpu" if registry.executor.gpu_available() else "cpu"
    first, second = comparing.parse_spec(spec, RepoName.parse(f"{namespace}/{name}"))
    job, created = comparing.start_diff(session, first, second, viewer, queue=queue)
    if created:
        background.add_task(registry.executor.submit, job.id, job.queue)
    return redirect(compare_url(first, second))
