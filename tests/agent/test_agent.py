"""The agent against each engine's stand-in and a live registry: converging, following a tag move, healing an
engine restart, unloading a removed adapter, leaving foreign adapters alone, refusing another base, and
backing off on engine errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import httpx
import pytest

from cli.agent.replica import BaseMismatch
from tests.agent.conftest import Fleet, paths, running_agent, wait_for
from tests.conftest import TinyBase
from tests.engines import EngineKind, RunningEngine, running_engine

ENGINES: list[EngineKind] = ["vllm", "sglang"]


def complete(engine: RunningEngine, name: str) -> str:
    """The stand-in's completion text for adapter ``name``: the path of the weights it serves."""
    model = name if engine.kind == "vllm" else f"tiny-llama:{name}"
    answer = httpx.post(f"{engine.url}/v1/completions", json={"model": model, "prompt": "hi"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["choices"][0]["text"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tiny_base: TinyBase):
    """An engine of each kind serving the tiny base from its local directory."""
    with running_engine(request.param, base_model="tiny-llama", base_path=str(tiny_base.path)) as running:
        yield running


def test_converges_and_follows_a_tag_move(fleet: Fleet, engine: RunningEngine, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    one, two, _ = fleet.digests
    fleet.add(f"{fleet.repo}#3", "pinned")
    with running_agent(fleet, engine, cache) as (agent, recorder):
        want = paths(cache, {"bot": one, "pinned": fleet.digests[2]})
        wait_for(lambda: engine.loaded == want, what=f"{engine.kind} to load {want}")
        wait_for(lambda: agent.generation == fleet.generation(), what="the generation to be served")
        assert complete(engine, "bot") == want["bot"]
        assert (cache / "versions" / one / "adapter_config.json").is_file()
        assert agent.heartbeat_body()["loaded"] == {
            "bot": f"sha256:{one}",
            "pinned": f"sha256:{fleet.digests[2]}",
        }
        assert agent.heartbeat_body()["error"] is None

        before = len(recorder.posts())
        fleet.move(2)
        moved = paths(cache, {"bot": two, "pinned": fleet.digests[2]})
        wait_for(lambda: engine.loaded == moved, what="the tag move to reach the engine")
        assert complete(engine, "bot") == moved["bot"]
        wait_for(lambda: agent.generation == fleet.generation(), what="the new generation to be served")
        switch = recorder.posts()[before:]
        if engine.kind == "vllm":
            assert switch == [
                (
                    "/v1/load_lora_adapter",
                    {"lora_name": "bot", "lora_path": moved["bot"], "load_inplace": True},
                )
            ]
        else:  # SGLang has no load_inplace: unload, then load
            assert switch == [
                ("/unload_lora_adapter", {"lora_name": "bot"}),
                ("/load_lora_adapter", {"lora_name": "bot", "lora_path": moved["bot"], "pinned": False}),
            ]
    assert not agent.failure  # type: ignore[attr-defined]


def test_engine_restart_is_healed_and_removed_adapters_unloaded(
    fleet: Fleet, engine: RunningEngine, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    fleet.add(f"{fleet.repo}#2", "extra")
    with running_agent(fleet, engine, cache) as (agent, _):
        both = paths(cache, {"bot": fleet.digests[0], "extra": fleet.digests[1]})
        wait_for(lambda: engine.loaded == both, what="both adapters")
        engine.restart()
        assert engine.loaded == {}
        wait_for(lambda: engine.loaded == both, what="the restarted engine to be loaded again")
        fleet.remove("extra")
        wait_for(
            lambda: engine.loaded == paths(cache, {"bot": fleet.digests[0]}), what="extra to be unloaded"
        )
        wait_for(lambda: agent.generation == fleet.generation(), what="the generation to be served")


def test_versioned_names(fleet: Fleet, engine: RunningEngine, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    one, two, _ = fleet.digests
    with running_agent(fleet, engine, cache, versioned_names=True) as (_, recorder):
        first = paths(cache, {"bot": one, f"{fleet.repo}@{one[:12]}": one})
        wait_for(lambda: engine.loaded == first, what="the stable and the versioned name")
        before = len(recorder.posts())
        fleet.move(2)
        second = paths(cache, {"bot": two, f"{fleet.repo}@{two[:12]}": two})
        wait_for(lambda: engine.loaded == second, what="the new versioned name, the old one gone")
        names = [(path.rsplit("/", 1)[1], body["lora_name"]) for path, body in recorder.posts()[before:]]
        assert names[-1] == ("unload_lora_adapter", f"{fleet.repo}@{one[:12]}")  # after the switch
        assert ("load_lora_adapter", f"{fleet.repo}@{two[:12]}") in names[:-1]


def test_foreign_adapters_are_left_alone(
    fleet: Fleet, engine: RunningEngine, tmp_path: Path, adapter_factory
) -> None:
    cache = tmp_path / "cache"
    load = "/v1/load_lora_adapter" if engine.kind == "vllm" else "/load_lora_adapter"
    foreign = str(adapter_factory(seed=9))
    for name in ("mine-not", "bot"):  # one beside the deployment's, one holding its name
        assert (
            httpx.post(f"{engine.url}{load}", json={"lora_name": name, "lora_path": foreign}).status_code
            == 200
        )
    with running_agent(fleet, engine, cache) as (agent, _):
        wait_for(lambda: agent.passes >= 3, what="three passes")
        assert engine.loaded == {"mine-not": foreign, "bot": foreign}
        assert agent.error is not None and "bot" in agent.error and "did not load" in agent.error
        assert agent.generation is None and agent.heartbeat_body()["loaded"] == {}

    with running_agent(fleet, engine, cache, owned_only=False) as (agent, _):
        want = paths(cache, {"bot": fleet.digests[0]})
        wait_for(lambda: engine.loaded == want, what="the foreign adapters to be replaced and unloaded")
        wait_for(lambda: agent.generation == fleet.generation(), what="the generation to be served")


@pytest.mark.parametrize("kind", ENGINES)
def test_another_base_stops_the_agent_before_loading(
    fleet: Fleet, kind: EngineKind, tiny_base: TinyBase, other_base: TinyBase, tmp_path: Path
) -> None:
    cases = [  # by the local directory's content digest, by name, by --served-base
        ({"base_model": "tiny-llama", "base_path": str(other_base.path)}, {}, "base content digest"),
        ({"base_model": "other-llama"}, {}, "not the deployment's base tiny-llama"),
        ({"base_model": "tiny-llama"}, {"served_base": other_base.content_digest[:16]}, "--served-base is"),
        ({"base_model": "tiny-llama"}, {"served_base": "f" * 64}, "is not registered"),
    ]
    from tests.helpers import register_base

    register_base(fleet.http, other_base.path, name="other-llama")
    for engine_options, options, message in cases:
        with (
            running_engine(kind, **engine_options) as engine,
            running_agent(fleet, engine, tmp_path / "cache", **options) as (agent, recorder),
        ):
            wait_for(lambda agent=agent: agent.failure, what="the agent to stop")  # type: ignore[attr-defined]
            assert engine.loaded == {} and recorder.posts() == []
        [failure] = agent.failure  # type: ignore[attr-defined]
        assert isinstance(failure, BaseMismatch) and message in str(failure), failure
        assert "nothing was loaded" in str(failure)
        assert agent.heartbeat_body()["error"] == str(failure)

    with (
        running_engine(kind, base_model="served-as-another-name") as engine,
        running_agent(fleet, engine, tmp_path / "cache", served_base=tiny_base.content_digest[:12]) as (
            agent,
            _,
        ),
    ):
        wait_for(lambda: engine.loaded, what="--served-base to vouch for the base")


def test_engine_errors_back_off_and_recover(fleet: Fleet, engine: RunningEngine, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    engine.fail_next(4, status=503)
    with running_agent(fleet, engine, cache, backoff_start=0.1, backoff_cap=0.3) as (agent, recorder):
        want = paths(cache, {"bot": fleet.digests[0]})
        wait_for(lambda: engine.loaded == want, what="the engine to recover")
        wait_for(lambda: agent.error is None and agent.generation == fleet.generation(), what="a clean pass")
    failed = [at for _, status, at in recorder.statuses if status == 503]
    assert len(failed) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(failed)]
    assert gaps[0] >= 0.1 and gaps[1] >= 0.2 and gaps[2] >= 0.3, gaps  # 0.1, 0.2, then capped at 0.3


def test_an_unreachable_registry_keeps_the_engine_served(
    fleet: Fleet, engine: RunningEngine, tmp_path: Path
) -> None:
    """The registry gone, a restarted engine is still given the last known generation from the cache."""
    cache = tmp_path / "cache"
    with running_agent(fleet, engine, cache) as (agent, _):
        want = paths(cache, {"bot": fleet.digests[0]})
        wait_for(lambda: engine.loaded == want, what="the first convergence")
        agent.client.http = httpx.Client(base_url="http://127.0.0.1:9", timeout=1)  # nothing listens
        wait_for(lambda: agent.error and "cannot read deployment" in agent.error, what="the registry error")
        engine.restart()
        wait_for(lambda: engine.loaded == want, what="the engine healed without the registry")


@pytest.mark.parametrize("kind", ENGINES)
def test_an_engine_without_runtime_loading_is_reported(
    fleet: Fleet, kind: EngineKind, tmp_path: Path
) -> None:
    with (
        running_engine(kind, base_model="tiny-llama", lora_updates=False) as engine,
        running_agent(fleet, engine, tmp_path / "cache") as (agent, _),
    ):
        hint = "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" if kind == "vllm" else "--enable-lora"
        wait_for(lambda: agent.error and hint in agent.error, what=f"the error to say {hint}")
        assert engine.loaded == {} and agent.generation is None
