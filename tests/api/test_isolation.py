"""Two teams on one registry with auth required: every route of the OpenAPI document × every kind of
credential → the status the authorization model says (docs/security.md), generated from the route
table, so that a new route without a rule here fails. Refusals change nothing but the audit trail, and
every audited call leaves an entry naming the token.

Namespace ``alpha`` owns the resources the routes act on; ``beta`` is the other team.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, func, select, update

from registry.adapters.base_manifest import read_base_manifest
from registry.config import Settings
from registry.db import models
from registry.db.models import utcnow
from registry.db.session import Database
from registry.principal import REGISTRY
from registry.services import tokens
from tests.cli_runner import lorareg
from tests.conftest import TinyBase, start_server
from tests.helpers import every_page, file_entries, upload_directory
from tests.jobs.conftest import redis_reachable
from tests.service_checks import redis_url, require

# name -> (scope, team): team "alpha" or "beta" limits the token to that namespace, None to none.
TOKENS: dict[str, tuple[str, str | None]] = {
    "alpha-read": ("read", "alpha"),
    "alpha-write": ("write", "alpha"),
    "alpha-admin": ("admin", "alpha"),
    "beta-read": ("read", "beta"),
    "beta-write": ("write", "beta"),
    "beta-admin": ("admin", "beta"),
    "global-read": ("read", None),
    "global-admin": ("admin", None),
    "revoked": ("admin", None),
    "expired": ("admin", None),
}
CREDENTIALS = ["none", "malformed", *TOKENS]
BAD = ("malformed", "revoked", "expired")
# The test server speaks plain HTTP: one TLS context for every client, instead of one built (~60 ms,
# the CA bundle read again) per client.
PLAIN_HTTP = ssl.create_default_context()
# Webhooks made here listen for an event that never fires in this module (no job runs here): the
# database is shared with other tests' servers, whose dispatchers would deliver to them.
QUIET_HOOK = {"url": "http://127.0.0.1:9/hook", "events": ["job.finished"]}


@dataclass
class Teams:
    url: str
    settings: Settings
    alpha: str
    beta: str
    secrets: dict[str, str]
    token_ids: dict[str, int]
    base: TinyBase
    adapters: Callable[..., Path]
    admin: httpx.Client
    private: str = ""  # alpha's private repository, with one version
    public: str = ""  # alpha's public repository
    blob: str = ""  # a blob only alpha's private repository references
    created: list[str] = field(default_factory=list)
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = create_engine(self.settings.resolved_database_url)  # snapshot()'s, disposed at the end

    def client(self, credential: str) -> httpx.Client:
        if credential == "none":
            headers = {}
        elif credential == "malformed":
            headers = {"Authorization": "Token not-a-bearer"}
        else:
            headers = {"Authorization": f"Bearer {self.secrets[credential]}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, verify=PLAIN_HTTP)

    def fresh_repo(self, *, team: str = "alpha", seed: int = 21) -> str:
        """A new repository of ``team`` with one version (tag ``latest``), pushed by the global admin."""
        repo = f"{getattr(self, team)}/r{uuid.uuid4().hex[:8]}"
        files = upload_directory(self.admin, self.adapters(seed=seed))
        pushed = self.admin.post(
            f"/api/v1/repos/{repo}/versions", json={"files": files, "base": self.base.content_digest}
        )
        assert pushed.status_code == 201, pushed.text
        return repo


@pytest.fixture(scope="module")
def teams(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, tiny_base: TinyBase, adapter_factory
) -> Iterator[Teams]:
    require("Redis at 127.0.0.1:6379", redis_reachable(), "start it: redis-server --daemonize yes")
    alpha, beta = f"alpha{uuid.uuid4().hex[:6]}", f"beta{uuid.uuid4().hex[:6]}"
    db = Database.connect(database_url)
    secrets, ids = {}, {}
    with db.transaction() as session:
        for name, (scope, team) in TOKENS.items():
            namespaces = [alpha if team == "alpha" else beta] if team else None
            token, secret = tokens.create_token(
                session, REGISTRY, name=f"{name}-{alpha}", scope=scope, namespaces=namespaces
            )
            secrets[name], ids[name] = secret, token.id
        tokens.revoke_token(session, ids["revoked"], REGISTRY)
        session.execute(
            update(models.Token)
            .where(models.Token.id == ids["expired"])
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    db.dispose()
    settings = Settings(
        home=tmp_path_factory.mktemp("isolation"),
        database_url=database_url,
        auth="required",
        # Jobs are queued on a broker no worker reads, so that they stay cancellable.
        executor="celery",
        broker_url=redis_url(11),  # not the job tests' (12, 13): their workers read those
    )
    for url in start_server(settings):
        admin = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {secrets['global-admin']}"}, timeout=30
        )
        registered = admin.post(
            "/api/v1/bases",
            json={"name": "tiny-llama", "manifest": read_base_manifest(tiny_base.path).to_json()},
        )
        assert registered.status_code in (200, 201), registered.text
        t = Teams(url, settings, alpha, beta, secrets, ids, tiny_base, adapter_factory, admin)
        t.private = t.fresh_repo(seed=31)
        t.public = t.fresh_repo(seed=32)
        made_public = admin.put(f"/api/v1/repos/{t.public}/visibility", json={"visibility": "public"})
        assert made_public.status_code == 200, made_public.text
        version = admin.get(f"/api/v1/repos/{t.private}/versions/latest").json()
        t.blob = next(f["digest"] for f in version["files"] if f["path"].endswith(".safetensors"))
        yield t
        _leave_nothing_behind(t)
        t.engine.dispose()
        admin.close()


def _leave_nothing_behind(t: Teams) -> None:
    """Cancel this module's queued jobs and delete its webhooks: the database is shared, and another
    test's server would run the jobs at its start and deliver their events to the webhooks."""
    for job in every_page(t.admin, "/api/v1/jobs", status="queued", limit=500):
        if any(i["repo"].split("/")[0] in (t.alpha, t.beta) for i in job["inputs"]):
            assert t.admin.post(f"/api/v1/jobs/{job['id']}/cancel").status_code in (200, 409)
    for hook in t.admin.get("/api/v1/webhooks").json():
        if hook["namespace"] in (t.alpha, t.beta):
            assert t.admin.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 204


