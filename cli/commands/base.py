"""``base register|ls|show``: base models and their shape manifests."""

from __future__ import annotations

from pathlib import Path

import click

from cli.commands.push import directory_files
from cli.context import AppContext, pass_app
from registry.adapters.base_manifest import read_base_manifest


@click.group()
def base() -> None:
    """Base models adapters are checked against."""


@base.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--name", required=True, help="The base model's name, e.g. meta-llama/Llama-3.1-8B.")
@click.option("--revision", help="The Hugging Face commit SHA these weights are (40 hex).")
@click.option("--with-weights", is_flag=True, help="Also upload the directory's files (for merge-base jobs).")
@pass_app
def register(app: AppContext, directory: Path, name: str, revision: str | None, with_weights: bool) -> None:
    """Register the base model in DIRECTORY from its safetensors headers (weights are never loaded, nor
    uploaded unless --with-weights)."""
    manifest = read_base_manifest(directory)
    body = {"name": name, "revision": revision, "manifest": manifest.to_json()}
    if with_weights:
        body["files"], _ = app.client.upload_files(directory_files(directory))
    result = app.client.request("POST", "/api/v1/bases", json=body)
    verb = "registered" if result["created"] else "already registered"
    app.emit(
        result,
        f"{verb} {result['name']}: {result['weights']} weights\n"
        + "\n".join(f"  answers to {sha}" for sha in result["shas"]),
    )


@base.command("ls")
@pass_app
def list_bases(app: AppContext) -> None:
    """List registered base models."""
    found = app.client.request("GET", "/api/v1/bases")
    app.emit(
        found,
        "\n".join(
            f"{b['content_digest'][:12]}  {b['name']}  ({b['weights']} weights)"
            + "".join(f"  hf:{r[:12]}" for r in b["hf_revisions"])
            for b in found
        )
        or "no base models registered",
    )


@base.command()
@click.argument("sha")
@pass_app
def show(app: AppContext, sha: str) -> None:
    """Show a base model by any SHA it answers to."""
    found = app.client.request("GET", f"/api/v1/bases/{sha}")
    app.emit(
        found,
        f"{found['name']}\n  content sha256:{found['content_digest']}\n  weights: {found['weights']}\n"
        + "".join(f"  hf revision: {r}\n" for r in found["hf_revisions"]),
    )


COMMANDS = [base]
