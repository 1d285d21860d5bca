"""The web UI: server-rendered pages for people (Jinja2 templates, a stylesheet and a little script, all
shipped in the package: no CDN, no request to any other host), under ``/`` beside the API.

Each page is a route of a :func:`registry.ui.pages.page_router` that calls the same services as the API,
with the viewer's principal: a page shows exactly what that principal may read.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from registry.ui.routers import audit, auth, bases, compare, home, jobs, repos
from registry.ui.templating import STATIC, STATIC_PREFIX


def install(app: FastAPI) -> None:
    """Add the pages and their assets; last, since a repository's page (``/{namespace}/{name}``) would
    match the paths of any route added after it."""
    app.mount(STATIC_PREFIX, StaticFiles(directory=STATIC), name="ui-static")
    # The repository's pages last: their paths (/{namespace}/{name}/…) would take the others'.
    for router in (
        auth.router,
        home.router,
        bases.router,
        jobs.router,
        audit.router,
        compare.router,
        repos.router,
    ):
        app.include_router(router)
