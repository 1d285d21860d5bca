"""``tag``, ``untag``, ``tags``, ``yank``, ``unyank``: moving names and hiding versions."""

from __future__ import annotations

from typing import Any

import click

from cli.context import AppContext, pass_app
from registry.refs import Ref, RepoName, RepoRef, validate_name

YANKED = "(yanked)"


@click.command()
@click.argument("ref")
@click.argument("tag")
@click.option(
    "--expect",
    metavar="REF",
    help="Move only if TAG points here now (tag, sha256:…, @hex, #N, or a full ref of the same "
    "repository); else 409.",
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
        "expected": str(Ref.parse_in(expect, target.repo)) if expect else None,
        "expect_absent": expect_absent,
        "allow_yanked": allow_yanked,
    }
    client = app.client
    moved = client.request("PUT", f"{client.repo_path(target.repo)}/tags/{tag}", json=body)
    app.emit(moved, f"{target.repo}:{moved['name']} -> #{moved['number']} {moved['digest']}{_marked(moved)}")


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
    app.emit(
        found,
        "\n".join(f"{t['name']:<20} #{t['number']:<5} {t['digest']}{_marked(t)}" for t in found) or "no tags",
    )


def _number(number: int | None) -> str:
    return "(none)" if number is None else f"#{number}"


def _marked(tag: dict[str, Any]) -> str:
    return f"  {YANKED}" if tag["yanked"] else ""


@click.command()
@click.argument("ref")
@click.option("--reason", help="Why, shown to anyone who resolves it.")
@pass_app
def yank(app: AppContext, ref: str, reason: str | None) -> None:
    """Yank REF: tags and numbers stop resolving to it; it stays pullable by digest. `latest` moves to the
    newest unyanked version; other tags stay on it (and resolve to nothing) until moved."""
    _yank_call(app, ref, "yank", {"reason": reason})


@click.command()
@click.argument("ref")
@pass_app
def unyank(app: AppContext, ref: str) -> None:
    """Undo a yank of REF (ns/name@sha256:… or ns/name#N): its tags resolve to it again, and `latest`
    moves back to it if the yank moved `latest` off it and nothing moved `latest` since."""
    _yank_call(app, ref, "unyank", None)


def _yank_call(app: AppContext, ref: str, action: str, body: dict[str, Any] | None) -> None:
    target = RepoRef.parse(ref)
    client = app.client
    version = client.request(
        "POST",
        f"{client.repo_path(target.repo)}/versions/{client.ref_segment(target.ref)}/{action}",
        json=body,
    )
    app.emit(version, _yank_report(version, action))


def _yank_report(version: dict[str, Any], action: str) -> str:
    """What a yank or unyank did: the version, the tags it moved, and the tags on the version."""
    name = f"{version['repo']}#{version['number']} {version['digest']}"
    if not version["changed"]:
        return f"{name} was {'already' if action == 'yank' else 'not'} yanked; nothing changed"
    lines = [f"{action}ed {name}"]
    lines += [
        f"  moved {m['tag']} to #{m['number']} {m['digest']}"
        if m["number"] is not None
        else f"  removed {m['tag']}: no unyanked version is left"
        for m in version["tags_moved"]
    ]
    if action == "unyank" and not version["tags_moved"]:
        lines.append("  latest stays where it is (this yank did not move it, or it moved since)")
    tags = ", ".join(version["tags"])
    if action == "yank":
        lines.append(
            f"  left on it, resolving to nothing until moved or unyanked: {tags}"
            if tags
            else "  no tag is left on it"
        )
    elif tags:
        lines.append(f"  tags resolving to it again: {tags}")
    return "\n".join(lines)


COMMANDS = [tag, untag, tags, yank, unyank]
