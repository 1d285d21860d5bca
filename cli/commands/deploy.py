"""``deploy create|add|rm|show|ls|canary|promote|rollback|status``: deployments, the adapters a pool of
inference servers should serve, how changes roll out to it, and what each replica serves.

A ref with a tag (``acme/bot:prod``) follows the tag; a digest (``acme/bot@sha256:…``) or a number
(``acme/bot#3``) is pinned. Every change, and every move of a followed tag, makes a generation; with a
canary selector it goes to the matching replicas first, until ``promote`` (or auto-promotion).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

import click

from cli.context import AppContext, pass_app
from cli.durations import DURATION
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


@deploy.command()
@click.argument("name", metavar="NS/NAME")
@click.argument("selector", metavar="KEY=VALUE", required=False)
@click.option(
    "--auto-promote-after",
    type=DURATION,
    help="Promote a canary whose replicas converged without errors after this long (10m, 1h).",
)
@click.option("--off", is_flag=True, help="Roll new generations out to every replica at once.")
@pass_app
def canary(
    app: AppContext, name: str, selector: str | None, auto_promote_after: timedelta | None, off: bool
) -> None:
    """Send NS/NAME's new generations first to the replicas labelled KEY=VALUE (agent --label)."""
    if off == (selector is not None):
        raise click.UsageError("give either KEY=VALUE or --off")
    after = int(auto_promote_after.total_seconds()) if auto_promote_after is not None else None
    found = app.client.request(
        "POST", f"{_path(name)}/rollout", json={"canary": selector, "auto_promote_after": after}
    )
    when = (
        f", promoted after {after} s without agent errors"
        if after is not None
        else ", until `deploy promote`"
    )
    app.emit(
        found,
        f"{name}: new generations go first to replicas labelled {selector}{when}"
        if selector
        else f"{name}: new generations go to every replica at once",
    )


@deploy.command()
@click.argument("name", metavar="NS/NAME")
@pass_app
def promote(app: AppContext, name: str) -> None:
    """Serve NS/NAME's canary generation on every replica."""
    generation = app.client.request("POST", f"{_path(name)}/promote")
    app.emit(generation, f"{name}: generation {generation['number']} ({generation['cause']})")


@deploy.command()
@click.argument("name", metavar="NS/NAME")
@click.option(
    "--to", type=click.IntRange(min=1), help="The applied generation to return to [default: the one before]."
)
@pass_app
def rollback(app: AppContext, name: str, to: int | None) -> None:
    """Serve an earlier generation of NS/NAME on every replica (abandoning a canary)."""
    generation = app.client.request("POST", f"{_path(name)}/rollback", json={"to": to})
    app.emit(generation, f"{name}: generation {generation['number']} ({generation['cause']})")


@deploy.command()
@click.argument("name", metavar="NS/NAME")
@pass_app
def status(app: AppContext, name: str) -> None:
    """Per replica of NS/NAME: the generation it should serve, the digests it serves, converged, stale."""
    found = app.client.request("GET", f"{_path(name)}/status")
    app.emit(found, _status(found))


def _status(found: dict[str, Any]) -> str:
    canary = found["canary"]
    lines = [f"{found['namespace']}/{found['name']}  generation {found['current_generation']['number']}"]
    if canary:
        due = f", auto-promoted at {canary['promote_at']}" if canary["promote_at"] else ""
        lines[0] += f"  canary {canary['generation']['number']} on {canary['selector']}{due}"
    if not found["replicas"]:
        lines.append(
            "no replica has reported (start `lorareg agent --deployment NS/NAME` beside each engine)"
        )
    for r in found["replicas"]:
        state = "stale" if r["stale"] else "converged" if r["converged"] else "converging"
        labels = ",".join(f"{k}={v}" for k, v in sorted(r["labels"].items()))
        lines.append(
            f"{r['replica']}  {state}  wants {r['target_generation']}  serves {r['generation'] or '-'}  "
            f"{r['engine']} {r['engine_url']}"
            + (f"  [{labels}]" if labels else "")
            + f"  last heartbeat {r['heartbeat_at']}"
        )
        lines += [f"    {n}  {d}" for n, d in sorted(r["loaded"].items())]
        if r["error"]:
            lines.append(f"    error: {r['error']}")
    return "\n".join(lines)


def _state_lines(state: list[dict[str, Any]], follows: dict[str, str | None]) -> list[str]:
    return [
        f"  {i['name']}  {i['repo']}#{i['number']} {i['digest']}"
        + (f"  (follows {follows[i['name']]})" if follows.get(i["name"]) else "  (pinned)")
        for i in state
    ] or ["  (no adapters)"]


def _shown(found: dict[str, Any]) -> str:
    current = found["current_generation"]
    follows = {e["name"]: e["follows"] for e in found["entries"]}
    base = found["base"]
    lines = [f"{found['namespace']}/{found['name']}  base {base['name']} ({base['content_digest']})"]
    if found["rollout"]["canary"]:
        after = found["rollout"]["auto_promote_after"]
        lines.append(
            f"rollout: canary {found['rollout']['canary']}"
            + (f", auto-promote after {after} s" if after is not None else ", promote by hand")
        )
    lines.append(f"generation {current['number']}:")
    lines += _state_lines(current["state"], follows)
    if found["canary"]:
        canary = found["canary"]
        lines.append(f"canary generation {canary['generation']['number']} (on {canary['selector']}):")
        lines += _state_lines(canary["generation"]["state"], follows)
    lines.append("history:")
    lines += [
        f"  {g['number']}  {g['status']}  {g['cause']}  by {g['actor']}  {g['created_at']}"
        + (f"\n      {g['reason']}" if g["reason"] else "")
        for g in found["history"]
    ]
    return "\n".join(lines)


COMMANDS = [deploy]