# What each credential is, as the rules see it -----------------------------------------------------


def _team(credential: str) -> str | None:
    return TOKENS[credential][1] if credential in TOKENS else None


def _scope(credential: str) -> str:
    return TOKENS[credential][0]


def _level(credential: str) -> int:
    return ("read", "write", "admin").index(_scope(credential))


Rule = Callable[[str], int]


def anyone(ok: int) -> Rule:
    """No authentication at all (health)."""
    return lambda credential: ok


def any_caller(ok: int) -> Rule:
    """Anonymous callers too; a bad token is still refused."""
    return lambda c: 401 if c in BAD else ok


def any_token(ok: int) -> Rule:
    return lambda c: 401 if c in (*BAD, "none") else ok


def needs(level: str, ok: int, *, of_alpha: bool, other_team: int = 403) -> Rule:
    """A token of ``level`` (in alpha's namespace when ``of_alpha``); beta's tokens get ``other_team``."""

    def rule(c: str) -> int:
        if c in (*BAD, "none"):
            return 401
        if of_alpha and _team(c) == "beta":
            return other_team
        return ok if _level(c) >= ("read", "write", "admin").index(level) else 403

    return rule


def read_alpha(ok: int) -> Rule:
    """Reading alpha's private repository: beta is told it does not exist."""
    return needs("read", ok, of_alpha=True, other_team=404)


def read_alpha_blob(ok: int) -> Rule:
    """A blob: 404 to whoever cannot read a version referencing it, anonymous callers included."""
    return lambda c: 401 if c in BAD else 404 if c == "none" or _team(c) == "beta" else ok


def unrestricted_admin(ok: int) -> Rule:
    return lambda c: 401 if c in (*BAD, "none") else ok if c == "global-admin" else 403


def admin_of_alpha_object(ok: int) -> Rule:
    """An alpha token or webhook: its admins and the global admin; beta's admin does not see it."""

    def rule(c: str) -> int:
        if c in (*BAD, "none"):
            return 401
        if _scope(c) != "admin":
            return 403
        return 404 if _team(c) == "beta" else ok

    return rule


def cancel_alpha_job(ok: int) -> Rule:
    """A job on alpha's inputs: invisible to beta (404), cancellable with write on alpha."""

    def rule(c: str) -> int:
        if c in (*BAD, "none"):
            return 401
        if _team(c) == "beta":
            return 404
        return ok if _level(c) >= 1 else 403

    return rule


# Calls that succeed for the right credential ---------------------------------------------------


@dataclass
class Call:
    method: str
    path: str
    json: Any = None
    content: bytes | None = None
    params: dict[str, Any] | None = None


Prepare = Callable[[Teams], Call]


def _get(path: str, **params: Any) -> Prepare:
    return lambda t: Call("GET", path.format(t=t), params=params or None)


def _head(path: str) -> Prepare:
    return lambda t: Call("HEAD", path.format(t=t))


def _job(t: Teams) -> str:
    """A merge job of alpha's private version into an alpha repository (queued, never run)."""
    submitted = t.admin.post(
        "/api/v1/jobs",
        json={
            "kind": "merge",
            "inputs": [t.private],
            "params": {"method": "linear", "weights": [float(len(t.created) + 1)]},
            "into": f"{t.alpha}/merged",
            "device": "cpu",
        },
    )
    assert submitted.status_code == 202, submitted.text
    t.created.append(submitted.json()["id"])
    return submitted.json()["id"]


def _alpha_token(t: Teams) -> int:
    made = t.admin.post("/api/v1/tokens", json={"name": "victim", "scope": "read", "namespaces": [t.alpha]})
    assert made.status_code == 201, made.text
    return made.json()["id"]


def _alpha_webhook(t: Teams) -> int:
    made = t.admin.post("/api/v1/webhooks", json={**QUIET_HOOK, "namespace": t.alpha})
    assert made.status_code == 201, made.text
    return made.json()["id"]


def _commit(t: Teams) -> Call:
    """A new repository with the content of alpha's private one: its blobs are alpha's to reference."""
    directory = t.adapters(seed=31)
    return Call(
        "POST",
        f"/api/v1/repos/{t.alpha}/p{uuid.uuid4().hex[:6]}/versions",
        json={"files": file_entries(directory), "base": t.base.content_digest},
    )


def _upload(t: Teams) -> Call:
    data = uuid.uuid4().bytes
    return Call("PUT", f"/api/v1/blobs/sha256:{hashlib.sha256(data).hexdigest()}", content=data)


def _fresh(method: str, path: str, json: Any = None) -> Prepare:
    """A call on a fresh alpha repository ``{repo}``."""

    def prepare(t: Teams) -> Call:
        return Call(method, path.format(repo=t.fresh_repo()), json=json)

    return prepare


def _yanked(t: Teams) -> Call:
    """Unyanking #1 of a fresh alpha repository, yanked by the global admin."""
    repo = t.fresh_repo()
    assert t.admin.post(f"/api/v1/repos/{repo}/versions/%231/yank", json={}).status_code == 200
    return Call("POST", f"/api/v1/repos/{repo}/versions/%231/unyank")


def _labelled(labels: str) -> Prepare:
    """Deleting label ``team`` at ``labels`` (``{repo}``: a fresh alpha repository), set by the global
    admin."""

    def prepare(t: Teams) -> Call:
        path = labels.format(repo=t.fresh_repo())
        assert t.admin.put(path, json={"labels": {"team": "a"}}).status_code == 200
        return Call("DELETE", f"{path}/team")

    return prepare


