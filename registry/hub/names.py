"""Hub repository ids, ``hf://REPO[@REVISION]`` URIs, commit SHAs and endpoints."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from huggingface_hub import constants
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from registry.errors import InvalidInput

DEFAULT_REVISION = constants.DEFAULT_REVISION
HUB_ENDPOINT = "https://huggingface.co"
URI_SCHEME = "hf://"
_PINNED = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")  # an HF commit SHA or a lorareg content digest


def endpoint_url(endpoint: str | None) -> str:
    """The Hub to talk to: ``endpoint``, else ``HF_ENDPOINT``, else huggingface.co."""
    return (endpoint or constants.ENDPOINT).rstrip("/")


def endpoint_token(endpoint: str, token: str | bool | None = None) -> str | bool | None:
    """The ``token`` to give ``huggingface_hub`` for ``endpoint``: ``token`` when given; else None (the
    saved token: ``HF_TOKEN``, or the one ``hf auth login`` wrote) if ``endpoint`` is the Hub it was saved
    for (``HF_ENDPOINT``, default huggingface.co); else False, so another server never receives it."""
    if token is not None:
        return token
    return None if _origin(endpoint) == _origin(constants.ENDPOINT) else False


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid Hub repository id (``ORG/NAME`` or ``NAME``)."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise InvalidInput(f"{repo_id!r} is not a Hub repository id such as ORG/NAME: {exc}") from None
    return repo_id


def parse_hf_uri(uri: str) -> tuple[str, str]:
    """``hf://ORG/NAME[@REVISION]`` → the repository id and the revision (default ``main``)."""
    if not uri.startswith(URI_SCHEME):
        raise InvalidInput(f"{uri!r}: name the Hub repository as hf://ORG/NAME[@REVISION]")
    repo_id, _, revision = uri.removeprefix(URI_SCHEME).partition("@")
    return check_repo_id(repo_id), revision or DEFAULT_REVISION


def is_pinned(revision: str) -> bool:
    """Whether ``revision`` already names exact content (a 40-hex commit or a 64-hex content digest)."""
    return bool(_PINNED.match(revision.lower()))
