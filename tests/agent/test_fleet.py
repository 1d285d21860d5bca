"""Fleets of agents against a registry with tokens required, each agent holding only a read token of the
namespace: three replicas converging after a tag move, a canary getting it first, promote and rollback,
auto-promotion, an incompatible move not rolled out, and real ``lorareg agent`` processes (a killed one
shows as stale; SIGTERM exits 0; another base exits 1 having loaded nothing)."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from make_tiny_adapter import make_adapter

from registry.config import Settings
from registry.db.session import Database
from registry.principal import REGISTRY
from registry.services import tokens
from tests.agent.conftest import Fleet, make_fleet, paths, running_agent, wait_for
from tests.cli.test_cli import LOREG
from tests.conftest import LiveServer, TinyBase, start_server
from tests.engines import RunningEngine, running_engine
from tests.helpers import push, register_base


@pytest.fixture(scope="module")
def locked(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = Settings(home=tmp_path_factory.mktemp("fleet"), database_url=database_url, auth="required")
    for url in start_server(settings):
        with httpx.Client(base_url=url, timeout=30) as http:
            yield LiveServer(url, settings, http)


@pytest.fixture
def team(locked: LiveServer, tiny_base: TinyBase, adapter_factory) -> Iterator[tuple[Fleet, str]]:
    """A fleet in a namespace of its own, set up with an admin token; and a read token of it."""
    namespace = f"f{uuid.uuid4().hex[:8]}"
    db = Database.connect(locked.settings.resolved_database_url)
    with db.transaction() as session:
        _, admin = tokens.create_token(session, REGISTRY, name=f"admin-{namespace}", scope="admin")
        _, read = tokens.create_token(
            session, REGISTRY, name=f"agent-{namespace}", scope="read", namespaces=[namespace]
        )
    db.dispose()
    with httpx.Client(base_url=locked.url, timeout=30, headers={"Authorization": f"Bearer {admin}"}) as http:
        yield make_fleet(locked.url, http, tiny_base, adapter_factory, namespace), read


def replicas(fleet: Fleet) -> dict[str, dict[str, Any]]:
    return {r["replica"]: r for r in fleet.status()["replicas"]}


def all_converged(fleet: Fleet, count: int, **expected: Any) -> dict[str, dict[str, Any]] | None:
    """The replicas, if ``count`` report, each converged and not stale (and with ``expected`` fields)."""
    found = replicas(fleet)
    good = len(found) == count and all(
        r["converged"] and not r["stale"] and all(r[k] == v for k, v in expected.items())
        for r in found.values()
    )
    return found if good else None


def completion(engine: RunningEngine, name: str = "bot") -> str:
    model = name if engine.kind == "vllm" else f"tiny-llama:{name}"
    return httpx.post(f"{engine.url}/v1/completions", json={"model": model}).json()["choices"][0]["text"]


class Replicas:
    """Three engines (two vLLM, one SGLang) on the tiny base, each with an agent; ``labels`` by index."""

    def __init__(
        self, stack: ExitStack, fleet: Fleet, token: str, tiny_base: TinyBase, tmp: Path, labels: list[dict]
    ) -> None:
        self.engines: list[RunningEngine] = []
        self.caches: list[Path] = []
        self.agents = []
        for index, (kind, label) in enumerate(zip(("vllm", "vllm", "sglang"), labels, strict=True)):
            engine = stack.enter_context(
                running_engine(kind, base_model="tiny-llama", base_path=str(tiny_base.path))
            )
            cache = tmp / f"cache{index}"
            agent, _ = stack.enter_context(
                running_agent(fleet, engine, cache, token=token, replica=f"r{index}", labels=label)
            )
            self.engines.append(engine)
            self.caches.append(cache)
            self.agents.append(agent)

    def serving(self, digest: str, *which: int) -> bool:
        return all(
            self.engines[i].loaded == paths(self.caches[i], {"bot": digest})
            for i in (which or range(len(self.engines)))
        )


def test_three_agents_converge_after_a_tag_move(
    team: tuple[Fleet, str], tiny_base: TinyBase, tmp_path: Path
) -> None:
    fleet, token = team
    one, two, _ = fleet.digests
    with ExitStack() as stack:
        fleet_replicas = Replicas(stack, fleet, token, tiny_base, tmp_path, [{}, {}, {}])
        first = wait_for(lambda: all_converged(fleet, 3, generation=fleet.generation()), what="3 replicas")
        assert {r["loaded"]["bot"] for r in first.values()} == {f"sha256:{one}"}
        assert (
            first["r2"]["engine"] == "sglang" and first["r0"]["engine_url"] == fleet_replicas.engines[0].url
        )

        fleet.move(2)
        moved = fleet.generation()
        wait_for(lambda: all_converged(fleet, 3, generation=moved, target_generation=moved), what="the move")
        assert fleet_replicas.serving(two)
        for engine, cache in zip(fleet_replicas.engines, fleet_replicas.caches, strict=True):
            assert completion(engine) == str(cache.absolute() / "versions" / two)


def test_canary_first_then_promote_then_rollback(
    team: tuple[Fleet, str], tiny_base: TinyBase, tmp_path: Path
) -> None:
    fleet, token = team
    one, two, _ = fleet.digests
    fleet.call("POST", f"{fleet.path}/rollout", json={"canary": "track=canary"})
    with ExitStack() as stack:
        group = Replicas(
            stack, fleet, token, tiny_base, tmp_path, [{"track": "canary"}, {}, {"track": "main"}]
        )
        start = fleet.generation()
        wait_for(lambda: all_converged(fleet, 3, generation=start), what="the first convergence")

        fleet.move(2)
        shown = fleet.show()
        canary = shown["canary"]["generation"]["number"]
        assert shown["current_generation"]["number"] == start and canary > start
        wait_for(lambda: group.serving(two, 0), what="the canary replica to get the move")
        status = wait_for(lambda: all_converged(fleet, 3), what="everyone converged to their target")
        assert status["r0"]["target_generation"] == canary and status["r0"]["generation"] == canary
        assert status["r1"]["target_generation"] == start and group.serving(one, 1, 2)

        promoted = fleet.call("POST", f"{fleet.path}/promote")["number"]
        assert promoted > canary
        wait_for(lambda: all_converged(fleet, 3, generation=promoted), what="the promotion everywhere")
        assert group.serving(two)

        back = fleet.call("POST", f"{fleet.path}/rollback", json={"to": None})["number"]
        assert back > promoted
        wait_for(lambda: all_converged(fleet, 3, generation=back), what="the rollback everywhere")
        assert group.serving(one)


def test_auto_promotion(team: tuple[Fleet, str], tiny_base: TinyBase, tmp_path: Path) -> None:
    fleet, token = team
    fleet.call("POST", f"{fleet.path}/rollout", json={"canary": "track=canary", "auto_promote_after": 0})
    with ExitStack() as stack:
        group = Replicas(stack, fleet, token, tiny_base, tmp_path, [{"track": "canary"}, {}, {}])
        fleet.move(3)
        wait_for(lambda: fleet.show()["canary"] is None, what="the canary to be promoted by a heartbeat")
        promoted = fleet.generation()
        wait_for(lambda: all_converged(fleet, 3, generation=promoted), what="the promotion everywhere")
        assert group.serving(fleet.digests[2])
        assert fleet.show()["current_generation"]["actor"].startswith("auto-promote")


def test_an_incompatible_tag_move_is_not_rolled_out(
    team: tuple[Fleet, str], tiny_base: TinyBase, other_base: TinyBase, tmp_path: Path
) -> None:
    fleet, token = team
    register_base(fleet.http, other_base.path, name="other-llama")
    foreign = tmp_path / "foreign"
    make_adapter(copy.deepcopy(other_base.model), foreign, seed=5, r=4, base_name="other-llama")
    assert push(fleet.http, fleet.repo, foreign, base=other_base.content_digest).status_code == 201
    with ExitStack() as stack:
        group = Replicas(stack, fleet, token, tiny_base, tmp_path, [{}, {}, {}])
        start = fleet.generation()
        wait_for(lambda: all_converged(fleet, 3, generation=start), what="the first convergence")
        passes = [agent.passes for agent in group.agents]

        fleet.move(4)
        refused = fleet.show()["history"][0]
        assert refused["status"] == "refused" and "other-llama" in refused["reason"]
        assert fleet.generation() == start
        wait_for(
            lambda: all(a.passes > p + 1 for a, p in zip(group.agents, passes, strict=True)), what="passes"
        )
        assert all_converged(fleet, 3, generation=start) and group.serving(fleet.digests[0])


def _agent_process(
    fleet: Fleet, token: str, engine: RunningEngine, cache: Path, *args: str
) -> subprocess.Popen:
    return subprocess.Popen(
        [LOREG, "agent", "--deployment", fleet.name, "--engine", engine.kind, "--engine-url", engine.url,
         "--cache", str(cache), "--interval", "0.3", *args],
        env={**os.environ, "LOREG_URL": fleet.url, "LOREG_TOKEN": token},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def test_agent_processes_stale_when_killed_clean_on_sigterm(
    team: tuple[Fleet, str], tiny_base: TinyBase, tmp_path: Path
) -> None:
    fleet, token = team
    with (
        running_engine("vllm", base_model="tiny-llama", base_path=str(tiny_base.path)) as killed_engine,
        running_engine("sglang", base_model="tiny-llama", base_path=str(tiny_base.path)) as stopped_engine,
    ):
        killed = _agent_process(fleet, token, killed_engine, tmp_path / "a", "--replica", "killed")
        stopped = _agent_process(fleet, token, stopped_engine, tmp_path / "b", "--replica", "stopped")
        try:
            wait_for(lambda: all_converged(fleet, 2), timeout=30, what="both agent processes to converge")
            killed.kill()
            stopped.send_signal(signal.SIGTERM)
            _, err = stopped.communicate(timeout=10)
            assert stopped.returncode == 0, err
            assert "loaded bot" in err and "SIGTERM: stopping" in err
            found = wait_for(lambda: (r := replicas(fleet)) and r["killed"]["stale"] and r, what="stale")
            assert found["killed"]["loaded"] == {"bot": f"sha256:{fleet.digests[0]}"}
            assert killed_engine.loaded  # a stopped agent leaves its engine serving
        finally:
            for process in (killed, stopped):
                if process.poll() is None:
                    process.kill()
                process.communicate(timeout=10)


def test_agent_process_refuses_another_base(
    team: tuple[Fleet, str], other_base: TinyBase, tmp_path: Path
) -> None:
    fleet, token = team
    with running_engine("vllm", base_model="tiny-llama", base_path=str(other_base.path)) as engine:
        process = _agent_process(fleet, token, engine, tmp_path / "c", "--replica", "wrong")
        _, err = process.communicate(timeout=30)
        assert process.returncode == 1, err
        assert "whose base content digest is" in err and "nothing was loaded" in err
        assert engine.loaded == {}
        reported = replicas(fleet)["wrong"]
        assert "nothing was loaded" in reported["error"] and not reported["converged"]
        assert reported["loaded"] == {} and reported["generation"] is None
