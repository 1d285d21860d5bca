"""Every page of the web UI × every kind of viewer → the status the authorization model says
(docs/security.md), as tests/api/test_isolation.py does for the API: generated from the app's route table,
so that a page added without a rule here fails. Pages pass their viewer to the same services as the API;
this checks that none shows or changes what its viewer may not.

Namespace ``alpha`` owns ``alpha/private-bot`` (private) and ``alpha/open-bot`` (public); ``beta`` is the
other team. Viewers send their token as an ``Authorization`` header (the pages take it as a session).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from registry.api.app import create_app
from registry.config import Settings
from registry.ui.pages import PageRoute
from tests.conftest import TinyBase
from tests.ui.conftest import Site, make_tokens, newest_job, publish_teams

TOKENS = {  # name -> (scope, namespace)
    "alpha-read": ("read", "alpha"),
    "alpha-write": ("write", "alpha"),
    "beta-read": ("read", "beta"),
    "beta-write": ("write", "beta"),
    "global-admin": ("admin", None),
}
VIEWERS = ["anonymous", *TOKENS]


@dataclass
class World:
    site: Site
    secrets: dict[str, str]
    base: str
    private_job: str  # a diff of alpha/private-bot's two versions

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.site.token}"}

    def client(self, viewer: str) -> httpx.Client:
        """A client of ``viewer``."""
        headers = {"Authorization": f"Bearer {self.secrets[viewer]}"} if viewer != "anonymous" else {}
        return httpx.Client(base_url=self.site.url, headers=headers, timeout=60)


@pytest.fixture(scope="module")
def world(secured_site: Site, tiny_base: TinyBase, adapter_factory: Any) -> World:
    site = secured_site
    publish_teams(site, tiny_base, adapter_factory, private_versions=2)
    site.cli("diff", "alpha/private-bot#1", "alpha/private-bot#2")
    secrets = make_tokens(site, TOKENS)
    return World(site, secrets, tiny_base.content_digest, newest_job(site, "diff"))


Rule = Callable[[str], int]  # viewer -> the status wanted


def anyone(status: int = 200) -> Rule:
    return lambda viewer: status


def alpha_readers(status: int = 200, *, anonymous: int = 404) -> Rule:
    """A private alpha page: alpha's tokens and the global admin; beta's see nothing there (404)."""
    return lambda viewer: (
        status
        if viewer.startswith("alpha") or viewer == "global-admin"
        else anonymous
        if viewer == "anonymous"
        else 404
    )


def alpha_writers(status: int = 303) -> Rule:
    """A change to an alpha repository: alpha's write token and the global admin."""

    def rule(viewer: str) -> int:
        if viewer in ("alpha-write", "global-admin"):
            return status
        return 401 if viewer == "anonymous" else 403

    return rule


def admins(status: int = 200) -> Rule:
    return lambda viewer: status if viewer == "global-admin" else 401 if viewer == "anonymous" else 403


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    form: dict[str, str] | None = None


Prepare = Callable[[World], Call]


PRIVATE = "/alpha/private-bot"


def get(path: str) -> Prepare:
    return lambda w: Call("GET", path.format(base=w.base, job=w.private_job, repo=PRIVATE))


def post(path: str, form: dict[str, str] | None = None) -> Prepare:
    return lambda w: Call("POST", path.format(job=w.private_job, repo=PRIVATE), form or {})


def _yanked(yanked: bool) -> Prepare:
    """Yanking (or unyanking) alpha/private-bot#2, put in the other state first by the admin."""

    def prepare(w: World) -> Call:
        api = f"/api/v1/repos{PRIVATE}/versions/%232"
        w.site.http.post(f"{api}/{'yank' if not yanked else 'unyank'}", json={}, headers=w.admin)
        return Call("POST", f"{PRIVATE}/v/2/{'unyank' if not yanked else 'yank'}", {"reason": "checked"})

    return prepare


def _new_tag(w: World) -> Call:
    return Call("POST", f"{PRIVATE}/tags", {"tag": f"ui-{uuid.uuid4().hex[:8]}", "ref": "1", "expect": ""})


def _job_viewers(status: int) -> Rule:
    """Seeing the private diff job: a token that may read its inputs (anonymous callers have no jobs)."""
    return alpha_readers(status, anonymous=401)


def _cancel(viewer: str) -> int:
    """Cancelling the finished private diff: visible to alpha, writable by alpha-write; already finished."""
    if viewer in ("alpha-write", "global-admin"):
        return 409
    return {"anonymous": 401, "alpha-read": 403}.get(viewer, 404)


def _start_diff(viewer: str) -> int:
    """Starting the private diff: write scope and reading both inputs (it exists: found, not rerun)."""
    if viewer in ("alpha-write", "global-admin"):
        return 303
    return {"anonymous": 401, "alpha-read": 403, "beta-read": 403}.get(viewer, 404)


