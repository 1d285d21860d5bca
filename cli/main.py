"""``lorareg``: the entry point, global options and exit codes.

Exit codes: 0 ok, 1 user error (the message says what to fix), 2 usage, 3 server or network error.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import httpx

from cli.client import ApiError
from cli.commands import (
    access,
    agent,
    base,
    deploy,
    doctor,
    imports,
    inspect,
    jobs,
    labels,
    ops,
    pull,
    push,
    search,
    serve,
    tags,
    tokens,
)
from cli.context import AppContext
from registry.config import Settings
from registry.errors import RegistryError, Unavailable

EXIT_USER_ERROR = 1
EXIT_SERVER_ERROR = 3


class LoregGroup(click.Group):
    """Turns API, network and domain errors into messages and the documented exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            _fail(ctx, exc.code, exc.message, EXIT_SERVER_ERROR if exc.status >= 500 else EXIT_USER_ERROR)
        except RegistryError as exc:
            _fail(
                ctx,
                exc.code,
                exc.message,
                EXIT_SERVER_ERROR if isinstance(exc, Unavailable) else EXIT_USER_ERROR,
            )
        except httpx.HTTPError as exc:
            url = ctx.obj.settings.url if isinstance(ctx.obj, AppContext) else "the registry"
            _fail(
                ctx,
                "network_error",
                f"cannot reach {url}: {exc} (is `lorareg serve` running? set --url)",
                EXIT_SERVER_ERROR,
            )


def _fail(ctx: click.Context, code: str, message: str, exit_code: int) -> None:
    if isinstance(ctx.obj, AppContext) and ctx.obj.as_json:
        click.echo(json.dumps({"error": {"code": code, "message": message}}), err=True)
    else:
        click.echo(f"Error: {message}", err=True)
    sys.exit(exit_code)


@click.group(cls=LoregGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url", envvar="LOREG_URL", help="Registry URL [env LOREG_URL; default http://127.0.0.1:8000]."
)
@click.option("--token", envvar="LOREG_TOKEN", help="Bearer token [env LOREG_TOKEN].")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None, as_json: bool) -> None:
    """lorareg — a registry for LoRA adapters."""
    overrides = {k: v for k, v in {"url": url, "token": token}.items() if v}
    ctx.obj = AppContext(settings=Settings(**overrides), as_json=as_json)
    ctx.call_on_close(ctx.obj.close)


for _module in (
    serve,
    base,
    deploy,
    push,
    imports,
    pull,
    inspect,
    search,
    tags,
    labels,
    access,
    tokens,
    ops,
    jobs,
    doctor,
    agent,
):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    cli()
