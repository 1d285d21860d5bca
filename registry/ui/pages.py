"""What every page shares: who is looking (``Viewer``), rendering a template, forms with CSRF checks,
errors as pages, and the security headers (``Content-Security-Policy: default-src 'self'``: a page loads
nothing from anywhere but this server).

Pages are routes of a :func:`page_router`: left out of the OpenAPI document, their errors rendered as
HTML with the status the API would answer. Authorization is the services' (a page passes its viewer
down), exactly as for the API.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine, Mapping
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from starlette.datastructures import FormData

from registry import errors
from registry.api.deps import Registry, caller, get_registry, record_use
from registry.api.errors import STATUS_BY_ERROR
from registry.principal import ANONYMOUS_ADMIN, ANONYMOUS_READER, OPEN_READER, Principal
from registry.services import web_sessions
from registry.ui.templating import templates

SESSION_COOKIE = "lorareg_session"
CSRF_COOKIE = "lorareg_csrf"
CSRF_FIELD = "csrf"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}
MAX_FORM_FIELDS = 200


class PageRoute(APIRoute):
    """A page: a registry error becomes an error page with the API's status; every answer carries the
    security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                response = await handle(request)
            except errors.RegistryError as error:
                response = error_page(request, error)
            response.headers.update(SECURITY_HEADERS)
            return response

        return page


def page_router(**options: Any) -> APIRouter:
    """A router of pages (see :class:`PageRoute`)."""
    return APIRouter(route_class=PageRoute, include_in_schema=False, **options)


def _status_of(error: errors.RegistryError) -> int:
    return next((code for kind, code in STATUS_BY_ERROR if isinstance(error, kind)), 500)


def error_page(request: Request, error: errors.RegistryError) -> Response:
    """The error as a page; an anonymous viewer refused for want of a token is offered the login page."""
    status = _status_of(error)
    return render(request, "error.html", {"status": status, "message": str(error)}, status=status)


async def viewer(request: Request) -> Principal:
    """Who is looking: everyone's admin with ``LOREG_AUTH=off``; else the token of an ``Authorization``
    header (scripts, benchmarks), the browser's session, or the anonymous reader."""
    registry = get_registry(request)
    settings = registry.settings
    if settings.auth == "off":
        principal = ANONYMOUS_ADMIN
    elif request.headers.get("authorization") is not None:
        return await caller(request)
    elif (secret := request.cookies.get(SESSION_COOKIE)) and (
        found := await web_sessions.session_principal(registry.lookups, secret)
    ) is not None:
        principal = found
        if principal.stale_last_use:
            async with registry.session_slots:
                await anyio.to_thread.run_sync(record_use, registry.db, principal)
    else:
        request.state.session_ended = secret is not None
        principal = OPEN_READER if settings.anonymous_read else ANONYMOUS_READER
    request.state.principal = principal
    return principal


Viewer = Annotated[Principal, Depends(viewer)]


def csrf_token(request: Request) -> str:
    """The CSRF token forms carry: the browser's ``lorareg_csrf`` cookie (made on first render)."""
    token = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if token is None:
        token = request.state.new_csrf = secrets.token_urlsafe(24)
    return token


async def checked_form(request: Request) -> FormData:
    """The posted form, once it proves it came from one of this server's pages: its ``csrf`` field equals
    the browser's CSRF cookie (which another site can neither read nor set) and, when the browser says
    where the form was, that is this server."""
    form = await request.form(max_fields=MAX_FORM_FIELDS)
    cookie, sent = request.cookies.get(CSRF_COOKIE), form.get(CSRF_FIELD)
    stale = errors.Forbidden("this form is out of date or came from another site: reload the page and retry")
    if not cookie or not isinstance(sent, str) or not secrets.compare_digest(cookie, sent):
        raise stale
    origin = request.headers.get("origin")
    if origin is not None and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        raise stale
    return form


Form = Annotated[FormData, Depends(checked_form)]


def field(form: FormData, name: str, default: str | None = None) -> str | None:
    """A form's text field (stripped), or ``default`` when absent or empty."""
    value = form.get(name)
    if not isinstance(value, str) or not value.strip():
        return default
    return value.strip()


def render(
    request: Request, template: str, context: Mapping[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    """``template`` with ``context`` and what every page shows (the viewer, the CSRF token, the
    registry's settings)."""
    principal: Principal | None = getattr(request.state, "principal", None)
    registry: Registry | None = getattr(request.app.state, "registry", None)
    values = {
        "request": request,
        "viewer": principal,
        "csrf": csrf_token(request),
        "auth_required": registry is not None and registry.settings.auth != "off",
        **(context or {}),
    }
    response = templates.TemplateResponse(request, template, values, status_code=status)
    secure = request.url.scheme == "https"
    if (new := getattr(request.state, "new_csrf", None)) is not None:
        response.set_cookie(CSRF_COOKIE, new, httponly=True, samesite="strict", secure=secure)
    if getattr(request.state, "session_ended", False):
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict", secure=secure)
    return response


def redirect(url: str) -> RedirectResponse:
    """After a form: back to a page (303, so that reloading it does not post again)."""
    return RedirectResponse(url, status_code=303)


def login_url(request: Request) -> str:
    """The login page, returning here afterwards."""
    return f"/login?next={quote(request.url.path)}"
