"""``repo visibility``, ``repo describe``, ``audit``: who may read a repository, what it is, and who changed
what."""

from __future__ import annotations

import click

from cli.context import AppContext, pass_app
from registry.refs import RepoName


@click.group()
def repo() -> None:
    """Repository settings."""


@repo.command("visibility")
@click.argument("repo_name", metavar="REPO")
@click.argument("visibility", type=click.Choice(["public", "private"]))
@pass_app
def visibility(app: AppContext, repo_name: str, visibility: str) -> None:
    """Make REPO public (anyone reads it, without a token) or private (its namespace's tokens only)."""
    name = RepoName.parse(repo_name)
    changed = app.client.request(
        "PUT", f"{app.client.repo_path(name)}/visibility", json={"visibility": visibility}
    )
    app.emit(changed, f"{changed['id']} is {changed['visibility']}")


@repo.command("describe")
@click.argument("repo_name", metavar="REPO")
@click.argument("description")
@pass_app
def describe(app: AppContext, repo_name: str, description: str) -> None:
    """Set REPO's one-line description, shown by `ls` ("" clears it)."""
    name = RepoName.parse(repo_name)
    changed = app.client.request(
        "PUT", f"{app.client.repo_path(name)}/description", json={"description": description}
    )
    app.emit(changed, f"{changed['id']}: {changed['description'] or '(no description)'}")


@click.command()
@click.option("--namespace", help="Only this namespace's entries.")
@click.option("--action", help="Only this action, e.g. tag.move, version.push, token.create.")
@click.option("--actor", help="Only this token's entries (its name).")
@click.option("-n", "--limit", default=50, show_default=True, type=click.IntRange(min=1), help="How many.")
@pass_app
def audit(app: AppContext, namespace: str | None, action: str | None, actor: str | None, limit: int) -> None:
    """The audit trail, newest first (admin; an admin limited to namespaces sees theirs)."""
    params = {k: v for k, v in {"namespace": namespace, "action": action, "actor": actor}.items() if v}
    found = app.client.list_all("/api/v1/audit", {**params, "limit": min(limit, 500)}, at_most=limit)
    app.emit(
        found,
        "\n".join(
            f"{e['created_at']}  {e['actor']:<24} {e['action']:<16} {e['result']:<14} {e['target']}"
            for e in found
        )
        or "no audit entries",
    )


COMMANDS = [repo, audit]
