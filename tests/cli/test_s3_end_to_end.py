"""The CLI round trip on the production shape: PostgreSQL + S3 (rclone's server, which checks
signatures), with presigned uploads verified by the server and downloads redirected to S3."""

from __future__ import annotations

import copy
import hashlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import huggingface_hub
import pytest
import torch
from huggingface_hub import constants as hf_constants
from peft import PeftModel

from registry.config import Settings
from registry.db import migrate
from registry.db.session import Database
from registry.principal import REGISTRY
from registry.services import tokens
from registry.storage import BlobNotFound, open_blob_store
from tests.cli.test_cli import logits, run, run_json
from tests.conftest import LiveServer, TinyBase, start_server
from tests.s3_servers import S3Server
from tests.service_checks import fresh_postgres_database


@pytest.fixture(scope="module")
def production(rclone_s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with fresh_postgres_database("lorareg_s3") as database_url:
        migrate.upgrade(database_url)
        settings = Settings(
            home=tmp_path_factory.mktemp("s3-home"),
            database_url=database_url,
            blob_url=rclone_s3.blob_url("registry"),
            **rclone_s3.settings_overrides(),
        )
        for url in start_server(settings):
            with httpx.Client(base_url=url, timeout=30) as http:
                yield LiveServer(url, settings, http)


def test_push_pull_on_s3_and_postgres(
    production: LiveServer, tiny_base: TinyBase, adapter_factory, repo: str, tmp_path: Path
) -> None:
    run(production, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    adapter = adapter_factory(seed=41)
    pushed = run_json(production, "push", str(adapter), f"{repo}:v1", "--base", tiny_base.content_digest)
    assert pushed["created"] and pushed["uploaded_bytes"] > 0
    assert (
        run_json(production, "push", str(adapter), f"{repo}:v1", "--base", tiny_base.content_digest)[
            "uploaded_bytes"
        ]
        == 0
    )

    store = open_blob_store(production.settings.resolved_blob_url, production.settings)
    weights = hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert store.stat(weights).size == (adapter / "adapter_model.safetensors").stat().st_size

    out = tmp_path / "pulled"
    run(production, "pull", f"{repo}:v1", "-o", str(out), "--base", tiny_base.content_digest)
    assert (out / "adapter_model.safetensors").read_bytes() == (
        adapter / "adapter_model.safetensors"
    ).read_bytes()
    loaded = PeftModel.from_pretrained(copy.deepcopy(tiny_base.model), str(out)).eval()
    original = PeftModel.from_pretrained(copy.deepcopy(tiny_base.model), str(adapter)).eval()
    assert torch.equal(logits(loaded), logits(original))


def test_uploads_are_presigned_and_verified(production: LiveServer) -> None:
    data = b"adapter bytes " * 1000
    digest = hashlib.sha256(data).hexdigest()
    target = production.http.post(
        "/api/v1/blobs/batch", json={"blobs": [{"digest": f"sha256:{digest}", "size": len(data)}]}
    ).json()
    (upload,) = target["missing"]
    assert upload["url"].startswith(f"http://{production.settings.s3_endpoint}/")
    assert re.fullmatch(rf"/api/v1/blobs/sha256:{digest}/verify\?upload=[0-9a-f]{{32}}", upload["verify_url"])

    not_yet = production.http.post(upload["verify_url"])
    assert not_yet.status_code == 404 and "batch call" in not_yet.json()["error"]["message"]

    lie = httpx.put(upload["url"], content=b"something else", headers=upload["headers"])
    assert lie.status_code == 200, lie.text
    refused = production.http.post(upload["verify_url"])
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "digest_mismatch"
    store = open_blob_store(production.settings.resolved_blob_url, production.settings)
    with pytest.raises(BlobNotFound):
        store.stat(digest)
    assert production.http.post(upload["verify_url"]).status_code == 404  # the bad object is gone

    assert httpx.put(upload["url"], content=data, headers=upload["headers"]).status_code == 200
    verified = production.http.post(upload["verify_url"])
    assert verified.status_code == 200 and verified.json()["size"] == len(data)
    again = production.http.post(
        "/api/v1/blobs/batch", json={"blobs": [{"digest": f"sha256:{digest}", "size": len(data)}]}
    )
    assert again.json()["missing"] == []


def test_a_presigned_verify_is_no_way_into_another_namespaces_blob(production: LiveServer) -> None:
    """A presigned upload stages under an id only its requester was handed: verifying a blob someone
    else stored, under an id of one's own, proves nothing and grants nothing."""
    data = b"alpha's weights"
    digest = hashlib.sha256(data).hexdigest()
    production.http.put(f"/api/v1/blobs/sha256:{digest}", content=data).raise_for_status()
    db = Database.connect(production.settings.resolved_database_url)
    with db.transaction() as session:
        _, secret = tokens.create_token(session, REGISTRY, name="beta-ci", scope="write", namespaces=["beta"])
    db.dispose()
    settings = production.settings.model_copy(update={"auth": "required"})
    for url in start_server(settings):
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=30) as beta:
            wanted = {"blobs": [{"digest": f"sha256:{digest}", "size": len(data)}]}
            (target,) = beta.post("/api/v1/blobs/batch", json=wanted).json()["missing"]
            assert beta.post(target["verify_url"]).status_code == 404  # nothing put under its own id
            forged = beta.post(f"/api/v1/blobs/sha256:{digest}/verify", params={"upload": uuid.uuid4().hex})
            assert forged.status_code == 404
            assert beta.get(f"/api/v1/blobs/sha256:{digest}").status_code == 404
            assert beta.post("/api/v1/blobs/batch", json=wanted).json()["missing"]  # still not beta's
            assert httpx.put(target["url"], content=data, headers=target["headers"]).status_code == 200
            assert beta.post(target["verify_url"]).status_code == 200  # now it has shown the bytes
            assert beta.post("/api/v1/blobs/batch", json=wanted).json()["missing"] == []


def test_downloads_redirect_to_s3_unless_proxied(production: LiveServer, rclone_s3: S3Server) -> None:
    data = b"served from object storage"
    digest = hashlib.sha256(data).hexdigest()
    production.http.put(f"/api/v1/blobs/sha256:{digest}", content=data).raise_for_status()

    redirected = production.http.get(f"/api/v1/blobs/sha256:{digest}")
    assert redirected.status_code == 307
    location = redirected.headers["location"]
    assert location.startswith(f"http://{rclone_s3.endpoint}/") and "X-Amz-Signature" in location
    assert httpx.get(location).content == data
    assert httpx.get(location, headers={"Range": "bytes=5-8"}).content == data[5:9]
    assert production.http.head(f"/api/v1/blobs/sha256:{digest}").headers["content-length"] == str(len(data))

    proxied_settings = production.settings.model_copy(update={"presign_downloads": False})
    for url in start_server(proxied_settings):
        proxied = httpx.get(f"{url}/api/v1/blobs/sha256:{digest}")
        assert proxied.status_code == 200 and proxied.content == data


def test_hub_clients_download_straight_from_s3(
    production: LiveServer,
    rclone_s3: S3Server,
    tiny_base: TinyBase,
    adapter_factory,
    repo: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``/hf`` GETs answer with the same presigned redirect as blob GETs; huggingface_hub follows it and
    verifies the bytes against the ETag its HEAD got from lorareg."""
    run(production, "base", "register", str(tiny_base.path), "--name", "tiny-llama")
    adapter = adapter_factory(seed=42)
    run(production, "push", str(adapter), f"{repo}:v1", "--base", tiny_base.content_digest)
    weights = f"/hf/{repo}/resolve/v1/adapter_model.safetensors"
    redirected = production.http.get(weights)
    assert redirected.status_code == 307
    assert redirected.headers["location"].startswith(f"http://{rclone_s3.endpoint}/")
    head = production.http.head(weights)
    assert head.status_code == 200 and head.headers["X-Linked-Size"] == str(
        (adapter / "adapter_model.safetensors").stat().st_size
    )

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    local = huggingface_hub.snapshot_download(
        repo, revision="v1", endpoint=f"{production.url}/hf", cache_dir=tmp_path / "hf", token=False
    )
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (Path(local) / name).read_bytes() == (adapter / name).read_bytes()
