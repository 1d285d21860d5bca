"""``deploy create|add|rm|show|ls``: deployments, the adapters a pool of inference servers should serve.

A ref with a tag (``acme/bot:prod``) follows the tag; a digest (``acme/bot@sha256:…``) or a number
(``acme/bot#3``) is pinned. Every change, and every move of a followed tag, makes a generation.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import click

from cli.context import AppContext, pass_app
from registry.refs import RepoName

API = "/api/v1/deployments"


def _path(name: str) -> str:
    parsed = RepoName.parse(name)
    return f"{API}/{parsed.namespace}/{parsed.name}"


@click.group()
def deploy() -> None:
    """Deployments: named, versioned sets of adapters for one base model."""


@deploy.command()
@click.argument("name", metavar="NS/NAME")
@click.option("--base", required=True, help="The base model: NAME, NAME@SHA, a SHA or a 12+ hex prefix.")
@pass_app
def create(app: AppContext, name: str, base: str) -> None:
    """Create the empty deployment NS/NAME for a base model."""
    parsed = RepoName.parse(name)
    found = app.client.request(
        "POST", API, json={"namespace": parsed.namespace, "name": parsed.name, "base": base}
    )
    app.emit(found, f"created {name} for base {found['base']['name']} ({found['base']['content_digest']})")


@deploy.command()
@click.argument("name", metavar="NS/NAME")
@click.argument("ref")
@click.option("--as", "alias", help="The name the engine serves it under [default: REF].")
@pass_app
def add(app: AppContext, name: str, ref: str, alias: str | None) -> None:
    """Add the adapter REF to NS/NAME (refused when it is made for another base)."""
    generation = app.client.request("POST", f"{_path(name)}/adapters", json={"ref": ref, "as": alias})
    app.emit(generation, f"{name}: generation {generation['number']} ({generation['cause']})")


@deploy.command()
@click.argument("name", metavar="NS/NAME")
@click.argument("adapter")
@pass_app
def rm(app: AppContext, name: str, adapter: str) -> None:
    """Remove the adapter served as ADAPTER from NS/NAME."""
    generation = app.client.request("DELETE", f"{_path(name)}/adapters/{quote(adapter, safe='/:@')}")
    app.emit(generation, f"{name}: generation {generation['number']} ({generation['cause']})")


@deploy.command()
@click.argument("name", metavar="NS/NAME")
@pass_app
def show(app: AppContext, name: str) -> None:
    """The entries of NS/NAME, its current generation's digests, and its history."""
    found = app.client.request("GET", _path(name))
    app.emit(found, _shown(found))


@deploy.command("ls")
@click.option("--namespace", help="Only this namespace's deployments.")
@pass_app
def list_command(app: AppContext, namespace: str | None) -> None:
    """The deployments you may read."""
    found = app.client.request("GET", API, params={"namespace": namespace} if namespace else None)
    lines = [
        f"{d['namespace']}/{d['name']}  generation {d['current_generation']}  {d['adapters']} adapters  "
        f"base {d['base']['name']}"
        for d in found
    ]
    app.emit(found, "\n".join(lines) or "no deployments")


def _shown(found: dict[str, Any]) -> str:
    current = found["current_generation"]
    follows = {e["name"]: e["follows"] for e in found["entries"]}
    base = found["base"]
    lines = [
        f"{found['namespace']}/{found['name']}  base {base['name']} ({base['content_digest']})",
        f"generation {current['number']}:",
    ]
    lines += [
        f"  {i['name']}  {i['repo']}#{i['number']} {i['digest']}"
        + (f"  (follows {follows[i['name']]})" if follows.get(i["name"]) else "  (pinned)")
        for i in current["state"]
    ] or ["  (no adapters)"]
    lines.append("history:")
    lines += [
        f"  {g['number']}  {g['status']}  {g['cause']}  by {g['actor']}  {g['created_at']}"
        + (f"\n      {g['reason']}" if g["reason"] else "")
        for g in found["history"]
    ]
    return "\n".join(lines)


COMMANDS = [deploy]
