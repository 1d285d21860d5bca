"""``serve`` and ``db``: commands that run against the local settings, not over HTTP."""

from __future__ import annotations

import ipaddress

import click

from cli.context import AppContext, pass_app
from registry.config import Settings


@click.command()
@click.option("--host", help="Interface to bind [env LOREG_HOST; default 127.0.0.1].")
@click.option("--port", type=int, help="Port [env LOREG_PORT; default 8000].")
@click.option("--workers", type=int, default=1, show_default=True, help="Server processes.")
@pass_app
def serve(app: AppContext, host: str | None, port: int | None, workers: int) -> None:
    """Migrate the database, then run the registry's API server."""
    import uvicorn

    from registry.db import migrate
    from registry.logs import log_config
    from registry.metrics.multiprocess import shared_metrics

    settings = app.settings
    host = host or settings.host
    warning = exposure_warning(host, settings)
    if warning:
        click.secho(f"lorareg: WARNING: {warning}", err=True, fg="red", bold=True)
    migrate.upgrade(settings.resolved_database_url)  # under a lock: replicas may start at once
    with shared_metrics(workers):  # several workers: one PROMETHEUS_MULTIPROC_DIR for this run
        uvicorn.run(
            "registry.api.app:serving_app",
            factory=True,
            host=host,
            port=port or settings.port,
            workers=workers,
            log_level="info",
            log_config=log_config(settings.log_format),  # text or JSON lines with request ids
        )


def exposure_warning(host: str, settings: Settings) -> str | None:
    """What to tell whoever serves an open registry (auth off) beyond this machine; None if nothing."""
    if settings.auth != "off" or _loopback(host):
        return None
    return (
        f"serving on {host} with LOREG_AUTH=off: anyone who can reach this port can push, delete and "
        "administer without a token. Set LOREG_AUTH=required (then create an admin token with "
        "`lorareg token create admin --scope admin --bootstrap`), or bind to 127.0.0.1"
    )


def _loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname: whichever interfaces it names, not only this machine's loopback


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
