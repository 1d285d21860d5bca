"""Authentication: tokens stored hashed, anonymous reads, the batch resolve and ``/hf`` with tokens.

Every route × every kind of credential is in ``test_isolation.py``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import huggingface_hub
import pytest
from huggingface_hub import constants as hf_constants
from huggingface_hub.errors import HfHubHTTPError
from sqlalchemy import create_engine, select, update

from registry.config import Settings
from registry.db import models
from registry.db.models import utcnow
from registry.db.session import Database
from registry.principal import REGISTRY
from registry.services import tokens
from tests.conftest import LiveServer, TinyBase, start_server
from tests.helpers import register_base, upload_directory

CREDENTIALS = ["none", "malformed", "revoked", "expired", "read", "other-namespace", "right"]


@dataclass
class Secured:
    server: LiveServer
    secrets: dict[str, str]  # kind -> secret
    namespace: str

    def client(self, kind: str) -> httpx.Client:
        headers = {
            "none": {},
            "malformed": {"Authorization": "Token not-a-bearer"},
        }.get(kind, {"Authorization": f"Bearer {self.secrets.get(kind, '')}"})
        return httpx.Client(base_url=self.server.url, headers=headers, timeout=30)


@pytest.fixture(scope="session")
def secured(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    namespace = f"sec{uuid.uuid4().hex[:6]}"
    db = Database.connect(database_url)
    secrets = {}
    with db.transaction() as session:
        for kind, scope, namespaces in [
            ("admin", "admin", None),
            ("write", "write", None),
            ("read", "read", None),
            ("other-namespace", "write", ["elsewhere"]),
            ("revoked", "admin", None),
            ("expired", "admin", None),
        ]:
            token, secret = tokens.create_token(
                session, REGISTRY, name=f"{kind}-{namespace}", scope=scope, namespaces=namespaces
            )
            secrets[kind] = secret
            if kind == "revoked":
                tokens.revoke_token(session, token.id, REGISTRY)
            if kind == "expired":
                session.execute(
                    update(models.Token)
                    .where(models.Token.id == token.id)
                    .values(expires_at=utcnow() - timedelta(minutes=1))
                )
    db.dispose()
    settings = Settings(home=tmp_path_factory.mktemp("secured"), database_url=database_url, auth="required")
    for url in start_server(settings):
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {secrets['admin']}"}) as http:
            yield Secured(LiveServer(url, settings, http), secrets, namespace)


def _pushed(s: Secured, base: TinyBase, adapters, repo: str) -> None:
    register_base(s.server.http, base.path)
    files = upload_directory(s.server.http, adapters(seed=11))
    response = s.server.http.post(
        f"/api/v1/repos/{repo}/versions", json={"files": files, "base": base.content_digest}
    )
    assert response.status_code in (200, 201), response.text


def test_reads_need_a_token_unless_anonymous_read(
    secured: Secured, tiny_base: TinyBase, adapter_factory
) -> None:
    repo = f"{secured.namespace}/reads"
    _pushed(secured, tiny_base, adapter_factory, repo)
    with secured.client("none") as anonymous:
        assert anonymous.get(f"/api/v1/repos/{repo}/resolve/latest").status_code == 401
        assert anonymous.get("/api/v1/health").status_code == 200
    with secured.client("read") as reader:
        resolved = reader.get(f"/api/v1/repos/{repo}/resolve/latest")
        assert resolved.status_code == 200
        assert reader.get(resolved.json()["files"][0]["url"]).status_code == 200
        me = reader.get("/api/v1/whoami").json()
        assert me["scope"] == "read" and me["auth"] == "required"


def test_anonymous_read(
    database_url: str, tmp_path: Path, secured: Secured, tiny_base: TinyBase, adapter_factory
) -> None:
    repo = f"{secured.namespace}/public"
    _pushed(secured, tiny_base, adapter_factory, repo)
    settings = Settings(
        home=secured.server.settings.home, database_url=database_url, auth="required", anonymous_read=True
    )
    for url in start_server(settings):
        with httpx.Client(base_url=url) as anonymous:
            assert anonymous.get(f"/api/v1/repos/{repo}/resolve/latest").status_code == 200
            refused = anonymous.put(f"/api/v1/repos/{repo}/tags/x", json={"target": "latest"})
            assert refused.status_code == 401


def test_tokens_are_stored_hashed_and_track_use(secured: Secured) -> None:
    made = secured.server.http.post(
        "/api/v1/tokens", json={"name": "hashed", "scope": "read", "expires_in": 3600}
    ).json()
    secret = made["secret"]
    engine = create_engine(secured.server.settings.resolved_database_url)
    with engine.connect() as connection:
        stored = connection.execute(select(models.Token).where(models.Token.id == made["id"])).one()
    engine.dispose()
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest() and secret not in str(stored)
    with httpx.Client(base_url=secured.server.url, headers={"Authorization": f"Bearer {secret}"}) as http:
        assert http.get("/api/v1/whoami").json()["name"] == "hashed"
    listed = {t["id"]: t for t in secured.server.http.get("/api/v1/tokens").json()}
    assert listed[made["id"]]["last_used_at"] is not None and "secret" not in listed[made["id"]]


def test_batch_resolve_checks_each_refs_namespace(
    secured: Secured, tiny_base: TinyBase, adapter_factory
) -> None:
    repo = f"{secured.namespace}/batch"
    _pushed(secured, tiny_base, adapter_factory, repo)
    with secured.client("other-namespace") as limited:  # a token limited to the namespace "elsewhere"
        results = limited.post("/api/v1/resolve", json={"refs": [repo]}).json()["results"]
    assert results[0]["version"] is None and results[0]["error"]["code"] == "not_found"
    assert "limited to namespaces elsewhere" in results[0]["error"]["message"]
    with secured.client("read") as reader:
        assert (
            reader.post("/api/v1/resolve", json={"refs": [repo]}).json()["results"][0]["version"]["number"]
            == 1
        )


def test_hub_routes_take_the_same_tokens(
    secured: Secured, tiny_base: TinyBase, adapter_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``/hf`` is read access like any other: huggingface_hub's ``token=`` is the lorareg token. A missing
    token is a 401, a token for another namespace a 404 (a private repository is not confirmed to exist),
    each with lorareg's message (which huggingface_hub shows); errors to HEAD carry their code and message
    in headers."""
    repo = f"{secured.namespace}/hub"
    _pushed(secured, tiny_base, adapter_factory, repo)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    endpoint = f"{secured.server.url}/hf"

    def download(token: str | bool) -> Path:
        path = huggingface_hub.snapshot_download(
            repo, endpoint=endpoint, cache_dir=tmp_path / str(token)[:8], token=token
        )
        return Path(path)

    with pytest.raises(HfHubHTTPError) as missing:
        download(False)
    assert missing.value.response.status_code == 401 and "requires a token" in str(missing.value)
    with pytest.raises(HfHubHTTPError) as elsewhere:
        huggingface_hub.HfApi(endpoint=endpoint).model_info(repo, token=secured.secrets["other-namespace"])
    assert elsewhere.value.response.status_code == 404
    assert "limited to namespaces elsewhere" in str(elsewhere.value)
    local = download(secured.secrets["read"])
    with secured.client("read") as reader:
        version = reader.get(f"/api/v1/repos/{repo}/resolve/latest").json()
    assert sorted(p.name for p in local.iterdir()) == sorted(f["path"] for f in version["files"])
    assert version["digest"].removeprefix("sha256:").startswith(local.name)  # snapshots/<commit sha>

    with secured.client("none") as anonymous:
        head = anonymous.head(f"/hf/{repo}/resolve/main/adapter_config.json")
    assert (head.status_code, head.content, head.headers["X-Error-Code"]) == (401, b"", "unauthorized")
    assert "token" in head.headers["X-Error-Message"]
