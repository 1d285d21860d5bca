"""``import``: take a PEFT adapter in from the Hugging Face Hub, or any Hub-compatible server (another
lorareg's ``/hf`` routes make this a mirror between registries), through the normal validated push.

``huggingface_hub`` takes ~0.3 s to import, so ``registry.hub`` is imported inside the commands that talk
to a Hub: every other command starts as fast as before.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cli.client import ApiError
from cli.commands.push import push
from cli.context import AppContext, pass_app
from registry.adapters import CONFIG_FILE
from registry.errors import UnknownBase
from registry.refs import DEFAULT_TAG, RepoRef

if TYPE_CHECKING:
    from registry.hub.adapter import HubAdapter

ENDPOINT_HELP = (
    "A Hub-compatible server, e.g. another lorareg's URL + /hf [default: $HF_ENDPOINT, else huggingface.co]."
)
#: The saved HF token (``HF_TOKEN``, ``hf auth login``) is sent only to the Hub it is for; this is the one
#: way to send a token to another ``--endpoint``.
hf_token_option = click.option(
    "--hf-token",
    envvar="LOREG_HF_TOKEN",
    metavar="TOKEN",
    help="Token for the Hub [env LOREG_HF_TOKEN]. Without it the saved HF token (HF_TOKEN, hf auth login) "
    "is sent only to $HF_ENDPOINT or huggingface.co, never to another --endpoint.",
)


@click.command("import")
@click.argument("source", metavar="hf://REPO[@REVISION]")
@click.argument("target", metavar="NS/NAME[:TAG]")
@click.option("--endpoint", metavar="URL", help=ENDPOINT_HELP)
@hf_token_option
@click.option("-m", "--message", help="What this version is [default: imported from hf://REPO@COMMIT].")
@click.option("--tag", "tags", multiple=True, help="Also point this tag at the version (repeatable).")
@click.option("--no-latest", is_flag=True, help=f"Do not move '{DEFAULT_TAG}' to this version.")
@pass_app
def import_(
    app: AppContext,
    source: str,
    target: str,
    endpoint: str | None,
    hf_token: str | None,
    message: str | None,
    tags: tuple[str, ...],
    no_latest: bool,
) -> None:
    """Import the PEFT adapter at hf://REPO[@REVISION] (default main) as a version of TARGET.

    Downloads its adapter files with huggingface_hub, converts adapter_model.bin to safetensors (tensors
    only), takes the base from adapter_config.json (resolving its commit SHA when revision is absent) and
    pushes with provenance source=hf://REPO@COMMIT.
    """
    from huggingface_hub.utils import disable_progress_bars

    from registry.hub.adapter import fetch_adapter
    from registry.hub.names import HUB_ENDPOINT, endpoint_url, parse_hf_uri

    repo_id, revision = parse_hf_uri(source)
    RepoRef.parse(target)  # a bad target fails before anything is downloaded
    if app.as_json:
        disable_progress_bars()  # like push's own bars: no noise around machine output
    hub = endpoint_url(endpoint)
    elsewhere = hub != HUB_ENDPOINT
    with tempfile.TemporaryDirectory(prefix="lorareg-import-") as scratch:
        adapter = fetch_adapter(repo_id, revision, Path(scratch), endpoint=hub, token=hf_token)
        if adapter.base_resolved_from is not None:
            click.echo(
                f"{CONFIG_FILE} gives base {adapter.base_name} no commit SHA: resolved "
                f"{adapter.base_resolved_from} to {adapter.base_sha} on {hub}",
                err=True,
            )
        if adapter.converted:
            click.echo("converted adapter_model.bin to adapter_model.safetensors (tensors only)", err=True)
        _require_base(app, adapter, f" --endpoint {hub}" if elsewhere else "")
        click.get_current_context().invoke(
            push,
            directory=adapter.directory,
            target=target,
            base=adapter.base_sha,
            message=message or f"imported from {adapter.source}",
            tags=tags,
            no_latest=no_latest,
            author=None,
            is_model=False,
            provenance=(f"source={adapter.source}", *([f"hf_endpoint={hub}"] if elsewhere else [])),
        )


def _require_base(app: AppContext, adapter: HubAdapter, endpoint_option: str) -> None:
    """Refuse, before uploading anything, an adapter whose base the registry does not know, saying how
    to register it."""
    try:
        app.client.request("GET", f"/api/v1/bases/{adapter.base_sha}")
    except ApiError as exc:
        if exc.status != 404:
            raise
        revision = adapter.base_sha if len(adapter.base_sha) == 40 else "<its commit SHA>"
        raise UnknownBase(
            f"base model {adapter.base_name}@{adapter.base_sha} is not registered on {app.settings.url}; "
            f"register it first: lorareg base register --hf {adapter.base_name} --revision {revision}"
            f"{endpoint_option}"
        ) from None


COMMANDS = [import_]
