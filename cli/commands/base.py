"""``base register|ls|show``: base models and their shape manifests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.commands.imports import ENDPOINT_HELP, hf_token_option
from cli.commands.push import directory_files
from cli.context import AppContext, pass_app
from registry.adapters.base_manifest import read_base_manifest

if TYPE_CHECKING:
    from registry.hub.base import HubBase


@click.group()
def base() -> None:
    """Base models adapters are checked against."""


@base.command()
@click.argument("directory", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--hf",
    "hf_repo",
    metavar="REPO_ID",
    help="Read the base from this Hugging Face Hub repository (the local HF cache first), not DIRECTORY.",
)
@click.option("--name", help="The base model's name, e.g. meta-llama/Llama-3.1-8B [--hf: REPO_ID].")
@click.option(
    "--revision",
    help="DIRECTORY: the Hugging Face commit SHA these weights are (40 hex). "
    "--hf: a branch, tag or commit [default: main].",
)
@click.option("--endpoint", metavar="URL", help=f"With --hf: {ENDPOINT_HELP}")
@hf_token_option
@click.option("--with-weights", is_flag=True, help="Also upload the directory's files (for merge-base jobs).")
@pass_app
def register(
    app: AppContext,
    directory: Path | None,
    hf_repo: str | None,
    name: str | None,
    revision: str | None,
    endpoint: str | None,
    hf_token: str | None,
    with_weights: bool,
) -> None:
    """Register a base model from its safetensors headers: the one in DIRECTORY, or a Hub repository's
    (--hf) at the commit its revision resolves to, read from the local HF cache (HF_HUB_OFFLINE=1 works)
    or with HTTP range requests. Weights are never loaded, nor uploaded unless --with-weights."""
    hub: HubBase | None = None
    if (directory is None) == (hf_repo is None):
        raise click.UsageError("pass either a base model DIRECTORY or --hf REPO_ID")
    if hf_repo is not None:
        if with_weights:
            raise click.UsageError("--with-weights uploads a DIRECTORY's files; it does not go with --hf")
        from registry.hub.base import read_hub_base  # huggingface_hub: imported only when needed

        hub = read_hub_base(hf_repo, revision, endpoint=endpoint, token=hf_token)
        manifest, name, revision = hub.manifest, name or hf_repo, hub.commit
    else:
        if name is None:
            raise click.UsageError("--name is required with DIRECTORY")
        if endpoint is not None:
            raise click.UsageError("--endpoint goes with --hf")
        manifest = read_base_manifest(directory)
    body = {"name": name, "revision": revision, "manifest": manifest.to_json()}
    if with_weights:
        body["files"], _ = app.client.upload_files(directory_files(directory))
    result = app.client.request("POST", "/api/v1/bases", json=body)
    verb = "registered" if result["created"] else "already registered"
    human = f"{verb} {result['name']}: {result['weights']} weights\n" + "\n".join(
        f"  answers to {sha}" for sha in result["shas"]
    )
    if hub is not None:
        read = f"over HTTP ({hub.bytes_fetched} bytes)" if hub.bytes_fetched else "from the local HF cache"
        result["hf"] = {
            "repo": hub.repo_id,
            "revision": hub.revision,
            "commit": hub.commit,
            "bytes_fetched": hub.bytes_fetched,
        }
        human += f"\n  {hub.repo_id}@{hub.revision} is commit {hub.commit}; headers read {read}"
    app.emit(result, human)


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
