"""``ls``, ``show``, ``log``: read-only views of repositories and versions."""

from __future__ import annotations

from typing import Any

import click

from cli.context import AppContext, pass_app
from registry.refs import RepoName, RepoRef


def describe(version: dict[str, Any]) -> str:
    """A version as a few human lines (shared by ``show`` and ``log``)."""
    yanked = version["yanked"]
    tags = ", ".join(version["tags"])
    lines = [
        f"#{version['number']}  {version['digest']}"
        + (f"  ({tags})" if tags and not yanked else "")
        + (f"  [yanked{': ' + version['yank_reason'] if version['yank_reason'] else ''}]" if yanked else ""),
        f"  author:  {version['author'] or '-'}    pushed by: {version['pushed_by'] or '-'}"
        f"    date: {version['created_at']}",
        f"  base:    {version['base']['name']} ({version['base']['sha']})",
        _contents(version["config"]),
    ]
    if tags and yanked:
        lines.append(f"  tags:    {tags} (yanked: they resolve to nothing until moved, or `lorareg unyank`)")
    if version["parents"]:
        lines.append(f"  parents: {', '.join(version['parents'])}")
    if version["provenance"]:
        lines.append("  provenance: " + ", ".join(f"{k}={v}" for k, v in version["provenance"].items()))
    if version["message"]:
        lines.append(f"  {version['message']}")
    return "\n".join(lines)


def _contents(config: dict[str, Any]) -> str:
    """What the version holds: a LoRA's rank, alpha and targets, or a full model's size."""
    if config.get("kind") == "model":
        shards = counted(config["safetensors_files"], "safetensors file")
        return (
            f"  model:   full weights, {counted(config['tensors'], 'tensor')}, "
            f"{config['parameters']:,} parameters in {shards}"
        )
    return (
        f"  lora:    r={config.get('r')} alpha={config.get('lora_alpha')} "
        f"targets={','.join(config.get('target_modules', []))}"
    )


def counted(number: int, noun: str) -> str:
    """``1 version``, ``2 versions``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


@click.command("ls")
@click.argument("namespace", required=False)
@click.option("--base", "base_sha", metavar="BASE", help="Only repositories with versions for this base.")
@pass_app
def list_repositories(app: AppContext, namespace: str | None, base_sha: str | None) -> None:
    """List the repositories this token may read (optionally in NAMESPACE)."""
    params = {k: v for k, v in {"namespace": namespace, "base": base_sha}.items() if v}
    found = app.client.list_all("/api/v1/repos", params)
    app.emit(
        found,
        "\n".join(f"{r['id']}  {r['visibility']:<7}  ({counted(r['versions'], 'version')})" for r in found)
        or "no repositories",
    )


@click.command()
@click.argument("ref")
@pass_app
def show(app: AppContext, ref: str) -> None:
    """Show one version: REF is ns/name[:tag], ns/name@sha256:… or ns/name#N."""
    target = RepoRef.parse(ref)
    client = app.client
    version = client.request(
        "GET", f"{client.repo_path(target.repo)}/versions/{client.ref_segment(target.ref)}"
    )
    files = "\n".join(f"  {f['size']:>12}  {f['digest'][:19]}  {f['path']}" for f in version["files"])
    app.emit(version, f"{version['repo']}\n{describe(version)}\n  files:\n{files}")


@click.command()
@click.argument("repo")
@click.option("-n", "--limit", default=50, show_default=True, help="How many versions.")
@pass_app
def log(app: AppContext, repo: str, limit: int) -> None:
    """The versions of REPO, newest first."""
    name = RepoName.parse(repo)
    found = app.client.request("GET", f"{app.client.repo_path(name)}/versions", params={"limit": limit})
    app.emit(found, "\n\n".join(describe(v) for v in found) or f"{name} has no versions")


COMMANDS = [list_repositories, show, log]
