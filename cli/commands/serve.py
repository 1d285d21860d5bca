"""``serve`` and ``db``: commands that run against the local settings, not over HTTP."""

from __future__ import annotations

import click

from cli.context import AppContext, pass_app


@click.command()
@click.option("--host", help="Interface to bind [env LOREG_HOST; default 127.0.0.1].")
@click.option("--port", type=int, help="Port [env LOREG_PORT; default 8000].")
@click.option("--workers", type=int, default=1, show_default=True, help="Server processes.")
@pass_app
def serve(app: AppContext, host: str | None, port: int | None, workers: int) -> None:
    """Migrate the database, then run the registry's API server."""
    import uvicorn

    from registry.db import migrate

    settings = app.settings
    migrate.upgrade(settings.resolved_database_url)
    click.echo(
        f"lorareg: database {settings.resolved_database_url}, blobs {settings.resolved_blob_url}", err=True
    )
    uvicorn.run(
        "registry.api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        log_level="info",
    )


@click.group()
def db() -> None:
    """Database migrations."""


@db.command()
@pass_app
def upgrade(app: AppContext) -> None:
    """Apply every pending migration."""
    from registry.db import migrate

    url = app.settings.resolved_database_url
    migrate.upgrade(url)
    revision = migrate.current_revision(url)
    app.emit({"revision": revision}, f"database at {revision}")


@db.command()
@pass_app
def current(app: AppContext) -> None:
    """Show the database's migration revision and the newest one."""
    from registry.db import migrate

    url = app.settings.resolved_database_url
    now, head = migrate.current_revision(url), migrate.head_revision(url)
    app.emit({"current": now, "head": head}, f"current {now or '(empty)'}, head {head}")


COMMANDS = [serve, db]