def _deployment(t: Teams, *, adapter: bool = False) -> str:
    """A new alpha deployment on tiny-llama (serving alpha's private adapter as ``bot`` with ``adapter``),
    made by the global admin."""
    name = f"d{uuid.uuid4().hex[:8]}"
    made = t.admin.post(
        "/api/v1/deployments", json={"namespace": t.alpha, "name": name, "base": "tiny-llama"}
    )
    assert made.status_code == 201, made.text
    if adapter:
        added = t.admin.post(
            f"/api/v1/deployments/{t.alpha}/{name}/adapters", json={"ref": t.private, "as": "bot"}
        )
        assert added.status_code == 201, added.text
    return f"{t.alpha}/{name}"


def _canary(t: Teams) -> str:
    """An alpha deployment whose adapter, added under a canary selector, is generation 2's canary."""
    name = _deployment(t)
    rollout = t.admin.post(f"/api/v1/deployments/{name}/rollout", json={"canary": "track=canary"})
    assert rollout.status_code == 200, rollout.text
    added = t.admin.post(f"/api/v1/deployments/{name}/adapters", json={"ref": t.private, "as": "bot"})
    assert added.status_code == 201 and added.json()["status"] == "canary", added.text
    return name


HEARTBEAT = {
    "engine": "vllm",
    "engine_url": "http://10.0.0.7:8000",
    "generation": 1,
    "loaded": {},
    "interval": 10,
}


