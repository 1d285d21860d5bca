"""``tag``, ``untag``, ``tags``, ``yank``: moving names and hiding versions."""

from __future__ import annotations

import click

from cli.context import AppContext, pass_app
from registry.refs import Ref, RepoName, RepoRef, validate_name


def _expected(value: str) -> Ref:
    """``--expect`` takes a ref within the same repository: tag, sha256:…/@hex, #N."""
    if value.startswith("@"):
        return Ref.digest(value[1:].removeprefix("sha256:"))
    return Ref.parse(value)


@click.command()
@click.argument("ref")
@click.argument("tag")
@click.option(
    "--expect", metavar="REF", help="Move only if TAG points here now (tag, sha256:…, #N); else 409."
)
@click.option("--expect-absent", is_flag=True, help="Create TAG only if it does not exist yet.")
@click.option("--allow-yanked", is_flag=True, help="Point TAG at REF even if that version was yanked.")
@pass_app
def tag(
    app: AppContext, ref: str, tag: str, expect: str | None, expect_absent: bool, allow_yanked: bool
) -> None:
    """Point TAG at the version REF names (compare-and-set with --expect); a yanked one is refused unless
    --allow-yanked."""
    target = RepoRef.parse(ref)
    validate_name(tag, "tag")
    body = {
        "target": str(target.ref),
        "expected": str(_expected(expect)) if expect else None,
        "expect_absent": expect_absent,
        "allow_yanked": allow_yanked,
    }
    client = app.client
    moved = client.request("PUT", f"{client.repo_path(target.repo)}/tags/{tag}", json=body)
    app.emit(moved, f"{target.repo}:{moved['name']} -> #{moved['number']} {moved['digest']}")


@click.command()
@click.argument("ref")
@pass_app
def untag(app: AppContext, ref: str) -> None:
    """Delete the tag in REF (ns/name:tag); the version stays."""
    target = RepoRef.parse(ref)
    if target.ref.kind != "tag" or ":" not in ref:
        raise click.BadParameter("name the tag: ns/name:tag", param_hint="REF")
    app.client.request("DELETE", f"{app.client.repo_path(target.repo)}/tags/{target.ref.value}")
    app.emit({"deleted": str(target)}, f"deleted {target}")


@click.command()
@click.argument("repo")
@click.option("--history", "history_of", metavar="TAG", help="Show every move of TAG instead.")
@pass_app
def tags(app: AppContext, repo: str, history_of: str | None) -> None:
    """List the tags of REPO, or the history of one tag."""
    name = RepoName.parse(repo)
    path = app.client.repo_path(name)
    if history_of:
        events = app.client.request("GET", f"{path}/tags/{validate_name(history_of, 'tag')}/history")
        app.emit(
            events,
            "\n".join(
                f"{e['created_at']}  {_number(e['old_number'])} -> {_number(e['new_number'])}"
                f"  by {e['actor'] or '-'}"
                for e in events
            )
            or f"{name}:{history_of} has never moved",
        )
        return
    found = app.client.request("GET", f"{path}/tags")
    app.emit(found, "\n".join(f"{t['name']:<20} #{t['number']:<5} {t['digest']}" for t in found) or "no tags")


def _number(number: int | None) -> str:
    return "(none)" if number is None else f"#{number}"


@click.command()
@click.argument("ref")
@click.option("--reason", help="Why, shown to anyone who resolves it.")
@pass_app
def yank(app: AppContext, ref: str, reason: str | None) -> None:
    """Yank REF: tags and numbers stop resolving to it; it stays pullable by digest."""
    target = RepoRef.parse(ref)
    client = app.client
    version = client.request(
        "POST",
        f"{client.repo_path(target.repo)}/versions/{client.ref_segment(target.ref)}/yank",
        json={"reason": reason},
    )
    app.emit(version, f"yanked {version['repo']}#{version['number']} {version['digest']}")


COMMANDS = [tag, untag, tags, yank]
