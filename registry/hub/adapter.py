"""A PEFT adapter repository fetched from the Hub with ``snapshot_download``, pinned to its commit, with
the base model it names (``base_model_name_or_path`` + ``revision`` in adapter_config.json) resolved to
a commit SHA."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, snapshot_download

from registry.adapters import CONFIG_FILE, WEIGHTS_FILE
from registry.adapters.config import LoraConfig, parse_adapter_config
from registry.errors import InvalidAdapter, InvalidInput
from registry.hub.convert import convert_bin
from registry.hub.errors import hub_errors
from registry.hub.names import (
    DEFAULT_REVISION,
    URI_SCHEME,
    check_repo_id,
    endpoint_token,
    endpoint_url,
    is_pinned,
)
from registry.hub.revisions import hub_api, resolve

BIN_FILE = "adapter_model.bin"
#: What an import takes from an adapter repository (``.bin`` only when there is no ``.safetensors``).
ADAPTER_FILES = (CONFIG_FILE, WEIGHTS_FILE, BIN_FILE, "README.md")


@dataclass(frozen=True)
class HubAdapter:
    repo_id: str
    commit: str  # the adapter repository's 40-hex commit SHA
    directory: Path  # its adapter files, ready to push (adapter_model.bin converted)
    base_name: str
    base_sha: str  # the base's commit SHA (or content digest) from adapter_config.json, or resolved
    base_resolved_from: str | None  # the base revision resolved to base_sha, when the config gave no SHA
    converted: bool  # adapter_model.bin was converted to adapter_model.safetensors

    @property
    def source(self) -> str:
        """``hf://REPO@COMMIT``: where the adapter came from, exactly."""
        return f"{URI_SCHEME}{self.repo_id}@{self.commit}"


def fetch_adapter(
    repo_id: str,
    revision: str,
    directory: Path,
    *,
    endpoint: str | None = None,
    token: str | bool | None = None,
) -> HubAdapter:
    """Download the adapter files of ``repo_id@revision`` into ``directory`` and resolve its base. The
    saved HF token goes only to the Hub it is for (:func:`~registry.hub.names.endpoint_token`)."""
    check_repo_id(repo_id)
    endpoint = endpoint_url(endpoint)
    token = endpoint_token(endpoint, token)
    api = hub_api(endpoint, token)
    commit, info = resolve(api, repo_id, revision)
    wanted = _adapter_files({s.rfilename for s in info.siblings or ()}, f"{URI_SCHEME}{repo_id}@{commit}")
    with hub_errors(repo_id, commit, endpoint):
        snapshot_download(
            repo_id,
            revision=commit,
            local_dir=directory,
            allow_patterns=wanted,
            endpoint=endpoint,
            token=token,
            library_name="lorareg",
        )
    config = parse_adapter_config((directory / CONFIG_FILE).read_bytes())
    base_name, base_sha, resolved_from = _resolve_base(api, config)
    converted = BIN_FILE in wanted
    if converted:
        convert_bin(directory / BIN_FILE, directory / WEIGHTS_FILE)
        (directory / BIN_FILE).unlink()
    return HubAdapter(
        repo_id=repo_id,
        commit=commit,
        directory=directory,
        base_name=base_name,
        base_sha=base_sha,
        base_resolved_from=resolved_from,
        converted=converted,
    )


def _adapter_files(present: set[str], where: str) -> list[str]:
    if CONFIG_FILE not in present:
        listing = ", ".join(sorted(present)[:10]) or "no files"
        raise InvalidAdapter(f"{where} has no {CONFIG_FILE}, so it is not a PEFT adapter ({listing})")
    if WEIGHTS_FILE not in present and BIN_FILE not in present:
        raise InvalidAdapter(f"{where} has neither {WEIGHTS_FILE} nor {BIN_FILE}: no adapter weights")
    skip = BIN_FILE if WEIGHTS_FILE in present else None
    return [name for name in ADAPTER_FILES if name in present and name != skip]


def _resolve_base(api: HfApi, config: LoraConfig) -> tuple[str, str, str | None]:
    """The base's name, its commit SHA, and the revision resolved to get it (None if the config gave one)."""
    name = config.base_model_name_or_path
    if not name:
        raise InvalidAdapter(
            f"{CONFIG_FILE} names no base model (base_model_name_or_path); set it to the base's Hub id"
        )
    if config.revision and is_pinned(config.revision):
        return name, config.revision.lower(), None
    revision = config.revision or DEFAULT_REVISION
    try:
        check_repo_id(name)
    except InvalidInput:
        raise InvalidAdapter(
            f"{CONFIG_FILE} names base {name!r} with no commit SHA in revision, and that is not a Hub "
            "repository id to resolve one from; set revision to the base's commit SHA"
        ) from None
    return name, resolve(api, name, revision)[0], revision