# (method, path) -> (rule, prepare, audited action). Every operation of the OpenAPI document is here.
RULES: dict[tuple[str, str], tuple[Rule, Prepare, str | None]] = {
    ("GET", "/api/v1/deployments"): (any_caller(200), _get("/api/v1/deployments"), None),
    ("POST", "/api/v1/deployments"): (
        needs("write", 201, of_alpha=True),
        lambda t: Call(
            "POST",
            "/api/v1/deployments",
            json={"namespace": t.alpha, "name": f"d{uuid.uuid4().hex[:8]}", "base": "tiny-llama"},
        ),
        "deployment.create",
    ),
    ("GET", "/api/v1/deployments/{namespace}/{name}"): (
        read_alpha(200),
        lambda t: Call("GET", f"/api/v1/deployments/{_deployment(t)}"),
        None,
    ),
    ("POST", "/api/v1/deployments/{namespace}/{name}/adapters"): (
        needs("write", 201, of_alpha=True),
        lambda t: Call("POST", f"/api/v1/deployments/{_deployment(t)}/adapters", json={"ref": t.private}),
        "deployment.add",
    ),
    ("DELETE", "/api/v1/deployments/{namespace}/{name}/adapters/{alias}"): (
        needs("write", 200, of_alpha=True),
        lambda t: Call("DELETE", f"/api/v1/deployments/{_deployment(t, adapter=True)}/adapters/bot"),
        "deployment.remove",
    ),
    ("GET", "/api/v1/deployments/{namespace}/{name}/watch"): (
        read_alpha(200),
        lambda t: Call("GET", f"/api/v1/deployments/{_deployment(t)}/watch", params={"timeout": 0}),
        None,
    ),
    ("POST", "/api/v1/deployments/{namespace}/{name}/rollout"): (
        needs("write", 200, of_alpha=True),
        lambda t: Call(
            "POST", f"/api/v1/deployments/{_deployment(t)}/rollout", json={"canary": "track=canary"}
        ),
        "deployment.rollout",
    ),
    ("POST", "/api/v1/deployments/{namespace}/{name}/promote"): (
        needs("write", 200, of_alpha=True),
        lambda t: Call("POST", f"/api/v1/deployments/{_canary(t)}/promote"),
        "deployment.promote",
    ),
    ("POST", "/api/v1/deployments/{namespace}/{name}/rollback"): (
        needs("write", 200, of_alpha=True),
        lambda t: Call("POST", f"/api/v1/deployments/{_deployment(t, adapter=True)}/rollback", json={}),
        "deployment.rollback",
    ),
    ("PUT", "/api/v1/deployments/{namespace}/{name}/replicas/{replica}"): (
        needs("read", 200, of_alpha=True),  # an agent needs no more than a read token of the namespace
        lambda t: Call("PUT", f"/api/v1/deployments/{_deployment(t)}/replicas/r1", json=HEARTBEAT),
        None,
    ),
    ("GET", "/api/v1/deployments/{namespace}/{name}/status"): (
        read_alpha(200),
        lambda t: Call("GET", f"/api/v1/deployments/{_deployment(t)}/status"),
        None,
    ),
    ("GET", "/api/v1/health"): (anyone(200), _get("/api/v1/health"), None),
    ("GET", "/health"): (anyone(200), _get("/health"), None),
    ("GET", "/healthz"): (anyone(200), _get("/healthz"), None),
    ("GET", "/readyz"): (anyone(200), _get("/readyz"), None),
    ("GET", "/metrics"): (anyone(200), _get("/metrics"), None),  # open: LOREG_METRICS_TOKEN unset
    ("GET", "/api/v1/whoami"): (any_token(200), _get("/api/v1/whoami"), None),
    ("GET", "/api/v1/repos"): (any_caller(200), _get("/api/v1/repos"), None),
    ("POST", "/api/v1/repos"): (
        needs("write", 201, of_alpha=True),
        lambda t: Call(
            "POST", "/api/v1/repos", json={"namespace": t.alpha, "name": f"e{uuid.uuid4().hex[:6]}"}
        ),
        "repo.create",
    ),
    ("GET", "/api/v1/repos/{namespace}/{name}"): (read_alpha(200), _get("/api/v1/repos/{t.private}"), None),
    ("DELETE", "/api/v1/repos/{namespace}/{name}"): (
        needs("admin", 204, of_alpha=True),
        _fresh("DELETE", "/api/v1/repos/{repo}"),
        "repo.delete",
    ),
    ("PUT", "/api/v1/repos/{namespace}/{name}/visibility"): (
        needs("write", 200, of_alpha=True),
        _fresh("PUT", "/api/v1/repos/{repo}/visibility", {"visibility": "public"}),
        "repo.visibility",
    ),
    ("GET", "/api/v1/repos/{namespace}/{name}/resolve/{ref}"): (
        read_alpha(200),
        _get("/api/v1/repos/{t.private}/resolve/latest"),
        None,
    ),
    ("POST", "/api/v1/resolve"): (
        any_caller(200),
        lambda t: Call("POST", "/api/v1/resolve", json={"refs": [t.private]}),
        None,
    ),
    ("GET", "/api/v1/repos/{namespace}/{name}/versions"): (
        read_alpha(200),
        _get("/api/v1/repos/{t.private}/versions"),
        None,
    ),
    ("POST", "/api/v1/repos/{namespace}/{name}/versions"): (
        needs("write", 201, of_alpha=True),
        _commit,
        "version.push",
    ),
    ("GET", "/api/v1/repos/{namespace}/{name}/versions/{ref}"): (
        read_alpha(200),
        _get("/api/v1/repos/{t.private}/versions/%231"),
        None,
    ),
    ("GET", "/api/v1/repos/{namespace}/{name}/versions/{ref}/card"): (
        read_alpha(200),
        _get("/api/v1/repos/{t.private}/versions/%231/card"),
        None,
    ),
    ("POST", "/api/v1/repos/{namespace}/{name}/versions/{ref}/yank"): (
        needs("write", 200, of_alpha=True),
        _fresh("POST", "/api/v1/repos/{repo}/versions/%231/yank", {"reason": "test"}),
        "version.yank",
    ),
    ("POST", "/api/v1/repos/{namespace}/{name}/versions/{ref}/unyank"): (
        needs("write", 200, of_alpha=True),
        _yanked,
        "version.unyank",
    ),
    ("GET", "/api/v1/repos/{namespace}/{name}/tags"): (
        read_alpha(200),
        _get("/api/v1/repos/{t.private}/tags"),
        None,
    ),
    ("PUT", "/api/v1/repos/{namespace}/{name}/tags/{tag}"): (
        needs("write", 200, of_alpha=True),
        _fresh("PUT", "/api/v1/repos/{repo}/tags/prod", {"target": "latest"}),
        "tag.move",
    ),
    ("DELETE", "/api/v1/repos/{namespace}/{name}/tags/{tag}"): (
        needs("write", 204, of_alpha=True),
        _fresh("DELETE", "/api/v1/repos/{repo}/tags/latest"),
        "tag.delete",
    ),
    ("GET", "/api/v1/repos/{namespace}/{name}/tags/{tag}/history"): (
        read_alpha(200),
        _get("/api/v1/repos/{t.private}/tags/latest/history"),
        None,
    ),
    ("GET", "/api/v1/repos/{namespace}/{name}/tags/{tag}/watch"): (
        read_alpha(200),
        _get("/api/v1/repos/{t.private}/tags/latest/watch", timeout=0),
        None,
    ),
    ("GET", "/api/v1/repos/{namespace}/{name}/labels"): (
        read_alpha(200),
        _get("/api/v1/repos/{t.private}/labels"),
        None,
    ),
    ("PUT", "/api/v1/repos/{namespace}/{name}/labels"): (
        needs("write", 200, of_alpha=True),
        _fresh("PUT", "/api/v1/repos/{repo}/labels", {"labels": {"team": "a"}, "remove": ["owner"]}),
        "label.set",
    ),
    ("DELETE", "/api/v1/repos/{namespace}/{name}/labels/{key}"): (
        needs("write", 204, of_alpha=True),
        _labelled("/api/v1/repos/{repo}/labels"),
        "label.delete",
    ),
    ("GET", "/api/v1/repos/{namespace}/{name}/labels/history"): (
        read_alpha(200),
        _get("/api/v1/repos/{t.private}/labels/history"),
        None,
    ),
    ("GET", "/api/v1/repos/{namespace}/{name}/versions/{ref}/labels"): (
        read_alpha(200),
        _get("/api/v1/repos/{t.private}/versions/%231/labels"),
        None,
    ),
    ("PUT", "/api/v1/repos/{namespace}/{name}/versions/{ref}/labels"): (
        needs("write", 200, of_alpha=True),
        _fresh(
            "PUT", "/api/v1/repos/{repo}/versions/%231/labels", {"labels": {"team": "a"}, "remove": ["owner"]}
        ),
        "label.set",
    ),
    ("DELETE", "/api/v1/repos/{namespace}/{name}/versions/{ref}/labels/{key}"): (
        needs("write", 204, of_alpha=True),
        _labelled("/api/v1/repos/{repo}/versions/%231/labels"),
        "label.delete",
    ),
    ("GET", "/api/v1/repos/{namespace}/{name}/versions/{ref}/labels/history"): (
        read_alpha(200),
        _get("/api/v1/repos/{t.private}/versions/%231/labels/history"),
        None,
    ),
    ("POST", "/api/v1/repos/{namespace}/{name}/versions/{ref}/evals"): (
        needs("write", 200, of_alpha=True),
        _fresh("POST", "/api/v1/repos/{repo}/versions/%231/evals", {"acc": 0.5}),
        "eval.attach",
    ),
    ("GET", "/api/v1/repos/{namespace}/{name}/versions/{ref}/evals"): (
        read_alpha(200),
        _get("/api/v1/repos/{t.private}/versions/%231/evals"),
        None,
    ),
    ("PUT", "/api/v1/repos/{namespace}/{name}/description"): (
        needs("write", 200, of_alpha=True),
        _fresh("PUT", "/api/v1/repos/{repo}/description", {"description": "an adapter"}),
        "repo.describe",
    ),
    ("POST", "/api/v1/blobs/batch"): (
        needs("write", 200, of_alpha=False),
        lambda t: Call("POST", "/api/v1/blobs/batch", json={"blobs": [{"digest": t.blob, "size": 1}]}),
        None,
    ),
    ("PUT", "/api/v1/blobs/sha256:{hex_digest}"): (needs("write", 201, of_alpha=False), _upload, None),
    ("POST", "/api/v1/blobs/sha256:{hex_digest}/verify"): (  # nothing was uploaded to object storage
        needs("write", 404, of_alpha=False),
        lambda t: Call("POST", f"/api/v1/blobs/sha256:{'0' * 64}/verify", params={"upload": "0" * 32}),
        None,
    ),
    ("GET", "/api/v1/blobs/sha256:{hex_digest}"): (
        read_alpha_blob(200),
        _get("/api/v1/blobs/{t.blob}"),
        None,
    ),
    ("HEAD", "/api/v1/blobs/sha256:{hex_digest}"): (
        read_alpha_blob(200),
        _head("/api/v1/blobs/{t.blob}"),
        None,
    ),
    ("GET", "/api/v1/bases"): (any_token(200), _get("/api/v1/bases"), None),
    ("POST", "/api/v1/bases"): (
        unrestricted_admin(200),
        lambda t: Call(
            "POST",
            "/api/v1/bases",
            json={"name": "tiny-llama", "manifest": read_base_manifest(t.base.path).to_json()},
        ),
        "base.register",
    ),
    ("GET", "/api/v1/bases/{sha}"): (any_token(200), _get("/api/v1/bases/{t.base.content_digest}"), None),
    ("GET", "/api/v1/bases/{sha}/adapters"): (
        any_token(200),
        _get("/api/v1/bases/{t.base.content_digest}/adapters"),
        None,
    ),
    ("GET", "/api/v1/tokens"): (needs("admin", 200, of_alpha=False), _get("/api/v1/tokens"), None),
    ("POST", "/api/v1/tokens"): (
        needs("admin", 201, of_alpha=True),
        lambda t: Call(
            "POST", "/api/v1/tokens", json={"name": "made", "scope": "read", "namespaces": [t.alpha]}
        ),
        "token.create",
    ),
    ("DELETE", "/api/v1/tokens/{token_id}"): (
        admin_of_alpha_object(204),
        lambda t: Call("DELETE", f"/api/v1/tokens/{_alpha_token(t)}"),
        "token.revoke",
    ),
    ("GET", "/api/v1/jobs"): (any_token(200), _get("/api/v1/jobs"), None),
    ("POST", "/api/v1/jobs"): (
        needs("write", 202, of_alpha=True),
        lambda t: Call(
            "POST",
            "/api/v1/jobs",
            json={
                "kind": "merge",
                "inputs": [t.private],
                "params": {"method": "linear", "weights": [1.0 + uuid.uuid4().int % 10_000]},
                "into": f"{t.alpha}/merged",
                "device": "cpu",
            },
        ),
        "job.submit",
    ),
    ("GET", "/api/v1/jobs/{job_id}"): (
        read_alpha(200),
        lambda t: Call("GET", f"/api/v1/jobs/{_job(t)}"),
        None,
    ),
    ("POST", "/api/v1/jobs/{job_id}/cancel"): (
        cancel_alpha_job(200),
        lambda t: Call("POST", f"/api/v1/jobs/{_job(t)}/cancel"),
        "job.cancel",
    ),
    ("GET", "/api/v1/webhooks"): (needs("admin", 200, of_alpha=False), _get("/api/v1/webhooks"), None),
    ("POST", "/api/v1/webhooks"): (
        needs("admin", 201, of_alpha=True),
        lambda t: Call("POST", "/api/v1/webhooks", json={**QUIET_HOOK, "namespace": t.alpha}),
        "webhook.create",
    ),
    ("DELETE", "/api/v1/webhooks/{webhook_id}"): (
        admin_of_alpha_object(204),
        lambda t: Call("DELETE", f"/api/v1/webhooks/{_alpha_webhook(t)}"),
        "webhook.delete",
    ),
    ("GET", "/api/v1/webhooks/{webhook_id}/deliveries"): (
        admin_of_alpha_object(200),
        lambda t: Call("GET", f"/api/v1/webhooks/{_alpha_webhook(t)}/deliveries"),
        None,
    ),
    ("GET", "/api/v1/audit"): (needs("admin", 200, of_alpha=False), _get("/api/v1/audit"), None),
    ("GET", "/api/v1/search"): (any_caller(200), _get("/api/v1/search", q="adapter"), None),
    ("GET", "/hf/api/models/{namespace}/{name}"): (read_alpha(200), _get("/hf/api/models/{t.private}"), None),
    ("GET", "/hf/api/models/{namespace}/{name}/revision/{revision}"): (
        read_alpha(200),
        _get("/hf/api/models/{t.private}/revision/main"),
        None,
    ),
    ("GET", "/hf/api/models/{namespace}/{name}/tree/{revision}"): (
        read_alpha(200),
        _get("/hf/api/models/{t.private}/tree/main"),
        None,
    ),
    ("GET", "/hf/api/models/{namespace}/{name}/tree/{revision}/{path}"): (
        read_alpha(404),  # the adapter has no folders: the right caller is told the entry is missing
        _get("/hf/api/models/{t.private}/tree/main/nothing"),
        None,
    ),
    ("GET", "/hf/{namespace}/{name}/resolve/{revision}/{path}"): (
        read_alpha(200),
        _get("/hf/{t.private}/resolve/main/adapter_config.json"),
        None,
    ),
    ("HEAD", "/hf/{namespace}/{name}/resolve/{revision}/{path}"): (
        read_alpha(200),
        _head("/hf/{t.private}/resolve/main/adapter_config.json"),
        None,
    ),
}


