"""The vLLM resolver plugin, against a live registry. vLLM is not installable here: its two types the
plugin touches (``LoRARequest``, ``LoRAResolverRegistry``) are stood in for by minimal equivalents."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar

import pytest

from cli.vllm_resolver import LoraregResolver, register
from registry.config import Settings
from tests.conftest import LiveServer, TinyBase
from tests.helpers import push, register_base


@dataclass
class LoRARequest:  # vllm.lora.request.LoRARequest's fields the plugin sets
    lora_name: str
    lora_int_id: int
    lora_path: str


class LoRAResolverRegistry:  # vllm.lora.resolver.LoRAResolverRegistry's registration call
    resolvers: ClassVar[dict[str, object]] = {}

    @classmethod
    def register_resolver(cls, name: str, resolver: object) -> None:
        cls.resolvers[name] = resolver


@pytest.fixture(autouse=True)
def vllm_stand_in(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    modules = {
        "vllm": types.ModuleType("vllm"),
        "vllm.lora": types.ModuleType("vllm.lora"),
        "vllm.lora.request": types.ModuleType("vllm.lora.request"),
        "vllm.lora.resolver": types.ModuleType("vllm.lora.resolver"),
    }
    modules["vllm.lora.request"].LoRARequest = LoRARequest  # type: ignore[attr-defined]
    modules["vllm.lora.resolver"].LoRAResolverRegistry = LoRAResolverRegistry  # type: ignore[attr-defined]
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    LoRAResolverRegistry.resolvers.clear()
    yield


@pytest.fixture
def pushed(server: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str) -> dict:
    register_base(server.http, tiny_base.path)
    response = push(server.http, repo, adapter_factory(seed=71), base=tiny_base.content_digest, tags=["prod"])
    assert response.status_code == 201, response.text
    return response.json()


def resolver(server: LiveServer, cache: Path, served_base: str | None = None) -> LoraregResolver:
    return LoraregResolver.from_settings(Settings(url=server.url, cache=cache, served_base=served_base))


def test_resolves_pulls_into_the_cache_and_reuses_it(
    server: LiveServer, pushed: dict, adapter_factory, repo: str, tmp_path: Path
) -> None:
    plugin = resolver(server, tmp_path / "cache")
    request = asyncio.run(plugin.resolve_lora("tiny-llama", f"{repo}:prod"))
    assert (
        isinstance(request, LoRARequest) and request.lora_name == f"{repo}:prod" and request.lora_int_id > 0
    )
    path = Path(request.lora_path)
    assert path == tmp_path / "cache" / "versions" / pushed["digest"].removeprefix("sha256:")
    adapter = adapter_factory(seed=71)
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (path / name).read_bytes() == (adapter / name).read_bytes()
    again = asyncio.run(plugin.resolve_lora("tiny-llama", f"{repo}@{pushed['digest']}"))
    assert again.lora_path == request.lora_path and again.lora_int_id == request.lora_int_id


def test_refuses_another_base_and_unknown_names(
    server: LiveServer, pushed: dict, tiny_base: TinyBase, other_base: TinyBase, repo: str, tmp_path: Path
) -> None:
    register_base(server.http, other_base.path, name="other-llama")
    by_name = resolver(server, tmp_path / "cache")
    assert asyncio.run(by_name.resolve_lora("other-llama", f"{repo}:prod")) is None
    by_sha = resolver(server, tmp_path / "cache", served_base=other_base.content_digest)
    assert asyncio.run(by_sha.resolve_lora("tiny-llama", f"{repo}:prod")) is None
    right = resolver(server, tmp_path / "cache", served_base=tiny_base.content_digest)
    assert asyncio.run(right.resolve_lora("anything", f"{repo}:prod")) is not None
    assert asyncio.run(by_name.resolve_lora("tiny-llama", f"{repo}:missing")) is None
    assert asyncio.run(by_name.resolve_lora("tiny-llama", "not a lorareg name")) is None
    assert (
        not (tmp_path / "cache" / "versions").exists()
        or len(list((tmp_path / "cache" / "versions").iterdir())) == 1
    )


def test_entry_point_registers_with_vllm(
    server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (plugin,) = [e for e in entry_points(group="vllm.general_plugins") if e.name == "lorareg"]
    assert plugin.load() is register
    monkeypatch.delenv("LOREG_URL", raising=False)
    register()
    assert LoRAResolverRegistry.resolvers == {}
    monkeypatch.setenv("LOREG_URL", server.url)
    monkeypatch.setenv("LOREG_CACHE", str(tmp_path))
    register()
    assert isinstance(LoRAResolverRegistry.resolvers["lorareg"], LoraregResolver)
