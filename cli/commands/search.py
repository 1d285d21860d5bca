"""``search``: find repositories by the words of their names, descriptions and model cards, and filters."""

from __future__ import annotations

from typing import Any

import click

from cli.context import AppContext, pass_app

PAGE = 100  # results per request while following pages


@click.command()
@click.argument("q", required=False)
@click.option("--namespace", help="Only this namespace.")
@click.option("--base", metavar="BASE", help="Latest version made for this base (any --base form).")
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY:VALUE",
    help="On the repository or its latest version (repeatable: all must hold).",
)
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    metavar="'NAME>=X'",
    help="A metric of the latest version: >=, >, <=, <, = (repeatable: all must hold).",
)
@click.option("--license", "license_", metavar="LICENSE", help="The latest version's card license.")
@click.option(
    "--sort",
    default="updated",
    show_default=True,
    help="updated (newest change first), name, or metric:NAME (highest first, only those with NAME).",
)
@click.option("-n", "--limit", default=20, show_default=True, type=click.IntRange(min=1), help="At most.")
@pass_app
def search(
    app: AppContext,
    q: str | None,
    namespace: str | None,
    base: str | None,
    labels: tuple[str, ...],
    metrics: tuple[str, ...],
    license_: str | None,
    sort: str,
    limit: int,
) -> None:
    """Repositories this token may read whose name, description or latest model card holds every word of
    Q (as word prefixes), passing every filter; with their latest version (the one `latest` points at,
    else the newest unyanked one), its tags, and labels."""
    params = {
        "q": q,
        "namespace": namespace,
        "base": base,
        "label": list(labels),
        "metric": list(metrics),
        "license": license_,
        "sort": sort,
        "limit": min(limit, PAGE),
    }
    found = app.client.list_all(
        "/api/v1/search", {k: v for k, v in params.items() if v is not None}, at_most=limit
    )
    app.emit(found, "\n".join(_shown(hit) for hit in found) or "no repositories match")


def _shown(hit: dict[str, Any]) -> str:
    """A result in two or three lines: the repository and its latest version, what it is, its labels."""
    latest = hit["latest"]
    head = f"{hit['repo']}  {hit['visibility']}"
    if latest is not None:
        tags = f"  ({', '.join(latest['tags'])})" if latest["tags"] else ""
        head += f"  #{latest['number']} {latest['digest'][:19]}  base {latest['base']['name']}{tags}"
        head += "  [yanked]" if latest["yanked"] else ""
    lines = [head]
    if hit["description"]:
        lines.append(f"  {hit['description']}")
    details = [f"{k}={v}" for k, v in hit["labels"].items()]
    if latest is not None:  # the version's own labels after the repository's, then its metrics
        details += [f"{k}={v}" for k, v in latest["labels"].items()]
        details += [f"{name}={value:g}" for name, value in latest["metrics"].items()]
    details += [f"license={hit['license']}"] if hit["license"] else []
    if details:
        lines.append(f"  {'  '.join(details)}")
    return "\n".join(lines)


COMMANDS = [search]