def snapshot(t: Teams) -> dict[str, Any]:
    """Everything a refused request must not change (the audit trail records the refusal)."""
    tables = [table for table in models.Base.metadata.sorted_tables if table.name != "audit_events"]
    with t.engine.connect() as connection:
        every_count = connection.execute(
            select(*(select(func.count()).select_from(table).scalar_subquery() for table in tables))
        ).one()
        counts: dict[str, Any] = {table.name: count for table, count in zip(tables, every_count, strict=True)}
        counts["revoked"] = connection.scalar(
            select(func.count()).select_from(models.Token).where(models.Token.revoked_at.is_not(None))
        )
        counts["tags"] = sorted(connection.execute(select(models.Tag.name, models.Tag.version_id)).all())
        counts["yanked"] = connection.scalar(
            select(func.count()).select_from(models.Version).where(models.Version.yanked_at.is_not(None))
        )
        counts["public"] = connection.scalar(
            select(func.count())
            .select_from(models.Repository)
            .where(models.Repository.visibility == "public")
        )
        counts["cancelled"] = connection.scalar(
            select(func.count()).select_from(models.Job).where(models.Job.cancel_requested.is_(True))
        )
    blobs = t.settings.home / "blobs" / "sha256"
    counts["stored"] = sorted(p.name for p in blobs.glob("*/*")) if blobs.exists() else []
    return counts


