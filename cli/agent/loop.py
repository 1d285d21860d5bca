"""The agent beside one inference replica: keeps its engine serving its deployment's target generation.

Each pass: pick the generation this replica serves (the canary's when its labels match the canary
selector, else the current one), check that the engine serves the deployment's base (a mismatch
stops the agent: nothing is loaded), pull each adapter into ``<cache>/versions/<digest>`` (verified,
once per machine), read what the engine serves from ``/v1/models``, and load, reload and unload
until both agree. A pass runs whenever the deployment changes (a long-poll on its watch) and at least
every ``interval``, so an engine restart (adapters gone from ``/v1/models``) is healed by the next
pass. Each pass ends with a heartbeat of the replica's real state; errors (engine or registry) are
reported in it and retried after an exponential backoff (capped), heartbeating meanwhile. While the
registry is unreachable the engine is still kept at the last known generation.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from cli.agent.engines import Engine, EngineError, ServedModels
from cli.agent.plan import Action, Load, Unload, owned, plan
from cli.agent.replica import BaseCheck, BaseMismatch, DeploymentBase
from cli.cache import BlobCache
from cli.client import ApiError, RegistryClient
from cli.server_files import check_version, hex_digest
from registry.errors import InvalidInput
from registry.refs import RepoName, RepoRef
from registry.selectors import matches

logger = logging.getLogger("lorareg.agent")

API = "/api/v1/deployments"
WATCH_MAX = 60.0  # the server's longest watch timeout
REGISTRY_ERRORS = (ApiError, httpx.HTTPError, InvalidInput, OSError)
NO_SUCH_BASE = (400, 404, 422)  # unknown, ambiguous or malformed --served-base


@dataclass
class AgentOptions:
    deployment: str  # ns/name
    replica: str
    labels: dict[str, str] = field(default_factory=dict)
    interval: float = 10.0
    versioned_names: bool = False
    owned_only: bool = True
    served_base: str | None = None
    backoff_start: float = 1.0
    backoff_cap: float = 30.0


@dataclass(frozen=True)
class Target:
    """The generation this replica is to serve, and the names it loads for it."""

    number: int
    desired: dict[str, str]  # engine name → 64 hex
    items: list[dict[str, Any]]
    canary: bool


class Agent:
    def __init__(
        self, client: RegistryClient, engine: Engine, cache: BlobCache, options: AgentOptions
    ) -> None:
        self.client, self.engine, self.cache, self.options = client, engine, cache, options
        self.name = RepoName.parse(options.deployment)
        self.path = f"{API}/{self.name.namespace}/{self.name.name}"
        self.versions = cache.root.absolute() / "versions"
        self.base_check: BaseCheck | None = None
        self.deployment: dict[str, Any] | None = None
        self.target: Target | None = None
        self.generation: int | None = None  # the generation the engine fully serves
        self.applied: dict[str, str] | None = None  # its names → digests
        self.loaded: dict[str, str] = {}  # what the engine serves of ours, name → 64 hex
        self.error: str | None = None
        self.passes = 0
        self._heartbeat_warned = False

    # The loop ----------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Converge until ``stop`` is set (or KeyboardInterrupt); raise :class:`BaseMismatch` (after
        heartbeating it) when the engine serves another base."""
        stop = stop or threading.Event()
        failures = 0
        while not stop.is_set():
            registry_error = self._refresh(watch=failures == 0 and self.deployment is not None)
            if stop.is_set():
                return
            try:
                if self.deployment is None:
                    raise _Failed(registry_error or "the deployment is not known yet")
                self.sync(self.deployment)
                self.error = registry_error
            except BaseMismatch as mismatch:
                self.error = str(mismatch)
                logger.error("%s", mismatch)
                self.heartbeat()
                raise
            except (EngineError, _Failed, *REGISTRY_ERRORS) as error:
                self.error = _message(error)
            except (KeyError, TypeError, ValueError) as error:  # an answer of the wrong shape
                self.error = (
                    f"unexpected answer from the registry or the engine: {type(error).__name__}: {error}"
                )
            self.heartbeat()
            if self.error is None:
                failures = 0
                continue
            failures += 1
            delay = min(self.options.backoff_cap, self.options.backoff_start * 2 ** (failures - 1))
            logger.warning("%s; retrying in %.1f s", self.error, delay)
            self._wait(stop, delay)

    def _refresh(self, *, watch: bool) -> str | None:
        """Fetch the deployment (a long-poll on its watch when ``watch``); the error, if it failed."""
        try:
            if not watch:
                self.deployment = self.client.request("GET", self.path)
                return None
            timeout = min(self.options.interval, WATCH_MAX)
            changed = self.client.request(
                "GET",
                f"{self.path}/watch",
                params={"since": _latest(self.deployment), "timeout": timeout},
                timeout=httpx.Timeout(timeout + 30, connect=10.0),
            )
            if changed is not None:  # None: 304, nothing new
                self.deployment = changed
            return None
        except REGISTRY_ERRORS as error:
            return f"cannot read deployment {self.name} from {self.client.url}: {_message(error)}"

    def _wait(self, stop: threading.Event, seconds: float) -> None:
        """Sleep ``seconds`` (until ``stop``), heartbeating every interval meanwhile."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if stop.wait(min(left, self.options.interval)):
                return
            if deadline - time.monotonic() > 0:
                self.heartbeat()

    # One pass ----------------------------------------------------------------------------------

    def sync(self, deployment: dict[str, Any]) -> None:
        """Converge the engine to ``deployment``'s generation for this replica, once. Raises
        BaseMismatch, EngineError, or a registry error; every adapter that could be pulled is served."""
        self.passes += 1
        target = self.pick(deployment)
        if self.target is None or target.number != self.target.number:
            kind = "canary generation" if target.canary else "generation"
            logger.info("%s: serving %s %d (%d adapters)", self.name, kind, target.number, len(target.items))
        self.target = target
        base = deployment["base"]
        models = self.engine.models()
        how = self._base_check().check(
            self.engine,
            models,
            DeploymentBase(base["name"], hex_digest(base["content_digest"], "the deployment's base")),
        )
        if self.passes == 1:
            logger.info("%s at %s serves base %s (%s)", self.engine.kind, self.engine.url, base["name"], how)

        desired, problems = dict(target.desired), []
        ours = owned(models.adapters, self.versions)
        for item in target.items:
            try:
                self.pull(item, base["content_digest"])
            except REGISTRY_ERRORS as error:
                problems.append(
                    f"cannot pull {item['name']} ({item['repo']}@{item['digest']}): {_message(error)}"
                )
                missing = item["digest"].removeprefix("sha256:")
                for name in [n for n, d in desired.items() if d == missing]:
                    del desired[name]  # its names keep serving what they serve now
                    if name in ours:
                        desired[name] = ours[name]

        models = self._converge(models, desired, problems)
        self._record(models, target, problems)
        if problems:
            raise _Failed("; ".join(problems))

    def pick(self, deployment: dict[str, Any]) -> Target:
        """The generation this replica serves: the canary's when its selector matches our labels."""
        canary = deployment.get("canary")
        on_canary = canary is not None and matches(canary["selector"], self.options.labels)
        chosen = (
            canary["generation"] if canary is not None and on_canary else deployment["current_generation"]
        )
        desired: dict[str, str] = {}
        for item in chosen["state"]:
            digest = hex_digest(item["digest"], f"the digest of {item.get('name')!r}")
            desired[item["name"]] = digest
            if self.options.versioned_names:
                desired[f"{item['repo']}@{digest[:12]}"] = digest
        return Target(chosen["number"], desired, list(chosen["state"]), on_canary)

    def pull(self, item: dict[str, Any], base_digest: str) -> None:
        """Materialize ``item``'s version in ``<cache>/versions/<digest>`` unless it is there."""
        digest = hex_digest(item["digest"], f"the digest of {item['name']!r}")
        if self.cache.version_path(digest).is_dir():
            return
        version = self.client.resolve(RepoRef.parse(f"{item['repo']}@sha256:{digest}"), base_digest)
        if check_version(version) != digest:
            raise InvalidInput(
                f"the registry answered {version.get('digest')} for {item['repo']}@sha256:{digest}"
            )
        self.cache.materialize(
            digest, lambda staging: self.client.fetch_version(version, staging, cache=self.cache)
        )
        logger.info("pulled %s@sha256:%s into %s", item["repo"], digest[:12], self.cache.version_path(digest))

    def _converge(self, models: ServedModels, desired: dict[str, str], problems: list[str]) -> ServedModels:
        served = models.adapters
        ours = owned(served, self.versions)
        if self.loaded and not ours:
            logger.warning(
                "%s at %s serves none of the %d adapters it had (restarted?): loading them again",
                self.engine.kind,
                self.engine.url,
                len(self.loaded),
            )
        steps = plan(
            desired,
            served,
            self.versions,
            owned_only=self.options.owned_only,
            can_replace=self.engine.can_replace,
        )
        problems += [
            f"{self.engine.kind} serves {name} from {root}, which this agent did not load: left alone "
            "(--no-owned-only replaces it)"
            for name, root in steps.conflicts.items()
        ]
        for action in steps.actions:
            try:
                self._apply(action)
            except EngineError as error:
                problems.append(error.message)
                if error.status is None:
                    break  # unreachable: the rest would fail alike
        return self.engine.models() if steps.actions else models

    def _apply(self, action: Action) -> None:
        if isinstance(action, Unload):
            self.engine.unload(action.name)
            logger.info("unloaded %s", action.name)
            return
        assert isinstance(action, Load)
        path = str(self.versions / action.digest)
        self.engine.load(action.name, path, replace=action.replace)
        logger.info(
            "%s %s: sha256:%s", "reloaded" if action.replace else "loaded", action.name, action.digest[:12]
        )

    def _record(self, models: ServedModels, target: Target, problems: list[str]) -> None:
        self.loaded = owned(models.adapters, self.versions)
        if self.loaded == target.desired and not problems:
            if self.generation != target.number:
                logger.info("%s: generation %d served", self.name, target.number)
            self.generation, self.applied = target.number, dict(target.desired)
        elif self.loaded != self.applied:
            self.generation, self.applied = None, None

    def _base_check(self) -> BaseCheck:
        if self.base_check is None:
            served = None
            if self.options.served_base is not None:
                served = self._served_digest(self.options.served_base)
            self.base_check = BaseCheck(served)
        return self.base_check

    def _served_digest(self, spec: str) -> str:
        """The content digest of the base ``--served-base`` names (any SHA form), as the registry says."""
        try:
            found = self.client.request("GET", f"/api/v1/bases/{quote(spec, safe=':@')}")
        except ApiError as error:
            if error.status not in NO_SUCH_BASE:
                raise  # retried: the registry or the token, not the base
            raise BaseMismatch(f"--served-base {spec}: {error.message}; nothing was loaded") from None
        digest = str(found["content_digest"])
        return hex_digest(digest if digest.startswith("sha256:") else f"sha256:{digest}", "a base digest")

    # Heartbeats --------------------------------------------------------------------------------

    def heartbeat_body(self) -> dict[str, Any]:
        return {
            "engine": self.engine.kind,
            "engine_url": self.engine.url,
            "labels": self.options.labels,
            "generation": self.generation,
            "loaded": {name: f"sha256:{digest}" for name, digest in sorted(self.loaded.items())},
            "error": self.error,
            "interval": self.options.interval,
        }

    def heartbeat(self) -> dict[str, Any] | None:
        """Report the replica's state; a failure is logged (once until one succeeds), never raised."""
        try:
            answer = self.client.request(
                "PUT",
                f"{self.path}/replicas/{quote(self.options.replica, safe='')}",
                json=self.heartbeat_body(),
            )
        except REGISTRY_ERRORS as error:
            if not self._heartbeat_warned:
                logger.warning("cannot heartbeat replica %s: %s", self.options.replica, _message(error))
                self._heartbeat_warned = True
            return None
        self._heartbeat_warned = False
        return answer if isinstance(answer, dict) else None


class _Failed(Exception):
    """A pass served what it could; the message says what it could not."""


def _latest(deployment: dict[str, Any] | None) -> int:
    """The newest generation number ``deployment`` shows (current, or the canary's)."""
    if deployment is None:
        return 0
    canary = deployment.get("canary")
    numbers = [deployment["current_generation"]["number"]]
    if canary:
        numbers.append(canary["generation"]["number"])
    return max(numbers)


def _message(error: BaseException) -> str:
    if isinstance(error, ApiError | InvalidInput | EngineError):
        return error.message
    if isinstance(error, _Failed):
        return str(error)
    return (
        f"{type(error).__name__}: {error}" if not str(error).startswith(type(error).__name__) else str(error)
    )
