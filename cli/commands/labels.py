"""``label``, ``eval``, ``compare``: mutable metadata on repositories and versions, and eval results side
by side.

A bare ``ns/name`` labels the repository itself; ``ns/name:tag``, ``ns/name#N`` and ``ns/name@sha256:…``
label that version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cli.client import RegistryClient
from cli.context import AppContext, pass_app
from registry.errors import InvalidInput
from registry.refs import RepoName, RepoRef

CARD_MARK = "*"  # compare: a value from the model card's model-index, not from an attached eval run


def labels_path(client: RegistryClient, ref: str) -> tuple[str, str]:
    """The API path of REF's labels, and REF as it reads: a repository (bare ``ns/name``) or a version."""
    if any(sep in ref for sep in ":@#"):
        target = RepoRef.parse(ref)
        return f"{_version_path(client, target)}/labels", str(target)
    repo = RepoName.parse(ref)
    return f"{client.repo_path(repo)}/labels", str(repo)


def _version_path(client: RegistryClient, target: RepoRef) -> str:
    return f"{client.repo_path(target.repo)}/versions/{client.ref_segment(target.ref)}"


def _pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals:
            raise click.BadParameter(f"{pair!r}: give KEY=VALUE (remove a label with --rm KEY)")
        if key in found:
            raise click.BadParameter(f"label {key} is given twice")
        found[key] = value
    return found


@click.command()
@click.argument("ref")
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--rm", "remove", multiple=True, metavar="KEY", help="Remove this label (repeatable).")
@click.option("--history", is_flag=True, help="Show every label change, with its actor and time.")
@pass_app
def label(app: AppContext, ref: str, pairs: tuple[str, ...], remove: tuple[str, ...], history: bool) -> None:
    """Set, remove or list the labels of REF: a repository (ns/name) or a version (ns/name:tag, #N,
    @sha256:…). Changes are all or nothing; with no KEY=VALUE or --rm, list them."""
    path, shown = labels_path(app.client, ref)
    if history:
        if pairs or remove:
            raise click.UsageError("--history lists changes; it does not go with KEY=VALUE or --rm")
        events = app.client.list_all(f"{path}/history")
        app.emit(events, "\n".join(_event_line(e) for e in events) or f"no label of {shown} ever changed")
        return
    if not pairs and not remove:
        found = app.client.request("GET", path)
        app.emit(found, "\n".join(f"{la['key']}={la['value']}" for la in found) or f"{shown} has no labels")
        return
    result = app.client.request("PUT", path, json={"labels": _pairs(pairs), "remove": list(remove)})
    now = {la["key"]: la["value"] for la in result["labels"]}
    lines = [
        f"set {key}={now[key]} on {shown}" if key in now else f"removed {key} from {shown}"
        for key in result["changed"]
    ]
    app.emit(result, "\n".join(lines) or f"{shown}: nothing changed (the labels already were so)")


def _event_line(event: dict[str, Any]) -> str:
    old, new = event["old"], event["new"]
    if new is None:
        change = f"removed (was {old!r})"
    elif old is None:
        change = f"set {new!r}"
    else:
        change = f"{old!r} -> {new!r}"
    return f"{event['created_at']}  {event['key']}: {change}  by {event['actor']}"


@click.command("eval")
@click.argument("ref")
@click.argument("results", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_app
def eval_command(app: AppContext, ref: str, results: Path) -> None:
    """Attach the metrics of RESULTS to the version REF: lm-evaluation-harness's results.json, or a flat
    {"metric": number} file. Attaching again replaces the metrics of the same names."""
    target = RepoRef.parse(ref)
    content = results.read_bytes()
    try:
        json.loads(content)
    except ValueError as exc:
        raise InvalidInput(f"{results} is not JSON: {exc}") from None
    client = app.client
    answer = client.request(
        "POST",
        f"{_version_path(client, target)}/evals",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    attached = set(answer["attached"])
    rows = [m for m in answer["metrics"] if m["source"] == "eval" and m["name"] in attached]
    app.emit(answer, f"attached {len(attached)} metrics to {target}\n{metric_lines(rows)}")


def metric_lines(metrics: list[dict[str, Any]], indent: str = "  ") -> str:
    """Metrics as aligned lines: name, value ± stderr, source."""
    width = max((len(m["name"]) for m in metrics), default=0)
    return "\n".join(f"{indent}{m['name']:<{width}}  {_value(m):>18}  ({m['source']})" for m in metrics)


def _value(metric: dict[str, Any]) -> str:
    shown = f"{metric['value']:.4g}"
    return shown if metric["stderr"] is None else f"{shown} ± {metric['stderr']:.2g}"


def version_metadata(client: RegistryClient, version: dict[str, Any]) -> str:
    """For ``show``: add the version's ``labels`` and ``evals`` to ``version``; return them as lines."""
    path = _version_path(client, RepoRef.parse(f"{version['repo']}@{version['digest']}"))
    version["labels"] = client.request("GET", f"{path}/labels")
    version["evals"] = client.request("GET", f"{path}/evals")
    lines = []
    if version["labels"]:
        lines.append("  labels:  " + ", ".join(f"{la['key']}={la['value']}" for la in version["labels"]))
    if version["evals"]:
        lines += ["  evals:", metric_lines(version["evals"], indent="    ")]
    return "".join(f"\n{line}" for line in lines)


@click.command()
@click.argument("refs", nargs=-1, required=True, metavar="REF REF...")
@pass_app
def compare(app: AppContext, refs: tuple[str, ...]) -> None:
    """Metrics of versions side by side: a row per metric name, a column per REF ("-": none). An attached
    eval's value wins over the model card's (marked *)."""
    refs = tuple(dict.fromkeys(refs))
    if len(refs) < 2:
        raise click.UsageError("give two or more versions to compare")
    client = app.client
    columns: dict[str, dict[str, dict[str, Any]]] = {}
    for ref in refs:
        found = client.request("GET", f"{_version_path(client, RepoRef.parse(ref))}/evals")
        columns[ref] = {m["name"]: m for m in sorted(found, key=lambda m: m["source"] == "eval")}
    names = sorted({name for column in columns.values() for name in column})
    table = {name: {ref: _cell(column.get(name)) for ref, column in columns.items()} for name in names}
    app.emit({"refs": list(refs), "metrics": table}, _table(list(refs), table) if names else "no metrics")


def _cell(metric: dict[str, Any] | None) -> dict[str, Any] | None:
    if metric is None:
        return None
    return {"value": metric["value"], "stderr": metric["stderr"], "source": metric["source"]}


def _table(refs: list[str], table: dict[str, dict[str, dict[str, Any] | None]]) -> str:
    rows = [["metric", *refs]]
    for name, cells in table.items():
        rows.append(
            [name]
            + [
                "-" if cell is None else _value(cell) + (CARD_MARK if cell["source"] == "card" else "")
                for cell in cells.values()
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(f"{cell:<{widths[0]}}" if i == 0 else f"{cell:>{widths[i]}}" for i, cell in enumerate(row))
        for row in rows
    ]
    if any(cell and cell["source"] == "card" for cells in table.values() for cell in cells.values()):
        lines.append(f"{CARD_MARK} from the model card's model-index")
    return "\n".join(lines)


COMMANDS = [label, eval_command, compare]
