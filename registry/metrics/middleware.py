"""Every HTTP request counted and timed under its route template, with its body bytes."""

from __future__ import annotations

import time
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from registry.metrics import instruments


class RouteLabels:
    """The full path template (``/api/v1/repos/{namespace}/{name}``) of the route that served a request.

    FastAPI leaves the route object in ``scope["route"]`` (its own path lacks the prefix it was included
    under); plain Starlette routes leave only their endpoint; mounts (static files) neither, so they are
    known by their literal prefix. Routes compare by value and are not hashable: keyed by ``id``."""

    def __init__(self, app: Any) -> None:
        self.templates: dict[int, str] = {}
        self.mounts: list[tuple[str, str]] = []
        for context in iter_route_contexts(app.routes):
            template, route = context.path_format, context.original_route
            if template is None:
                continue
            self.templates[id(route)] = template
            if isinstance(route, Mount):
                self.mounts.append((template.removesuffix("{path}"), template))
            elif not isinstance(route, APIRoute) and context.endpoint is not None:
                self.templates[id(context.endpoint)] = template

    def label(self, scope: Scope) -> str:
        found = self.templates.get(id(scope.get("route"))) or self.templates.get(id(scope.get("endpoint")))
        if found is not None:
            return found
        path = scope["path"]
        return next((t for prefix, t in self.mounts if path.startswith(prefix)), instruments.UNMATCHED)


class RequestMetrics:
    """Pure ASGI middleware: records each request in ``instruments`` once it is answered (or failed)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._routes: RouteLabels | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self._routes is None:  # every route is included by the first request
            self._routes = RouteLabels(scope["app"])
        routes = self._routes
        started = time.perf_counter()
        status, received, sent = 500, 0, 0  # 500: what the server answers for a handler that raised

        async def receiving() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def sending(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receiving if scope["method"] == "PUT" else receive, sending)
        finally:
            seconds = time.perf_counter() - started
            instruments.observe(scope["method"], routes.label(scope), status, seconds, received, sent)
