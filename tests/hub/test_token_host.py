"""The saved Hugging Face token goes only to the Hub it was saved for: ``import`` and ``base register --hf``
against another ``--endpoint`` send it nowhere, checked by a proxy recording every Authorization header."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants

from registry.hub.names import endpoint_token
from tests.conftest import LiveServer, TinyBase
from tests.hub.conftest import Cli, Source
from tests.hub.proxy import CountingProxy
from tests.hub.test_import import push_bot

SAVED = "hf_saved_for_huggingface_co"
EXPLICIT = "hf_given_for_this_endpoint"


@pytest.fixture
def proxy(source: Source) -> Iterator[CountingProxy]:
    proxy = CountingProxy(source.server.url)
    yield proxy
    proxy.close()


@pytest.fixture(params=["token-file", "HF_TOKEN"])
def saved(request: pytest.FixtureRequest, lorareg: Cli) -> dict[str, str]:
    """A token saved the two ways huggingface_hub finds one: the extra environment to run with."""
    if request.param == "HF_TOKEN":
        return {"HF_TOKEN": SAVED}
    home = lorareg.root / "hf-home"
    home.mkdir(parents=True)
    (home / "token").write_text(SAVED)
    return {}


def register_and_import(
    lorareg: Cli, source: Source, destination: LiveServer, bot: str, *args: str, env: dict[str, str]
) -> None:
    """``base register --hf`` (model_info, range reads), then ``import`` (model_info, snapshot_download)."""
    lorareg(destination, "base", "register", "--hf", source.base_repo, *args, extra_env=env)
    lorareg(destination, "import", f"hf://{bot}@prod", bot, *args, extra_env=env)


def headers_sent(proxy: CountingProxy) -> set[str | None]:
    paths = [r.path for r in proxy.requests]
    assert any("/hf/api/models/" in p for p in paths), paths  # model_info
    assert any(r.range for r in proxy.requests), paths  # a safetensors header's range read
    assert any("/resolve/" in p and r.range is None for p, r in zip(paths, proxy.requests, strict=True))
    return {r.authorization for r in proxy.requests}


@pytest.fixture
def bot(source: Source, adapter_factory, tiny_base: TinyBase, tmp_path: Path) -> str:
    return push_bot(source, adapter_factory(seed=5), tiny_base, tmp_path, pinned=False)["repo"]


def test_the_saved_token_is_not_sent_to_another_endpoint(
    source: Source, destination: LiveServer, bot: str, lorareg: Cli, proxy: CountingProxy, saved: dict
) -> None:
    register_and_import(lorareg, source, destination, bot, "--endpoint", f"{proxy.url}/hf", env=saved)
    assert headers_sent(proxy) == {None}


def test_the_saved_token_goes_to_the_hub_it_was_saved_for(
    source: Source, destination: LiveServer, bot: str, lorareg: Cli, proxy: CountingProxy, saved: dict
) -> None:
    """The control: with HF_ENDPOINT naming the proxy, huggingface_hub's own rule sends the saved token."""
    register_and_import(lorareg, source, destination, bot, env={**saved, "HF_ENDPOINT": f"{proxy.url}/hf"})
    assert headers_sent(proxy) == {f"Bearer {SAVED}"}


@pytest.mark.parametrize("how", ["--hf-token", "LOREG_HF_TOKEN"])
def test_a_token_given_for_the_endpoint_is_sent_instead(
    source: Source,
    destination: LiveServer,
    bot: str,
    lorareg: Cli,
    proxy: CountingProxy,
    saved: dict,
    how: str,
) -> None:
    given = ("--hf-token", EXPLICIT) if how == "--hf-token" else ()
    env = {**saved, **({"LOREG_HF_TOKEN": EXPLICIT} if how == "LOREG_HF_TOKEN" else {})}
    register_and_import(lorareg, source, destination, bot, "--endpoint", f"{proxy.url}/hf", *given, env=env)
    assert headers_sent(proxy) == {f"Bearer {EXPLICIT}"}


@pytest.mark.parametrize(
    ("endpoint", "token", "sent"),
    [
        ("https://huggingface.co", None, None),  # None: huggingface_hub sends the saved token
        ("https://HuggingFace.co:443", None, None),
        ("http://huggingface.co", None, False),  # not over plain HTTP
        ("https://huggingface.co:8443", None, False),
        ("https://huggingface.co.example.com", None, False),
        ("http://127.0.0.1:8000/hf", None, False),
        ("http://127.0.0.1:8000/hf", "hf_given", "hf_given"),
        ("https://huggingface.co", False, False),
    ],
)
def test_endpoint_token(
    monkeypatch: pytest.MonkeyPatch, endpoint: str, token: str | bool | None, sent: str | bool | None
) -> None:
    monkeypatch.setattr(constants, "ENDPOINT", "https://huggingface.co")
    assert endpoint_token(endpoint, token) == sent
