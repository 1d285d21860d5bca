"""``/docs`` (Swagger UI) and ``/redoc`` from assets shipped in the package, so that they work with no
internet access. The assets live under ``static/vendor/<package>-<version>/`` with their licences,
served with immutable caching (a new version is a new path)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

STATIC = Path(__file__).parent / "static"
PREFIX = "/static"
SWAGGER_UI = f"{PREFIX}/vendor/swagger-ui-dist-5.35.0"
REDOC = f"{PREFIX}/vendor/redoc-2.5.4"
FAVICON = f"{SWAGGER_UI}/favicon-32x32.png"
IMMUTABLE = "public, max-age=31536000, immutable"


class ImmutableFiles(StaticFiles):
    """Static files whose paths change with their content: cached for a year."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        if response.status_code == 200:
            response.headers["Cache-Control"] = IMMUTABLE
        return response


def install(app: FastAPI) -> None:
    """Mount the assets and add the two pages (left out of the OpenAPI document, like FastAPI's own)."""
    app.mount(PREFIX, ImmutableFiles(directory=STATIC), name="static")
    openapi_url = app.openapi_url
    assert openapi_url is not None, "the pages show the app's OpenAPI document"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API",
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=FAVICON,
            swagger_ui_parameters={"validatorUrl": None},  # the default validator is a public service
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=openapi_url,
            title=f"{app.title} — API",
            redoc_js_url=f"{REDOC}/redoc.standalone.js",
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        )