def test_every_route_has_an_authorization_rule(teams: Teams) -> None:
    """A route added without a rule in RULES fails here: authorization is decided, never defaulted."""
    documented = {
        (method.upper(), path)
        for path, operations in teams.admin.get("/openapi.json").json()["paths"].items()
        for method in operations
    }
    assert documented - RULES.keys() == set(), "routes without an authorization rule in RULES"
    assert RULES.keys() - documented == set(), "rules for routes that no longer exist"


@pytest.mark.parametrize("route", sorted(RULES), ids=[f"{m} {p}" for m, p in sorted(RULES)])
def test_route_by_credential(teams: Teams, route: tuple[str, str]) -> None:
    rule, prepare, action = RULES[route]
    for credential in CREDENTIALS:
        wanted = rule(credential)
        call = prepare(teams)
        before = snapshot(teams) if wanted >= 400 and route[0] != "GET" else None
        with teams.client(credential) as http:
            response = http.request(
                call.method, call.path, json=call.json, content=call.content, params=call.params
            )
        assert response.status_code == wanted, (credential, response.status_code, response.text)
        if wanted >= 400:
            if route[0] != "HEAD":
                assert response.json()["error"]["code"], response.text
            assert response.headers["x-error-code"]
            if before is not None:
                assert snapshot(teams) == before, f"{route} refused for {credential} but changed state"
        if action is not None:
            _assert_audited(teams, action, credential, response)


def _assert_audited(teams: Teams, action: str, credential: str, response: httpx.Response) -> None:
    """The newest entry of ``action`` is this call: its actor is the token, its result the outcome."""
    newest = teams.admin.get("/api/v1/audit", params={"action": action, "limit": 1}).json()[0]
    actor = {"none": "anonymous", **dict.fromkeys(BAD, "unauthenticated")}.get(
        credential, f"{credential}-{teams.alpha}"
    )
    assert newest["actor"] == actor, newest
    if response.is_success:
        assert newest["result"] == "ok", newest
    else:
        assert newest["result"] == response.headers["x-error-code"], newest


# The two teams, beyond status codes ---------------------------------------------------------------


def _files_of(t: Teams, repo: str) -> list[dict[str, Any]]:
    version = t.admin.get(f"/api/v1/repos/{repo}/versions/latest").json()
    return [{"path": f["path"], "digest": f["digest"], "size": f["size"]} for f in version["files"]]


def test_knowing_a_digest_is_not_a_way_in(teams: Teams) -> None:
    """Beta knows alpha's blob digest: it cannot download it, is told it is missing (like any unknown
    digest), cannot commit it without uploading the bytes; uploading them is deduplicated."""
    unknown = "sha256:" + "f" * 64
    with teams.client("beta-write") as beta:
        refused = beta.get(f"/api/v1/blobs/{teams.blob}")
        never = beta.get(f"/api/v1/blobs/{unknown}")
        assert refused.status_code == never.status_code == 404
        assert refused.json()["error"]["message"].replace(teams.blob, "X") == never.json()["error"][
            "message"
        ].replace(unknown, "X")
        files = _files_of(teams, teams.private)
        batch = beta.post(
            "/api/v1/blobs/batch", json={"blobs": [{"digest": f["digest"], "size": f["size"]} for f in files]}
        )
        missing = {m["digest"] for m in batch.json()["missing"]}
        assert teams.blob in missing  # (the config is shared with alpha's public repository: present)
        repo = f"{teams.beta}/copy{uuid.uuid4().hex[:6]}"
        commit = {"files": files, "base": teams.base.content_digest}
        stolen = beta.post(f"/api/v1/repos/{repo}/versions", json=commit)
        assert (stolen.status_code, stolen.json()["error"]["code"]) == (400, "blob_unknown"), stolen.text
        stored = snapshot(teams)["stored"]
        directory = teams.adapters(seed=31)  # beta really has the bytes: it uploads them
        for f in files:
            assert (
                beta.put(
                    f"/api/v1/blobs/{f['digest']}", content=(directory / f["path"]).read_bytes()
                ).status_code
                == 201
            )
        assert snapshot(teams)["stored"] == stored  # deduplicated
        assert beta.post(f"/api/v1/repos/{repo}/versions", json=commit).status_code == 201
    with teams.client("alpha-read") as alpha:
        assert alpha.get(f"/api/v1/blobs/{teams.blob}").status_code == 200


