"""``token create|ls|revoke``, ``login``, ``whoami``."""

from __future__ import annotations

from datetime import timedelta

import click

from cli.context import AppContext, pass_app
from cli.credentials import save_token
from cli.durations import DURATION
from registry.principal import SCOPES


@click.group()
def token() -> None:
    """Bearer tokens (admin scope)."""


@token.command()
@click.argument("name")
@click.option("--scope", type=click.Choice(SCOPES), required=True, help="What the token may do.")
@click.option("--namespace", "namespaces", multiple=True, help="Limit to this namespace (repeatable).")
@click.option("--expires", type=DURATION, help="Lifetime, e.g. 30d or 12h [default: never].")
@click.option(
    "--bootstrap",
    is_flag=True,
    help="Create it straight in the database of the local settings (LOREG_DATABASE_URL), "
    "for the first admin token.",
)
@pass_app
def create(
    app: AppContext,
    name: str,
    scope: str,
    namespaces: tuple[str, ...],
    expires: timedelta | None,
    bootstrap: bool,
) -> None:
    """Create a token NAME; its secret is printed once."""
    if bootstrap:
        created = _create_in_database(app, name, scope, namespaces, expires)
    else:
        body = {
            "name": name,
            "scope": scope,
            "namespaces": list(namespaces) or None,
            "expires_in": int(expires.total_seconds()) if expires else None,
        }
        created = app.client.request("POST", "/api/v1/tokens", json=body)
    app.emit(
        created,
        f"created token {created['id']} {created['name']!r} ({created['scope']}"
        + (f", namespaces {', '.join(created['namespaces'])}" if created["namespaces"] else "")
        + (f", expires {created['expires_at']}" if created["expires_at"] else "")
        + f")\n{created['secret']}\nThis secret is shown once; store it now.",
    )


def _create_in_database(
    app: AppContext, name: str, scope: str, namespaces: tuple[str, ...], expires: timedelta | None
) -> dict:
    from registry.api.schemas import token_created_out
    from registry.db import migrate
    from registry.db.session import Database
    from registry.principal import REGISTRY
    from registry.services import tokens

    url = app.settings.resolved_database_url
    migrate.upgrade(url)
    db = Database.connect(url)
    try:
        with db.transaction() as session:
            made, secret = tokens.create_token(
                session, REGISTRY, name=name, scope=scope, namespaces=namespaces or None, expires_in=expires
            )
            return token_created_out(made, secret).model_dump(mode="json")
    finally:
        db.dispose()


@token.command("ls")
@pass_app
def list_tokens(app: AppContext) -> None:
    """List tokens (never their secrets)."""
    found = app.client.request("GET", "/api/v1/tokens")
    app.emit(
        found,
        "\n".join(
            f"{t['id']:>4}  {t['name']:<24} {t['scope']:<6} "
            f"{','.join(t['namespaces']) if t['namespaces'] else '*':<16} "
            f"{'revoked' if t['revoked'] else 'expires ' + (t['expires_at'] or 'never')}  "
            f"last used {t['last_used_at'] or 'never'}"
            for t in found
        )
        or "no tokens",
    )


@token.command()
@click.argument("token_id", type=int)
@pass_app
def revoke(app: AppContext, token_id: int) -> None:
    """Revoke token TOKEN_ID at once."""
    app.client.request("DELETE", f"/api/v1/tokens/{token_id}")
    app.emit({"revoked": token_id}, f"revoked token {token_id}")


@click.command()
@click.option("--with-token", "secret", help="The token; read from standard input when omitted.")
@pass_app
def login(app: AppContext, secret: str | None) -> None:
    """Check a token against the registry and save it for this URL (mode 0600)."""
    secret = (secret or click.prompt("Token", hide_input=True)).strip()
    app.settings.token = secret
    me = app.client.request("GET", "/api/v1/whoami")
    save_token(app.settings.credentials_file, app.settings.url, secret)
    app.emit(
        me,
        f"logged in to {app.settings.url} as {me['name']} ({me['scope']}); "
        f"token saved in {app.settings.credentials_file}",
    )


@click.command()
@pass_app
def whoami(app: AppContext) -> None:
    """Show who the current token is."""
    me = app.client.request("GET", "/api/v1/whoami")
    app.emit(
        me,
        f"{me['name']} ({me['scope']}"
        + (f", namespaces {', '.join(me['namespaces'])}" if me["namespaces"] else "")
        + f") on {app.settings.url}, auth {me['auth']}",
    )


COMMANDS = [token, login, whoami]