def any_token(status: int = 200) -> Rule:
    return lambda viewer: 401 if viewer == "anonymous" else status


# (method, route path) -> (rule, prepare). Every page of the app is here.
PAGES: dict[tuple[str, str], tuple[Rule, Prepare]] = {
    ("GET", "/"): (anyone(), get("/")),
    ("GET", "/login"): (anyone(), get("/login")),
    ("POST", "/login"): (anyone(401), post("/login", {"token": "lrg_wrong"})),
    ("POST", "/logout"): (anyone(303), post("/logout")),
    ("GET", "/audit"): (admins(), get("/audit")),
    ("GET", "/bases"): (any_token(), get("/bases")),
    ("GET", "/bases/{spec:path}"): (any_token(), get("/bases/{base}")),
    ("GET", "/jobs"): (any_token(), get("/jobs")),
    ("GET", "/jobs/{job_id}"): (_job_viewers(200), get("/jobs/{job}")),
    ("POST", "/jobs/{job_id}/cancel"): (_cancel, post("/jobs/{job}/cancel")),
    ("GET", "/{namespace}/{name}"): (alpha_readers(anonymous=401), get("{repo}")),
    ("GET", "/{namespace}/{name}/v/{ref}"): (alpha_readers(anonymous=401), get("{repo}/v/1")),
    ("GET", "/{namespace}/{name}/v/{ref}/files/{path:path}"): (
        alpha_readers(anonymous=401),
        get("{repo}/v/1/files/adapter_config.json"),
    ),
    ("GET", "/{namespace}/{name}/compare/{spec:path}"): (
        alpha_readers(anonymous=401),
        get("{repo}/compare/1...2"),
    ),
    ("POST", "/{namespace}/{name}/compare/{spec:path}"): (_start_diff, post("{repo}/compare/1...2")),
    ("POST", "/{namespace}/{name}/description"): (
        alpha_writers(),
        post("{repo}/description", {"description": "x"}),
    ),
    ("POST", "/{namespace}/{name}/labels"): (
        alpha_writers(),
        post("{repo}/labels", {"key": "k", "value": "v"}),
    ),
    ("POST", "/{namespace}/{name}/v/{ref}/labels"): (
        alpha_writers(),
        post("{repo}/v/1/labels", {"key": "k", "value": "v"}),
    ),
    ("POST", "/{namespace}/{name}/tags"): (alpha_writers(), _new_tag),
    ("POST", "/{namespace}/{name}/v/{ref}/yank"): (alpha_writers(), _yanked(False)),
    ("POST", "/{namespace}/{name}/v/{ref}/unyank"): (alpha_writers(), _yanked(True)),
}
# Routes outside the OpenAPI document that are not pages: the API's own documentation.
DOCUMENTATION = {("GET", "/docs"), ("GET", "/redoc")}


def _flattened(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, APIRoute]]:
    """Every APIRoute with its full path, inside included routers too."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif (router := getattr(route, "original_router", None)) is not None:  # an included router
            yield from _flattened(router.routes, prefix + route.include_context.prefix)


def _routes() -> Iterator[tuple[str, str, bool]]:
    """Every (method, path, is a page) of the app that the OpenAPI document leaves out."""
    for path, route in _flattened(create_app(Settings()).routes):
        if not route.include_in_schema:
            for method in route.methods - {"HEAD"}:
                yield method, path, isinstance(route, PageRoute)


def test_every_page_has_a_rule() -> None:
    """A page added without a rule in PAGES fails here (the API's routes: tests/api/test_isolation.py)."""
    pages = {(method, path) for method, path, page in _routes() if page}
    others = {(method, path) for method, path, page in _routes() if not page}
    assert pages - PAGES.keys() == set(), "pages without an authorization rule in PAGES"
    assert PAGES.keys() - pages == set(), "rules for pages that no longer exist"
    assert others == DOCUMENTATION, "routes outside the OpenAPI document that are neither pages nor docs"


@pytest.mark.parametrize("route", sorted(PAGES), ids=[f"{m} {p}" for m, p in sorted(PAGES)])
def test_page_by_viewer(world: World, route: tuple[str, str]) -> None:
    rule, prepare = PAGES[route]
    for viewer in VIEWERS:
        call = prepare(world)
        with world.client(viewer) as client:
            client.get("/login")  # the CSRF cookie
            if call.method == "GET":
                answer = client.get(call.path)
            else:
                form = {"csrf": client.cookies["lorareg_csrf"], **(call.form or {})}
                answer = client.post(call.path, data=form)
        assert answer.status_code == rule(viewer), f"{viewer} {call.method} {call.path}: {answer.text[:400]}"
        assert "default-src 'self'" in answer.headers["content-security-policy"], "every answer of a page"
        if answer.status_code < 300 and "/files/" not in call.path:  # a file's bytes are not a page
            assert answer.headers["content-type"].startswith("text/html")
