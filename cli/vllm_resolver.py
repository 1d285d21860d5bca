"""A vLLM ``LoRAResolver``: vLLM asks for an adapter it has not loaded, lorareg supplies it.

Enable it in the vLLM server's environment::

    pip install lorareg
    VLLM_ALLOW_RUNTIME_LORA_UPDATING=true VLLM_PLUGINS=lorareg \\
    LOREG_URL=https://lorareg.example.com LOREG_TOKEN=… [LOREG_SERVED_BASE=<base SHA>] vllm serve …

Requests naming ``model="acme/support-bot:prod"`` are then resolved through lorareg (``ns/name``,
``ns/name:tag``, ``ns/name@sha256:…``, ``ns/name#N``), pulled into the content-addressed cache
(``LOREG_CACHE``; a digest is fetched once per machine) and handed to vLLM as a ``LoRARequest``.
Adapters made for another base are refused — vLLM itself does not check, and a mismatched adapter
silently serves wrong output. The base this server runs is, in order: ``LOREG_SERVED_BASE``; else,
when vLLM serves a local directory, that directory's base content digest (computed from its
safetensors headers and file hashes, as ``lorareg base register`` does; once per process); else the
model name vLLM passes, compared with the base's registered name.

vLLM neither guards the plugin's ``register()`` nor the resolver's ``resolve_lora`` (see
``vllm/plugins/__init__.py`` and ``vllm/entrypoints/openai/models/serving.py``): a bad ``LOREG_*``
setting logs an error and registers nothing, and a registry error logs an error and answers None
(vLLM then reports the model as not found). vLLM keeps a resolved name loaded for the process's life.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from cli.cache import BlobCache
from cli.client import ApiError, RegistryClient
from cli.credentials import load_token
from cli.server_files import check_version
from registry.adapters.base_manifest import read_base_manifest
from registry.config import Settings
from registry.errors import InvalidInput
from registry.refs import RepoRef

if TYPE_CHECKING:
    from vllm.lora.request import LoRARequest

try:
    from vllm.lora.resolver import LoRAResolver
except ImportError:  # vLLM is not installed (or predates resolvers): the same interface, locally

    class LoRAResolver(ABC):  # type: ignore[no-redef]
        """``vllm.lora.resolver.LoRAResolver``'s interface."""

        @abstractmethod
        async def resolve_lora(self, base_model_name: str, lora_name: str) -> LoRARequest | None:
            """The adapter ``lora_name`` for ``base_model_name``, or None when this resolver has none."""


logger = logging.getLogger("lorareg.vllm")
NOT_THERE = (404, 410)
REGISTRY_ERRORS = (ApiError, InvalidInput, httpx.HTTPError, OSError, ValueError)


class LoraregResolver(LoRAResolver):
    """Resolves lorareg references for vLLM; ``fetch`` raises registry errors, ``resolve_lora`` logs them."""

    def __init__(self, client: RegistryClient, cache: BlobCache, *, served_base: str | None = None) -> None:
        self.client = client
        self.cache = cache
        self.served_base = served_base
        self._local_bases: dict[Path, str] = {}
        self._hashing = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> LoraregResolver:
        """A resolver for ``LOREG_URL``; InvalidInput or OSError when a setting is unusable."""
        url = urlsplit(settings.url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise InvalidInput(f"LOREG_URL is {settings.url!r}; expected http(s)://host[:port][/path].")
        settings.cache.expanduser().mkdir(parents=True, exist_ok=True)
        token = settings.token or load_token(settings.credentials_file, settings.url)
        return cls(
            RegistryClient(settings.url, token, progress=False),
            BlobCache(settings.cache),
            served_base=settings.served_base,
        )

    async def resolve_lora(self, base_model_name: str, lora_name: str) -> LoRARequest | None:
        """A ``LoRARequest`` for ``lora_name``, or None when lorareg has no such adapter for this base or
        cannot answer (logged: vLLM does not catch a resolver's exceptions)."""
        try:
            return await asyncio.to_thread(self.fetch, base_model_name, lora_name)
        except REGISTRY_ERRORS as error:
            logger.error("lorareg could not resolve %s: %s: %s", lora_name, type(error).__name__, error)
            return None

    def fetch(self, base_model_name: str, lora_name: str) -> LoRARequest | None:
        """Resolve ``lora_name`` and materialize its files; None when it is not lorareg's to serve here.
        Registry errors (HTTP, transport, an unsafe or corrupt answer, the local base) raise."""
        from vllm.lora.request import LoRARequest

        try:
            target = RepoRef.parse(lora_name)
        except InvalidInput:
            return None  # not a lorareg name: let another resolver answer
        served_base = self.base_of(base_model_name)
        try:
            version = self.client.resolve(target, served_base)
        except ApiError as error:
            if error.status in NOT_THERE and error.code != "unknown_base":
                return None
            if error.code == "base_mismatch":
                logger.warning("lorareg refuses %s for this server: %s", lora_name, error.message)
                return None
            raise
        if served_base is None and version["base"]["name"] != base_model_name:
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
            lora_int_id=int(digest[:15], 16) + 1,  # vLLM replaces it with its own counter's
            lora_path=str(self._materialize(version, digest)),
        )

    def base_of(self, base_model_name: str) -> str | None:
        """The base this server runs, as resolve's ``base=`` takes it: ``LOREG_SERVED_BASE``, else the
        content digest of the local directory vLLM serves, else None (the check is then by name)."""
        if self.served_base is not None:
            return self.served_base
        directory = Path(base_model_name)
        if not directory.is_dir():
            return None
        with self._hashing:  # hashes every weight file: once per directory and process
            if directory not in self._local_bases:
                try:
                    self._local_bases[directory] = read_base_manifest(directory).content_digest
                except InvalidInput as error:
                    raise InvalidInput(
                        f"cannot compute the base digest of {directory}: {error.message} "
                        "Set LOREG_SERVED_BASE to the base's SHA."
                    ) from None
            return self._local_bases[directory]

    def _materialize(self, version: dict[str, Any], digest: str) -> Path:
        """The version's files in ``<cache>/versions/<digest>``, made once (atomically) per machine."""
        return self.cache.materialize(
            digest, lambda staging: self.client.fetch_version(version, staging, cache=self.cache)
        )


def register() -> None:
    """The ``vllm.general_plugins`` entry point: register the resolver when ``LOREG_URL`` is set.

    vLLM calls it in every process, unguarded, so it never raises: a bad setting logs an error and
    registers nothing."""
    if not os.environ.get("LOREG_URL"):
        logger.info("LOREG_URL is not set: the lorareg LoRA resolver stays off")
        return
    try:
        from vllm.lora.resolver import LoRAResolverRegistry
    except ImportError as error:
        logger.error("this vLLM has no LoRA resolvers (%s): the lorareg LoRA resolver stays off", error)
        return
    try:
        resolver = LoraregResolver.from_settings(Settings())
    except (ValueError, InvalidInput, OSError) as error:  # pydantic's ValidationError is a ValueError
        logger.error("the lorareg LoRA resolver stays off, a LOREG_* setting is unusable: %s", error)
        return
    LoRAResolverRegistry.register_resolver("lorareg", resolver)