def test_jobs_are_checked_against_every_input(teams: Teams) -> None:
    body = {"kind": "merge", "inputs": [teams.private], "params": {"method": "linear"}, "device": "cpu"}
    with teams.client("beta-write") as beta:
        refused = beta.post("/api/v1/jobs", json={**body, "into": f"{teams.beta}/stolen"})
        assert refused.status_code == 404, refused.text  # alpha's repository is not beta's to read
        job_id = _job(teams)
        assert job_id not in {j["id"] for j in beta.get("/api/v1/jobs").json()}
        diff = beta.post("/api/v1/jobs", json={"kind": "diff", "inputs": [teams.private, teams.public]})
        assert diff.status_code == 404
    with teams.client("alpha-read") as alpha:
        assert job_id in {j["id"] for j in alpha.get("/api/v1/jobs", params={"limit": 500}).json()}


def test_lists_hold_only_what_the_caller_may_read_a_page_at_a_time(teams: Teams) -> None:
    beta_private = teams.fresh_repo(team="beta", seed=33)

    with teams.client("beta-read") as beta:
        seen = {r["id"] for r in every_page(beta, "/api/v1/repos", limit=1)}
        assert teams.public in seen and beta_private in seen and teams.private not in seen
        assert {r["id"] for r in beta.get("/api/v1/repos", params={"limit": 500}).json()} == seen
        on_base = {
            a["repo"]
            for a in every_page(beta, f"/api/v1/bases/{teams.base.content_digest}/adapters", limit=1)
        }
        assert teams.public in on_base and teams.private not in on_base
    with teams.client("none") as anonymous:
        listed = {r["id"] for r in anonymous.get("/api/v1/repos", params={"limit": 500}).json()}
        assert teams.public in listed and not {teams.private, beta_private} & listed
    with teams.client("alpha-read") as alpha:
        assert {teams.private, teams.public} <= {r["id"] for r in every_page(alpha, "/api/v1/repos", limit=1)}


def test_public_repositories_are_read_without_a_token_and_cached_only_when_shared(teams: Teams) -> None:
    digest = teams.admin.get(f"/api/v1/repos/{teams.public}/resolve/latest").json()["digest"]
    with teams.client("none") as anonymous:
        public = anonymous.get(f"/api/v1/repos/{teams.public}@{digest}".replace("@", "/resolve/", 1))
        assert public.status_code == 200 and public.headers["cache-control"].startswith("public")
        blob = public.json()["files"][0]["url"]
        assert anonymous.get(blob).headers["cache-control"].startswith("public")
        assert anonymous.get(f"/hf/api/models/{teams.public}").json()["private"] is False
        private = anonymous.get(f"/api/v1/repos/{teams.private}/resolve/latest")
        assert private.status_code == 401 and "requires a token" in private.json()["error"]["message"]
        assert (
            anonymous.put(f"/api/v1/repos/{teams.public}/tags/x", json={"target": "latest"}).status_code
            == 401
        )
    with teams.client("alpha-read") as alpha:
        resolved = alpha.get(f"/api/v1/repos/{teams.public}/resolve/{digest}")
        assert resolved.headers["cache-control"].startswith("private")
        assert alpha.get(blob).headers["cache-control"].startswith("private")
        assert alpha.get(f"/hf/api/models/{teams.private}").json()["private"] is True


def test_a_namespace_admin_acts_only_inside_its_namespaces(teams: Teams) -> None:
    with teams.client("alpha-admin") as admin:
        for body in (
            {"name": "wide", "scope": "read"},
            {"name": "elsewhere", "scope": "admin", "namespaces": [teams.beta]},
            {"name": "both", "scope": "read", "namespaces": [teams.alpha, teams.beta]},
        ):
            refused = admin.post("/api/v1/tokens", json=body)
            assert refused.status_code == 403, (body, refused.text)
        made = admin.post(
            "/api/v1/tokens", json={"name": "ci", "scope": "admin", "namespaces": [teams.alpha]}
        )
        assert made.status_code == 201 and made.json()["namespaces"] == [teams.alpha]
        listed = admin.get("/api/v1/tokens").json()
        assert listed and all(t["namespaces"] == [teams.alpha] for t in listed)
        assert admin.delete(f"/api/v1/tokens/{teams.token_ids['beta-read']}").status_code == 404
        assert admin.post("/api/v1/webhooks", json=QUIET_HOOK).status_code == 403
        hook = {**QUIET_HOOK, "namespace": teams.beta}
        assert admin.post("/api/v1/webhooks", json=hook).status_code == 403
        assert all(h["namespace"] == teams.alpha for h in admin.get("/api/v1/webhooks").json())
        entries = admin.get("/api/v1/audit", params={"limit": 500}).json()
        assert entries and {e["namespace"] for e in entries} == {teams.alpha}
        assert admin.get("/api/v1/audit", params={"namespace": teams.beta}).status_code == 403


def test_the_audit_actor_is_the_token_not_the_author_a_client_sends(teams: Teams) -> None:
    repo = f"{teams.alpha}/authored{uuid.uuid4().hex[:6]}"
    with teams.client("alpha-write") as alpha:
        body = {
            "files": _files_of(teams, teams.private),
            "base": teams.base.content_digest,
            "author": "mallory",
        }
        pushed = alpha.post(f"/api/v1/repos/{repo}/versions", json=body)
        assert pushed.status_code == 201 and pushed.json()["author"] == "mallory"
    entries = teams.admin.get("/api/v1/audit", params={"namespace": teams.alpha, "limit": 10}).json()
    push = next(e for e in entries if e["action"] == "version.push" and e["target"].startswith(repo))
    assert (
        push["actor"] == f"alpha-write-{teams.alpha}" and push["token_id"] == teams.token_ids["alpha-write"]
    )
    assert push["detail"]["created"] is True
    created = next(e for e in entries if e["action"] == "repo.create" and e["target"] == repo)
    assert created["actor"] == push["actor"]


