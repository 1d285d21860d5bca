"""``base register|ls|show``: base models and their shape manifests."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import click

from cli.commands.imports import ENDPOINT_HELP, hf_token_option
from cli.commands.push import directory_files
from cli.context import AppContext, pass_app
from registry.adapters.base_manifest import read_base_manifest
from registry.adapters.model_card import MAX_CARD_SIZE, README_FILE, parse_card

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
@click.option(
    "--quantized-from",
    metavar="BASE",
    help="A bitsandbytes-quantized base: the full-precision base it was made from (adapters of either fit "
    "both) [default: README.md's base_model, when its base_model_relation is quantized].",
)
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
    quantized_from: str | None,
) -> None:
    """Register a base model from its safetensors headers: the one in DIRECTORY, or a Hub repository's
    (--hf) at the commit its revision resolves to, read from the local HF cache (HF_HUB_OFFLINE=1 works)
    or with HTTP range requests. Weights are never loaded, nor uploaded unless --with-weights.
    bitsandbytes 4-bit (NF4, FP4) and 8-bit weights are recorded at their logical shapes."""
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
        assert directory is not None
        if name is None:
            raise click.UsageError("--name is required with DIRECTORY")
        if endpoint is not None:
            raise click.UsageError("--endpoint goes with --hf")
        manifest = read_base_manifest(directory)
        if quantized_from is None and manifest.quantization is not None:
            quantized_from = _card_quantized_from(app, directory)
    body: dict[str, Any] = {"name": name, "revision": revision, "manifest": manifest.to_json()}
    if quantized_from is not None:
        body["quantized_from"] = quantized_from
    uploaded = None
    if with_weights:
        assert directory is not None
        body["files"], uploaded = app.client.upload_files(directory_files(directory))
    result = app.client.request("POST", "/api/v1/bases", json=body)
    if uploaded is not None:
        result["uploaded"] = {"files": uploaded.files, "bytes": uploaded.bytes}
    human = (
        _what_happened(result, revision) + "\n" + "\n".join(f"  answers to {sha}" for sha in result["shas"])
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


def _card_quantized_from(app: AppContext, directory: Path) -> str | None:
    """README.md's ``base_model`` when its ``base_model_relation`` is ``quantized`` and that base is
    registered (else a warning: the base is registered unlinked)."""
    readme = directory / README_FILE
    if not readme.is_file() or readme.stat().st_size > MAX_CARD_SIZE:
        return None
    data = parse_card(readme.read_text(encoding="utf-8-sig", errors="replace")).data
    named = data.get("base_model")
    named = named[0] if isinstance(named, list) and len(named) == 1 else named
    if data.get("base_model_relation") != "quantized" or not isinstance(named, str):
        return None
    known = {b["name"] for b in app.client.request("GET", "/api/v1/bases")}
    if named not in known:
        click.echo(
            f"warning: {README_FILE} says this is a quantization of {named}, which is not registered; "
            "registering it unlinked (register that base, then this one again with --quantized-from)",
            err=True,
        )
        return None
    return named


def _what_happened(result: dict[str, Any], revision: str | None) -> str:
    """What a registration did, in words: registered, added a revision, stored files, or nothing new."""
    added, name = result["added"], result["name"]
    done = []
    if "quantized_from" in added:
        done.append(
            f"linked as a quantization ({result['quantization']}) of {result['quantized_from']['name']}"
        )
    if "quantization" in added:
        done.append(f"read its {result['quantization']} weights at their logical shapes")
    if "revision" in added and "base" not in added:
        done.append(f"added revision {revision}")
    if "files" in added:
        sent = result["uploaded"]
        done.append(
            f"stored its {result['stored_files']} files ({sent['files']} uploaded, {sent['bytes']} bytes)"
        )
    if "base" in added:
        return "; ".join([f"registered {name}: {result['weights']} weights", *done])
    if done:
        return f"{name} was registered already: " + "; ".join(done)
    held = " with its files" if result["stored_files"] else ""
    return f"nothing new: {name} was registered already{held}"


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
@click.argument("base_spec", metavar="BASE")
@pass_app
def show(app: AppContext, base_spec: str) -> None:
    """Show a base model: BASE is NAME (of one base), NAME@SHA, a SHA (40 or 64 hex) or a 12+ hex prefix,
    such as the id `base ls` prints."""
    found = app.client.request("GET", f"/api/v1/bases/{quote(base_spec, safe='/@:')}")
    app.emit(
        found,
        f"{found['name']}\n  content sha256:{found['content_digest']}\n  weights: {found['weights']}\n"
        + (f"  quantization: {found['quantization']}\n" if found.get("quantization") else "")
        + (
            f"  quantized from: {found['quantized_from']['name']}@{found['quantized_from']['sha']}\n"
            if found.get("quantized_from")
            else ""
        )
        + "".join(f"  hf revision: {r}\n" for r in found["hf_revisions"]),
    )


COMMANDS = [base]
