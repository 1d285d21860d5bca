"""The vLLM resolver plugin, against a live registry. vLLM is not installable here: the interface types
the plugin touches (``LoRARequest``, ``LoRAResolver``, ``LoRAResolverRegistry``) are stood in for by
minimal equivalents."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import socket
import sys
import types
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar

import pytest

import cli.vllm_resolver
from cli.vllm_resolver import LoraregResolver, register
from registry.config import Settings
from tests.conftest import LiveServer, TinyBase, start_server
from tests.helpers import push, register_base


@dataclass
class LoRARequest:  # vllm.lora.request.LoRARequest's fields the plugin sets
    lora_name: str
    lora_int_id: int
    lora_path: str


class LoRAResolver(ABC):  # vllm.lora.resolver.LoRAResolver
    @abstractmethod
    async def resolve_lora(self, base_model_name: str, lora_name: str) -> LoRARequest | None: ...


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
    modules["vllm.lora.resolver"].LoRAResolver = LoRAResolver  # type: ignore[attr-defined]
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


def test_subclasses_vllms_resolver_when_vllm_is_importable() -> None:
    spec = importlib.util.spec_from_file_location("vllm_resolver_under_vllm", cli.vllm_resolver.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imported with vLLM's interface types present
    assert issubclass(module.LoraregResolver, LoRAResolver)
    assert not issubclass(LoraregResolver, LoRAResolver)  # imported here without vLLM: the local base
    assert issubclass(LoraregResolver, cli.vllm_resolver.LoRAResolver)


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("LOREG_URL", "registry.example.com", "LOREG_URL"),
        ("LOREG_URL", "ftp://registry.example.com", "LOREG_URL"),
        ("LOREG_INLINE_WORKERS", "many", "inline_workers"),
        ("LOREG_CACHE", "/proc/lorareg-cache", "/proc/lorareg-cache"),
    ],
)
def test_a_bad_setting_logs_and_registers_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv("LOREG_URL", "http://127.0.0.1:1")
    monkeypatch.setenv(variable, value)
    with caplog.at_level(logging.ERROR, logger="lorareg.vllm"):
        register()  # vLLM calls it unguarded at start-up: it must not raise
    assert LoRAResolverRegistry.resolvers == {}
    assert "stays off" in caplog.text and named in caplog.text


def test_without_vllms_resolver_interface_register_logs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "vllm.lora.resolver", None)  # a vLLM older than resolvers
    monkeypatch.setenv("LOREG_URL", "http://127.0.0.1:1")
    with caplog.at_level(logging.ERROR, logger="lorareg.vllm"):
        register()
    assert "has no LoRA resolvers" in caplog.text


def test_an_unreachable_registry_answers_none_and_logs(
    repo: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening: refused
        plugin = LoraregResolver.from_settings(Settings(url=url, cache=tmp_path / "cache"))
        with caplog.at_level(logging.ERROR, logger="lorareg.vllm"):
            assert asyncio.run(plugin.resolve_lora("tiny-llama", f"{repo}:prod")) is None
    assert f"could not resolve {repo}:prod: ConnectError" in caplog.text


def test_registry_errors_answer_none_and_log(
    server: LiveServer,
    pushed: dict,
    repo: str,
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    unknown = resolver(server, tmp_path / "cache", served_base="nobody-llama")  # a base nobody registered
    with caplog.at_level(logging.ERROR, logger="lorareg.vllm"):
        assert asyncio.run(unknown.resolve_lora("tiny-llama", f"{repo}:prod")) is None
    assert "ApiError" in caplog.text and "no base model named" in caplog.text
    caplog.clear()
    locked = Settings(home=tmp_path / "locked", database_url=database_url, auth="required")
    for url in start_server(locked):
        plugin = LoraregResolver.from_settings(Settings(url=url, token="not-a-token", cache=tmp_path / "c"))
        with caplog.at_level(logging.ERROR, logger="lorareg.vllm"):
            assert asyncio.run(plugin.resolve_lora("tiny-llama", f"{repo}:prod")) is None
    assert f"could not resolve {repo}:prod: ApiError" in caplog.text
    assert not (tmp_path / "c" / "versions").exists()


def test_a_local_base_directory_is_checked_by_its_content_digest(
    server: LiveServer,
    pushed: dict,
    tiny_base: TinyBase,
    other_base: TinyBase,
    repo: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    plugin = resolver(server, tmp_path / "cache")  # no LOREG_SERVED_BASE: vLLM serves a directory
    assert plugin.base_of(str(tiny_base.path)) == tiny_base.content_digest
    request = asyncio.run(plugin.resolve_lora(str(tiny_base.path), f"{repo}:prod"))
    assert isinstance(request, LoRARequest)
    assert Path(request.lora_path).name == pushed["digest"].removeprefix("sha256:")
    register_base(server.http, other_base.path, name="other-llama")
    with caplog.at_level(logging.WARNING, logger="lorareg.vllm"):
        assert asyncio.run(plugin.resolve_lora(str(other_base.path), f"{repo}:prod")) is None
    assert "refuses" in caplog.text and other_base.content_digest in caplog.text
    pinned = resolver(server, tmp_path / "cache", served_base=other_base.content_digest)
    assert pinned.base_of(str(tiny_base.path)) == other_base.content_digest  # LOREG_SERVED_BASE wins
    assert plugin.base_of("tiny-llama") is None  # not a directory: checked by name


def test_a_local_directory_without_safetensors_is_refused_and_logged(
    server: LiveServer, pushed: dict, repo: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    weights = tmp_path / "bin-base"
    weights.mkdir()
    (weights / "pytorch_model.bin").write_bytes(b"not safetensors")
    with caplog.at_level(logging.ERROR, logger="lorareg.vllm"):
        assert (
            asyncio.run(resolver(server, tmp_path / "cache").resolve_lora(str(weights), f"{repo}:prod"))
            is None
        )
    assert "cannot compute the base digest" in caplog.text and "LOREG_SERVED_BASE" in caplog.text
