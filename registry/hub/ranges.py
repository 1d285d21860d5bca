"""Byte ranges of a Hub repository's files over HTTP: what reading a safetensors header needs, no more."""

from __future__ import annotations

from huggingface_hub import constants, get_session, hf_hub_url
from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

from registry.hub.names import endpoint_token

PARTIAL_CONTENT = 206


class RangeReader:
    """Reads byte ranges of ``repo_id``'s files at ``commit`` (redirects to object storage followed),
    counting the bytes received in ``bytes_read``."""

    def __init__(self, repo_id: str, commit: str, *, endpoint: str, token: str | bool | None = None) -> None:
        self.repo_id = repo_id
        self.commit = commit
        self.endpoint = endpoint
        self.token = endpoint_token(endpoint, token)
        self.bytes_read = 0

    def read_at(self, filename: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``filename`` from ``offset`` (fewer past the end of the file)."""
        if length <= 0:
            return b""
        url = hf_hub_url(self.repo_id, filename, revision=self.commit, endpoint=self.endpoint)
        headers = {
            **build_hf_headers(token=self.token, library_name="lorareg"),
            "Range": f"bytes={offset}-{offset + length - 1}",
        }
        data = bytearray()
        with get_session().stream(
            "GET", url, headers=headers, follow_redirects=True, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT
        ) as response:
            if response.is_error:
                response.read()
                hf_raise_for_status(response)
            skip = 0 if response.status_code == PARTIAL_CONTENT else offset  # Range ignored: the whole file
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) >= skip + length:
                    break
        self.bytes_read += len(data)
        return bytes(data[skip : skip + length])
