"""A revision of a Hub repository resolved to its commit with ``HfApi.model_info``."""

from __future__ import annotations

from huggingface_hub import HfApi, ModelInfo

from registry.errors import InvalidInput
from registry.hub.errors import hub_errors
from registry.hub.names import endpoint_token


def hub_api(endpoint: str, token: str | bool | None = None) -> HfApi:
    return HfApi(endpoint=endpoint, token=endpoint_token(endpoint, token), library_name="lorareg")


def resolve(
    api: HfApi, repo_id: str, revision: str, *, files_metadata: bool = False
) -> tuple[str, ModelInfo]:
    """The commit SHA ``revision`` of ``repo_id`` resolves to, and the repository's info there (its files
    in ``siblings``; with ``files_metadata``, their sizes and LFS sha256s)."""
    with hub_errors(repo_id, revision, api.endpoint):
        info = api.model_info(repo_id, revision=revision, files_metadata=files_metadata)
    if not info.sha:
        raise InvalidInput(f"{api.endpoint} gave no commit SHA for {repo_id}@{revision}: not Hub-compatible")
    return info.sha, info
