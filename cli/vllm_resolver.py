"""A vLLM ``LoRAResolver``: vLLM asks for an adapter it has not loaded, lorareg supplies it.

Enable it in the vLLM server's environment::

    pip install lorareg
    VLLM_ALLOW_RUNTIME_LORA_UPDATING=true VLLM_PLUGINS=lorareg \\
    LOREG_URL=https://lorareg.example.com LOREG_TOKEN=… LOREG_SERVED_BASE=<base SHA> vllm serve …

Requests naming ``model="acme/support-bot:prod"`` are then resolved through lorareg (``ns/name``,
``ns/name:tag``, ``ns/name@sha256:…``, ``ns/name#N``), pulled into the content-addressed cache
(``LOREG_CACHE``; a digest is fetched once per machine) and handed to vLLM as a ``LoRARequest``.
Adapters made for another base are refused: by SHA when ``LOREG_SERVED_BASE`` is set, else by the base
model's registered name against the name vLLM serves — vLLM itself checks neither, and a mismatched
adapter silently serves wrong output. A version whose file list is unsafe to write
(:func:`cli.server_files.check_version`) raises :class:`InvalidInput` before anything is created.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from cli.cache import BlobCache
from cli.client import ApiError, RegistryClient
from cli.credentials import load_token
from cli.server_files import check_version
from registry.config import Settings
from registry.errors import InvalidInput
from registry.refs import RepoRef

logger = logging.getLogger("lorareg.vllm")
NOT_THERE = (404, 410)


class LoraregResolver:
    """Implements vLLM's ``LoRAResolver`` interface (``async resolve_lora``)."""

    def __init__(self, client: RegistryClient, cache: BlobCache, *, served_base: str | None = None) -> None:
        self.client = client
        self.cache = cache
        self.served_base = served_base

    @classmethod
    def from_settings(cls, settings: Settings) -> LoraregResolver:
        token = settings.token or load_token(settings.credentials_file, settings.url)
        return cls(
            RegistryClient(settings.url, token, progress=False),
            BlobCache(settings.cache),
            served_base=settings.served_base,
        )

    async def resolve_lora(self, base_model_name: str, lora_name: str) -> Any:
        """A ``LoRARequest`` for ``lora_name``, or None when lorareg has no such adapter for this base."""
        return await asyncio.to_thread(self._resolve, base_model_name, lora_name)

    def _resolve(self, base_model_name: str, lora_name: str) -> Any:
        from vllm.lora.request import LoRARequest

        try:
            target = RepoRef.parse(lora_name)
        except InvalidInput:
            return None  # not a lorareg name: let another resolver answer
        try:
            version = self.client.resolve(target, self.served_base)
        except ApiError as error:
            if error.status in NOT_THERE:
                return None
            if error.code == "base_mismatch":
                logger.warning("lorareg refuses %s for this server: %s", lora_name, error.message)
                return None
            raise
        if self.served_base is None and version["base"]["name"] != base_model_name:
            logger.warning(
                "lorareg refuses %s: made for base %s, this server runs %s",
                lora_name,
                version["base"]["name"],
                base_model_name,
            )
            return None
        digest = check_version(version)  # materialized into a new staging directory
        return LoRARequest(
            lora_name=lora_name,
            lora_int_id=int(digest[:15], 16) + 1,
            lora_path=str(self._materialize(version, digest)),
        )

    def _materialize(self, version: dict[str, Any], digest: str) -> Path:
        """The version's files in ``<cache>/versions/<digest>``, made once (atomically) per machine."""
        directory = self.cache.root / "versions" / digest
        if directory.is_dir():
            return directory
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{digest[:12]}-", dir=directory.parent))
        try:
            self.client.fetch_version(version, staging, cache=self.cache)
            os.rename(staging, directory)
        except OSError:
            if not directory.is_dir():
                raise
            # another process made it first: the same content
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return directory


def register() -> None:
    """The ``vllm.general_plugins`` entry point: register the resolver when ``LOREG_URL`` is set."""
    from vllm.lora.resolver import LoRAResolverRegistry

    settings = Settings()
    if not os.environ.get("LOREG_URL"):
        logger.info("LOREG_URL is not set: the lorareg LoRA resolver stays off")
        return
    LoRAResolverRegistry.register_resolver("lorareg", LoraregResolver.from_settings(settings))