def test_pushing_a_yanked_versions_content_again_moves_no_tag(teams: Teams) -> None:
    repo = teams.fresh_repo(seed=34)
    second = teams.adapters(seed=35)
    files = upload_directory(teams.admin, second)
    v2 = teams.admin.post(
        f"/api/v1/repos/{repo}/versions", json={"files": files, "base": teams.base.content_digest}
    )
    assert v2.json()["number"] == 2
    assert (
        teams.admin.post(f"/api/v1/repos/{repo}/versions/%232/yank", json={"reason": "bad"}).status_code
        == 200
    )
    again = teams.admin.post(
        f"/api/v1/repos/{repo}/versions",
        json={"files": files, "base": teams.base.content_digest, "tags": ["prod"]},
    )
    assert again.status_code == 200 and again.json()["tags_moved"] == [] and again.json()["yanked"]
    latest = teams.admin.get(f"/api/v1/repos/{repo}/resolve/latest")
    assert latest.status_code == 200 and latest.json()["number"] == 1
    onto = teams.admin.put(f"/api/v1/repos/{repo}/tags/prod", json={"target": v2.json()["digest"]})
    assert (onto.status_code, onto.json()["error"]["code"]) == (409, "yanked_target")
    assert "--allow-yanked" in onto.json()["error"]["message"]
    forced = teams.admin.put(
        f"/api/v1/repos/{repo}/tags/prod", json={"target": v2.json()["digest"], "allow_yanked": True}
    )
    assert forced.status_code == 200 and forced.json()["number"] == 2


def test_base_models_are_registered_once_and_never_rewritten(teams: Teams) -> None:
    manifest = read_base_manifest(teams.base.path).to_json()
    files = {**manifest["files"], "extra.safetensors": uuid.uuid4().hex * 2}  # a base nobody has yet
    manifest = {**manifest, "files": files, "content_digest": _content_digest(files)}
    body = {"name": "race", "manifest": manifest}

    def register() -> int:
        with httpx.Client(base_url=teams.url, headers=teams.admin.headers, timeout=30) as http:
            return http.post("/api/v1/bases", json=body).status_code

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(lambda _: register(), range(4)))
    assert statuses == [200, 200, 200, 201]
    base_dir = teams.base.path
    uploaded = upload_directory(teams.admin, base_dir)
    with_files = {"name": "tiny-llama", "manifest": read_base_manifest(base_dir).to_json(), "files": uploaded}
    assert teams.admin.post("/api/v1/bases", json=with_files).status_code == 200
    assert teams.admin.post("/api/v1/bases", json=with_files).status_code == 200  # the same files again
    extra = uuid.uuid4().bytes
    extra_digest = f"sha256:{hashlib.sha256(extra).hexdigest()}"
    assert teams.admin.put(f"/api/v1/blobs/{extra_digest}", content=extra).status_code == 201
    other = {
        **with_files,
        "files": [*uploaded, {"path": "notes.txt", "digest": extra_digest, "size": len(extra)}],
    }
    refused = teams.admin.post("/api/v1/bases", json=other)
    assert refused.status_code == 409 and "not replaced" in refused.json()["error"]["message"]


def _content_digest(files: dict[str, str]) -> str:
    from registry.adapters.base_manifest import content_digest

    return content_digest(files)


# The same model from the command line ---------------------------------------------------------------


def _lorareg(t: Teams, credential: str, *args: str, check: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "LOREG_TOKEN"}
    env["LOREG_URL"] = t.url
    env["LOREG_CREDENTIALS_FILE"] = "/nonexistent/credentials.json"
    if credential != "none":
        env["LOREG_TOKEN"] = t.secrets[credential]
    done = lorareg(*args, env=env)
    assert done.returncode == check, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def test_visibility_listing_and_audit_from_the_cli(teams: Teams) -> None:
    repo = teams.fresh_repo(seed=36)
    _lorareg(teams, "alpha-read", "repo", "visibility", repo, "public", check=1)  # a reader cannot
    _lorareg(teams, "beta-write", "repo", "visibility", repo, "public", check=1)  # nor another team
    assert repo not in _lorareg(teams, "none", "ls").stdout
    made = json.loads(_lorareg(teams, "alpha-write", "--json", "repo", "visibility", repo, "public").stdout)
    assert made["visibility"] == "public"
    listed = {r["id"]: r for r in json.loads(_lorareg(teams, "none", "--json", "ls").stdout)}
    assert listed[repo]["visibility"] == "public" and teams.private not in listed
    trail = json.loads(
        _lorareg(teams, "alpha-admin", "--json", "audit", "--action", "repo.visibility").stdout
    )
    assert trail[0]["target"] == repo and trail[0]["actor"] == f"alpha-write-{teams.alpha}"
    assert trail[0]["detail"] == {"from": "private", "to": "public"}
    assert {e["result"] for e in trail[:3]} >= {"ok", "forbidden"}  # the refusals are there too
    text = _lorareg(teams, "alpha-admin", "audit", "-n", "3").stdout
    assert len(text.splitlines()) == 3 and "repo.visibility" in text
    _lorareg(teams, "alpha-write", "audit", check=1)


def test_the_cli_moves_a_tag_onto_a_yanked_version_only_when_told(teams: Teams) -> None:
    repo = teams.fresh_repo(seed=37)
    _lorareg(teams, "alpha-write", "yank", f"{repo}#1", "--reason", "bad")
    digest = teams.admin.get(f"/api/v1/repos/{repo}/versions/%231").json()["digest"]
    refused = _lorareg(teams, "alpha-write", "tag", f"{repo}@{digest}", "prod", check=1)
    assert "--allow-yanked" in refused.stderr
    _lorareg(teams, "alpha-write", "tag", f"{repo}@{digest}", "prod", "--allow-yanked")
    assert teams.admin.get(f"/api/v1/repos/{repo}/tags").json()[0]["name"] == "prod"
