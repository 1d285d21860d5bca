"""Refused and failed calls in the audit trail.

A route whose name is an audited action (``tag.move``, ``version.push``, …: a dotted name) records its
successes itself, through the service, in the transaction that makes the change. This middleware adds
the calls to those routes that were refused or failed — a missing token, another namespace, a bad
body — in a transaction of their own, with the actor the request authenticated as, if any.
"""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.api.deps import in_transaction
from registry.principal import Principal
from registry.services import audit

UNAUTHENTICATED = Principal(name="unauthenticated", scope="read", anonymous=True)


def audited_action(scope: Scope) -> str | None:
    """The audited action of the route that served ``scope``, if it is one."""
    route = scope.get("route")
    name = getattr(route, "name", None)
    return name if isinstance(name, str) and "." in name else None


class RefusalTrail:
    """Pure ASGI middleware: records non-2xx answers of audited routes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                action = audited_action(scope)
                if action is not None and message["status"] >= 400:  # recorded before it is answered
                    code = dict(message.get("headers", [])).get(b"x-error-code", b"error").decode("latin-1")
                    await self._record(scope, action, message["status"], code)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if not started and (action := audited_action(scope)) is not None:
                await self._record(scope, action, 500, "internal_error")
            raise

    async def _record(self, scope: Scope, action: str, status: int, code: str) -> None:
        registry = scope["app"].state.registry
        principal = scope.get("state", {}).get("principal", UNAUTHENTICATED)
        params = scope.get("path_params", {})
        namespace = params.get("namespace")
        path = scope.get("path", "")

        def write(session: Session) -> None:
            audit.record(
                session,
                principal,
                action,
                target=path.removeprefix("/api/v1"),
                namespace=namespace,
                result=code,
                detail={"status": status, "method": scope.get("method")},
            )

        await in_transaction(registry, write)
