"""Logging in to the web UI with a token, and out."""

from __future__ import annotations

from fastapi import Request, Response

from registry.api.deps import RegistryDep, in_transaction
from registry.errors import Unauthorized
from registry.services import tokens, web_sessions
from registry.ui.pages import SESSION_COOKIE, Form, Viewer, field, page_router, redirect, render

router = page_router()


def _next(target: str | None) -> str:
    """Where to go after logging in: a path of this server only (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login")
def login_page(request: Request, viewer: Viewer, next: str | None = None) -> Response:
    """The login form: paste a token (``lorareg token create``)."""
    return render(request, "login.html", {"next": _next(next), "problem": None})


@router.post("/login")
async def login(request: Request, registry: RegistryDep, viewer: Viewer, form: Form) -> Response:
    """Check the token, open a session, and set its cookie (HttpOnly, SameSite=Strict; Secure on HTTPS)."""
    target = _next(field(form, "next"))
    secret = field(form, "token") or ""
    try:
        principal = await tokens.authenticate(registry.lookups, f"Bearer {secret}")
    except Unauthorized as refusal:
        context = {"next": target, "problem": str(refusal)}
        return render(request, "login.html", context, status=401)
    cookie, lifetime = await in_transaction(
        registry, lambda session: web_sessions.open_session(session, principal)
    )
    response = redirect(target)
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=lifetime,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request, registry: RegistryDep, viewer: Viewer, form: Form) -> Response:
    """End the session and forget its cookie."""
    if (secret := request.cookies.get(SESSION_COOKIE)) is not None:
        await in_transaction(registry, lambda session: web_sessions.close_session(session, secret, viewer))
    response = redirect("/")
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response
